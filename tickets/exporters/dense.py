"""``dense``: a structured ticket as a physically smaller network, weights plus layer widths.

A unit (a Linear layer's output neuron, a Conv2d filter) is removed when nothing downstream can
see it: the next weighted layer reads it with zero weights only, or its row of the mask is all
False and its constant output (bias, then BatchNorm and ReLU) is zero. Removing it deletes its
weight row, its bias entry, its BatchNorm channel and the next layer's columns (input channels,
or the block of a channel's positions after a flatten) that read it. The output layer's units
are never removed. Every kept row must then be wholly kept (over the kept inputs); a ticket
that prunes single weights inside kept rows is unstructured and is refused (use ``sparse`` or
``torch-prune``).

The file is ``torch.save`` of a plain dict (``torch.load(path, weights_only=True)`` reads it,
with no pickled code): ``layers``, one small dict per layer of an ``nn.Sequential`` (types and
widths, :data:`BUILD`), and ``state_dict``, that Sequential's weights. torch's weights-only
format rather than safetensors: it needs no extra dependency, stores the layer list natively
(safetensors' metadata is a flat str -> str map) and is what tickets' own run files use.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from tickets.errors import TicketsError
from tickets.exporters.chain import chain

FORMAT = "tickets-dense"

# How each layer type of ``layers`` is built (the README's plain-torch recipe is this dict).
BUILD = {
    "linear": lambda s: nn.Linear(s["in"], s["out"], bias=s["bias"]),
    "conv2d": lambda s: nn.Conv2d(s["in"], s["out"], s["kernel"], stride=s["stride"], padding=s["padding"],
                                  bias=s["bias"]),
    "batchnorm2d": lambda s: nn.BatchNorm2d(s["features"], eps=s["eps"], momentum=s["momentum"]),
    "relu": lambda s: nn.ReLU(),
    "maxpool2d": lambda s: nn.MaxPool2d(s["kernel"], stride=s["stride"], padding=s["padding"]),
    "adaptiveavgpool2d": lambda s: nn.AdaptiveAvgPool2d(s["size"]),
    "flatten": lambda s: nn.Flatten(),
}


def spec(module: nn.Module, width_in: int | None = None, width_out: int | None = None) -> dict:
    """The ``layers`` entry of ``module`` (a weighted layer with ``width_in`` inputs, ``width_out`` units)."""
    if isinstance(module, nn.Linear):
        return {"type": "linear", "in": width_in, "out": width_out, "bias": module.bias is not None}
    if isinstance(module, nn.Conv2d):
        if module.groups != 1 or tuple(module.dilation) != (1, 1) or module.padding_mode != "zeros" \
                or isinstance(module.padding, str):
            raise TicketsError("dense export supports plain convolutions only (no groups, dilation, padding modes)")
        return {"type": "conv2d", "in": width_in, "out": width_out, "kernel": list(module.kernel_size),
                "stride": list(module.stride), "padding": list(module.padding), "bias": module.bias is not None}
    if isinstance(module, nn.BatchNorm2d):
        if not (module.affine and module.track_running_stats):
            raise TicketsError("dense export supports BatchNorm with affine weights and running statistics only")
        return {"type": "batchnorm2d", "features": width_in, "eps": module.eps, "momentum": module.momentum}
    if isinstance(module, nn.MaxPool2d):
        if module.dilation not in (1, (1, 1)) or module.ceil_mode:
            raise TicketsError("dense export supports max-pools without dilation or ceil_mode only")
        return {"type": "maxpool2d", "kernel": module.kernel_size, "stride": module.stride, "padding": module.padding}
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return {"type": "adaptiveavgpool2d", "size": module.output_size}
    if isinstance(module, nn.Flatten):
        return {"type": "flatten"}
    return {"type": "relu"}  # chain() admits no other type


def shrink(model: nn.Module, mask: dict, input_shape) -> tuple[list[dict], nn.Sequential, dict]:
    """The smaller network of a structured ticket: its ``layers``, the Sequential and each weighted layer's widths.

    ``model`` holds the ticket's weights (masked weights zero), ``mask`` its mask.
    """
    steps = chain(model)
    shapes = _input_shapes(steps, input_shape)
    weighted = [i for i, (_, m) in enumerate(steps) if isinstance(m, (nn.Linear, nn.Conv2d))]
    kept = torch.arange(input_shape[0])  # the surviving channels (or features) of the current tensor
    layers, modules, widths, partial = [], [], {}, []
    for i, (name, module) in enumerate(steps):
        if isinstance(module, nn.Flatten):
            positions = math.prod(shapes[i][1:])
            kept = (kept[:, None] * positions + torch.arange(positions)).flatten()
        if i in weighted:
            keep = mask.get(f"{name}.weight", torch.ones_like(module.weight, dtype=torch.bool))
            keep_in = keep[:, kept]
            if i == weighted[-1]:
                units = torch.arange(module.weight.shape[0])
            else:
                units = _surviving_units(steps, i, weighted[weighted.index(i) + 1], keep_in, mask, name)
            rows = keep_in[units].flatten(1)
            mixed = int((rows.any(1) & ~rows.all(1)).sum())
            if mixed:
                partial.append(f"{name}: {mixed} of {len(units)} kept rows partly pruned")
            layer = spec(module, len(kept), len(units))
            new = BUILD[layer["type"]](layer)
            with torch.no_grad():
                new.weight.copy_(module.weight.detach()[units][:, kept])
                if module.bias is not None:
                    new.bias.copy_(module.bias.detach()[units])
            widths[name] = [int(module.weight.shape[0]), len(units)]
            kept = units
        else:
            layer = spec(module, len(kept))
            new = BUILD[layer["type"]](layer)
            if isinstance(module, nn.BatchNorm2d):
                source = module.state_dict()
                new.load_state_dict({k: v if v.dim() == 0 else v[kept] for k, v in source.items()})
        layers.append(layer)
        modules.append(new)
    if partial:
        raise TicketsError("dense export needs a structured ticket (whole neurons or filters pruned), but this one "
                           f"prunes single weights ({'; '.join(partial)}); use --format sparse or torch-prune")
    return layers, nn.Sequential(*modules).eval(), widths


def _input_shapes(steps, input_shape) -> list[tuple[int, ...]]:
    """The shape (without the batch) of each step's input."""
    shapes, x = [], torch.zeros(1, *input_shape)
    with torch.no_grad():
        for _, module in steps:
            shapes.append(tuple(x.shape[1:]))
            x = module(x)
    return shapes


def _surviving_units(steps, i: int, j: int, keep_in: torch.Tensor, mask: dict, name: str) -> torch.Tensor:
    """Indices of the units of weighted layer ``i`` that layer ``j`` (the next weighted one) can see."""
    module = steps[i][1]
    units = module.weight.shape[0]
    dead = ~keep_in.flatten(1).any(1)  # the pre-activation is the bias alone
    constant = module.bias.detach().clone() if module.bias is not None else torch.zeros(units)
    for _, between in steps[i + 1:j]:
        if isinstance(between, nn.BatchNorm2d):
            scale = between.weight.detach() / torch.sqrt(between.running_var + between.eps)
            constant = (constant - between.running_mean) * scale + between.bias.detach()
        elif isinstance(between, nn.ReLU):
            constant = constant.clamp(min=0)
    reader_name, reader = steps[j]
    weight = reader.weight.detach()
    keep = mask.get(f"{reader_name}.weight")
    weight = weight if keep is None else weight * keep
    # [out, units, rest]: rest is a conv's kernel, or after a flatten the unit's block of positions
    reads = weight.reshape(weight.shape[0], units, -1).ne(0).any(2).any(0)
    survivors = (~(~reads | (dead & constant.eq(0)))).nonzero().flatten()
    if survivors.numel() == 0:
        raise TicketsError(f"every unit of {name} is pruned, so the ticket's output does not depend on its input; "
                           "there is no network to export")
    return survivors


def load(saved: dict) -> nn.Sequential:
    """The Sequential a ``tickets-dense`` file describes, in eval mode."""
    net = nn.Sequential(*[BUILD[layer["type"]](layer) for layer in saved["layers"]])
    net.load_state_dict(saved["state_dict"])
    return net.eval()


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
