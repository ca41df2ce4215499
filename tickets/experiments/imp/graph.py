"""The rounds of IMP as a graph of network jobs, and the masks the driver computes between them.

Per seed, round r's mask needs round r-1's trained ticket; round r's ticket and its controls
need only that mask; seeds are independent. The driver computes each mask as soon as its
ticket is trained, runs tickets before controls (they are the critical path), and alone writes
results.csv.
"""
from __future__ import annotations

from functools import partial

import torch

from tickets.components import RunContext, stable_seed
from tickets.engine.graph import Graph
from tickets.engine.lifecycle import diverged_warning
from tickets.experiments.imp.job import ImpJob
from tickets.masks import Mask, prunable_names
from tickets.store import DIVERGED
from tickets.structure import prune_units, unit_groups
from tickets.ticket import CriterionContext, prunable_state
from tickets.training import BatchStream


class ImpGraph(Graph):
    """Every seed's rounds of a run; ``saved_tickets_only`` (``tickets compare``) trains controls of saved tickets."""

    chained = True  # round r's mask comes from round r-1's ticket (a transfer's come from its source)

    def __init__(self, context: RunContext, saved_tickets_only: bool = False):
        self.context, self.config, self.store = context, context.config, context.store
        self.saved_tickets_only = saved_tickets_only
        self.run_dir = str(self.store.dir.resolve())

    def expected(self) -> int:
        prune = self.config.prune
        return (1 + prune.rounds * (1 + len(prune.controls))) * len(self.config.seeds)

    def prepare(self) -> None:
        """The driver's own files of every seed: theta_0 (seeded) and the dense mask of round 0."""
        for seed in self.config.seeds:
            self.context.initial_state(seed)
            if not (self.store.round_dir(seed, 0) / "mask.pt").exists():
                Mask.ones_for(self.context.new_model()).save(self.store.round_dir(seed, 0) / "mask.pt")

    def job(self, seed: int, round_: int, variant: str) -> ImpJob:
        return ImpJob(self.run_dir, seed, round_, variant)

    def roots(self):
        return [self.job(seed, 0, "ticket") for seed in self.config.seeds
                if not self.saved_tickets_only or self.store.is_done(self.job(seed, 0, "ticket").dir)]

    def priority(self, job: ImpJob) -> tuple:
        return job.variant != "ticket", job.round, job.seed, job.variant

    def label(self, job: ImpJob) -> str:
        return job.label(self.config.prune.rounds)

    def end_iteration(self, job: ImpJob) -> int:
        return self.context.schedule.total

    def after(self, job: ImpJob, row: dict) -> list[ImpJob]:
        """A ticket unblocks its next round (the mask computed here); a diverged ticket ends its seed's chain."""
        seed, next_round, rounds = job.seed, job.round + 1, self.config.prune.rounds
        if job.variant != "ticket" or next_round > rounds:
            return []
        if row.get("status") == DIVERGED:
            self.progress.drop((rounds - job.round) * (1 + len(self.config.prune.controls)))
            return []
        if self.saved_tickets_only and not self.store.is_done(self.job(seed, next_round, "ticket").dir):
            return []
        self.mask_for_round(seed, next_round)
        return [self.job(seed, next_round, v) for v in ("ticket", *self.config.prune.controls)]

    def record(self, job: ImpJob, row: dict) -> None:
        self.store.add_result(job.dir)
        self.check_learning(job, row, self.context.splits.num_classes)
        if row.get("status") == DIVERGED:
            start = 0 if job.round == 0 else self.context.schedule.rewind
            self.progress.warn(diverged_warning(self.label(job), start + int(row["iterations"]),
                                                job.variant == "ticket" and self.chained))

    # the masks ---------------------------------------------------------------------
    def mask_for_round(self, seed: int, round_: int) -> Mask:
        """Round r's mask: the criterion scores round r-1's trained ticket; prunes what remains."""
        store, prune = self.store, self.config.prune
        path = store.round_dir(seed, round_) / "mask.pt"
        if path.exists():
            return Mask(store.load(path))
        model = self.context.new_model()
        names = prunable_names(model)
        final = store.load(store.network_dir(seed, round_ - 1, "ticket") / "final.pt")
        theta0 = store.load(store.seed_dir(seed) / "init.pt")
        rewind_state = store.load(store.seed_dir(seed) / "rewind.pt")
        previous_mask = Mask(store.load(store.round_dir(seed, round_ - 1) / "mask.pt"))
        model.load_state_dict(final)
        ctx = CriterionContext(
            init=prunable_state(theta0, names), rewind=prunable_state(rewind_state, names),
            final=prunable_state(final, names), mask=previous_mask, model=model,
            batches=partial(self._training_batches, seed),
            generator=torch.Generator().manual_seed(stable_seed(seed, round_, "criterion")),
            fraction=prune.fraction, layer_fractions=dict(prune.layer_fractions), scope=prune.scope,
            criterion_batches=prune.criterion_batches, structure=prune.structure,
            input_shape=tuple(self.context.splits.input_shape),
        )
        scores = self.context.components.criterion(ctx)
        if prune.structure == "weights":
            mask = previous_mask.prune(scores, prune.fraction, prune.layer_fractions, prune.scope, ctx.generator)
        else:
            groups = unit_groups(model, self.context.splits.input_shape, prune.structure)
            mask = prune_units(previous_mask, groups, scores, prune.fraction, prune.layer_fractions, prune.scope,
                               ctx.generator)
        mask.save(path)
        return mask

    def _training_batches(self, seed: int, n: int) -> list:
        splits = self.context.splits
        return list(BatchStream(splits.train_x, splits.train_y, self.config.train.batch_size, seed, 0, n))
