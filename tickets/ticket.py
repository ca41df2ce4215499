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


def initialize_(model: nn.Module, init: Callable, generator: torch.Generator) -> None:
    """Initialize ``model`` in place: ``init`` for every weight of ndim >= 2, zero biases.

    Normalization parameters and buffers keep their defaults, so the result depends only on
    the architecture, the initializer and the generator's seed.
    """
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                init(p, name, generator)
            elif name.endswith("bias"):
                p.zero_()


def prunable_state(state: State, names: list[str]) -> State:
    """The prunable tensors of a full state dict, as CPU tensors."""
    return {name: state[name].detach().cpu() for name in names}


def clone_state(model: nn.Module) -> State:
    """A CPU copy of a model's full state dict."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
