"""The objects plugins receive: a Ticket and the contexts of criteria and controls."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import torch
from torch import nn

from tickets.masks import Mask

State = dict[str, torch.Tensor]


@dataclass
class Ticket:
    """A network to train: a mask over starting weights.

    ``state`` is a full ``state_dict`` (every parameter and buffer) the network starts from;
    ``start_iteration`` is where its training begins (the rewind point); ``pruned_values``,
    when given, holds the values pruned weights are frozen at instead of zero (name -> tensor).
    """

    mask: Mask
    state: State
    start_iteration: int = 0
    pruned_values: State | None = None

    def with_(self, **changes) -> "Ticket":
        """A copy with some fields replaced."""
        return replace(self, **changes)


@dataclass
class CriterionContext:
    """What a pruning criterion sees (see ``register_criteria``)."""

    init: State
    rewind: State
    final: State
    mask: Mask
    model: nn.Module
    batches: Callable[[int], list]
    generator: torch.Generator
    fraction: float = 0.2
    layer_fractions: dict = field(default_factory=dict)
    scope: str = "layerwise"
    criterion_batches: int = 4


@dataclass
class ControlContext:
    """What a control sees (see ``register_controls``)."""

    seed: int
    round: int
    generator: torch.Generator
    init: State
    rewind: State
    prunable: list[str]
    initialize: Callable[[torch.Generator], State]
    extra: dict = field(default_factory=dict)


def initialize_(model: nn.Module, init: Callable, generator: torch.Generator, norm_init: str = "default") -> None:
    """Initialize ``model`` in place: ``init`` for every weight of ndim >= 2, zero biases.

    ``norm_init`` (``model.norm_init``) sets the scale (gamma) of the normalization layers
    (BatchNorm, InstanceNorm, GroupNorm, LayerNorm): ``default`` keeps the layer's own, 1;
    ``uniform`` draws each from U[0, 1), as OpenLTH's ``batchnorm_init='uniform'`` does. The
    scales are drawn from ``generator`` after every weight, so the weights are bit for bit those
    that ``default`` gives. Shifts (beta) are biases: zero either way. Buffers (running
    statistics) keep their defaults, so the result depends only on the architecture, the
    initializers and the generator's seed.
    """
    from tickets.config import NORM_INITS
    from tickets.errors import TicketsError

    if norm_init not in NORM_INITS:
        raise TicketsError(f"unknown model.norm_init {norm_init!r}; use one of {', '.join(NORM_INITS)}")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                init(p, name, generator)
            elif name.endswith("bias"):
                p.zero_()
        if norm_init == "uniform":
            norms = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
            for module in model.modules():
                scale = getattr(module, "weight", None) if isinstance(module, norms) else None
                if isinstance(scale, torch.Tensor):
                    scale.copy_(torch.rand(scale.shape, generator=generator, dtype=scale.dtype))


def prunable_state(state: State, names: list[str]) -> State:
    """The prunable tensors of a full state dict, as CPU tensors."""
    return {name: state[name].detach().cpu() for name in names}


def clone_state(model: nn.Module) -> State:
    """A CPU copy of a model's full state dict."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
