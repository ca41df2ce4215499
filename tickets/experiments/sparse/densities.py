"""How many weights each layer keeps at a target, and the random mask a sparse network starts from.

- ``uniform``: every prunable layer (the output layer included, like every other prunable
  weight) at the target density.
- ``erk`` (Erdos-Renyi-Kernel, Evci et al. 2020): layer l's density is ``eps * sum(dims) /
  prod(dims)`` of its weight's shape, ``(n_out + n_in + k_h + k_w) / (n_out n_in k_h k_w)`` for a
  convolution, ``(n_out + n_in) / (n_out n_in)`` for a linear layer, with ``eps`` such that the
  active weights add up to the target; a layer that would exceed density 1 is made dense and
  ``eps`` is solved again over the others, the layer(s) of largest density first, until none
  exceeds 1 (RigL's ``get_sparsities_erdos_renyi``).
- ``like``: a run's own per-layer counts (``--like RUN`` with ``--distribution like``).

Counts are exact integers with an exact total: the target is ``floor(density * N + 0.5)`` of
the N prunable weights (or a run's own count), each layer gets the floor of its real count,
and the layers with the largest remainders get one more each (ties: the earlier layer) until
the total is met, so every layer is within one weight of its real count.
"""
from __future__ import annotations

import math

import torch

from tickets.errors import TicketsError
from tickets.masks import Mask


def target_count(size: int, density: float) -> int:
    """Active weights at ``density`` of ``size``: rounded half up."""
    return int(math.floor(size * density + 0.5))


def erk_densities(shapes: dict[str, tuple], total: int) -> dict[str, float]:
    """Real ERK densities per layer whose weights add up to ``total`` (see the module docstring)."""
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    raw = {name: sum(shape) / math.prod(shape) for name, shape in shapes.items()}
    if not 0 <= total <= sum(sizes.values()):
        raise TicketsError(f"cannot keep {total} of {sum(sizes.values())} weights")
    dense: set[str] = set()
    eps = 0.0
    while True:
        rest = [name for name in shapes if name not in dense]
        if not rest:
            break
        budget = total - sum(sizes[name] for name in dense)
        eps = budget / sum(raw[name] * sizes[name] for name in rest)
        largest = max(raw[name] for name in rest)
        if largest * eps <= 1:
            break
        dense |= {name for name in rest if raw[name] == largest}
    return {name: 1.0 if name in dense else eps * raw[name] for name in shapes}


def exact_counts(ideal: dict[str, float], sizes: dict[str, int], total: int) -> dict[str, int]:
    """Integer counts within one of ``ideal`` (real counts) per layer, adding up to ``total`` exactly."""
    counts = {name: min(sizes[name], max(0, math.floor(value))) for name, value in ideal.items()}
    order = sorted(ideal, key=lambda name: -(ideal[name] - math.floor(ideal[name])))  # stable: earlier layer first
    extra = total - sum(counts.values())
    while extra:
        step = 1 if extra > 0 else -1
        changed = False
        for name in (order if step > 0 else reversed(order)):
            if extra and 0 <= counts[name] + step <= sizes[name]:
                counts[name] += step
                extra -= step
                changed = True
        if not changed:
            raise TicketsError(f"cannot spread {total} weights over layers of {sum(sizes.values())}")
    return counts


def layer_counts(distribution: str, shapes: dict[str, tuple], total: int,
                 like: dict[str, int] | None = None) -> dict[str, int]:
    """Active weights per layer: ``total`` of them spread by ``distribution`` (``like``: those counts)."""
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    if distribution == "like":
        if like is None or set(like) != set(shapes) or sum(like.values()) != total:
            raise TicketsError("distribution like needs a run's per-layer counts for the same layers")
        return dict(like)
    if distribution == "uniform":
        n = sum(sizes.values())
        return exact_counts({name: total * size / n for name, size in sizes.items()}, sizes, total)
    if distribution == "erk":
        densities = erk_densities(shapes, total)
        return exact_counts({name: densities[name] * sizes[name] for name in shapes}, sizes, total)
    raise TicketsError(f"unknown sparse distribution {distribution!r}")


def random_mask(shapes: dict[str, tuple], counts: dict[str, int], generator: torch.Generator) -> Mask:
    """A mask with exactly ``counts[name]`` active weights at random places in each layer."""
    out = {}
    for name, shape in shapes.items():
        n = math.prod(shape)
        flat = torch.zeros(n, dtype=torch.bool)
        flat[torch.randperm(n, generator=generator)[:counts[name]]] = True
        out[name] = flat.view(shape)
    return Mask(out)
