"""``tickets supermask``: one supermask per seed, as a graph of independent jobs (any executor)."""
from __future__ import annotations

from pathlib import Path

from tickets import config as config_mod
from tickets.components import RunContext
from tickets.config import RunConfig
from tickets.engine.graph import Graph
from tickets.engine.lifecycle import check_environment, diverged_warning, open_run
from tickets.errors import TicketsError
from tickets.executors.run import run_graph
from tickets.experiments.supermask.job import SupermaskJob
from tickets.experiments.supermask.weights import check_settings
from tickets.registry import Registry
from tickets.store import DIVERGED, RunStore


class SupermaskGraph(Graph):
    """Every seed's supermask; the seeds are independent."""

    def __init__(self, context: RunContext):
        self.context, self.config = context, context.config
        self.run_dir = str(context.store.dir.resolve())

    def expected(self) -> int:
        return len(self.config.seeds)

    def prepare(self) -> None:
        for seed in self.config.seeds:  # the same theta_0 as `tickets prune` draws for this seed and initializer
            self.context.initial_state(seed)

    def roots(self):
        return [SupermaskJob(self.run_dir, seed, self.config.supermask.method) for seed in self.config.seeds]

    def priority(self, job: SupermaskJob) -> tuple:
        return (job.seed,)

    def label(self, job: SupermaskJob) -> str:
        s = self.config.supermask
        return f"seed {job.seed} | {job.variant} ({self.config.model.init} weights, density {s.density})"

    def end_iteration(self, job) -> int:
        return self.context.schedule.total

    def record(self, job: SupermaskJob, row: dict) -> None:
        self.context.store.add_result(job.dir)
        self.check_learning(job, row, self.context.splits.num_classes)
        if row.get("status") == DIVERGED:
            self.progress.warn(diverged_warning(self.label(job), int(row["iterations"]), ends_chain=False))


def run_supermask(config: RunConfig, out_root: str | Path, registry: Registry, *, quiet: bool = False) -> RunStore:
    """Learn (or skip, when done) the supermask of every seed of ``config``; returns the run's store."""
    s = config.supermask
    check_settings(s.method, s.density)
    if config.train.checkpoint_every is not None:
        raise TicketsError("tickets supermask does not checkpoint mid-network (an interrupted supermask is "
                           "trained again from its start); drop train.checkpoint_every")
    score_init = registry.entry("initializers", s.score_init)
    name = config.name or config_mod.default_name(config, "supermask")
    context = RunContext.create(config, registry, RunStore(Path(out_root), name))
    check_environment(config)
    open_run(config, Path(out_root), "supermask")
    provenance = {**context.provenance, "score_initializer": {
        "name": score_init.name, "plugin": score_init.provider.plugin,
        "distribution": score_init.provider.distribution, "version": score_init.provider.version}}
    return run_graph(SupermaskGraph(context), context, "supermask", max_parallel=len(config.seeds), quiet=quiet,
                     components=provenance, method=s.method, density=s.density, iterations=context.schedule.total)
