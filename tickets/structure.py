"""Units of a network for structured pruning: whole neurons of Linear layers, whole filters of convolutions.

A unit is one output of a prunable layer (a row of its weight). Pruning it also removes what
belongs to it and what reads it, so that the architecture really shrinks:

- its bias, and the channel of a BatchNorm that follows the layer (scale and shift);
- the next layer's weights that read it: a Linear layer's column, a convolution's input
  channel, or, through a flatten, the block of ``H x W`` columns a channel becomes.

The units are found by tracing the model (``torch.fx``) from each layer's output through
operations that keep units apart (activations, BatchNorm, pooling, dropout, flatten) to the
layers that read it. A layer whose output also goes anywhere else, into a residual sum, say, or
out of the network, has no prunable units: in a ResNet only the channels inside a block (the
first convolution of each basic block, its BatchNorm and the second convolution's inputs) are
pruned, and the channels on the residual path stay, as Li et al. (2017) and Liu et al. (2019)
do. The output layer's units (the classes) are never pruned.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from tickets.config import STRUCTURES
from tickets.errors import TicketsError
from tickets.masks import Mask, _keep_top, fraction_for

PRODUCERS = {"neurons": (nn.Linear,), "channels": (nn.Linear, nn.Conv2d)}
# Modules and functions that treat every unit on its own: a unit's value flows through unchanged in place.
PASS_MODULES = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.Dropout, nn.Identity, nn.MaxPool2d,
                nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.BatchNorm1d, nn.BatchNorm2d)
PASS_FUNCTIONS = (F.relu, torch.relu, F.dropout, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, torch.tanh)


@dataclass
class UnitGroup:
    """The units of one layer: ``weight``'s rows, with what goes with each unit and who reads it."""

    weight: str  # the producing layer's weight, e.g. "fc1.weight"
    units: int
    extras: list[str] = field(default_factory=list)  # 1-D parameters with one entry per unit (bias, BatchNorm)
    norm: str | None = None  # the BatchNorm that follows, if any (its scale is network slimming's score)
    readers: list[tuple[str, int]] = field(default_factory=list)  # (weight, columns per unit) along dim 1


def unit_groups(model: nn.Module, input_shape, structure: str) -> list[UnitGroup]:
    """The prunable units of ``model`` for ``structure`` (``neurons`` or ``channels``); see the module docstring."""
    if structure not in PRODUCERS:
        raise TicketsError(f"unknown prune.structure {structure!r}; use one of {', '.join(STRUCTURES)}")
    try:
        graph = fx.symbolic_trace(model)
        from torch.fx.passes.shape_prop import ShapeProp

        ShapeProp(graph).propagate(torch.zeros(2, *input_shape))
    except Exception as error:  # noqa: BLE001 - any tracing failure means the same to the user
        first = " ".join(str(error).split())[:120]
        raise TicketsError(f"structured pruning cannot follow this model's layers ({type(error).__name__}: "
                           f"{first}); use --structure weights") from None
    modules = dict(model.named_modules())
    groups = []
    for node in graph.graph.nodes:
        module = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(module, PRODUCERS[structure]) or node.target == "output" or module.weight.dim() < 2:
            continue
        group = UnitGroup(f"{node.target}.weight", module.weight.shape[0])
        if getattr(module, "bias", None) is not None:
            group.extras.append(f"{node.target}.bias")
        if _follow(node, group, modules, per_unit=1):
            groups.append(group)
    return groups


def _follow(node: fx.Node, group: UnitGroup, modules: dict, per_unit: int) -> bool:
    """Walk the users of ``node``: whether every path ends in a layer that reads the units (recorded)."""
    if not node.users:
        return False
    for user in node.users:
        module = modules.get(user.target) if user.op == "call_module" else None
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            if user.args[0] is not node:
                return False
            group.readers.append((f"{user.target}.weight", per_unit))
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if group.norm is not None:
                return False
            group.norm = user.target
            group.extras += [f"{user.target}.weight", f"{user.target}.bias"]
            if not _follow(user, group, modules, per_unit):
                return False
        elif isinstance(module, PASS_MODULES) or (user.op == "call_function" and user.target in PASS_FUNCTIONS):
            if not _follow(user, group, modules, per_unit):
                return False
        elif _is_flatten(user):
            shape = node.meta["tensor_meta"].shape
            if len(shape) < 2:
                return False
            block = per_unit * int(torch.Size(shape[2:]).numel())
            if not _follow(user, group, modules, block):
                return False
        else:  # a residual sum, a concatenation, the network's output: the units are shared
            return False
    return True


def _is_flatten(node: fx.Node) -> bool:
    if node.op == "call_function" and node.target is torch.flatten:
        return node.args[1:2] == (1,) or node.kwargs.get("start_dim") == 1
    if node.op == "call_method" and node.target == "flatten":
        return node.args[1:2] == (1,) or node.kwargs.get("start_dim") == 1
    return False


def alive_units(mask: dict, group: UnitGroup) -> torch.Tensor:
    """Which units of ``group`` survive: those whose weight row keeps any weight."""
    return mask[group.weight].flatten(1).any(1)


def unit_scores(scores: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """A unit's score: its per-weight scores summed over its surviving weights (for magnitude, the
    L1 norm of its row: Li et al.'s filter norm), or the criterion's own when it gave one per unit."""
    scores = scores.detach().to("cpu", torch.float64)
    if scores.dim() == 1 and scores.shape[0] == keep.shape[0]:
        return scores
    if scores.shape != keep.shape:
        raise TicketsError(f"the criterion returned scores of shape {tuple(scores.shape)} for a weight of shape "
                           f"{tuple(keep.shape)}; give one score per weight or one per unit")
    return torch.nan_to_num(scores.masked_fill(~keep, 0.0), nan=0.0).flatten(1).sum(1)


def structured_mask(mask: dict, groups: list[UnitGroup], unit_keep: dict[str, torch.Tensor]) -> dict:
    """``mask`` with every pruned unit's row, and the readers' weights that read it, pruned."""
    out = {name: keep.clone() for name, keep in mask.items()}
    for group in groups:
        keep = unit_keep[group.weight]
        out[group.weight] &= keep.view(-1, *[1] * (out[group.weight].dim() - 1))
        for reader, per_unit in group.readers:
            columns = keep.repeat_interleave(per_unit)
            out[reader] &= columns.view(1, -1, *[1] * (out[reader].dim() - 2))
    return out


def extra_masks(mask: dict, groups: list[UnitGroup]) -> dict:
    """Masks of what goes with each unit (biases, BatchNorm channels): kept where the unit is."""
    return {name: alive_units(mask, group) for group in groups for name in group.extras}



def prune_units(mask: Mask, groups: list[UnitGroup], scores: dict, fraction: float, layer_fractions: dict,
                scope: str, generator: torch.Generator) -> Mask:
    """A new mask that removes ``fraction`` of each layer's surviving units (round half up, ties at
    random), or of the pooled units with ``global`` scope, and everything that goes with them."""
    keep: dict[str, torch.Tensor] = {}
    pooled: list[tuple[UnitGroup, torch.Tensor, torch.Tensor]] = []
    for group in groups:
        alive = alive_units(mask.tensors, group)
        score = unit_scores(scores[group.weight], mask.tensors[group.weight])
        f, own = fraction_for(group.weight, fraction, layer_fractions)
        if scope == "layerwise" or own:
            keep[group.weight] = _keep_top(alive, score, f, generator)
        else:
            pooled.append((group, alive, score))
    if pooled:
        kept = _keep_top(torch.cat([a for _, a, _ in pooled]), torch.cat([s for _, _, s in pooled]), fraction,
                         generator)
        for (group, _, _), part in zip(pooled, kept.split([g.units for g, _, _ in pooled])):
            keep[group.weight] = part
    return Mask(structured_mask(mask.tensors, groups, keep))


def random_units(mask: Mask, groups: list[UnitGroup], generator: torch.Generator) -> Mask:
    """A structured mask of random units with ``mask``'s number of surviving units in every layer."""
    keep = {}
    for group in groups:
        kept = torch.randperm(group.units, generator=generator)[:int(alive_units(mask.tensors, group).sum())]
        keep[group.weight] = torch.zeros(group.units, dtype=torch.bool).index_fill_(0, kept, True)
    dense = {name: torch.ones_like(t) for name, t in mask.tensors.items()}
    return Mask(structured_mask(dense, groups, keep))
