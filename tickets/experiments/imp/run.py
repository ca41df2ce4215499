"""Running IMP: ``tickets prune`` and ``train`` (a new or resumed run), ``tickets compare`` (controls added)."""
from __future__ import annotations

from pathlib import Path

from tickets import config as config_mod
from tickets.components import RunContext
from tickets.config import RunConfig
from tickets.engine.lifecycle import check_environment, load_run_config, open_run
from tickets.errors import TicketsError
from tickets.executors.run import run_graph
from tickets.experiments.imp.graph import ImpGraph
from tickets.registry import Registry
from tickets.store import RunStore
from tickets.structure import unit_groups


def run_imp(config: RunConfig, out_root: str | Path, registry: Registry, *, verb: str = "prune",
            quiet: bool = False, saved_tickets_only: bool = False) -> RunStore:
    """Run (or resume) iterative magnitude pruning with controls for every seed of ``config``.

    Everything that can fail on bad input fails before anything is written (TicketsError).
    """
    name = config.name or config_mod.default_name(config, verb)
    context = RunContext.create(config, registry, RunStore(Path(out_root), name))
    check_environment(config)
    if config.prune.structure != "weights" and config.prune.rounds > 0 and \
            not unit_groups(context.new_model(), context.splits.input_shape, config.prune.structure):
        raise TicketsError(f"model {config.model.name!r} has no {config.prune.structure} that can be pruned whole "
                           "(only its output layer's, or units shared by residual sums); use another --structure")
    open_run(config, Path(out_root), verb)
    sched = context.schedule
    return run_graph(ImpGraph(context, saved_tickets_only), context, verb,
                     max_parallel=config_mod.imp_parallelism(config), quiet=quiet, components=context.provenance,
                     iterations=sched.total, rewind_iteration=sched.rewind, iterations_per_epoch=sched.per_epoch)


def compare_run(run_dir: Path, controls: list[str], registry: Registry, *, accelerator: str | None = None,
                devices=None, loggers: list[str] | None = None, quiet: bool = False,
                execution: dict | None = None) -> RunStore:
    """Train the controls a run lacks for its saved tickets (e.g. on a GPU box); tickets are not retrained."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    config.prune.controls = list(dict.fromkeys([*config.prune.controls, *controls]))
    if accelerator is not None:
        config.train.accelerator = accelerator
    if devices is not None:
        config.train.devices = devices
    if loggers is not None:
        config.train.loggers = loggers
    for key, value in (execution or {}).items():
        setattr(config.execution, key, value)
    config_mod.validate(config)
    return run_imp(config, run_dir.parent, registry, quiet=quiet, saved_tickets_only=True)
