"""Minibatches for training iterations: slices of tensors already on the training device."""
from __future__ import annotations

from typing import Callable

import torch

from tickets.augment import Augmenter
from tickets.data import iterations_per_epoch

__all__ = ["BatchStream", "iterations_per_epoch"]


class BatchStream:
    """Minibatches for training iterations ``[start, end)`` over in-memory tensors.

    Iteration ``i`` belongs to epoch ``i // iterations_per_epoch``; every epoch uses its
    own permutation drawn from ``seed``, and ``augment`` transforms (if any) draw from a
    generator seeded by (seed, i), so a network rewound to iteration k sees exactly the
    batches the dense network saw from iteration k on.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int, start: int, end: int,
                 augment: list[Callable] = ()):
        self.x, self.y, self.batch_size, self.seed = x, y, batch_size, seed
        self.start, self.end = start, end
        self.per_epoch = iterations_per_epoch(x.shape[0], batch_size)
        self.augment = Augmenter(list(augment), seed) if augment else None

    def __len__(self) -> int:
        return self.end - self.start

    def _permutation(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.x.shape[0], generator=generator).to(self.x.device)

    def __iter__(self):
        epoch, perm = None, None
        for i in range(self.start, self.end):
            e, position = divmod(i, self.per_epoch)
            if e != epoch:
                epoch, perm = e, self._permutation(e)
            idx = perm[position * self.batch_size:(position + 1) * self.batch_size]
            x = self.x[idx] if self.augment is None else self.augment(self.x[idx], i)
            yield x, self.y[idx]
