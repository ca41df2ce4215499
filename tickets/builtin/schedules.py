"""Built-in learning-rate schedules: the multiplier of ``train.lr`` at each training iteration.

Each ``make(total_iterations, iterations_per_epoch, **options)`` returns a picklable function
of the iteration alone, so a rewound or resumed network continues the schedule where it is.
A linear warmup (``train.warmup``) multiplies whichever schedule is chosen.
"""
import math
from bisect import bisect_right
from functools import partial

from tickets.config import to_iterations
from tickets.meta import hookimpl


def _one(iteration: int) -> float:
    return 1.0


def _steps(iteration: int, milestones: tuple, gamma: float) -> float:
    return gamma ** bisect_right(milestones, iteration)


def _cosine(iteration: int, total: int, min_factor: float) -> float:
    return min_factor + (1 - min_factor) * (1 + math.cos(math.pi * iteration / total)) / 2


def _linear(iteration: int, total: int) -> float:
    return 1 - iteration / total


def constant(total_iterations, iterations_per_epoch):
    """constant: lr at every iteration (the default)."""
    return _one


def multistep(total_iterations, iterations_per_epoch, milestones=(), gamma=0.1):
    """multistep: lr * gamma^(number of milestones <= t); milestones like 80ep or 32000it, gamma 0.1."""
    if isinstance(milestones, (str, int)) or not all(isinstance(m, (str, int)) for m in milestones):
        raise ValueError(f"milestones must be a list such as [80ep, 120ep] or [32000it], got {milestones!r}")
    points = []
    for milestone in milestones:
        at = to_iterations(milestone, iterations_per_epoch, "milestone")
        if at >= total_iterations:
            raise ValueError(f"milestone {milestone!r} (iteration {at}) is not before the end of training "
                             f"(iteration {total_iterations}, {iterations_per_epoch} per epoch)")
        points.append(at)
    if not isinstance(gamma, (int, float)) or isinstance(gamma, bool) or gamma <= 0:
        raise ValueError(f"gamma must be a positive number, got {gamma!r}")
    return partial(_steps, milestones=tuple(sorted(points)), gamma=float(gamma))


def cosine(total_iterations, iterations_per_epoch, min_factor=0.0):
    """cosine: lr * (m + (1 - m) * (1 + cos(pi * t / T)) / 2), T = iterations of training, m = min_factor (0)."""
    if not isinstance(min_factor, (int, float)) or not 0 <= min_factor <= 1:
        raise ValueError(f"min_factor must be in [0, 1], got {min_factor!r}")
    return partial(_cosine, total=total_iterations, min_factor=float(min_factor))


def linear(total_iterations, iterations_per_epoch):
    """linear: lr * (1 - t / T), a linear decay to 0 at the end of training T."""
    return partial(_linear, total=total_iterations)


SCHEDULES = (constant, multistep, cosine, linear)


@hookimpl
def register_schedules(register):
    """constant, multistep (step drops), cosine and linear decay; t is the iteration."""
    for make in SCHEDULES:
        register(make.__name__, make, description=make.__doc__.split(": ", 1)[1])
