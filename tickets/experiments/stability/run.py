"""Running an instability analysis: of a config's dense network (a run of its own), or of an existing
run's rounds (``tickets stability RUN``: its tickets and controls, added under ``RUN/stability/``).

theta_k comes from the dense network's own trajectory (same seed, batches and schedule as
``tickets prune`` trains it), so with ``RUN`` the k of the run's rewind point gives exactly its
``rewind.pt``. The masks are the run's (found with its rewind point); a control is derived from
the ticket at k as ``tickets prune`` derives it. Everything goes to ``<run>/stability/``::

    stability.csv  stability.json  instability.png  path_round_<r>.png
    seed_<s>/rewind_<k>.pt                      theta_k (k > 0) from the dense trajectory
    seed_<s>/trajectory/                        the dense network's checkpoint while it runs to the largest k
    seed_<s>/round_<r>/<variant>/k_<k>/copy_0/, copy_1/, path.json
"""
from __future__ import annotations

from pathlib import Path

from tickets import config as config_mod
from tickets.components import RunContext
from tickets.config import RunConfig
from tickets.engine.lifecycle import check_environment, load_run_config, open_run
from tickets.errors import TicketsError
from tickets.executors.run import run_graph
from tickets.experiments.stability.graph import StabilityGraph
from tickets.experiments.stability.paths import Settings, parse_at
from tickets.registry import Registry
from tickets.store import RunStore
from tickets.training import batch_norms

DEFAULT_POINTS = 30  # Frankle et al. evaluate 30 evenly spaced points of the path


def analyse_config(config: RunConfig, out_root: str | Path, registry: Registry, *, at: str,
                   points: int = DEFAULT_POINTS, reset_bn: bool = False, quiet: bool = False) -> RunStore:
    """The instability of ``config``'s dense network, in a run of its own (resumable)."""
    config.prune.rounds, config.prune.controls = 0, []
    store = RunStore(Path(out_root), config.name or config_mod.default_name(config, "stability"))
    context = RunContext.create(config, registry, store)
    check_environment(config)
    open_run(config, Path(out_root), "stability")  # an existing run of that name must have these settings
    settings = _settings(context, at, points, reset_bn, list(config.seeds), [0], [])
    return _analyse(context, settings, attach=False, overrides=(), quiet=quiet)


def analyse_run(run_dir: Path, registry: Registry, *, at: str, points: int = DEFAULT_POINTS, reset_bn: bool = False,
                rounds: list[int] | None = None, controls: list[str] | None = None, seeds: list[int] | None = None,
                train: dict | None = None, execution: dict | None = None, quiet: bool = False) -> RunStore:
    """The instability of an existing run's tickets and controls, under ``RUN/stability/`` (resumable).

    ``train`` may change how the copies train (``accelerator``, ``devices``), ``execution`` how
    they are run; the run's own files are only read.
    """
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    stored = config_mod.from_dict(RunStore(run_dir.parent, run_dir.name).read_config()).train
    for key, value in (train or {}).items():
        setattr(config.train, key, value)
    for key, value in (execution or {}).items():
        setattr(config.execution, key, value)
    config_mod.validate(config)
    context = RunContext.create(config, registry, RunStore(run_dir.parent, run_dir.name))
    check_environment(config)
    store = context.store
    if seeds is not None:
        missing = [s for s in seeds if not (store.seed_dir(s) / "init.pt").exists()]
        if missing:
            raise TicketsError(f"seeds {missing} are not in run {store.dir} (its seeds: {config.seeds}); "
                               "choose --seeds among them")
    run_seeds = config.seeds if seeds is None else seeds
    rounds = _check_rounds(store, run_seeds, rounds)
    controls = config.prune.controls if controls is None else controls
    for control in controls:
        registry.entry("controls", control)  # an unknown name fails here; the jobs look it up
    settings = _settings(context, at, points, reset_bn, list(run_seeds), rounds, list(controls))
    overrides = tuple((f"train.{key}", getattr(config.train, key)) for key in ("accelerator", "devices")
                      if getattr(config.train, key) != getattr(stored, key))
    return _analyse(context, settings, attach=True, overrides=overrides, quiet=quiet)


def _settings(context: RunContext, at: str, points: int, reset_bn: bool, seeds, rounds, controls) -> Settings:
    if points < 3:
        raise TicketsError(f"--points must be at least 3 (the two ends and a point between), got {points}")
    if reset_bn and not batch_norms(context.new_model()):
        raise TicketsError(f"--reset-bn: model {context.config.model.name!r} has no BatchNorm layers; drop --reset-bn")
    sched = context.schedule
    return Settings(parse_at(at, sched.per_epoch, sched.total), points, reset_bn, seeds, rounds, controls)


def _check_rounds(store: RunStore, seeds: list[int], rounds: list[int] | None) -> list[int]:
    have = sorted(int(p.parent.name.split("_")[1]) for p in store.seed_dir(seeds[0]).glob("round_*/mask.pt"))
    if not have:
        raise TicketsError(f"run {store.dir} has no pruning rounds (no round_*/mask.pt); "
                           "give a run made by `tickets prune`")
    rounds = have if rounds is None else sorted(set(rounds))
    for seed in seeds:
        for r in rounds:
            if not (store.round_dir(seed, r) / "mask.pt").exists():
                raise TicketsError(f"round {r} of seed {seed} has no mask in {store.dir}; choose --rounds "
                                   f"among {have} or run `tickets prune` further")
    return rounds


def _analyse(context: RunContext, settings: Settings, *, attach: bool, overrides: tuple, quiet: bool) -> RunStore:
    """Train what is missing, evaluate the paths, write stability.csv and the plots."""
    graph = StabilityGraph(context, settings, existing_run=attach, overrides=overrides)
    sched = context.schedule
    return run_graph(graph, context, "stability", max_parallel=graph.expected(), quiet=quiet, attach=attach,
                     overrides=overrides, components=context.provenance, iterations=sched.total,
                     iterations_per_epoch=sched.per_epoch)
