"""Run an experiment's graph: the plan, the executor, the run's session, then the driver.

Every experiment kind ends the same way once its graph is built, so it happens here: the
execution plan is resolved and the executor made (both fail before anything is written), the
run's shared inputs are checked, the run is held (lock, config.yaml, run.json), the graph
writes its own starting files (``prepare``), the driver runs it, and the graph writes what
comes from all of its jobs (``complete``).
"""
from __future__ import annotations

from tickets.components import RunContext
from tickets.engine.contexts import Overrides, remember_context
from tickets.engine.graph import Graph, drive
from tickets.engine.lifecycle import check_inputs, session
from tickets.executors import ExecutionPlan, make_executor
from tickets.progress import Progress
from tickets.store import RunStore


def run_graph(graph: Graph, context: RunContext, verb: str, *, max_parallel: int, quiet: bool = False,
              attach: bool = False, overrides: Overrides = (), **fields) -> RunStore:
    """Run every job of ``graph`` for the run of ``context``; ``fields`` go to run.json (see ``session``)."""
    store, config = context.store, context.config
    progress = Progress(graph.expected(), quiet=quiet)
    plan = ExecutionPlan.for_run(config, max_parallel=max_parallel)
    check_inputs(store)
    executor = make_executor(plan, progress, graph.label)  # fails before anything is written
    with session(store, config, verb, attach=attach, expected_networks=progress.total, execution=plan.describe(),
                 **fields), progress:
        remember_context(context, overrides)
        graph.prepare()
        with executor:
            drive(graph, executor, progress)
        graph.complete()
    return store
