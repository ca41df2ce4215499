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
    """A network to train: a mask over starting weights, and the span of the schedule it trains.

    ``state`` is a full ``state_dict`` (every parameter and buffer) the network starts from
    (the mask is applied to it before the first step); ``pruned_values``, when given, holds the
    values pruned weights are frozen at instead of zero (name -> tensor).

    The span: it trains iterations ``start_iteration`` (the rewind point) to ``end_iteration``
    (None: the end of the run's schedule, T), on the batches the dense network saw at those
    iterations. The step at iteration t uses the learning rate the schedule gives at
    ``t + lr_offset``, or its last value (at T - 1) past the end: ``lr_offset = 0`` replays the
    schedule, ``lr_offset = T - 1 - start_iteration`` trains at the final learning rate
    throughout (fine-tuning). Optimizer state always starts fresh.
    """

    mask: Mask
    state: State
    start_iteration: int = 0
    pruned_values: State | None = None
    end_iteration: int | None = None
    lr_offset: int = 0
    # Structured pruning: masks of the 1-D parameters that go with each unit (biases, BatchNorm
    # channels), applied like the mask but not counted as weights (see tickets.structure).
    extra_masks: State | None = None

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
    structure: str = "weights"  # prune.structure: a criterion may then give one score per unit (a 1-D tensor)
    input_shape: tuple = ()  # (channels, height, width) of the data


def _no_trained_network() -> State:
    raise ValueError("this network has no previous round: round 0 is the dense network")


@dataclass
class ControlContext:
    """What a control sees (see ``register_controls``).

    ``trained()`` loads the previous round's trained ticket (round 0's dense network for
    round 1) as a full state dict; the network then records that file as one of its inputs.
    ``schedule_end`` is T, the iterations of the run's schedule; ``rewind_iteration`` is k;
    ``retrain_iterations`` is ``prune.retrain_iterations`` (default T - k).
    ``random_like(mask, generator)`` draws a random mask with ``mask``'s counts: per layer of
    weights, or of whole units when the run prunes structure (``prune.structure``).
    """

    seed: int
    round: int
    generator: torch.Generator
    init: State
    rewind: State
    prunable: list[str]
    initialize: Callable[[torch.Generator], State]
    extra: dict = field(default_factory=dict)
    trained: Callable[[], State] = _no_trained_network
    schedule_end: int = 0
    rewind_iteration: int = 0
    retrain_iterations: int = 0
    random_like: Callable[[Mask, torch.Generator], Mask] = Mask.random_with_counts


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
