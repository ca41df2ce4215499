"""Mask: one boolean tensor per prunable parameter, and pruning by scores.

Rounding rule (exact counts): pruning a fraction ``f`` of ``n`` surviving weights removes
``floor(n * f + 0.5)`` of them (round half up), so ``n - floor(n * f + 0.5)`` survive. With
``layerwise`` scope the rule applies to each tensor; with ``global`` scope it applies to the
pooled survivors of all tensors that use the global fraction. Tensors whose name matches a
per-layer pattern (``layer_fractions``, shell-style, first match wins) are always pruned on
their own with that fraction; a fraction of 0 leaves a tensor unpruned. Pruned weights can
never come back: only survivors are ranked. Ties between equal scores are broken at random
(as Zhou et al.'s code does), never by position: ranking by index would prune whole trailing
neurons when many scores tie (e.g. ``large_init`` over signed-constant weights).
"""
from __future__ import annotations

import fnmatch
import math
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from tickets.config import SCOPES
from tickets.errors import TicketsError


def prunable_names(model: nn.Module) -> list[str]:
    """Names of the prunable parameters: weights of conv and linear layers (ndim >= 2).

    Biases and normalization parameters (1-D) are never pruned.
    """
    return [name for name, p in model.named_parameters() if name.endswith("weight") and p.dim() >= 2]


def pruned_count(alive: int, fraction: float) -> int:
    """How many of ``alive`` weights one round removes at ``fraction`` (round half up)."""
    return int(math.floor(alive * fraction + 0.5))


def fraction_for(name: str, fraction: float, layer_fractions: Mapping[str, float]) -> tuple[float, bool]:
    """The pruning fraction of a tensor, and whether a per-layer pattern set it."""
    for pattern, layer_fraction in layer_fractions.items():
        if fnmatch.fnmatchcase(name, pattern):
            return float(layer_fraction), True
    return float(fraction), False


class Mask:
    """Per-parameter boolean masks (True = weight kept)."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]):
        self.tensors = {name: t.detach().to(device="cpu", dtype=torch.bool).clone() for name, t in tensors.items()}

    @classmethod
    def ones_for(cls, model: nn.Module) -> "Mask":
        """A mask that keeps every prunable weight of ``model``."""
        params = dict(model.named_parameters())
        return cls({name: torch.ones_like(params[name], dtype=torch.bool) for name in prunable_names(model)})

    @classmethod
    def load(cls, path: str | Path) -> "Mask":
        return cls(torch.load(path, map_location="cpu", weights_only=True))

    def save(self, path: str | Path) -> None:
        """Write the mask as a plain dict name -> bool tensor (loadable with torch alone)."""
        from tickets.store import atomic_torch_save

        atomic_torch_save(dict(self.tensors), path)

    def names(self) -> list[str]:
        return list(self.tensors)

    def count(self, name: str | None = None) -> int:
        """Surviving weights in one tensor, or in all of them."""
        if name is not None:
            return int(self.tensors[name].sum())
        return sum(int(t.sum()) for t in self.tensors.values())

    def size(self) -> int:
        """Total number of prunable weights."""
        return sum(t.numel() for t in self.tensors.values())

    def density(self) -> float:
        """Fraction of prunable weights that survive."""
        return self.count() / self.size()

    def counts(self) -> dict[str, int]:
        return {name: int(t.sum()) for name, t in self.tensors.items()}

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, Mask)
            and self.tensors.keys() == other.tensors.keys()
            and all(torch.equal(t, other.tensors[n]) for n, t in self.tensors.items())
        )

    def is_subset_of(self, other: "Mask") -> bool:
        """True where every weight kept here is kept in ``other`` too."""
        return all(not (t & ~other.tensors[n]).any() for n, t in self.tensors.items())

    def apply_(self, model: nn.Module) -> None:
        """Set pruned weights of ``model`` to zero, in place."""
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, keep in self.tensors.items():
                p = params[name]
                p.mul_(keep.to(p.device))

    def prune(
        self,
        scores: Mapping[str, torch.Tensor],
        fraction: float,
        layer_fractions: Mapping[str, float] | None = None,
        scope: str = "layerwise",
        generator: torch.Generator | None = None,
    ) -> "Mask":
        """A new mask that removes the lowest-scoring survivors (see the module docstring).

        ``generator`` breaks ties (the run passes the criterion's generator, seeded by seed and
        round); without one, a generator seeded with 0 does, so pruning is always deterministic.
        """
        if scope not in SCOPES:
            raise TicketsError(f"unknown scope {scope!r}; use one of {', '.join(SCOPES)}")
        missing = [n for n in self.tensors if n not in scores]
        if missing:
            raise TicketsError(f"the criterion gave no scores for {', '.join(missing)}")
        layer_fractions = layer_fractions or {}
        generator = torch.Generator().manual_seed(0) if generator is None else generator
        keep: dict[str, torch.Tensor] = {}
        pooled: list[str] = []
        for name, current in self.tensors.items():
            f, own = fraction_for(name, fraction, layer_fractions)
            if scope == "layerwise" or own:
                kept = _keep_top(current.flatten(), _flat_scores(scores[name], current), f, generator)
                keep[name] = kept.view_as(current)
            else:
                pooled.append(name)
        if pooled:
            flat_mask = torch.cat([self.tensors[n].flatten() for n in pooled])
            flat_scores = torch.cat([_flat_scores(scores[n], self.tensors[n]) for n in pooled])
            kept = _keep_top(flat_mask, flat_scores, fraction, generator)
            offset = 0
            for name in pooled:
                n = self.tensors[name].numel()
                keep[name] = kept[offset:offset + n].view_as(self.tensors[name])
                offset += n
        return Mask({name: keep[name] for name in self.tensors})

    def random_with_counts(self, generator: torch.Generator) -> "Mask":
        """A random mask with exactly this mask's number of survivors in every tensor."""
        out = {}
        for name, t in self.tensors.items():
            order = torch.randperm(t.numel(), generator=generator)
            flat = torch.zeros(t.numel(), dtype=torch.bool)
            flat[order[: int(t.sum())]] = True
            out[name] = flat.view_as(t)
        return Mask(out)


def _flat_scores(score: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    score = score.detach().to("cpu", torch.float64)
    if score.shape != current.shape:
        raise TicketsError(f"the criterion returned scores of shape {tuple(score.shape)} "
                           f"for a weight of shape {tuple(current.shape)}")
    return torch.nan_to_num(score.flatten(), nan=-math.inf)


def _keep_top(alive: torch.Tensor, scores: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Keep the highest-scoring survivors after removing ``pruned_count`` of them (ties: at random).

    The survivors are shuffled first; among scores equal to the lowest kept one, those earliest
    in that order stay. That is what a stable descending sort of the shuffled survivors keeps,
    found by selection (O(n)) rather than by sorting.
    """
    alive_idx = alive.nonzero().flatten()
    alive_idx = alive_idx[torch.randperm(alive_idx.numel(), generator=generator)]
    n_keep = alive_idx.numel() - pruned_count(alive_idx.numel(), fraction)
    out = torch.zeros_like(alive)
    if n_keep <= 0:
        return out
    shuffled = scores[alive_idx]
    lowest_kept = shuffled.kthvalue(shuffled.numel() - n_keep + 1).values
    above = shuffled > lowest_kept
    tied = (shuffled == lowest_kept).nonzero().flatten()[: n_keep - int(above.sum())]
    out[alive_idx[above]] = True
    out[alive_idx[tied]] = True
    return out
