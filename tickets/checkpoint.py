"""Mid-network checkpoints: a network's whole training state in one file of its own directory.

``<network dir>/checkpoint.pt`` holds the weights, the optimizer state, the iteration (which
fixes the learning-rate schedule's position, the batch order and the augmentation draws), the
global RNG states, the metrics rows so far, the training loss accumulated since the last
evaluation, the captured rewind states and the training seconds so far. It is written
atomically (a reader sees the previous checkpoint or the new one), lives in the network's
directory so any process that sees the run can resume the network, and is deleted once the
network is done. On CPU a resumed network ends bit-identical to one never interrupted.

When: every ``train.checkpoint_every`` iterations; by default (``null``) whenever
:data:`DEFAULT_SECONDS` of training have passed since the last checkpoint or the start. So a
network shorter than five minutes never writes one, a long one never loses more than about
five minutes of work, and on every machine the cost is one save per five minutes (well under
1% even for VGG-16's ~180 MB of weights, momentum and rewind state).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from tickets.errors import TicketsError
from tickets.store import atomic_torch_save, torch_load

FILE_NAME = "checkpoint.pt"
DEFAULT_SECONDS = 300.0


class Checkpoint:
    """Where and when one network saves its training state.

    ``every``: iterations between checkpoints, or None for one every ``seconds`` of training.
    ``on_resume(iteration)`` is called when training resumes from a saved state.
    """

    def __init__(self, network_dir: str | Path, every: int | None = None, *, seconds: float = DEFAULT_SECONDS,
                 on_resume: Callable[[int], None] | None = None, clock: Callable[[], float] = time.monotonic):
        self.path = Path(network_dir) / FILE_NAME
        self.every, self.seconds, self.on_resume, self.clock = every, seconds, on_resume, clock
        self._last = clock()

    def restart_clock(self) -> None:
        """Count the time to the next checkpoint from now (training starts)."""
        self._last = self.clock()

    def due(self, iteration: int) -> bool:
        """Whether to save after reaching ``iteration``."""
        if self.every is not None:
            return iteration % self.every == 0
        return self.clock() - self._last >= self.seconds

    def save(self, state: dict) -> None:
        atomic_torch_save(state, self.path)
        self._last = self.clock()

    def load(self, **expected) -> dict | None:
        """The saved state, or None when there is none or it belongs to other training (``expected`` keys differ)."""
        if not self.path.exists():
            return None
        try:
            state = torch_load(self.path)
        except Exception as error:  # noqa: BLE001 - any unreadable file gets the same advice
            raise TicketsError(f"checkpoint {self.path} cannot be read ({type(error).__name__}); "
                               "delete it to train that network from its start") from None
        if any(state.get(key) != value for key, value in expected.items()):
            return None
        if self.on_resume is not None:
            self.on_resume(state["iteration"])
        return state

    def remove(self) -> None:
        """Delete the checkpoint and any half-written one a killed process left behind."""
        self.path.unlink(missing_ok=True)
        for partial_file in self.path.parent.glob(f".{FILE_NAME}.*.tmp"):
            partial_file.unlink(missing_ok=True)
