"""``tickets sparse-train``: sparse networks per seed, round and method, as a graph of independent jobs.

With ``--density D`` every seed trains round 0 at D. With ``--like RUN`` the run takes RUN's
config (model, data, training, seeds) and trains, for each seed, every round r >= 1 of RUN that
has a mask, at exactly that mask's number of weights (``weights_remaining`` of RUN's round r),
spread by the distribution (``like``: RUN's per-layer counts); the rows keep RUN's round
numbers, so ``tickets report RUN SPARSE_RUN`` puts them side by side with RUN's tickets.

The driver draws each round's starting mask (``seed_<s>/round_<r>/mask.pt``) from
``stable_seed(s, r, "sparse mask")``: every method of a seed and round starts from the same mask
(and theta_0), so the methods are paired.
"""
from __future__ import annotations

from pathlib import Path

import torch

from tickets import config as config_mod
from tickets.components import RunContext, stable_seed
from tickets.config import RunConfig
from tickets.engine.graph import Graph
from tickets.engine.lifecycle import check_environment, diverged_warning, load_run_config, open_run
from tickets.errors import TicketsError
from tickets.executors.run import run_graph
from tickets.experiments.sparse.densities import layer_counts, random_mask, target_count
from tickets.experiments.sparse.job import VERB, SparseJob
from tickets.experiments.sparse.updates import STATIC, resolve_rule
from tickets.masks import prunable_names
from tickets.registry import Registry
from tickets.store import DIVERGED, RunStore, torch_load


def like_config(run_dir: str | Path, sparse: dict, execution: dict, name: str | None) -> RunConfig:
    """RUN's config (its settings and seeds) with ``sparse`` settings (section keys) trained like its rounds."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    if not (run_dir / "results.csv").is_file() or config.prune.rounds < 1:
        raise TicketsError(f"--like {run_dir}: give a `tickets prune` run with at least one pruned round")
    config.name = name
    config_mod.apply_dotted(config, {**{f"sparse.{k}": v for k, v in sparse.items()},
                                     **{f"execution.{k}": v for k, v in execution.items()}}, "flags")
    config.sparse.like = str(run_dir.resolve())
    config_mod.validate(config)
    return config


def round_targets(config: RunConfig, shapes: dict[str, tuple]) -> dict[tuple[int, int], dict[str, int]]:
    """(seed, round) -> the active weights per layer of each network to train."""
    s = config.sparse
    if s.like is None:
        total = target_count(sum(torch.Size(v).numel() for v in shapes.values()), s.density)
        return {(seed, 0): layer_counts(s.distribution, shapes, total) for seed in config.seeds}
    like = Path(s.like)
    rounds = load_run_config(like).prune.rounds
    missing = sorted(set(s.rounds or ()) - set(range(1, rounds + 1)))
    if missing:
        raise TicketsError(f"--like {like} has rounds 1 to {rounds}, not {', '.join(map(str, missing))}")
    targets = {}
    for seed in config.seeds:
        for round_ in (s.rounds or range(1, rounds + 1)):
            path = like / f"seed_{seed}" / f"round_{round_}" / "mask.pt"
            if not path.is_file():
                continue
            counts = {name: int(t.sum()) for name, t in torch_load(path).items()}
            if set(counts) != set(shapes):
                raise TicketsError(f"{path} masks {', '.join(counts)}, not this model's {', '.join(shapes)}")
            targets[(seed, round_)] = layer_counts(s.distribution, shapes, sum(counts.values()), like=counts)
    if not targets:
        raise TicketsError(f"--like {like}: no round of seeds {config.seeds} has a mask yet; let `tickets prune` "
                           "finish a round first")
    return targets


class SparseGraph(Graph):
    """Every (seed, round, method) network; they are independent once the driver drew the starting masks."""

    def __init__(self, context: RunContext, shapes: dict[str, tuple], targets: dict[tuple[int, int], dict[str, int]]):
        self.context, self.config, self.store = context, context.config, context.store
        self.shapes, self.targets = shapes, targets
        self.methods = list(self.config.sparse.methods)
        self.run_dir = str(self.store.dir.resolve())
        self.size = sum(torch.Size(shape).numel() for shape in shapes.values())

    def expected(self) -> int:
        return len(self.targets) * len(self.methods)

    def prepare(self) -> None:
        """theta_0 of every seed (as `tickets prune` draws it) and the starting mask of every (seed, round)."""
        for seed in self.config.seeds:
            self.context.initial_state(seed)
        for (seed, round_), counts in sorted(self.targets.items()):
            path = self.store.round_dir(seed, round_) / "mask.pt"
            if not path.exists():
                generator = torch.Generator().manual_seed(stable_seed(seed, round_, "sparse mask"))
                random_mask(self.shapes, counts, generator).save(path)

    def roots(self):
        return [SparseJob(self.run_dir, seed, round_, method)
                for seed, round_ in sorted(self.targets) for method in self.methods]

    def priority(self, job: SparseJob) -> tuple:
        return job.round, job.seed, self.methods.index(job.method)

    def label(self, job: SparseJob) -> str:
        density = sum(self.targets[(job.seed, job.round)].values()) / self.size
        return (f"seed {job.seed} | round {job.round} | {job.method} "
                f"({self.config.sparse.distribution}, {100 * density:.1f}% of weights)")

    def end_iteration(self, job) -> int:
        return self.context.schedule.total

    def record(self, job: SparseJob, row: dict) -> None:
        self.store.add_result(job.dir)
        self.check_learning(job, row, self.context.splits.num_classes)
        if row.get("status") == DIVERGED:
            self.progress.warn(diverged_warning(self.label(job), int(row["iterations"]), ends_chain=False))


def run_sparse(config: RunConfig, out_root: str | Path, registry: Registry, *, quiet: bool = False) -> RunStore:
    """Train (or skip, when done) every sparse network of ``config``; returns the run's store."""
    s = config.sparse
    rules = {m: resolve_rule(registry, m) for m in s.methods if m != STATIC}
    if s.like is not None and config.name is None:
        config.name = f"sparse-{Path(s.like).name}-{config_mod.fingerprint(config)}"
    name = config.name or config_mod.default_name(config, VERB)
    context = RunContext.create(config, registry, RunStore(Path(out_root), name))
    model = context.new_model()
    params = dict(model.named_parameters())
    shapes = {name: tuple(params[name].shape) for name in prunable_names(model)}
    targets = round_targets(config, shapes)
    check_environment(config)
    open_run(config, Path(out_root), VERB)
    provenance = {**context.provenance, **{f"mask_update:{m}": {
        "name": e.name, "plugin": e.provider.plugin, "distribution": e.provider.distribution,
        "version": e.provider.version} for m, e in rules.items()}}
    graph = SparseGraph(context, shapes, targets)
    return run_graph(graph, context, VERB, max_parallel=graph.expected(), quiet=quiet, components=provenance,
                     methods=list(s.methods), distribution=s.distribution, like=s.like,
                     iterations=context.schedule.total)
