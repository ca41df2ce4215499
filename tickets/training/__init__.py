"""Training one masked network on PyTorch Lightning.

- :mod:`~tickets.training.batches`: :class:`BatchStream` yields minibatches by slicing tensors
  that already sit on the training device; a seed fixes the order of every epoch.
- :mod:`~tickets.training.plan`: :class:`TrainingPlan`, how one network trains.
- :mod:`~tickets.training.module`: :class:`MaskedTraining`, the LightningModule (masking,
  evaluation, divergence, checkpoints).
- :mod:`~tickets.training.loop`: :func:`train` runs one ``Trainer.fit`` and returns the
  metrics, the final weights and the result fields (early-stop iteration, test accuracy there,
  final accuracy).
- :mod:`~tickets.training.trainer`: the Trainer factory and the device checks.
- :mod:`~tickets.training.distributed`: one network over several devices (DDP).

The step at iteration t uses the learning rate ``lr * lr_factor(t)`` (see
:mod:`tickets.schedules`) on the batch of iteration t, augmented (see :mod:`tickets.augment`).
"""
from tickets.training.batches import BatchStream, iterations_per_epoch
from tickets.training.loop import train, train_network
from tickets.training.metrics import METRIC_COLUMNS, TrainOutcome, loss_and_accuracy, summarize_metrics
from tickets.training.module import MaskedTraining
from tickets.training.plan import TrainingPlan
from tickets.training.trainer import check_trainer_settings, make_trainer

__all__ = ["BatchStream", "iterations_per_epoch", "train", "train_network", "METRIC_COLUMNS", "TrainOutcome",
           "loss_and_accuracy", "summarize_metrics", "MaskedTraining", "TrainingPlan", "check_trainer_settings",
           "make_trainer"]
