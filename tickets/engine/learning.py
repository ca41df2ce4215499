"""Networks that trained without error but did not learn (e.g. Adam at ``--lr 1e6``: finite losses of 1e21).

Such a network keeps status ``ok`` (or ``diverged``); the driver warns with one line and
records it in run.json (``did_not_learn``), and the report lists it.
"""
from __future__ import annotations

import math

CHANCE_FACTOR = 1.5  # "within chance": final test accuracy below 1.5x chance (15% for 10 classes)
LOSS_GROWTH = 10.0  # or the final test loss above 10x the loss before training


def learning_problem(row: dict, initial_test_loss: float | None, num_classes: int) -> str | None:
    """Why a finished network did not learn (a phrase), or None when it did."""
    chance = 1.0 / num_classes
    accuracy = float(row["final_test_acc"])
    if accuracy < CHANCE_FACTOR * chance:
        return f"its final test accuracy {100 * accuracy:.1f}% is within chance level ({100 * chance:.0f}%)"
    loss = float(row["final_test_loss"])
    if initial_test_loss is not None and math.isfinite(loss) and loss > LOSS_GROWTH * initial_test_loss:
        return f"its test loss grew from {initial_test_loss:.3g} to {loss:.3g}"
    return None


def warning(label: str, problem: str) -> str:
    """The warning line for a network that did not learn."""
    return f"{label} did not learn: {problem}; try a lower --lr or check the data"
