"""Supermasks: masks learned over frozen random weights.

Two methods, both with a straight-through gradient to one real-valued score per weight:

- ``bernoulli`` (Zhou et al. 2019): in training every forward pass samples the mask from
  Bernoulli(sigmoid(score)); the gradient of the sample is passed to sigmoid(score). Scores
  start at logit(density) plus a small draw from ``supermask.score_init``, so every weight is
  kept with probability about ``density`` at first; the learned density is whatever training
  finds.
- ``edge_popup`` (Ramanujan et al. 2020): the forward pass keeps, in every layer, the
  ``round(density * n)`` weights with the largest |score| (at least one); the gradient of the
  mask is passed to the scores unchanged. Scores start from ``supermask.score_init``.

Only the scores train: the weights (drawn by ``model.init``, e.g. ``signed_constant`` for
the signed Kaiming constant), biases and normalization parameters are frozen. Each prunable
weight is wrapped with ``torch.nn.utils.parametrize`` (effective weight = weight * mask), so
every registered model and initializer works unchanged.

Evaluation uses a deterministic mask, and that mask is the one saved: edge_popup's top-k
(the same mask as in training), and for bernoulli the most likely mask, sigmoid(score) > 0.5
(score > 0). So the reported test accuracies are those of ``init.pt`` masked by ``mask.pt``.

Outputs follow the layout of ``tickets prune``: ``seed_<s>/init.pt`` (the frozen weights,
a plain state dict), and in ``seed_<s>/round_0/supermask_<method>/``: ``mask.pt`` (name ->
bool tensor), ``scores.pt`` (name -> float tensor), ``metrics.csv`` and ``done.json``; a row
in results.csv with variant ``supermask_<method>``, ``weights_remaining`` the learned mask's
density and ``params_remaining`` its kept count. A finished network is never trained again.
"""
from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from tickets import config as config_mod
from tickets.config import RunConfig
from tickets.errors import TicketsError
from tickets.loggers import close_loggers, network_loggers
from tickets.lottery import (build_model, check_environment, check_inputs, diverged_warning, load_splits, open_run,
                             optimizer_factory, stable_seed)
from tickets.masks import Mask, prunable_names
from tickets.progress import Progress
from tickets.registry import Registry
from tickets.store import RunStore, atomic_torch_save, write_csv_rows
from tickets.ticket import Ticket, clone_state, initialize_
from tickets.training import METRIC_COLUMNS, iterations_per_epoch, train_network

METHODS = ("bernoulli", "edge_popup")


def check_settings(method: str, density: float) -> None:
    """A TicketsError for an unknown method or a density outside (0, 1]."""
    if method not in METHODS:
        raise TicketsError(f"unknown supermask method {method!r}; use one of {', '.join(METHODS)}")
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


class SupermaskRun:
    """Learns a supermask for every seed of a config (``tickets supermask``); resumable."""

    def __init__(self, config: RunConfig, out_root: str | Path, registry: Registry, *,
                 progress: Progress | None = None, quiet: bool = False):
        self.config = config
        s = config.supermask
        check_settings(s.method, s.density)
        self.variant = f"supermask_{s.method}"
        wanted = {"dataset": ("datasets", config.data.dataset), "model": ("models", config.model.name),
                  "initializer": ("initializers", config.model.init),
                  "score_initializer": ("initializers", s.score_init),
                  "optimizer": ("optimizers", config.train.optimizer)}
        entries = {role: registry.entry(kind, name) for role, (kind, name) in wanted.items()}
        self.provenance = {role: {"name": e.name, "plugin": e.provider.plugin, "distribution": e.provider.distribution,
                                  "version": e.provider.version} for role, e in entries.items()}
        self.make_model, self.init = entries["model"].obj, entries["initializer"].obj
        self.score_init = entries["score_initializer"].obj
        self.splits = load_splits(config, entries["dataset"].obj)
        per_epoch = iterations_per_epoch(self.splits.train_x.shape[0], config.train.batch_size)
        self.total = config.train.iterations or max(1, round(config.train.epochs * per_epoch))
        factory = optimizer_factory(config, entries["optimizer"].obj)
        self.make_optimizer = lambda params: factory([p for p in params if p.requires_grad])
        build_model(config, self.make_model, self.splits)  # fail on bad options before writing
        check_environment(config)
        self.store: RunStore = open_run(config, Path(out_root), "supermask")
        self.progress = progress or Progress(len(config.seeds), quiet=quiet)

    def run(self) -> RunStore:
        """Train (or skip, when done) the supermask of every seed; returns the run's store."""
        store, config = self.store, self.config
        for seed in config.seeds:
            check_inputs(store, seed)
        with store.running(config_mod.dump(config), verb="supermask", components=self.provenance,
                           method=config.supermask.method, density=config.supermask.density,
                           iterations=self.total, expected_networks=self.progress.total), self.progress:
            for seed in config.seeds:
                self.run_seed(seed)
        return store

    def run_seed(self, seed: int) -> None:
        """Learn one seed's supermask over that seed's frozen initial weights."""
        store, config, s = self.store, self.config, self.config.supermask
        label = f"seed {seed} | {self.variant} ({config.model.init} weights, density {s.density})"
        net_dir = store.network_dir(seed, 0, self.variant)
        if store.is_done(seed, 0, self.variant):
            problems = store.damaged_files(seed, 0, self.variant)
            if not problems:
                self.progress.skip(label)
                return
            self.progress.warn(f"{label}: {', '.join(problems)}; training it again")
        model = build_model(config, self.make_model, self.splits)
        init_path = store.seed_dir(seed) / "init.pt"
        if init_path.exists():
            model.load_state_dict(store.load(init_path))
        else:  # the same theta_0 as `tickets prune` draws for this seed and initializer
            initialize_(model, self.init, torch.Generator().manual_seed(seed))
            atomic_torch_save(clone_state(model), init_path)
        generator = torch.Generator().manual_seed(stable_seed(seed, self.variant, "scores"))
        wrapped = attach_supermask(model, s.method, s.density, self.score_init, generator)
        torch.manual_seed(stable_seed(seed, 0, self.variant))  # bernoulli samples
        self.progress.start(label, self.total)
        t = config.train
        loggers = network_loggers(t.loggers, store.dir, store.name, seed, 0, self.variant,
                                  config_mod.flatten(config.to_dict())) if t.loggers else []
        try:
            outcome = train_network(
                model, Ticket(Mask({}), clone_state(model)), self.make_optimizer, self.splits,
                end_iteration=self.total, eval_every=t.eval_every, batch_size=t.batch_size, data_seed=seed,
                accelerator=t.accelerator, devices=t.devices, precision=t.precision,
                on_eval=partial(self.progress.update, label), loggers=loggers,
            )
        finally:
            close_loggers(loggers)
        model.cpu()
        mask = learned_mask(wrapped)
        row = {"run": store.name, "seed": seed, "round": 0, "variant": self.variant, "criterion": s.method,
               "weights_remaining": round(mask.density(), 6), "params_remaining": mask.count(),
               **{k: round(v, 6) if isinstance(v, float) else v for k, v in outcome.fields.items()},
               "iterations": outcome.iterations, "train_seconds": round(outcome.seconds, 3), "status": outcome.status}
        mask.save(net_dir / "mask.pt")
        atomic_torch_save({name: w.scores.detach().cpu().clone() for name, w in wrapped.items()}, net_dir / "scores.pt")
        write_csv_rows(net_dir / "metrics.csv", METRIC_COLUMNS, outcome.metrics)
        store.finish_network(seed, 0, self.variant, row, inputs=[init_path])
        self.progress.finish(label, row)
        if outcome.diverged_at is not None:
            self.progress.warn(diverged_warning(label, outcome.diverged_at, ends_chain=False))
