"""The jobs of an instability analysis, runnable by any executor (this process, workers, Ray).

- :class:`TrajectoryJob` trains a seed's dense network from theta_0 to the largest rewind point
  k the analysis lacks, and saves theta_k for each of them (``stability/seed_<s>/rewind_<k>.pt``).
  Its files are shared inputs: the copies that train from them record their checksums.
- :class:`CopyJob` (a network job, see :mod:`tickets.engine.netjob`) trains one copy of one
  network (seed, round, variant) from theta_k to the end of training with the copy's own data
  order and augmentation draws, into ``stability/seed_<s>/round_<r>/<variant>/k_<k>/copy_<i>/``
  (metrics.csv, final.pt, done.json with checksums).

Seeds, rounds, variants, rewind points and copies are independent once theta_k exists. Both
jobs keep a mid-network checkpoint while they train, so a killed job resumes where it stopped.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from tickets.checkpoint import Checkpoint
from tickets.components import RunContext, fresh_state, stable_seed
from tickets.engine.contexts import Overrides, load_context
from tickets.engine.netjob import Network, NetworkJob, load_input, train_in
from tickets.masks import Mask, prunable_names
from tickets.store import atomic_torch_save
from tickets.ticket import ControlContext, Ticket
from tickets.training import TrainOutcome


def stability_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "stability"


def rewind_path(run_dir: str | Path, seed: int, k: int) -> Path:
    """Where the analysis keeps theta_k of a seed's dense trajectory."""
    return stability_dir(run_dir) / f"seed_{seed}" / f"rewind_{k}.pt"


def network_dir(run_dir: str | Path, seed: int, round_: int, variant: str, k: int) -> Path:
    """The folder of one analysed network at one rewind point (its copies and path.json)."""
    return stability_dir(run_dir) / f"seed_{seed}" / f"round_{round_}" / variant / f"k_{k}"


@dataclass(frozen=True)
class TrajectoryJob:
    """Train seed ``seed``'s dense network to ``max(ks)`` and save theta_k for every k in ``ks``."""

    run_dir: str
    seed: int
    ks: tuple[int, ...]
    overrides: Overrides = ()

    @property
    def key(self) -> tuple:
        return "trajectory", self.seed

    def describe(self) -> str:
        return f"seed {self.seed} dense trajectory to iteration {max(self.ks)}"

    def finished(self) -> tuple[dict | None, list[str]]:
        missing = [k for k in self.ks if not rewind_path(self.run_dir, self.seed, k).exists()]
        return (None, []) if missing else ({"seed": self.seed, "ks": list(self.ks)}, [])

    def run(self, on_eval: Callable[[dict], None] | None = None) -> dict:
        """Train the trajectory (resuming from its checkpoint); returns ``{"seed", "ks"}``."""
        context = load_context(self.run_dir, self.overrides)
        missing = [k for k in self.ks if not rewind_path(self.run_dir, self.seed, k).exists()]
        if missing:
            model = context.new_model()
            theta0 = context.store.load(context.store.seed_dir(self.seed) / "init.pt")
            trajectory = stability_dir(self.run_dir) / f"seed_{self.seed}" / "trajectory"
            # the dense network's own trajectory: the seed, batches and schedule `tickets prune` trains it with
            network = Network(Ticket(Mask.ones_for(model), theta0, 0), data_seed=self.seed,
                              torch_seed=stable_seed(self.seed, 0, "ticket"), capture_at=tuple(missing),
                              end_iteration=max(missing))
            outcome = train_in(context, model, network, trajectory, self.describe(), on_eval=on_eval)
            for k in missing:
                atomic_torch_save(outcome.captured[k], rewind_path(self.run_dir, self.seed, k))
            Checkpoint(trajectory).remove()
        return {"seed": self.seed, "ks": list(self.ks)}


@dataclass(frozen=True)
class CopyJob(NetworkJob):
    """Train copy ``copy`` of network (seed, round, variant) from theta_k (read from ``theta_k``) to the end."""

    run_dir: str
    seed: int
    round: int
    variant: str
    k: int
    copy: int
    theta_k: str  # the file holding theta_k: init.pt (k = 0), the run's rewind.pt, or rewind_<k>.pt
    overrides: Overrides = ()

    @property
    def key(self) -> tuple:
        return self.seed, self.round, self.variant, self.k, self.copy

    @property
    def group(self) -> tuple:
        """The analysed network the copy belongs to: its path is evaluated once both copies are trained."""
        return self.seed, self.round, self.variant, self.k

    @property
    def dir(self) -> Path:
        return network_dir(self.run_dir, *self.group) / f"copy_{self.copy}"

    def describe(self) -> str:
        return f"seed {self.seed} round {self.round} {self.variant} k={self.k} copy {self.copy}"

    def network(self, context: RunContext, model) -> Network:
        """The ticket at k (the dense net in round 0), or the control derived from it as `tickets prune` does."""
        store = context.store
        init_path, mask_path = store.seed_dir(self.seed) / "init.pt", store.round_dir(self.seed, self.round) / "mask.pt"
        theta_k = load_input(context, Path(self.theta_k))
        inputs = [init_path, Path(self.theta_k)] + ([mask_path] if self.round > 0 else [])
        if self.round == 0:
            ticket = Ticket(Mask.ones_for(model), theta_k, self.k)
        else:
            ticket = Ticket(Mask(load_input(context, mask_path)), theta_k, self.k)
        if self.round > 0 and self.variant != "ticket":
            from tickets.plugins import registry

            control = registry().get("controls", self.variant)
            ctx = ControlContext(
                seed=self.seed, round=self.round,
                generator=torch.Generator().manual_seed(stable_seed(self.seed, self.round, self.variant)),
                init=load_input(context, init_path), rewind=theta_k, prunable=prunable_names(model),
                initialize=partial(fresh_state, context))
            ticket = control(ticket, ctx)
        return Network(ticket, data_seed=stable_seed(self.seed, "stability copy", self.copy),
                       torch_seed=stable_seed(*self.group, "copy", self.copy), inputs=inputs)

    def finish(self, context: RunContext, model, network: Network, outcome: TrainOutcome) -> dict:
        return {"seed": self.seed, "round": self.round, "variant": self.variant, "k": self.k, "copy": self.copy,
                "weights_remaining": round(network.ticket.mask.density(), 6), **outcome.fields,
                "iterations": outcome.iterations, "train_seconds": round(outcome.seconds, 3),
                "status": outcome.status, "diverged_at": outcome.diverged_at}
