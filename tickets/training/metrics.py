"""What training one network produced: evaluation rows, the result fields, the outcome."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from tickets.ticket import State

EVAL_CHUNK = 2048
METRIC_COLUMNS = ["iteration", "train_loss", "val_loss", "val_acc", "test_loss", "test_acc", "lr"]


@dataclass
class TrainOutcome:
    """What training one network produced."""

    metrics: list[dict]
    final_state: State
    captured: dict[int, State]  # iteration -> weights there, for each requested capture point
    seconds: float
    iterations: int
    fields: dict = field(default_factory=dict)
    resumed_from: int | None = None  # the checkpoint's iteration when training resumed from one
    diverged_at: int | None = None  # the iteration whose training loss was not finite; training stopped there

    @property
    def status(self) -> str:
        """``ok``, or ``diverged`` when the training loss became non-finite (results.csv's status column)."""
        return "ok" if self.diverged_at is None else "diverged"


@torch.no_grad()
def loss_and_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (as it is: train or eval mode) on ``x``, ``y``, in chunks."""
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for i in range(0, x.shape[0], EVAL_CHUNK):
        logits = model(x[i:i + EVAL_CHUNK]).float()
        target = y[i:i + EVAL_CHUNK]
        loss_sum += F.cross_entropy(logits, target, reduction="sum")
        correct += (logits.argmax(1) == target).sum()
    n = x.shape[0]
    return (loss_sum / n).item(), (correct.float() / n).item()



def summarize_metrics(metrics: list[dict]) -> dict:
    """Result fields from the evaluation rows: early stop = the minimum validation loss."""
    best = min(metrics, key=lambda r: (math.inf if math.isnan(r["val_loss"]) else r["val_loss"], r["iteration"]))
    last = metrics[-1]
    return {
        "acc_at_init": metrics[0]["test_acc"],
        "best_val_loss": best["val_loss"],
        "early_stop_iter": best["iteration"],
        "test_acc_at_early_stop": best["test_acc"],
        "final_test_acc": last["test_acc"],
        "final_test_loss": last["test_loss"],
    }


def batch_norms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def reset_batchnorm(model: nn.Module, batches) -> None:
    """Recompute every BatchNorm's running statistics as the average over ``batches`` (train-mode passes)."""
    norms = batch_norms(model)
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    for x in batches:
        model(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()
