"""One network job: train the network (seed, round, variant) of a run from the run's files.

A job reads everything it needs from the run directory (config.yaml, the seed's init.pt and
rewind.pt, the round's mask.pt) and writes only its own network directory (metrics.csv,
final.pt, done.json), plus the seed's rewind.pt for the dense network, the only one that
makes it. So any process that sees the run directory can run it: the driver itself, a local
worker process, or a Ray task on another machine, and the result is the same.
"""
from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import torch
import yaml

from tickets import config as config_mod
from tickets.checkpoint import Checkpoint
from tickets.components import RunContext, stable_seed
from tickets.distributed import device_count, in_rank_process, rank, run_distributed
from tickets.errors import TicketsError
from tickets.masks import Mask, prunable_names
from tickets.loggers import close_loggers, network_loggers
from tickets.store import RunStore, atomic_torch_save, atomic_write_json, write_csv_rows
from tickets.ticket import ControlContext, Ticket, clone_state, initialize_
from tickets.training import METRIC_COLUMNS, TrainOutcome, train_network

RUNNING_MARKER = ".running.json"


@dataclass(frozen=True)
class NetworkJob:
    """The address of one network in a run: what a job trains."""

    run_dir: str
    seed: int
    round: int
    variant: str

    @property
    def key(self) -> tuple[int, int, str]:
        return self.seed, self.round, self.variant

    def label(self, rounds: int) -> str:
        return f"seed {self.seed} | round {self.round}/{rounds} | {self.variant}"

    def describe(self) -> str:
        """The network in a sentence (for messages about the job)."""
        return f"seed {self.seed} round {self.round} {self.variant}"

    def run(self, on_eval: Callable[[dict], None] | None = None) -> dict:
        """What an executor calls: :func:`run_job`."""
        return run_job(self, on_eval)


_contexts: dict[str, RunContext] = {}


def load_context(run_dir: str | Path, overrides: tuple = ()) -> RunContext:
    """The run's context rebuilt from its config.yaml (cached: a worker loads the data once per run).

    ``overrides`` are (dotted key, value) pairs set on the config first, e.g. the accelerator an
    analysis of a finished run trains on.
    """
    run_dir = Path(run_dir).resolve()
    text = (run_dir / "config.yaml").read_text()
    key = f"{run_dir}\n{text}\n{overrides!r}"
    if key not in _contexts:
        from tickets.plugins import registry

        config = config_mod.from_dict(yaml.safe_load(text) or {})
        for dotted, value in overrides:
            section, _, name = dotted.rpartition(".")
            setattr(getattr(config, section) if section else config, name, value)
        _contexts.clear()  # one run at a time per worker: don't keep other runs' data alive
        _contexts[key] = RunContext.create(config, registry(), RunStore(run_dir.parent, run_dir.name))
    return _contexts[key]


def remember_context(context: RunContext) -> None:
    """Let jobs of this process reuse a context the driver already built."""
    run_dir = context.store.dir.resolve()
    _contexts.clear()
    _contexts[f"{run_dir}\n{(run_dir / 'config.yaml').read_text()}\n{()!r}"] = context


def run_job(job: NetworkJob, on_eval: Callable[[dict], None] | None = None) -> dict:
    """Train one network from the run's files unless it is done; return its results.csv row."""
    context = load_context(job.run_dir)
    store = context.store
    if store.is_done(*job.key) and not store.damaged_files(*job.key):
        return store.done_row(*job.key)
    world = device_count(context.config.train.devices)
    if world > 1 and not in_rank_process():
        run_distributed(world, _train_in_rank, job)
        return store.done_row(*job.key)
    return _train(job, context, on_eval)


def _train_in_rank(job: NetworkJob) -> None:
    """One process of a distributed network; rank 0 writes its files."""
    _train(job, load_context(job.run_dir), None)


def _train(job: NetworkJob, context: RunContext, on_eval) -> dict | None:
    store = context.store
    net_dir = store.network_dir(*job.key)
    net_dir.mkdir(parents=True, exist_ok=True)
    if rank() == 0:  # who trains it, for people (and tests) watching a run
        atomic_write_json(net_dir / RUNNING_MARKER, {"pid": os.getpid(), "host": socket.gethostname()})
    model = context.new_model()
    ticket = _ticket_for(job, context, model)
    t = context.config.train
    loggers = network_loggers(t.loggers, store.dir, store.name, *job.key,
                              config_mod.flatten(context.config.to_dict())) if t.loggers and rank() == 0 else []
    try:
        outcome = train_in(context, model, ticket, net_dir, job.label(context.config.prune.rounds),
                           data_seed=job.seed, torch_seed=stable_seed(*job.key),
                           capture_at=(context.schedule.rewind,) if job.round == 0 else (),
                           on_eval=on_eval, loggers=loggers)
    finally:
        close_loggers(loggers)
    if rank() != 0:
        return None
    rewind_path = store.seed_dir(job.seed) / "rewind.pt"
    if job.round == 0 and job.variant == "ticket" and outcome.diverged_at is None and not rewind_path.exists():
        atomic_torch_save(outcome.captured.get(context.schedule.rewind, ticket.state), rewind_path)
    round_mask_path = store.round_dir(job.seed, job.round) / "mask.pt"
    if job.round > 0 and ticket.mask != Mask.load(round_mask_path):  # e.g. random_prune: keep its own mask
        ticket.mask.save(net_dir / "mask.pt")
    row = _row(context, job, ticket.mask, outcome)
    write_csv_rows(net_dir / "metrics.csv", METRIC_COLUMNS, outcome.metrics)
    atomic_torch_save(outcome.final_state, net_dir / "final.pt")
    (net_dir / RUNNING_MARKER).unlink(missing_ok=True)
    Checkpoint(net_dir).remove()  # before mark_done records the directory's files
    inputs = [p for p in (store.seed_dir(job.seed) / "init.pt", rewind_path, round_mask_path) if p.exists()]
    store.mark_done(*job.key, row, inputs)
    return row


def train_in(context: RunContext, model, ticket: Ticket, net_dir: Path, label: str, *, data_seed: int,
             torch_seed: int, capture_at=(), end_iteration: int | None = None, on_eval=None,
             loggers: list = ()) -> TrainOutcome:
    """Train ``ticket`` with the run's settings (length, schedule, augmentation), checkpointing in ``net_dir``.

    A checkpoint left there by an interrupted process is resumed from (see :mod:`tickets.checkpoint`).
    """
    t = context.config.train
    torch.manual_seed(torch_seed)
    checkpoint = Checkpoint(net_dir, t.checkpoint_every, on_resume=lambda iteration: print(
        f"{label} | resuming from its checkpoint at iteration {iteration}", file=sys.stderr, flush=True))
    return train_network(
        model, ticket, context.make_optimizer, context.splits,
        end_iteration=context.schedule.total if end_iteration is None else end_iteration,
        eval_every=t.eval_every, batch_size=t.batch_size, data_seed=data_seed, accelerator=t.accelerator,
        devices=t.devices, precision=t.precision, capture_at=capture_at, on_eval=on_eval, loggers=list(loggers),
        lr_factor=context.lr_factor, augment=context.augment, checkpoint=checkpoint,
    )


def _ticket_for(job: NetworkJob, context: RunContext, model) -> Ticket:
    """The network to train: the dense net, the round's ticket, or a control derived from it."""
    store = context.store
    theta0 = _load_input(store, store.seed_dir(job.seed) / "init.pt")
    if job.round == 0:
        return Ticket(Mask.ones_for(model), theta0, 0)
    mask = Mask(_load_input(store, store.round_dir(job.seed, job.round) / "mask.pt"))
    rewind_state = _load_input(store, store.seed_dir(job.seed) / "rewind.pt")
    ticket = Ticket(mask, rewind_state, context.schedule.rewind)
    if job.variant == "ticket":
        return ticket
    control = context.components.controls.get(job.variant)
    if control is None:
        raise TicketsError(f"control {job.variant!r} is not in this run's config; add it with --controls")
    ctx = ControlContext(
        seed=job.seed, round=job.round,
        generator=torch.Generator().manual_seed(stable_seed(*job.key)),
        init=theta0, rewind=rewind_state, prunable=prunable_names(model),
        initialize=partial(fresh_state, context),
    )
    return control(ticket, ctx)


def fresh_state(context: RunContext, generator: torch.Generator):
    """Weights drawn anew from the run's initializer."""
    fresh = context.new_model()
    initialize_(fresh, context.components.init, generator)
    return clone_state(fresh)


def _existing(path: Path) -> Path:
    if not path.exists():
        raise TicketsError(f"{path} is missing: the job that makes it has not run; resume the run with `tickets prune`")
    return path


def _load_input(store: RunStore, path: Path):
    return store.load(_existing(path))


def _row(context: RunContext, job: NetworkJob, mask: Mask, outcome: TrainOutcome) -> dict:
    return {
        "run": context.store.name, "seed": job.seed, "round": job.round, "variant": job.variant,
        "criterion": context.config.prune.criterion, "weights_remaining": round(mask.density(), 6),
        "params_remaining": mask.count(), **{k: _rounded(v) for k, v in outcome.fields.items()},
        "iterations": outcome.iterations, "train_seconds": round(outcome.seconds, 3), "status": outcome.status,
    }


def _rounded(value):
    return round(value, 6) if isinstance(value, float) else value
