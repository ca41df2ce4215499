"""The architectures whose structure the exporters know, as a chain of layers in forward order.

``dense`` rebuilds a network as a plain ``nn.Sequential`` of standard layers, so it must know
that the model's ``forward`` is exactly such a chain. It knows tickets' LeNet-300-100
(flatten, Linear stack), Conv-2/4/6 (Conv2d + ReLU + MaxPool, flatten, Linear stack) and
VGG (Conv2d + BatchNorm + ReLU + MaxPool, global average pool, Linear). Residual networks are
not chains (a block's output adds its input, which ties the channels of every block of a stage
together), so they and any model it does not know get a one-line error.
"""
from __future__ import annotations

from torch import nn

from tickets.errors import TicketsError

# The layer types a chain may hold; anything else in a known model is an error, never skipped.
LAYERS = (nn.Linear, nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Flatten)


def chain(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` in forward order, such that ``nn.Sequential`` of the modules is ``model``.

    Flatten steps (done inside ``forward`` with ``x.flatten(1)``) are ``("", nn.Flatten())``.
    """
    from tickets.builtin.models import CifarResNet, CifarVGG, ConvNet, LeNet300100

    kind = type(model)
    if kind is LeNet300100:
        steps = [("", nn.Flatten()), ("fc1", model.fc1), ("relu", model.relu), ("fc2", model.fc2),
                 ("relu", model.relu), ("output", model.output)]
    elif kind is ConvNet:
        steps = [*_children("features", model.features), ("", nn.Flatten()), ("fc1", model.fc1),
                 ("relu", model.relu), ("fc2", model.fc2), ("relu", model.relu), ("output", model.output)]
    elif kind is CifarVGG:
        steps = [*_children("features", model.features), ("pool", model.pool), ("", nn.Flatten()),
                 ("output", model.output)]
    elif isinstance(model, CifarResNet):
        raise TicketsError("dense export does not support ResNets (residual additions tie the channels of a "
                           "stage's blocks together); use --format sparse, torch-prune or onnx")
    else:
        raise TicketsError(f"dense export does not know the structure of {kind.__name__} (it knows LeNet-300-100, "
                           "Conv-2/4/6 and VGG); use --format sparse, torch-prune or onnx")
    for name, module in steps:
        if not isinstance(module, LAYERS):
            raise TicketsError(f"dense export does not know the layer {name} ({type(module).__name__}) of "
                               f"{kind.__name__}; use --format sparse, torch-prune or onnx")
    return steps


def _children(prefix: str, sequential: nn.Sequential) -> list[tuple[str, nn.Module]]:
    return [(f"{prefix}.{name}", module) for name, module in sequential.named_children()]
