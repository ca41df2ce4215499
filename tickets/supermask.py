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
every registered model and initializer works unchanged. The scores train with the config's
learning-rate schedule and warmup and on its augmented batches, as `tickets prune` trains a
network; a supermask is not checkpointed mid-network (an interrupted one trains again).

Evaluation uses a deterministic mask: edge_popup's top-k (the same mask as in training), and
for bernoulli the most likely mask, sigmoid(score) > 0.5 (score > 0). The frozen weights never
change, but a model's normalization statistics (BatchNorm running means and variances) do, so
every reported number is saved with everything needed to reproduce it with torch alone.

Outputs follow the layout of ``tickets prune``: ``seed_<s>/init.pt`` (the frozen weights,
a plain state dict), and in ``seed_<s>/round_0/supermask_<method>/``:

- ``mask.pt``: the mask at the early-stop iteration (minimum validation loss), name -> bool
  tensor: the row's ``weights_remaining`` is its density, ``params_remaining`` its kept count,
  and ``test_acc_at_early_stop`` its accuracy;
- ``early_stop.pt``: the network as evaluated there, a plain state dict for the model factory's
  module (the frozen weights multiplied by ``mask.pt``, and the running statistics of that
  iteration), so ``model.load_state_dict(torch.load("early_stop.pt"))`` gives
  ``test_acc_at_early_stop``;
- ``final_mask.pt`` and ``final.pt``: the same at the last iteration (``final_test_acc``);
- ``scores.pt`` (name -> float tensor, the last iteration's scores), ``metrics.csv``, ``done.json``.

The row in results.csv has variant ``supermask_<method>``. A finished network is never trained again.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from tickets import config as config_mod
from tickets.augment import configured_transforms
from tickets.config import RunConfig
from tickets.errors import TicketsError
from tickets.loggers import close_loggers, network_loggers
from tickets.components import build_model, load_splits, optimizer_factory, stable_seed
from tickets.lottery import check_environment, check_inputs, diverged_warning, open_run
from tickets.masks import Mask, prunable_names
from tickets.progress import Progress
from tickets.registry import Registry
from tickets.schedules import lr_factor
from tickets.store import RunStore, atomic_torch_save, write_csv_rows
from tickets.ticket import Ticket, clone_state, initialize_
from tickets.training import METRIC_COLUMNS, iterations_per_epoch, summarize_metrics, train_network

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
                  "optimizer": ("optimizers", config.train.optimizer),
                  "schedule": ("schedules", config.train.schedule)}
        wanted.update({f"augmentation:{a}": ("augmentations", a) for a in config.data.augment})
        entries = {role: registry.entry(kind, name) for role, (kind, name) in wanted.items()}
        self.provenance = {role: {"name": e.name, "plugin": e.provider.plugin, "distribution": e.provider.distribution,
                                  "version": e.provider.version} for role, e in entries.items()}
        self.make_model, self.init = entries["model"].obj, entries["initializer"].obj
        self.score_init = entries["score_initializer"].obj
        self.splits = load_splits(config, entries["dataset"].obj)
        per_epoch = iterations_per_epoch(self.splits.train_x.shape[0], config.train.batch_size)
        self.total = config.train.iterations or max(1, round(config.train.epochs * per_epoch))
        self.lr_factor = lr_factor(config, entries["schedule"].obj, self.total, per_epoch)
        self.augment = configured_transforms(
            config, {a: entries[f"augmentation:{a}"].obj for a in config.data.augment}, self.splits.input_shape)
        if config.train.checkpoint_every is not None:
            raise TicketsError("tickets supermask does not checkpoint mid-network (an interrupted supermask is "
                               "trained again from its start); drop train.checkpoint_every")
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
        snapshot = EarlyStopSnapshot(model, wrapped)

        def on_eval(metrics_row: dict) -> None:
            snapshot.observe(metrics_row)
            self.progress.update(label, metrics_row)

        t = config.train
        loggers = network_loggers(t.loggers, store.dir, store.name, seed, 0, self.variant,
                                  config_mod.flatten(config.to_dict())) if t.loggers else []
        try:
            outcome = train_network(
                model, Ticket(Mask({}), clone_state(model)), self.make_optimizer, self.splits,
                end_iteration=self.total, eval_every=t.eval_every, batch_size=t.batch_size, data_seed=seed,
                accelerator=t.accelerator, devices=t.devices, precision=t.precision, on_eval=on_eval, loggers=loggers,
                lr_factor=self.lr_factor, augment=self.augment,
            )
        finally:
            close_loggers(loggers)
        if snapshot.iteration != outcome.fields["early_stop_iter"]:
            raise RuntimeError(f"early-stop snapshot at iteration {snapshot.iteration}, "
                               f"but the result reports {outcome.fields['early_stop_iter']}")
        model.cpu()
        mask = snapshot.mask
        row = {"run": store.name, "seed": seed, "round": 0, "variant": self.variant, "criterion": s.method,
               "weights_remaining": round(mask.density(), 6), "params_remaining": mask.count(),
               **{k: round(v, 6) if isinstance(v, float) else v for k, v in outcome.fields.items()},
               "iterations": outcome.iterations, "train_seconds": round(outcome.seconds, 3), "status": outcome.status}
        mask.save(net_dir / "mask.pt")
        atomic_torch_save(snapshot.state, net_dir / "early_stop.pt")
        learned_mask(wrapped).save(net_dir / "final_mask.pt")
        atomic_torch_save(plain_state(model, wrapped), net_dir / "final.pt")
        atomic_torch_save({name: w.scores.detach().cpu().clone() for name, w in wrapped.items()}, net_dir / "scores.pt")
        write_csv_rows(net_dir / "metrics.csv", METRIC_COLUMNS, outcome.metrics)
        store.finish_network(seed, 0, self.variant, row, inputs=[init_path])
        self.progress.finish(label, row)
        if outcome.diverged_at is not None:
            self.progress.warn(diverged_warning(label, outcome.diverged_at, ends_chain=False))
