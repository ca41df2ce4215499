"""The job graph of an experiment kind, and the one driver that runs any graph on any executor.

A job is anything with ``key`` (hashable, unique in the run), ``describe()`` and
``run(on_eval) -> dict``; it reads its inputs from the run directory and writes only its own
files, so it gives the same result in this process, a worker or a Ray task. A :class:`Graph`
says which jobs there are: the roots, which jobs a finished one unblocks (after any work the
driver does itself, such as computing the next round's mask), which come first, how each is
labelled, and how many networks to expect. :func:`drive` keeps an executor busy with the ready
jobs, highest priority first, until nothing is left.
"""
from __future__ import annotations

import heapq
import itertools
from typing import Iterable

from tickets.progress import Progress


class Graph:
    """What an experiment kind tells the driver. Subclasses override the methods they need.

    While the driver runs the graph, ``progress`` is its :class:`~tickets.progress.Progress`
    (for warnings, and to take networks that will not be trained out of the total).
    """

    progress: Progress

    def expected(self) -> int:
        """How many networks the graph trains (or skips, when already done): the progress total."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Write the run's starting files that the driver makes itself (e.g. every seed's theta_0)."""

    def complete(self) -> None:
        """Write what comes from all the jobs together, once they are done (e.g. stability.csv)."""

    def roots(self) -> Iterable:
        """The jobs that need nothing but the run's starting files."""
        raise NotImplementedError

    def after(self, job, row: dict) -> Iterable:
        """The jobs that ``job`` (finished, with ``row``) unblocks; driver-side work goes here."""
        return ()

    def priority(self, job) -> tuple:
        """Smaller first: the critical path (e.g. tickets before controls, trajectories before copies)."""
        return ()

    def label(self, job) -> str:
        """The job in progress lines."""
        return job.describe()

    def end_iteration(self, job) -> int:
        """The iteration the job trains to (for the progress display)."""
        return 0

    def counts(self, job) -> bool:
        """Whether the job is one of the :meth:`expected` networks (not, e.g., a shared trajectory)."""
        return True

    def finished(self, job) -> tuple[dict | None, list[str]]:
        """``(row, [])`` when the job is done and intact; ``(None, problems)`` when it must (re)run."""
        return job.finished()

    def record(self, job, row: dict) -> None:
        """A job just finished (not skipped): the driver-side bookkeeping (results.csv, warnings)."""

    def check_learning(self, job, row: dict, num_classes: int) -> None:
        """Warn (and note in run.json) when a network that finished did not learn
        (see :mod:`tickets.engine.learning`)."""
        from tickets.engine import learning
        from tickets.store import DIVERGED, read_csv_rows

        if row.get("status") == DIVERGED:  # already warned about, as diverged
            return

        metrics = read_csv_rows(job.dir / "metrics.csv")
        initial = float(metrics[0]["test_loss"]) if metrics else None
        problem = learning.learning_problem(row, initial, num_classes)
        if problem is None:
            return
        label = self.label(job)
        self.progress.warn(learning.warning(label, problem))
        store = self.context.store
        noted = store.read_run_json().get("did_not_learn", [])
        store.update_run_json(did_not_learn=sorted({*noted, f"{label}: {problem}"}))


def drive(graph: Graph, executor, progress: Progress) -> None:
    """Run every job of ``graph`` on ``executor``: done and intact ones are skipped, damaged ones rerun."""
    graph.progress = progress
    ready: list = []
    order = itertools.count()  # ties keep the order jobs were found in

    def push(job) -> None:
        row, problems = graph.finished(job)
        if row is not None:
            if graph.counts(job):
                progress.skip(graph.label(job))
            for following in graph.after(job, row):
                push(following)
            return
        if problems:
            progress.warn(f"{graph.label(job)}: {', '.join(problems)}; training it again")
        heapq.heappush(ready, (graph.priority(job), next(order), job))

    def submit_ready() -> None:
        while ready and executor.pending < executor.capacity:
            job = heapq.heappop(ready)[2]
            progress.start(graph.label(job), graph.end_iteration(job))
            executor.submit(job)

    for job in graph.roots():
        push(job)
    while ready or executor.pending:
        submit_ready()
        for job, row in executor.wait():
            label = graph.label(job)
            if graph.counts(job):
                progress.finish(label, row)
            else:
                progress.end(label, f"{label} | done")
            graph.record(job, row)
            submit_ready()  # keep workers busy while the graph does its own work (the next mask)
            for following in graph.after(job, row):
                push(following)
