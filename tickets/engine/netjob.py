"""The network-job core: every job that trains a network, of every experiment kind, goes through here.

A kind subclasses :class:`NetworkJob` and says two things: which network to train
(:meth:`NetworkJob.network`: the ticket, seeds, span and the run's files it reads) and what its
row is (:meth:`NetworkJob.finish`, which may write files of its own). The core does the rest,
the same way for every kind:

1. a job whose directory holds a done.json and files that match their checksums is not
   trained again (its row is returned);
2. it builds the model from the run's config and trains it, resuming from a mid-network
   checkpoint where the kind allows one, over several devices when the config asks (DDP);
3. it writes the directory: metrics.csv, final.pt, the kind's own files, and last done.json
   with the row, the sha256 of every file there and of every shared run file it read.

So every job is resumable after kill -9, verified by ``tickets check``, and gives the same
result in this process, a worker or a Ray task.
"""
from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from tickets import config as config_mod
from tickets.checkpoint import Checkpoint
from tickets.components import RunContext
from tickets.engine.contexts import Overrides, load_context
from tickets.errors import TicketsError
from tickets.loggers import close_loggers, network_loggers
from tickets.masks import Mask
from tickets.schedules import shifted
from tickets.store import atomic_torch_save, write_csv_rows
from tickets.ticket import Ticket
from tickets.training import METRIC_COLUMNS, TrainingPlan, TrainOutcome
from tickets.training.distributed import device_count, in_rank_process, rank, run_distributed

RUNNING_MARKER = ".running.json"


@dataclass
class Network:
    """What a job trains: the starting ticket, its random streams, its span, and the run files it reads.

    ``data_seed`` fixes the batch order and augmentation draws, ``torch_seed`` the global RNG
    (dropout, Bernoulli samples); training runs from ``ticket.start_iteration`` to
    ``end_iteration`` (the run's schedule end when None). ``inputs`` are the shared run files it
    was built from (recorded with their sha256 in done.json). ``make_optimizer`` replaces the
    run's optimizer factory (e.g. over the trainable parameters only); ``observe`` sees every
    evaluation row; ``checkpoint`` False trains it without mid-network checkpoints;
    ``mask_updates`` changes the mask during training (sparse training, see
    :class:`~tickets.training.TrainingPlan`).
    """

    ticket: Ticket
    data_seed: int
    torch_seed: int
    inputs: list[Path] = field(default_factory=list)
    end_iteration: int | None = None
    capture_at: tuple[int, ...] = ()
    make_optimizer: Callable | None = None
    observe: Callable[[dict], None] | None = None
    checkpoint: bool = True
    mask_updates: object | None = None
    extra: dict = field(default_factory=dict)  # the kind's own objects, for its finish()


class NetworkJob:
    """One network of a run. Subclasses are frozen dataclasses (picklable addresses) with ``run_dir``."""

    run_dir: str
    overrides: Overrides = ()

    # what a kind says ---------------------------------------------------------------
    @property
    def dir(self) -> Path:
        """The job's own directory in the run."""
        raise NotImplementedError

    @property
    def key(self) -> tuple:
        raise NotImplementedError

    def describe(self) -> str:
        """The network in a few words (for messages about the job)."""
        raise NotImplementedError

    def progress_label(self, context: RunContext) -> str:
        """The network in progress lines (as the graph labels it)."""
        return self.describe()

    def logger_address(self) -> tuple[int, int, str] | None:
        """(seed, round, variant) under which loggers file the curves, or None for no loggers."""
        return None

    def network(self, context: RunContext, model: torch.nn.Module) -> Network:
        """The network to train (``model`` is a fresh module of the run's architecture)."""
        raise NotImplementedError

    def finish(self, context: RunContext, model: torch.nn.Module, network: Network, outcome: TrainOutcome) -> dict:
        """Write the kind's own files into :attr:`dir` and return the row done.json records."""
        raise NotImplementedError

    def final_state(self, model: torch.nn.Module, network: Network, outcome: TrainOutcome) -> dict:
        """What final.pt holds: the trained state dict."""
        return outcome.final_state

    # the core -------------------------------------------------------------------------
    def finished(self) -> tuple[dict | None, list[str]]:
        """``(row, [])`` when done and intact; ``(None, problems)`` when it must be (re)trained."""
        return load_context(self.run_dir, self.overrides).store.intact_row(self.dir)

    def run(self, on_eval: Callable[[dict], None] | None = None) -> dict:
        """Train the network unless it is done and intact; return its row (what an executor calls)."""
        context = load_context(self.run_dir, self.overrides)
        row, _ = context.store.intact_row(self.dir)
        if row is not None:
            return row
        world = device_count(context.config.train.devices)
        if world > 1 and not in_rank_process():
            run_distributed(world, _train_in_rank, self)
            return context.store.done_row(self.dir)
        return _train(self, context, on_eval)


def _train_in_rank(job: NetworkJob) -> None:
    """One process of a distributed network; rank 0 writes its files."""
    _train(job, load_context(job.run_dir, job.overrides), None)


def _train(job: NetworkJob, context: RunContext, on_eval) -> dict | None:
    store, net_dir = context.store, job.dir
    net_dir.mkdir(parents=True, exist_ok=True)
    if rank() == 0:  # who trains it, for people (and tests) watching a run
        from tickets.store import atomic_write_json

        atomic_write_json(net_dir / RUNNING_MARKER, {"pid": os.getpid(), "host": socket.gethostname()})
    model = context.new_model()
    network = job.network(context, model)
    t = context.config.train
    address = job.logger_address()
    loggers = network_loggers(t.loggers, store.dir, store.name, *address,
                              config_mod.flatten(context.config.to_dict())) \
        if t.loggers and address is not None and rank() == 0 else []

    def evaluated(row: dict) -> None:
        if network.observe is not None:
            network.observe(row)
        if on_eval is not None:
            on_eval(row)

    try:
        outcome = train_in(context, model, network, net_dir, job.progress_label(context), on_eval=evaluated,
                           loggers=loggers)
    finally:
        close_loggers(loggers)
    if rank() != 0:
        return None
    row = job.finish(context, model, network, outcome)
    write_csv_rows(net_dir / "metrics.csv", METRIC_COLUMNS, outcome.metrics)
    atomic_torch_save(job.final_state(model, network, outcome), net_dir / "final.pt")
    (net_dir / RUNNING_MARKER).unlink(missing_ok=True)
    Checkpoint(net_dir).remove()  # before mark_done records the directory's files
    store.mark_done(net_dir, row, [p for p in network.inputs if p.exists()])
    return row


def train_in(context: RunContext, model, network: Network, net_dir: Path, label: str, *, on_eval=None,
             loggers: list = ()) -> TrainOutcome:
    """Train ``network`` with the run's settings (length, schedule, augmentation), checkpointing in ``net_dir``.

    A checkpoint left there by an interrupted process is resumed from (see :mod:`tickets.checkpoint`).
    """
    from tickets.training.loop import train  # Lightning: imported where networks train, never by the driver

    t = context.config.train
    torch.manual_seed(network.torch_seed)
    checkpoint = Checkpoint(net_dir, t.checkpoint_every, on_resume=lambda iteration: print(
        f"{label} | resuming from its checkpoint at iteration {iteration}", file=sys.stderr, flush=True)) \
        if network.checkpoint else None
    ticket, total = network.ticket, context.schedule.total
    end = network.end_iteration if network.end_iteration is not None else ticket.end_iteration
    end = total if end is None else end
    factor = context.lr_factor
    if ticket.lr_offset or end > total:  # the ticket's own place on the schedule (see Ticket)
        factor = shifted(factor, ticket.lr_offset, last=total - 1)
    return train(model, ticket, TrainingPlan(
        network.make_optimizer or context.make_optimizer, context.splits, end_iteration=end,
        eval_every=t.eval_every, batch_size=t.batch_size, data_seed=network.data_seed, accelerator=t.accelerator,
        devices=t.devices, precision=t.precision, capture_at=tuple(network.capture_at), lr_factor=factor,
        augment=context.augment, on_eval=on_eval, loggers=list(loggers), checkpoint=checkpoint,
        mask_updates=network.mask_updates))


def load_input(context: RunContext, path: Path, verb: str = "prune"):
    """A shared run file a job reads; a missing one names the command that makes it."""
    if not path.exists():
        raise TicketsError(f"{path} is missing: the job that makes it has not run; "
                           f"resume the run with `tickets {verb}`")
    return context.store.load(path)


def result_row(context: RunContext, seed: int, round_: int, variant: str, criterion: str, mask: Mask,
               outcome: TrainOutcome) -> dict:
    """A network's results.csv row (floats to 6 digits: accuracies are float32)."""
    return {
        "run": context.store.name, "seed": seed, "round": round_, "variant": variant, "criterion": criterion,
        "weights_remaining": round(mask.density(), 6), "params_remaining": mask.count(),
        **{k: round(v, 6) if isinstance(v, float) else v for k, v in outcome.fields.items()},
        "iterations": outcome.iterations, "train_seconds": round(outcome.seconds, 3), "status": outcome.status,
    }
