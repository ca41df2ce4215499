"""How one network trains, besides the model and its ticket: one object instead of a dozen arguments."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from tickets.checkpoint import Checkpoint
from tickets.data import Splits


@dataclass
class TrainingPlan:
    """The settings of one network's training (see :func:`tickets.training.train`).

    The step at iteration t uses ``lr * lr_factor(t)`` on the batch of iteration t of the
    stream seeded by ``data_seed``, transformed by ``augment``; training ends at
    ``end_iteration``. ``capture_at`` asks for copies of the weights at those iterations
    (rewind points); ``on_eval(row)`` and ``loggers`` (Lightning loggers) receive every
    evaluation; ``checkpoint`` saves the training state as it goes, and training resumes from a
    saved state of the same span (start, end, capture points) when there is one.

    ``mask_updates`` (sparse training) changes the mask as training goes: an object with
    ``due(iteration) -> bool`` (whether the mask changes once the step that reaches ``iteration``
    is taken), ``update(iteration, weights, grads, masks) -> masks`` (dicts name -> CPU tensor:
    the weights after that step, the dense gradient of its loss taken before masking, the current
    bool masks; it returns the new bool masks) and ``state_dict()`` / ``load_state_dict(state)``,
    saved in checkpoints with the current masks. None: the mask never changes.
    """

    make_optimizer: Callable
    splits: Splits
    end_iteration: int
    eval_every: int
    batch_size: int
    data_seed: int
    accelerator: str = "cpu"
    devices: Any = 1
    precision: str = "32-true"
    capture_at: tuple = ()
    lr_factor: Callable[[int], float] | None = None
    augment: list = field(default_factory=list)
    on_eval: Callable[[dict], None] | None = None
    loggers: list = field(default_factory=list)
    checkpoint: Checkpoint | None = None
    mask_updates: Any = None
