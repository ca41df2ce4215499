"""A network's learning-rate multiplier: the configured schedule times a linear warmup.

The learning rate of the optimizer step at iteration t is ``train.lr * schedule(t) *
min(1, t / W)``, with W the warmup length in iterations (no warmup when W is 0). Both factors
are functions of the iteration alone, so a network rewound to iteration k continues the
schedule at k (with fresh optimizer state), and a resumed network continues it exactly.
"""
from __future__ import annotations

from typing import Callable

from tickets.config import RunConfig, to_iterations
from tickets.errors import TicketsError

LrFactor = Callable[[int], float]


class Warmup:
    """``schedule(t) * min(1, t / iterations)``: a linear warmup over any schedule."""

    def __init__(self, schedule: LrFactor, iterations: int):
        self.schedule, self.iterations = schedule, iterations

    def __call__(self, iteration: int) -> float:
        return self.schedule(iteration) * min(1.0, iteration / self.iterations)


def lr_factor(config: RunConfig, make_schedule, total: int, per_epoch: int) -> LrFactor:
    """The multiplier of ``train.lr`` at each iteration, from ``train.schedule``, its options and ``train.warmup``.

    Bad options, a milestone or a warmup beyond the end of training raise a one-line TicketsError.
    """
    t = config.train
    try:
        schedule = make_schedule(total, per_epoch, **t.schedule_options)
    except (TypeError, ValueError) as error:
        raise TicketsError(f"schedule {t.schedule!r} rejected train.schedule_options {t.schedule_options!r} "
                           f"({error}); fix train.schedule_options or train longer") from None
    warmup = to_iterations(t.warmup, per_epoch, "train.warmup")
    if warmup > total:
        raise TicketsError(f"warmup {t.warmup!r} ({warmup} iterations) is beyond the end of training "
                           f"({total} iterations, {per_epoch} per epoch); use a shorter --warmup or train longer")
    return Warmup(schedule, warmup) if warmup else schedule


class Shifted:
    """``factor(min(t + offset, last))``: the schedule seen from another place on it (see ``Ticket.lr_offset``)."""

    def __init__(self, factor: LrFactor, offset: int, last: int):
        self.factor, self.offset, self.last = factor, offset, last

    def __call__(self, iteration: int) -> float:
        return self.factor(min(iteration + self.offset, self.last))


def shifted(factor: LrFactor, offset: int, last: int) -> LrFactor:
    """The multiplier at iteration t is ``factor``'s at ``t + offset``, its value at ``last`` beyond it."""
    return Shifted(factor, offset, last)
