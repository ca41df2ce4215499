"""The Ray executor (``--executor ray``): every network job is a Ray task.

The driver connects to Ray (``--address``: none starts a local instance, ``auto`` joins the
cluster that ``ray start --head`` made, ``ray://host:port`` a remote one), submits each ready
job as a task with ``--cpus-per-network`` and ``--gpus-per-network`` (fractions let several
networks share a GPU) and collects the rows. Every node must see the run directory (a shared
filesystem). A task whose worker or node dies is retried by Ray; the job resumes from the
files its network left.
"""
from __future__ import annotations

import socket
from typing import Callable

from tickets.errors import TicketsError

TASK_RETRIES = 2


def _run_job_task(job, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    return job.run()


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """A host:port address must accept connections (Ray itself would keep retrying for minutes)."""
    if not address or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as error:
        raise TicketsError(f"cannot connect to Ray at {address!r} ({error}); start the cluster with "
                           "`ray start --head`, or leave out --address to start a local instance") from None


class RayExecutor:
    """Submits jobs as Ray tasks; as many run at once as the cluster's resources allow."""

    def __init__(self, plan, on_eval: Callable[[object, dict], None]):
        try:
            import ray
        except ImportError:
            raise TicketsError("--executor ray needs Ray, which is not installed; "
                               "pip install \"tickets[ray]\"") from None
        self.ray = ray
        self.plan = plan
        self._started_here = not plan.address and not ray.is_initialized()
        _check_reachable(plan.address)
        try:
            ray.init(address=plan.address, ignore_reinit_error=True, include_dashboard=False,
                     log_to_driver=False, logging_level="ERROR",
                     runtime_env={"env_vars": {"MKL_CBWR": "AUTO,STRICT"}})
        except Exception as error:  # noqa: BLE001 - Ray raises many kinds for a bad address
            first = " ".join(str(error).split())[:200]
            raise TicketsError(f"cannot connect to Ray at {plan.address!r} ({first}); start the cluster with "
                               "`ray start --head`, or leave out --address to start a local instance") from None
        resources = ray.cluster_resources()
        slots = int(resources.get("CPU", 1) // plan.cpus_per_network)
        if plan.gpus_per_network:
            slots = min(slots, int(resources.get("GPU", 0) // plan.gpus_per_network))
            if slots < 1:
                raise TicketsError(f"the Ray cluster has {resources.get('GPU', 0):g} GPUs; "
                                   f"--gpus-per-network {plan.gpus_per_network} fits none")
        self.capacity = max(1, slots)
        self._task = ray.remote(_run_job_task).options(
            num_cpus=plan.cpus_per_network, num_gpus=plan.gpus_per_network or 0, max_retries=TASK_RETRIES)
        self._refs: dict = {}

    @property
    def pending(self) -> int:
        return len(self._refs)

    def submit(self, job) -> None:
        self._refs[self._task.remote(job, self.plan.threads_per_worker)] = job

    def wait(self) -> list[tuple[object, dict]]:
        ready, _ = self.ray.wait(list(self._refs), num_returns=1)
        finished = []
        for ref in ready:
            job = self._refs.pop(ref)
            try:
                finished.append((job, self.ray.get(ref)))
            except self.ray.exceptions.RayTaskError as error:
                cause = error.cause if hasattr(error, "cause") else None
                if isinstance(cause, TicketsError):
                    raise TicketsError(str(cause)) from None
                raise
            except self.ray.exceptions.RayError as error:
                first = " ".join(str(error).split())[:300]
                raise TicketsError(f"Ray could not run {job.describe()} after {TASK_RETRIES} retries ({first}); "
                                   "run the same command to resume") from None
        return finished

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc) -> None:
        for ref in self._refs:
            self.ray.cancel(ref, force=True)
        self._refs.clear()
        if self._started_here:
            self.ray.shutdown()
