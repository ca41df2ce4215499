"""Supermask weights: a straight-through mask over frozen weights, one learnable score per weight.

- ``bernoulli`` (Zhou et al. 2019): in training every forward pass samples the mask from
  Bernoulli(sigmoid(score)); the gradient of the sample is passed to sigmoid(score). Scores
  start at logit(density) plus a small draw from ``supermask.score_init``, so every weight is
  kept with probability about ``density`` at first; the learned density is whatever training
  finds.
- ``edge_popup`` (Ramanujan et al. 2020): the forward pass keeps, in every layer, the
  ``round(density * n)`` weights with the largest |score| (at least one); the gradient of the
  mask is passed to the scores unchanged. Scores start from ``supermask.score_init``.

Each prunable weight is wrapped with ``torch.nn.utils.parametrize`` (effective weight = weight
* mask), so every registered model and initializer works unchanged. Evaluation uses a
deterministic mask: edge_popup's top-k (the same mask as in training), and for bernoulli the
most likely mask, sigmoid(score) > 0.5 (score > 0); Zhou et al. sample masks at test time.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from tickets.errors import TicketsError
from tickets.masks import Mask, prunable_names
from tickets.training import summarize_metrics

# `tickets supermask`'s own defaults per method (dotted config keys), beneath any config file and
# flags; everything else keeps the generic defaults (Adam, 5 epochs, batch 60, density 0.5).
# Bernoulli scores pass through a sigmoid and need large steps: at Adam's generic 1.2e-3 the
# mask hardly moves from its random start (31% test accuracy on the digits), at 0.3 it reaches
# 92%. edge_popup draws the frozen weights as the signed Kaiming constant, Ramanujan et al.'s best.
METHOD_DEFAULTS = {
    "bernoulli": {"train.lr": 0.3},
    "edge_popup": {"model.init": "signed_constant"},
}
METHODS = tuple(METHOD_DEFAULTS)


def check_method(method: str) -> None:
    """A TicketsError for an unknown method."""
    if method not in METHODS:
        raise TicketsError(f"unknown supermask method {method!r}; use one of {', '.join(METHODS)}")


def method_defaults(method: str) -> dict:
    """The dotted config keys that ``method`` sets by default (:data:`METHOD_DEFAULTS`)."""
    check_method(method)
    return dict(METHOD_DEFAULTS[method])


def check_settings(method: str, density: float) -> None:
    """A TicketsError for an unknown method or a density outside (0, 1]."""
    check_method(method)
    if not (isinstance(density, (int, float)) and 0 < density <= 1):
        raise TicketsError(f"supermask density must be in (0, 1], got {density!r}")


def keep_count(numel: int, density: float) -> int:
    """Weights edge_popup keeps in a tensor of ``numel``: density * numel rounded half up, at least 1."""
    return min(numel, max(1, int(math.floor(numel * density + 0.5))))


class _TopK(torch.autograd.Function):
    """Mask of the ``k`` largest entries of ``magnitudes``; straight-through gradient (Ramanujan et al.)."""

    @staticmethod
    def forward(ctx, magnitudes, k):
        mask = torch.zeros(magnitudes.numel(), dtype=magnitudes.dtype, device=magnitudes.device)
        mask[magnitudes.detach().flatten().topk(k, sorted=False).indices] = 1
        return mask.view_as(magnitudes)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class SupermaskWeight(nn.Module):
    """A parametrization ``weight -> weight * mask(scores)`` with learnable ``scores``."""

    def __init__(self, scores: torch.Tensor, method: str, density: float):
        super().__init__()
        check_settings(method, density)
        self.method = method
        self.k = keep_count(scores.numel(), density)
        self.scores = nn.Parameter(scores.detach().clone())

    def mask(self) -> torch.Tensor:
        """The mask of this forward pass (float, with the straight-through gradient)."""
        if self.method == "edge_popup":
            return _TopK.apply(self.scores.abs(), self.k)  # the gradient reaches the scores through abs
        if self.training:
            p = torch.sigmoid(self.scores)
            return p + (torch.bernoulli(p.detach()) - p).detach()
        return (self.scores > 0).to(self.scores.dtype)

    @torch.no_grad()
    def hard_mask(self) -> torch.Tensor:
        """The deterministic mask used for evaluation and saved (bool)."""
        if self.method == "edge_popup":
            return _TopK.apply(self.scores.abs(), self.k).bool()
        return self.scores > 0

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask()


def attach_supermask(model: nn.Module, method: str, density: float, score_init, generator: torch.Generator) -> dict:
    """Freeze every parameter of ``model`` and wrap each prunable weight with a :class:`SupermaskWeight`.

    ``score_init(tensor, name, generator)`` (a registered initializer) draws the scores;
    bernoulli adds logit(density) to them. Returns name -> the parametrization.
    """
    check_settings(method, density)
    names = prunable_names(model)
    for p in model.parameters():
        p.requires_grad_(False)
    wrapped = {}
    for name in names:
        module_name, attr = name.rsplit(".", 1)
        module = model.get_submodule(module_name)
        weight = getattr(module, attr)
        scores = torch.empty_like(weight)
        score_init(scores, name, generator)
        if method == "bernoulli":
            scores += math.log(density / (1 - density)) if density < 1 else 10.0  # sigmoid(10) ~ 1
        wrapped[name] = SupermaskWeight(scores, method, density)
        parametrize.register_parametrization(module, attr, wrapped[name])
    return wrapped


def learned_mask(wrapped: dict) -> Mask:
    """The deterministic masks of attached supermasks, as a :class:`Mask`."""
    return Mask({name: w.hard_mask() for name, w in wrapped.items()})


def plain_state(model: nn.Module, wrapped: dict) -> dict:
    """The state dict of ``model`` as it is evaluated, with the keys of the unwrapped model.

    Every wrapped weight is the frozen weight times its deterministic mask; buffers such as
    BatchNorm running statistics are as they are now. Tensors are copied to the CPU.
    """
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if ".parametrizations." not in k}
    for name, w in wrapped.items():
        module_name, attr = name.rsplit(".", 1)
        frozen = model.get_submodule(module_name).parametrizations[attr].original
        state[name] = (frozen * w.hard_mask()).detach().cpu().clone()
    return state


class EarlyStopSnapshot:
    """Keeps the mask and :func:`plain_state` of the evaluation that is the early stop so far.

    ``observe`` is called with every evaluation row; the early stop is chosen by the same rule
    as the result fields (:func:`tickets.training.summarize_metrics`) over the rows seen so far,
    so after training the snapshot is that of the reported ``early_stop_iter``.
    """

    def __init__(self, model: nn.Module, wrapped: dict):
        self.model, self.wrapped = model, wrapped
        self.rows: list[dict] = []
        self.iteration: int | None = None
        self.mask: Mask | None = None
        self.state: dict | None = None

    def observe(self, row: dict) -> None:
        self.rows.append(row)
        best = summarize_metrics(self.rows)["early_stop_iter"]
        if best == row["iteration"] and best != self.iteration:
            self.iteration, self.mask = best, learned_mask(self.wrapped)
            self.state = plain_state(self.model, self.wrapped)
