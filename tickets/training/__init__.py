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
from tickets.training.metrics import (
    METRIC_COLUMNS,
    TrainOutcome,
    batch_norms,
    loss_and_accuracy,
    reset_batchnorm,
    summarize_metrics,
)
from tickets.training.plan import TrainingPlan

__all__ = ["BatchStream", "iterations_per_epoch", "train", "train_network", "METRIC_COLUMNS", "TrainOutcome",
           "loss_and_accuracy", "summarize_metrics", "batch_norms", "reset_batchnorm",
           "MaskedTraining", "TrainingPlan", "check_trainer_settings",
           "make_trainer"]

# These import Lightning (2-3 s), which a driver that only schedules networks never needs.
_LIGHTNING_BACKED = {"train": "loop", "train_network": "loop", "MaskedTraining": "module",
                     "check_trainer_settings": "trainer", "make_trainer": "trainer"}


def __getattr__(name: str):
    if name in _LIGHTNING_BACKED:
        import importlib

        return getattr(importlib.import_module(f"tickets.training.{_LIGHTNING_BACKED[name]}"), name)
    raise AttributeError(f"module 'tickets.training' has no attribute {name!r}")
