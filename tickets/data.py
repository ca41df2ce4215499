"""Dataset tensors: what a dataset plugin returns, and the train/validation/test splits training uses."""
from __future__ import annotations

from dataclasses import dataclass

import torch

# The validation split is drawn with this fixed seed, so that every run and every seed of a
# run holds out the same examples and results stay comparable.
VALIDATION_SPLIT_SEED = 1234


@dataclass
class TensorData:
    """Train and test tensors of a dataset, as registered dataset loaders return them.

    Images are ``N x C x H x W`` (uint8 in 0..255, or float), labels int64 class indices.
    ``mean`` and ``std`` (per channel, in the units of the images divided by 255 for uint8)
    are used to normalize.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])


@dataclass
class Splits:
    """Normalized float tensors for training, validation and test."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])

    def to(self, device) -> "Splits":
        """The splits on ``device``; copies are kept, so every network of a run reuses one."""
        device = torch.device(device)
        if self.train_x.device == device:
            return self
        cache = self.__dict__.setdefault("_copies", {})
        if str(device) not in cache:
            cache[str(device)] = self._copy_to(device)
        return cache[str(device)]

    def _copy_to(self, device) -> "Splits":
        moved = {name: getattr(self, name).to(device) for name in
                 ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")}
        return Splits(num_classes=self.num_classes, **moved)


def iterations_per_epoch(n_train: int, batch_size: int) -> int:
    """Full batches per pass over the training set (the last partial batch is dropped)."""
    return max(1, n_train // batch_size)



def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Float images normalized per channel (uint8 input is scaled to [0, 1] first)."""
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x - mean) / std


def make_splits(data: TensorData, val_size: int) -> Splits:
    """Hold ``val_size`` training examples out for validation (a fixed random choice)."""
    n = data.train_x.shape[0]
    if not 0 < val_size < n:
        from tickets.errors import TicketsError

        raise TicketsError(f"data.val_size={val_size} must be between 1 and {n - 1} "
                           f"(the training set has {n} examples)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(VALIDATION_SPLIT_SEED))
    val_idx, train_idx = order[:val_size], order[val_size:]
    x = normalize(data.train_x, data.mean, data.std)
    return Splits(
        train_x=x[train_idx].contiguous(),
        train_y=data.train_y[train_idx].long().contiguous(),
        val_x=x[val_idx].contiguous(),
        val_y=data.train_y[val_idx].long().contiguous(),
        test_x=normalize(data.test_x, data.mean, data.std).contiguous(),
        test_y=data.test_y.long().contiguous(),
        num_classes=data.num_classes,
    )
