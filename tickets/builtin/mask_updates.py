"""Built-in mask updates (the drop-and-grow rules of ``tickets sparse-train``) and the helpers rules share.

- ``set`` (Mocanu et al. 2018): in every layer, drop the ``ctx.counts[name]`` active weights of
  smallest magnitude and grow as many connections chosen uniformly at random.
- ``rigl`` (Evci et al. 2020): drop as ``set`` does; grow the connections with the largest
  magnitude of the dense gradient ``|ctx.grads[name]|``.

Both grow only among the connections inactive *before* the update, so what stays, what is
dropped and what is grown are three disjoint sets and every layer keeps its count. (RigL's own
code ranks the just-dropped connections among the growth candidates too, and a connection
dropped and regrown at once keeps its weight; here such a connection stays dropped.) Equal
scores are ranked at random with ``ctx.generator``, never by position (zero gradients tie, e.g.
those of the digits' always-black border pixels).

The core (``tickets.experiments.sparse``) decides when updates happen and how many connections
change (``ctx.counts``), checks the counts of what a rule returns, and gives the new connections
zero weights and zeroed optimizer state.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tickets.meta import hookimpl


@dataclass
class MaskUpdateContext:
    """What a mask update sees (see ``register_mask_updates``); every tensor is on the CPU."""

    masks: dict[str, torch.Tensor]  # name -> bool: the current mask
    weights: dict[str, torch.Tensor]  # name -> the weights after this iteration's step (inactive ones are 0)
    grads: dict[str, torch.Tensor]  # name -> the dense gradient of this iteration's loss (before masking)
    counts: dict[str, int]  # name -> connections to drop and to grow in that tensor
    fraction: float  # the drop fraction at this update
    iteration: int  # iterations done
    generator: torch.Generator  # seeded by (seed, round, method, iteration)


def drop_fraction(alpha: float, iteration: int, end: int, schedule: str) -> float:
    """The drop fraction at ``iteration``: ``alpha`` (constant) or ``alpha/2 (1 + cos(pi t / T_end))`` (cosine)."""
    if schedule == "constant":
        return float(alpha)
    return float(alpha) / 2 * (1 + math.cos(math.pi * iteration / end))


def update_count(active: int, size: int, fraction: float) -> int:
    """Connections one update drops and grows in a tensor: ``fraction`` of the active ones rounded half up,
    at most the inactive ones (growth is among those)."""
    return min(int(math.floor(active * fraction + 0.5)), size - active)


def select_top(candidates: torch.Tensor, scores: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """The ``k`` candidates (a bool tensor) with the highest ``scores``, as a bool tensor of the same shape.

    Equal scores are ranked at random: the candidates are shuffled with ``generator`` and, among
    scores equal to the lowest selected one, the earliest in that order are taken (what a stable
    descending sort of the shuffled candidates takes, found by selection). NaN scores rank lowest.
    """
    flat = candidates.detach().to("cpu", torch.bool).flatten()
    index = flat.nonzero().flatten()
    index = index[torch.randperm(index.numel(), generator=generator)]
    if not 0 <= k <= index.numel():
        raise ValueError(f"cannot select {k} of {index.numel()} candidates")
    out = torch.zeros_like(flat)
    if k:
        values = torch.nan_to_num(scores.detach().to("cpu", torch.float64).flatten()[index], nan=-math.inf)
        lowest = values.kthvalue(values.numel() - k + 1).values
        above = values > lowest
        tied = (values == lowest).nonzero().flatten()[: k - int(above.sum())]
        out[index[above]] = True
        out[index[tied]] = True
    return out.view(candidates.shape)


def drop_smallest(mask: torch.Tensor, weight: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """The ``k`` active connections of ``mask`` with the smallest ``|weight|`` (ties at random)."""
    return select_top(mask, -weight.detach().abs().double(), k, generator)


def _drop_and_grow(ctx: MaskUpdateContext, grow_score) -> dict[str, torch.Tensor]:
    new = {}
    for name, mask in ctx.masks.items():
        k = ctx.counts[name]
        dropped = drop_smallest(mask, ctx.weights[name], k, ctx.generator)
        grown = select_top(~mask, grow_score(name, mask), k, ctx.generator)
        new[name] = (mask & ~dropped) | grown
    return new


def set_update(ctx: MaskUpdateContext) -> dict[str, torch.Tensor]:
    """SET (Mocanu et al. 2018): drop the smallest |w|, grow at random."""
    return _drop_and_grow(ctx, lambda name, mask: torch.zeros(mask.shape, dtype=torch.float64))  # all tie: random


def rigl_update(ctx: MaskUpdateContext) -> dict[str, torch.Tensor]:
    """RigL (Evci et al. 2020): drop the smallest |w|, grow the largest dense-gradient magnitude |g|."""
    return _drop_and_grow(ctx, lambda name, mask: ctx.grads[name].abs())


# Each rule's own schedule (hookspecs.register_mask_updates), used unless the config sets one.
set_update.drop_schedule, set_update.update_end = "constant", 1.0  # Mocanu et al.: zeta every epoch, to the end
rigl_update.drop_schedule, rigl_update.update_end = "cosine", 0.75  # Evci et al.: cosine decay, T_end = 75%


@hookimpl
def register_mask_updates(register):
    """set and rigl: drop by magnitude; grow at random or by gradient magnitude."""
    register("set", set_update, description="SET (Mocanu et al. 2018): drop smallest |w|, regrow at random; "
                                            "constant fraction, to the end of training")
    register("rigl", rigl_update, description="RigL (Evci et al. 2020): drop smallest |w|, grow largest dense |grad|; "
                                              "cosine-decayed fraction, no updates after 75% of training")
