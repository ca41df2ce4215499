"""Executors run jobs of any kind: in this process, in local worker processes, or as Ray tasks.

They know nothing about what a job trains (IMP, stability, supermasks): a job is an address
with ``run(on_eval) -> dict``, and the driver (:func:`tickets.engine.graph.drive`) decides
what runs when.

Every executor offers the same small interface to the driver (:class:`Executor`): ``submit``
a job, ``wait`` for finished ones, ``pending`` and ``capacity``. How a run is executed never
changes its results, so a run begun with one executor can be resumed with another.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from tickets.config import RunConfig
from tickets.errors import TicketsError
from tickets.machine import cpu_cores, gpu_count


class Executor(Protocol):
    """What the driver needs of an executor."""

    capacity: int  # how many jobs it runs at once
    pending: int  # jobs submitted and not yet returned by wait()

    def submit(self, job) -> None:
        """Start (or queue) one job."""

    def wait(self) -> list[tuple[object, dict]]:
        """Block until at least one job has finished; return (job, results row) pairs."""

    def __enter__(self): ...

    def __exit__(self, *exc) -> None:
        """Stop every worker (also on Ctrl-C); finished networks stay finished."""


@dataclass
class ExecutionPlan:
    """How a run's networks are executed: resolved from the config's execution section."""

    executor: str  # "serial", "local" or "ray"
    workers: int
    threads_per_worker: int
    gpus: int
    workers_per_gpu: int
    address: str | None
    cpus_per_network: float
    gpus_per_network: float | None

    @classmethod
    def for_run(cls, config: RunConfig, max_parallel: int) -> "ExecutionPlan":
        """Resolve ``auto`` and check the settings against this machine (TicketsError, exit 2)."""
        e = config.execution
        gpus = gpu_count(config.train.accelerator)
        if e.gpus_per_network and gpu_count("auto") == 0:
            raise TicketsError(f"--gpus-per-network {e.gpus_per_network} asks for GPUs, but this machine has none "
                               "(torch.cuda.is_available() is False); leave it out to train on CPUs")
        if e.executor == "ray":
            return cls("ray", 0, max(1, int(e.cpus_per_network)), gpus, e.workers_per_gpu, e.address,
                       e.cpus_per_network, e.gpus_per_network)
        devices = config.train.devices
        if isinstance(devices, int) and devices > 1:
            workers = 1  # one network over several devices (DDP)
        elif e.workers == "auto":
            slots = gpus * e.workers_per_gpu if gpus else cpu_cores()
            workers = max(1, min(slots, max_parallel))
        else:
            workers = e.workers
        threads = max(1, cpu_cores() // workers)
        return cls("serial" if workers == 1 else "local", workers, threads, gpus, e.workers_per_gpu, None,
                   e.cpus_per_network, e.gpus_per_network)

    def describe(self) -> dict:
        """For run.json: what executed the run."""
        if self.executor == "ray":
            return {"executor": "ray", "address": self.address, "cpus_per_network": self.cpus_per_network,
                    "gpus_per_network": self.gpus_per_network}
        return {"executor": self.executor, "workers": self.workers, "threads_per_worker": self.threads_per_worker,
                "gpus": self.gpus}


def start_workers_early(config: RunConfig, max_parallel: int) -> None:
    """Spawn the local workers a run will use before the driver's own start-up, so the two overlap.

    Bad execution settings are left for the run to report.
    """
    try:
        plan = ExecutionPlan.for_run(config, max_parallel)
    except TicketsError:
        return
    if plan.executor == "local":
        from tickets.executors.local import warm_up

        warm_up(plan)


def make_executor(plan: ExecutionPlan, progress, label: Callable[[object], str]) -> Executor:
    """The executor of a plan; connects to Ray or checks it is installed (TicketsError otherwise).

    A job is anything with ``run(on_eval) -> dict``, ``key`` and ``describe()`` (see
    :mod:`tickets.engine.graph`); ``label(job)`` names it in ``progress``.
    """

    def on_eval(job, row: dict) -> None:
        progress.update(label(job), row)

    if plan.executor == "ray":
        from tickets.executors.ray_tasks import RayExecutor

        return RayExecutor(plan, on_eval)
    if plan.executor == "local":
        from tickets.executors.local import LocalExecutor

        # the evaluations only feed the live display: without one, workers need not send them
        return LocalExecutor(plan, on_eval if progress.live else None, warn=progress.warn)
    from tickets.executors.serial import SerialExecutor

    return SerialExecutor(on_eval)
