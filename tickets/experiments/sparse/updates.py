"""When the mask of a sparse network changes, by how much, and the log of every change.

Updates happen after the steps that reach iteration t = ``update_every``, 2 ``update_every``, ...
while t < T_end = ``floor(update_end * T + 0.5)`` (none at or after it). At each, the drop
fraction is ``drop_fraction`` (constant) or ``drop_fraction / 2 * (1 + cos(pi t / T_end))``
(cosine), and every layer drops and grows ``min(floor(active * fraction + 0.5), inactive)``
connections (:func:`tickets.builtin.mask_updates.update_count`) through the method's registered
rule. :class:`MaskUpdates` is the training loop's ``plan.mask_updates``: it checks what the rule
returns (per-layer counts unchanged, bool tensors of the weights' shapes) and keeps one row per
layer and update, saved as ``mask_updates.csv`` (and in checkpoints, so a resumed network logs
exactly what an uninterrupted one does).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tickets.builtin.mask_updates import MaskUpdateContext, drop_fraction, update_count
from tickets.components import stable_seed
from tickets.config import SparseConfig
from tickets.errors import TicketsError

STATIC = "static"  # the method whose random mask never changes (not a registered rule)
LOG_COLUMNS = ["iteration", "layer", "fraction", "size", "active", "dropped", "grown"]


@dataclass(frozen=True)
class Schedule:
    """Update iterations and drop fractions of one method (the config's settings, or the rule's own)."""

    every: int
    alpha: float
    shape: str  # cosine | constant
    end: int  # T_end: no update at or after it

    def due(self, iteration: int) -> bool:
        return 0 < iteration < self.end and iteration % self.every == 0

    def fraction(self, iteration: int) -> float:
        return drop_fraction(self.alpha, iteration, self.end, self.shape)


def method_schedule(method: str, rule, s: SparseConfig, total: int) -> Schedule:
    """The schedule of ``rule`` in a run of ``total`` iterations: the config's keys, else the rule's attributes."""
    shape = s.drop_schedule or getattr(rule, "drop_schedule", "cosine")
    end = s.update_end if s.update_end is not None else getattr(rule, "update_end", 0.75)
    if shape not in ("cosine", "constant") or not 0 < end <= 1:
        raise TicketsError(f"mask update {method!r} declares drop_schedule {shape!r} / update_end {end!r}; "
                           "use cosine or constant and a fraction of training in (0, 1]")
    return Schedule(s.update_every, s.drop_fraction, shape, int(math.floor(end * total + 0.5)))


def resolve_rule(registry, method: str):
    """The registered entry of ``method``; an unknown one names static and the registered rules."""
    try:
        return registry.entry("mask_updates", method)
    except TicketsError as error:
        raise TicketsError(f"unknown sparse-training method {method!r}: use static or a mask update ({error}); "
                           "e.g. --method static,set,rigl") from None


class MaskUpdates:
    """``plan.mask_updates`` of one network: the method's rule on its schedule, with seeded generators and a log."""

    def __init__(self, method: str, rule, schedule: Schedule, seed_parts: tuple, masks: dict[str, torch.Tensor]):
        self.method, self.rule, self.schedule, self.seed_parts = method, rule, schedule, seed_parts
        self.masks = {name: m.detach().to("cpu", torch.bool).clone() for name, m in masks.items()}
        self.rows: list[dict] = []

    def due(self, iteration: int) -> bool:
        return self.schedule.due(iteration)

    def update(self, iteration: int, weights: dict, grads: dict, masks: dict) -> dict[str, torch.Tensor]:
        fraction = self.schedule.fraction(iteration)
        counts = {name: update_count(int(m.sum()), m.numel(), fraction) for name, m in masks.items()}
        generator = torch.Generator().manual_seed(stable_seed(*self.seed_parts, "update", iteration))
        ctx = MaskUpdateContext(masks={n: m.clone() for n, m in masks.items()}, weights=weights, grads=grads,
                                counts=counts, fraction=fraction, iteration=iteration, generator=generator)
        new = self.rule(ctx)
        if not isinstance(new, dict) or set(new) != set(masks):
            raise TicketsError(f"mask update {self.method!r} must return a mask for each of {', '.join(masks)}")
        out = {}
        for name, old in masks.items():
            m = torch.as_tensor(new[name]).to("cpu")
            if m.dtype != torch.bool or m.shape != old.shape or int(m.sum()) != int(old.sum()):
                raise TicketsError(f"mask update {self.method!r} returned for {name} a mask that is not a bool "
                                   f"tensor of shape {tuple(old.shape)} with {int(old.sum())} active weights")
            out[name] = m.clone()
            self.rows.append({"iteration": iteration, "layer": name, "fraction": round(fraction, 6),
                              "size": old.numel(), "active": int(m.sum()), "dropped": int((old & ~m).sum()),
                              "grown": int((m & ~old).sum())})
        self.masks = out
        return out

    def state_dict(self) -> dict:
        return {"masks": dict(self.masks), "rows": list(self.rows)}

    def load_state_dict(self, state: dict) -> None:
        self.masks = {name: m.clone() for name, m in state["masks"].items()}
        self.rows = list(state["rows"])
