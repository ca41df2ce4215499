"""Training-batch augmentation: the configured transforms, with randomness fixed by (seed, iteration).

The generator that an augmentation draws from is re-seeded for every batch from the data
seed and the iteration, so the augmented batch of iteration i is the same for every network
of a seed (the dense network, a ticket rewound to k, every control), whatever process or
checkpoint it runs from. Evaluation batches are never augmented.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch

from tickets.config import RunConfig
from tickets.errors import TicketsError

# Keeps augmentation streams apart from the shuffling streams (seeded by small numbers).
_SALT = 0x5A17 << 48


def generator_seed(seed: int, iteration: int) -> int:
    """The seed of the augmentation generator at ``iteration`` for data seed ``seed``."""
    return (_SALT + (seed << 32) + iteration) % (1 << 63)


class Augmenter:
    """Applies ``transforms`` in order to a batch, from a generator seeded by (seed, iteration)."""

    def __init__(self, transforms: list[Callable], seed: int):
        self.transforms, self.seed = transforms, seed
        self._generators: dict[torch.device, torch.Generator] = {}

    def __call__(self, x: torch.Tensor, iteration: int) -> torch.Tensor:
        generator = self._generators.get(x.device)
        if generator is None:
            generator = self._generators[x.device] = torch.Generator(device=x.device)
        generator.manual_seed(generator_seed(self.seed, iteration))
        for transform in self.transforms:
            x = transform(x, generator)
        return x


def configured_transforms(config: RunConfig, applies: dict[str, Callable], input_shape) -> list[Callable]:
    """The ``data.augment`` transforms with their ``data.augment_options``, tried once on a tiny batch.

    A transform that rejects its options or changes the batch's shape is a one-line TicketsError.
    """
    transforms = []
    probe = torch.zeros(2, *input_shape)
    for name in config.data.augment:
        options = config.data.augment_options.get(name, {})
        transform = partial(applies[name], **options)
        try:
            out = transform(probe, torch.Generator().manual_seed(0))
        except (TypeError, ValueError) as error:
            raise TicketsError(f"augmentation {name!r} rejected its options {options!r} ({error}); "
                               "fix data.augment_options") from None
        if not isinstance(out, torch.Tensor) or out.shape != probe.shape:
            raise TicketsError(f"augmentation {name!r} changed the batch shape {tuple(probe.shape)} to "
                               f"{tuple(getattr(out, 'shape', ()))}; an augmentation must keep the shape")
        transforms.append(transform)
    return transforms
