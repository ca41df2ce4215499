"""One network of an IMP run: the dense network, a round's ticket, or a control derived from it.

A job reads everything it needs from the run directory (config.yaml, the seed's init.pt and
rewind.pt, the round's mask.pt) and writes only its own network directory, plus the seed's
rewind.pt for the dense network, the only one that makes it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from tickets.components import RunContext, fresh_state, stable_seed
from tickets.engine.contexts import Overrides
from tickets.engine.netjob import Network, NetworkJob, load_input, result_row
from tickets.errors import TicketsError
from tickets.masks import Mask, prunable_names
from tickets.store import atomic_torch_save
from tickets.structure import extra_masks, random_units, unit_groups
from tickets.ticket import ControlContext, Ticket
from tickets.training import TrainOutcome


@dataclass(frozen=True)
class ImpJob(NetworkJob):
    """The address of one network in an IMP run: what the job trains."""

    run_dir: str
    seed: int
    round: int
    variant: str
    overrides: Overrides = ()

    @property
    def key(self) -> tuple[int, int, str]:
        return self.seed, self.round, self.variant

    @property
    def dir(self) -> Path:
        return Path(self.run_dir) / f"seed_{self.seed}" / f"round_{self.round}" / self.variant

    def label(self, rounds: int) -> str:
        return f"seed {self.seed} | round {self.round}/{rounds} | {self.variant}"

    def describe(self) -> str:
        return f"seed {self.seed} round {self.round} {self.variant}"

    def progress_label(self, context: RunContext) -> str:
        return self.label(context.config.prune.rounds)

    def logger_address(self) -> tuple[int, int, str]:
        return self.key

    def _files(self, context: RunContext) -> tuple[Path, Path, Path]:
        store = context.store
        return (store.seed_dir(self.seed) / "init.pt", store.seed_dir(self.seed) / "rewind.pt",
                store.round_dir(self.seed, self.round) / "mask.pt")

    def network(self, context: RunContext, model) -> Network:
        init_path, rewind_path, mask_path = self._files(context)
        capture = (context.schedule.rewind,) if self.round == 0 else ()
        read: list[Path] = []  # what the ticket was built from besides these (e.g. the previous round's network)
        ticket = self._ticket(context, model, read)
        if context.config.prune.structure != "weights":  # a pruned unit's bias and BatchNorm channel go with it
            ticket = ticket.with_(extra_masks=extra_masks(ticket.mask.tensors, self._groups(context, model)))
        return Network(ticket, data_seed=self.seed, torch_seed=stable_seed(*self.key),
                       inputs=[init_path, rewind_path, mask_path, *read], capture_at=capture)

    def _ticket(self, context: RunContext, model, read: list[Path]) -> Ticket:
        """The network to train: the dense net, the round's ticket, or a control derived from it.

        The round's ticket is theta_k under the mask, or, with ``prune.retrain`` finetune or
        lr_rewind, what that strategy (a control) derives from it.
        """
        init_path, rewind_path, mask_path = self._files(context)
        theta0 = load_input(context, init_path)
        if self.round == 0:
            return Ticket(Mask.ones_for(model), theta0, 0)
        mask = Mask(load_input(context, mask_path))
        rewind_state = load_input(context, rewind_path)
        ticket = Ticket(mask, rewind_state, context.schedule.rewind)
        if self.variant == "ticket":
            retrain = context.components.retrain
            return ticket if retrain is None else retrain(ticket, self._control_context(context, model, theta0,
                                                                                         rewind_state, read))
        control = context.components.controls.get(self.variant)
        if control is None:
            raise TicketsError(f"control {self.variant!r} is not in this run's config; add it with --controls")
        return control(ticket, self._control_context(context, model, theta0, rewind_state, read))

    def _control_context(self, context: RunContext, model, theta0, rewind_state, read: list[Path]) -> ControlContext:
        trained_path = context.store.network_dir(self.seed, self.round - 1, "ticket") / "final.pt"

        def trained():
            read.append(trained_path)
            return load_input(context, trained_path)

        schedule = context.schedule
        random_like = Mask.random_with_counts if context.config.prune.structure == "weights" else \
            (lambda mask, generator: random_units(mask, self._groups(context, model), generator))
        return ControlContext(
            seed=self.seed, round=self.round, generator=torch.Generator().manual_seed(stable_seed(*self.key)),
            init=theta0, rewind=rewind_state, prunable=prunable_names(model),
            initialize=partial(fresh_state, context), trained=trained, schedule_end=schedule.total,
            rewind_iteration=schedule.rewind, retrain_iterations=schedule.retrain, random_like=random_like,
        )

    @staticmethod
    def _groups(context: RunContext, model):
        return unit_groups(model, context.splits.input_shape, context.config.prune.structure)

    def finish(self, context: RunContext, model, network: Network, outcome: TrainOutcome) -> dict:
        """The dense ticket saves theta_k (rewind.pt); a control with a mask of its own saves it."""
        _, rewind_path, mask_path = self._files(context)
        ticket = network.ticket
        if self.round == 0 and self.variant == "ticket" and outcome.diverged_at is None and not rewind_path.exists():
            atomic_torch_save(outcome.captured.get(context.schedule.rewind, ticket.state), rewind_path)
        if self.round > 0 and ticket.mask != Mask.load(mask_path):  # e.g. random_prune: keep its own mask
            ticket.mask.save(self.dir / "mask.pt")
        return result_row(context, self.seed, self.round, self.variant, context.config.prune.criterion,
                          ticket.mask, outcome)

