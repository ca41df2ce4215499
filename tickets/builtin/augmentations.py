"""Built-in augmentations: whole-batch transforms on the training device.

Each ``apply(x, generator, **options)`` draws one random choice per image from ``generator``
with a few tensor operations for the whole batch (no per-sample Python).
"""
import torch
import torch.nn.functional as F

from tickets.meta import hookimpl


def flip(x, generator):
    """flip: mirror each image left-right with probability 1/2."""
    flipped = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flipped.view(-1, 1, 1, 1), x.flip(-1), x)


def crop(x, generator, padding=4):
    """crop: pad each image with `padding` (4) zeros on every side, then cut a random window of the original size."""
    if not isinstance(padding, int) or isinstance(padding, bool) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
    if padding == 0:
        return x
    n, c, h, w = x.shape
    width = w + 2 * padding
    padded = F.pad(x, (padding, padding, padding, padding)).flatten(2)  # n x c x (padded pixels)
    top, left = torch.randint(0, 2 * padding + 1, (2, n, 1, 1), generator=generator, device=x.device)
    rows = top + torch.arange(h, device=x.device).view(1, h, 1)
    cols = left + torch.arange(w, device=x.device).view(1, 1, w)
    index = (rows * width + cols).view(n, 1, h * w).expand(n, c, h * w)  # each output pixel's source
    return padded.gather(2, index).view(n, c, h, w)


@hookimpl
def register_augmentations(register):
    """flip (horizontal) and crop (zero-pad, random crop back): the CIFAR augmentations."""
    for apply in (flip, crop):
        register(apply.__name__, apply, description=apply.__doc__.split(": ", 1)[1])
