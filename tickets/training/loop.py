"""Train one network: one ``Trainer.fit`` over a :class:`~tickets.training.plan.TrainingPlan`."""
from __future__ import annotations

import warnings
from typing import Callable

from torch import nn

from tickets.data import Splits
from tickets.ticket import Ticket
from tickets.training.batches import BatchStream
from tickets.training.lightning import FIT_WARNINGS
from tickets.training.metrics import TrainOutcome, summarize_metrics
from tickets.training.module import MaskedTraining, checkpoint_key, cpu_state
from tickets.training.plan import TrainingPlan
from tickets.training.trainer import make_trainer


def train(model: nn.Module, ticket: Ticket, plan: TrainingPlan) -> TrainOutcome:
    """Train ``model`` from ``ticket`` to ``plan.end_iteration``; see :class:`MaskedTraining`.

    Training stops early when the loss becomes non-finite (``TrainOutcome.diverged_at``).
    """
    checkpoint = plan.checkpoint
    resume = checkpoint.load(**checkpoint_key(ticket.start_iteration, plan.end_iteration, plan.capture_at)) \
        if checkpoint is not None else None
    model.load_state_dict(resume["weights"] if resume else ticket.state)
    trainer = make_trainer(plan.accelerator, plan.devices, plan.precision, list(plan.loggers))
    splits = plan.splits.to(trainer.strategy.root_device)
    module = MaskedTraining(model, ticket, plan, splits, resume)
    stream = BatchStream(splits.train_x, splits.train_y, plan.batch_size, plan.data_seed, module.iteration,
                         plan.end_iteration, plan.augment)
    with warnings.catch_warnings():
        for message in FIT_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        trainer.fit(module, train_dataloaders=stream)
    if trainer.interrupted:
        raise KeyboardInterrupt
    return TrainOutcome(module.metrics, cpu_state(model), module.captured, module.training_seconds(),
                        module.iteration - ticket.start_iteration, summarize_metrics(module.metrics),
                        diverged_at=module.diverged_at, resumed_from=resume["iteration"] if resume else None)


def train_network(model: nn.Module, ticket: Ticket, make_optimizer: Callable, splits: Splits,
                  **settings) -> TrainOutcome:
    """:func:`train` with the plan's fields as keywords (``end_iteration``, ``eval_every``, ``batch_size``, ...)."""
    return train(model, ticket, TrainingPlan(make_optimizer, splits, **settings))
