"""The mathematics of instability (Frankle, Dziugaite, Roy & Carbin, ICML 2020): points on the line
between two trained copies, the error along it, and the rewind points ``--at`` names.

Test error is evaluated at ``points`` evenly spaced points ``(1 - a) * A + a * B`` of the
straight line between the two trained networks A and B, interpolating every parameter and every
buffer (BatchNorm statistics included; integer buffers rounded). ``instability`` = the largest
error on the path minus the mean error of its two ends; a network is *stable* when it is about
0 (the paper's threshold is 2 percentage points). With ``reset_bn`` the BatchNorm statistics of
every point are recomputed on one pass over the (unaugmented) training set before it is
evaluated. Errors are fractions (0.02 = 2 points).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tickets import config as config_mod
from tickets.errors import TicketsError
from tickets.ticket import State
from tickets.training import loss_and_accuracy, reset_batchnorm

COPIES = 2
STABLE_THRESHOLD = 0.02  # Frankle et al.: stable when instability is below about 2 points


def point_columns(points: int) -> list[str]:
    """``err_0.00`` ... ``err_1.00``: one column per evenly spaced point of the path."""
    return [f"err_{a:.2f}" for a in alphas(points)]


def alphas(points: int) -> list[float]:
    return [i / (points - 1) for i in range(points)]


def columns(points: int) -> list[str]:
    """stability.csv's columns."""
    return ["seed", "round", "variant", "weights_remaining", "k", "instability", "err_start", "err_end",
            *point_columns(points)]


def interpolate(a: State, b: State, alpha: float) -> State:
    """``(1 - alpha) * a + alpha * b`` for every tensor (parameters and buffers); integer tensors rounded."""
    out = {}
    for name, x in a.items():
        y = b[name]
        if x.is_floating_point():
            out[name] = torch.lerp(x, y, alpha)  # exactly a at 0 and b at 1
        else:
            out[name] = torch.round(torch.lerp(x.double(), y.double(), alpha)).to(x.dtype)
    return out


def instability(errors: list[float]) -> float:
    """The largest error on the path minus the mean error of its two ends."""
    return max(errors) - (errors[0] + errors[-1]) / 2


@torch.no_grad()
def path_errors(model: nn.Module, a: State, b: State, points: int, x: torch.Tensor, y: torch.Tensor,
                reset_batches=None) -> list[float]:
    """Test error at ``points`` evenly spaced points from ``a`` to ``b``; ``reset_batches`` resets BatchNorm first."""
    errors = []
    for alpha in alphas(points):
        model.load_state_dict(interpolate(a, b, alpha))
        if reset_batches is not None:
            reset_batchnorm(model, reset_batches)
        model.eval()
        errors.append(1.0 - loss_and_accuracy(model, x, y)[1])
    return errors


@dataclass
class Settings:
    """What to analyse: rewind points (iterations), path points, BatchNorm reset, seeds, rounds, variants."""

    ks: list[int]
    points: int
    reset_bn: bool
    seeds: list[int]
    rounds: list[int]
    controls: list[str]


def parse_at(at: str, per_epoch: int, total: int) -> list[int]:
    """``"0,100it,2ep"`` -> sorted distinct iterations, each before the end of training."""
    ks = []
    for point in [p.strip() for p in str(at).split(",") if p.strip()]:
        k = config_mod.to_iterations(point, per_epoch, "--at")
        if k >= total:
            raise TicketsError(f"--at {point} (iteration {k}) is not before the end of training (iteration {total}, "
                               f"{per_epoch} per epoch); choose earlier points")
        ks.append(k)
    if not ks:
        raise TicketsError("--at names no rewind point; give e.g. --at 0,100it,2ep")
    return sorted(set(ks))
