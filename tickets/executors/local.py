"""Local worker processes (``--workers N``): several networks of a run train at once.

Each worker is a process that keeps its imports and the run's data between jobs; it gets its
share of the CPU threads and, when training on GPUs, one GPU (``workers_per_gpu`` workers share
it). On Linux, CPU workers are forked from a fork server that imported torch and Lightning once
(:func:`warm_up` starts it while the driver does its own start-up), so a worker starts in
milliseconds instead of seconds; elsewhere, and on GPUs, workers are spawned afresh. A worker
that dies (kill -9, out of memory) is reported, replaced, and its job retried once. Workers
ignore Ctrl-C: the driver stops them, and every finished network stays finished, so the run
resumes where it stopped.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
import traceback
from multiprocessing.connection import wait as wait_for
from typing import Callable

from tickets.errors import TicketsError

RETRIES = 1


class WorkerError(RuntimeError):
    """A job failed in a worker with an unexpected exception (its traceback is the message)."""


def _worker_main(conn, threads: int, env: dict) -> None:
    """A worker's life: run the jobs it is sent until it is sent None."""
    os.environ.clear()  # the driver's environment now, not the fork server's when it started
    os.environ.update(env)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    import tickets.engine.netjob  # noqa: F401 - the slow imports, done while the driver prepares the run
    import tickets.training.loop  # noqa: F401 - Lightning

    torch.set_num_threads(threads)
    while True:
        message = conn.recv()
        if message is None:
            return
        job, stream_evals = message
        try:
            row = job.run(on_eval=(lambda row: conn.send(("eval", job, row))) if stream_evals else None)
            conn.send(("done", job, row))
        except TicketsError as error:
            conn.send(("user_error", job, str(error)))
        except BaseException:  # noqa: BLE001 - reported to the driver, which stops the run
            conn.send(("error", job, traceback.format_exc()))


class _Worker:
    def __init__(self, context, index: int, threads: int, env: dict):
        self.index = index
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child, threads, env), daemon=True,
                                       name=f"tickets-worker-{index}")
        self.process.start()
        child.close()
        self.job = None


def _forks(plan) -> bool:
    """Whether the plan's workers fork from the fork server (Linux, CPU) rather than spawn.

    Fork is unsafe after these imports on macOS, and CUDA is kept out of forked processes.
    """
    return sys.platform.startswith("linux") and not plan.gpus


def _start_method(plan):
    if not _forks(plan):
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tickets.executors.preload"])  # takes effect when the server starts
    return context


def _spawn_worker(plan, index: int) -> _Worker:
    """Start worker ``index`` of a plan: its share of the threads and, when training on GPUs, its GPU."""
    env = dict(os.environ)
    if plan.gpus:
        env["CUDA_VISIBLE_DEVICES"] = str((index // plan.workers_per_gpu) % plan.gpus)
    return _Worker(_start_method(plan), index, plan.threads_per_worker, env)


def warm_up(plan) -> None:
    """Get a plan's workers going now, so that their start-up (imports) overlaps the driver's own.

    With a fork server, start the server (it imports torch and Lightning in the background);
    otherwise spawn the workers themselves (see :func:`start_early`).
    """
    if _forks(plan):
        _start_method(plan)
        multiprocessing.forkserver.ensure_running()
    else:
        start_early(plan)


_early: tuple | None = None  # (the plan's signature, its workers) started by start_early()


def _signature(plan) -> tuple:
    return plan.workers, plan.threads_per_worker, plan.gpus, plan.workers_per_gpu


def start_early(plan) -> None:
    """Spawn a plan's workers now, so that their start-up (imports) overlaps the driver's own.

    The next :class:`LocalExecutor` with the same plan adopts them; workers of an earlier call
    that nobody adopted are stopped.
    """
    global _early
    _stop_early()
    _early = (_signature(plan), [_spawn_worker(plan, i) for i in range(plan.workers)])


def _adopt_early(plan) -> list | None:
    global _early
    if _early is not None and _early[0] == _signature(plan) and all(w.process.is_alive() for w in _early[1]):
        workers, _early = _early[1], None
        return workers
    _stop_early()
    return None


def _stop_early() -> None:
    global _early
    if _early is not None:
        for worker in _early[1]:
            worker.process.kill()
            worker.process.join()
        _early = None


class LocalExecutor:
    """A pool of worker processes on this machine."""

    def __init__(self, plan, on_eval: Callable[[object, dict], None] | None, warn: Callable[[str], None]):
        """``on_eval(job, row)`` receives every evaluation of a running job; None: workers send none."""
        self.plan = plan
        self.capacity = plan.workers
        self.on_eval = on_eval
        self.warn = warn
        self._workers: list[_Worker] = []
        self._attempts: dict = {}

    @property
    def pending(self) -> int:
        return sum(1 for w in self._workers if w.job is not None)

    def _start(self, index: int) -> _Worker:
        return _spawn_worker(self.plan, index)

    def __enter__(self) -> "LocalExecutor":
        self._workers = _adopt_early(self.plan) or [self._start(i) for i in range(self.capacity)]
        import torch

        self._driver_threads = torch.get_num_threads()
        return self

    def _share_cores(self) -> None:
        """While workers train they have the cores, and the driver's own tensor work (masks, paths) takes one
        thread, so that its idle threads do not spin on their cores; with every worker idle it takes them all."""
        import torch

        torch.set_num_threads(1 if self.pending else self._driver_threads)

    def submit(self, job) -> None:
        worker = next(w for w in self._workers if w.job is None)
        if not worker.process.is_alive():  # died while idle: replace it quietly, nothing was lost
            worker = self._workers[self._workers.index(worker)] = self._start(worker.index)
        worker.job = job
        self._attempts[job.key] = self._attempts.get(job.key, 0) + 1
        worker.conn.send((job, self.on_eval is not None))
        self._share_cores()

    def wait(self) -> list[tuple[object, dict]]:
        finished: list[tuple[object, dict]] = []
        while not finished:
            busy = [w for w in self._workers if w.job is not None]
            if not busy:
                return finished
            ready = wait_for([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for worker in busy:
                if worker.conn in ready or worker.process.sentinel in ready:
                    finished.extend(self._collect(worker))
        self._share_cores()
        return finished

    def _collect(self, worker: _Worker) -> list[tuple[object, dict]]:
        """Read a worker's messages; replace it (and retry its job) if it died."""
        done = []
        try:
            while worker.conn.poll():
                kind, job, payload = worker.conn.recv()
                if kind == "eval":
                    self.on_eval(job, payload)
                    continue
                worker.job = None
                if kind == "done":
                    done.append((job, payload))
                elif kind == "user_error":
                    raise TicketsError(payload)
                else:
                    raise WorkerError(f"{job.describe()} failed in worker {worker.index}:\n{payload}")
        except (EOFError, ConnectionResetError):
            pass
        if worker.job is not None and not worker.process.is_alive():
            self._replace(worker)
        return done

    def _replace(self, worker: _Worker) -> None:
        job, code = worker.job, worker.process.exitcode
        cause = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        self._workers[self._workers.index(worker)] = fresh = self._start(worker.index)
        if self._attempts[job.key] > RETRIES:
            raise TicketsError(f"worker {worker.index} died twice training {job.describe()} ({cause}); "
                               "check memory, then run the same command to resume")
        self.warn(f"worker {worker.index} died ({cause}) training {job.describe()}; retrying it")
        fresh.job = job
        self._attempts[job.key] += 1
        fresh.conn.send((job, self.on_eval is not None))

    def __exit__(self, *exc) -> None:
        for worker in self._workers:
            if worker.process.is_alive() and worker.job is None:
                try:
                    worker.conn.send(None)
                except (BrokenPipeError, OSError):
                    pass
        for worker in self._workers:
            if worker.job is not None:
                worker.process.terminate()  # interrupted mid-network: it resumes from its files
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()
        self._workers = []
        import torch

        torch.set_num_threads(self._driver_threads)
