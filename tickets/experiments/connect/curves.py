"""The mathematics of mode connectivity (Garipov et al., NeurIPS 2018): curves between two trained
networks w_a and w_b through one trainable bend theta, and the barrier of a path.

- ``bezier`` (quadratic Bezier): phi(t) = (1-t)^2 w_a + 2t(1-t) theta + t^2 w_b;
- ``polychain`` (a polygonal chain with one bend): phi(t) = 2(t theta + (0.5-t) w_a) for t in
  [0, 0.5], 2((t-0.5) w_b + (1-t) theta) for t in [0.5, 1].

Both are phi(t) = c_a(t) w_a + c_theta(t) theta + c_b(t) w_b (:func:`coefficients`), with
phi(0) = w_a and phi(1) = w_b exactly. The bend starts at the midpoint (w_a + w_b) / 2, where
the Bezier curve at t = 0.5 is the straight line's midpoint. Only parameters lie on the curve:
buffers (BatchNorm running statistics) are recomputed at every evaluated point
(:func:`reset_batchnorm`). Errors are fractions (0.02 = 2 points).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from tickets.errors import TicketsError
from tickets.ticket import State
from tickets.training import batch_norms, loss_and_accuracy, reset_batchnorm

CURVES = ("bezier", "polychain")
EVAL_T = 0.5  # where the curve is evaluated while it trains (metrics.csv): its midpoint


def check_curve(curve: str) -> None:
    if curve not in CURVES:
        raise TicketsError(f"unknown curve {curve!r}; use one of {', '.join(CURVES)}")


def coefficients(curve: str, t: float) -> tuple[float, float, float]:
    """(c_a, c_theta, c_b): phi(t) = c_a w_a + c_theta theta + c_b w_b."""
    if curve == "bezier":
        return (1 - t) ** 2, 2 * t * (1 - t), t ** 2
    if curve == "polychain":
        return (1 - 2 * t, 2 * t, 0.0) if t <= 0.5 else (0.0, 2 * (1 - t), 2 * t - 1)
    raise TicketsError(f"unknown curve {curve!r}; use one of {', '.join(CURVES)}")


def ts(points: int) -> list[float]:
    """``points`` evenly spaced t from 0 to 1."""
    return [i / (points - 1) for i in range(points)]


def barrier(errors: list[float]) -> float:
    """The largest error along a path minus the mean error of its two ends."""
    return max(errors) - (errors[0] + errors[-1]) / 2


def midpoint(a: State, b: State, names) -> State:
    """The bend's start: (w_a + w_b) / 2 for every curved parameter."""
    return {n: (a[n] + b[n]) / 2 for n in names}


def on_curve(curve: str, t: float, a: State, theta: State, b: State) -> State:
    """phi(t) for the parameters (the keys of ``theta``); every other entry (buffers) is w_a's."""
    c_a, c_t, c_b = coefficients(curve, t)
    out = dict(a)
    for n, bend in theta.items():
        out[n] = c_a * a[n] + c_t * bend + c_b * b[n]
    return out


def on_line(t: float, a: State, b: State, names) -> State:
    """(1 - t) w_a + t w_b for the parameters ``names``; buffers are w_a's."""
    out = dict(a)
    for n in names:
        out[n] = torch.lerp(a[n], b[n], t)  # exactly w_a at 0 and w_b at 1
    return out


class Position:
    """The t the curve is at: drawn uniformly from [0, 1] (global torch RNG) before every training
    forward pass, :data:`EVAL_T` in evaluation mode."""

    def __init__(self):
        self.t = EVAL_T

    def __call__(self, module: nn.Module, args) -> None:  # a forward pre-hook on the whole model
        self.t = float(torch.rand(())) if module.training else EVAL_T


class CurveWeight(nn.Module):
    """A parametrization ``theta -> phi(t)``: the parameter's stored value is the bend theta."""

    def __init__(self, curve: str, a: torch.Tensor, b: torch.Tensor, position: Position):
        super().__init__()
        self.curve, self.position = curve, position
        self.register_buffer("a", a.detach().clone(), persistent=False)  # not in state dicts or checkpoints
        self.register_buffer("b", b.detach().clone(), persistent=False)

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        c_a, c_t, c_b = coefficients(self.curve, self.position.t)
        return c_a * self.a + c_t * theta + c_b * self.b


def curved_name(name: str) -> str:
    """Where a parameter's bend is, once attached: ``fc1.weight`` -> ``fc1.parametrizations.weight.original``."""
    module, _, attr = name.rpartition(".")
    return f"{module}.parametrizations.{attr}.original" if module else f"parametrizations.{attr}.original"


def attach_curve(model: nn.Module, curve: str, a: State, b: State) -> dict[str, CurveWeight]:
    """Turn ``model`` into the curve from ``a`` to ``b``: every parameter becomes phi(t) of its bend,
    which starts at the midpoint; buffers start as ``a``'s. Returns parameter name -> parametrization."""
    check_curve(curve)
    model.load_state_dict(a)
    names = [n for n, _ in model.named_parameters()]
    start = midpoint(a, b, names)
    position = Position()
    model.register_forward_pre_hook(position)
    wrapped = {}
    for name in names:
        module_name, _, attr = name.rpartition(".")
        module = model.get_submodule(module_name)
        with torch.no_grad():
            getattr(module, attr).copy_(start[name])
        wrapped[name] = CurveWeight(curve, a[name], b[name], position)
        parametrize.register_parametrization(module, attr, wrapped[name])
    return wrapped


def bend(model: nn.Module, wrapped: dict[str, CurveWeight]) -> State:
    """The trained bend theta (parameter name -> tensor, on the CPU)."""
    state = model.state_dict()
    return {name: state[curved_name(name)].detach().cpu().clone() for name in wrapped}


@torch.no_grad()
def evaluate(model: nn.Module, state: State, splits, batch_size: int) -> tuple[float, float, float]:
    """(train loss, train error, test error) of ``state``, BatchNorm statistics recomputed on the training set."""
    model.load_state_dict({k: v.to(splits.train_x.device) for k, v in state.items()})
    if batch_norms(model):
        reset_batchnorm(model, splits.train_x.split(batch_size))
    model.eval()
    train_loss, train_acc = loss_and_accuracy(model, splits.train_x, splits.train_y)
    _, test_acc = loss_and_accuracy(model, splits.test_x, splits.test_y)
    return train_loss, 1.0 - train_acc, 1.0 - test_acc
