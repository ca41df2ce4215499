"""The serial executor: one job at a time, in this process (``--workers 1``)."""
from __future__ import annotations

from typing import Callable


class SerialExecutor:
    """Runs each submitted job in this process when the driver waits for it."""

    capacity = 1

    def __init__(self, on_eval: Callable[[object, dict], None]):
        self.on_eval = on_eval
        self._queued: list = []

    @property
    def pending(self) -> int:
        return len(self._queued)

    def submit(self, job) -> None:
        self._queued.append(job)

    def wait(self) -> list[tuple[object, dict]]:
        job = self._queued.pop(0)
        return [(job, job.run(on_eval=lambda row: self.on_eval(job, row)))]

    def __enter__(self) -> "SerialExecutor":
        return self

    def __exit__(self, *exc) -> None:
        self._queued.clear()
