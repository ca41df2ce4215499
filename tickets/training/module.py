"""MaskedTraining: the LightningModule that trains one network under its mask.

It masks gradients before every optimizer step and re-applies the mask after it, so pruned
weights stay exactly zero (or at their frozen values) whatever momentum or weight decay would
do. It evaluates on the validation and test tensors every ``eval_every`` iterations, keeping
losses in on-device accumulators between evaluations, and sends each evaluation to the
Trainer's loggers, if any. Training stops after the first iteration whose loss is not finite
(the network diverged). With a checkpoint, the whole training state is saved as it goes.

Sparse training (``plan.mask_updates``): after the step that reaches an update iteration, the
step's dense gradient (copied before it was masked) and the weights go to the updater, whose new
mask applies from then on; connections that become active start at zero (they were inactive, so
exactly zero) with their optimizer state zeroed. The current mask is part of the checkpoint.
"""
from __future__ import annotations

import math
import time
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from tickets.data import Splits
from tickets.ticket import State, Ticket
from tickets.training.lightning import pl
from tickets.training.metrics import loss_and_accuracy
from tickets.training.plan import TrainingPlan


class MaskedTraining(pl.LightningModule):
    """Trains ``model`` from ``ticket`` as ``plan`` says; see the module docstring.

    ``splits`` are the plan's data on the training device; ``resume`` (a saved training state,
    see :mod:`tickets.checkpoint`) continues from one.
    """

    def __init__(self, model: nn.Module, ticket: Ticket, plan: TrainingPlan, splits: Splits | None = None,
                 resume: dict | None = None):
        super().__init__()
        self.automatic_optimization = False
        self.model = model
        self.ticket = ticket
        self.make_optimizer = plan.make_optimizer
        self.splits = plan.splits if splits is None else splits
        self.end_iteration = plan.end_iteration
        self.eval_every = plan.eval_every
        self.capture_at = frozenset(plan.capture_at)
        self.on_eval = plan.on_eval
        self.lr_factor = plan.lr_factor
        self.checkpoint = plan.checkpoint
        self.mask_updates = plan.mask_updates
        self.resume = resume
        self.iteration = resume["iteration"] if resume else ticket.start_iteration
        self.metrics: list[dict] = []
        self.captured: dict[int, State] = {}
        self.prior_seconds = resume["seconds"] if resume else 0.0
        self.diverged_at: int | None = None
        self._masked: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
        self._mask_names: list[str] = []
        self._direct = False

    def configure_optimizers(self):
        return self.make_optimizer(self.model.parameters())

    def on_fit_start(self) -> None:
        self.model.train()  # whatever mode the caller left it in (Lightning keeps submodules' modes)
        params = dict(self.model.named_parameters())
        self._masked = []
        masks = {**self.ticket.mask.tensors, **(self.ticket.extra_masks or {})}  # extras: a pruned unit's bias, BN
        if self.resume is not None and "masks" in self.resume:  # sparse training: the mask when it was saved
            masks.update(self.resume["masks"])
        self._mask_names = list(masks)
        for name, keep in masks.items():
            p = params[name]
            keep = keep.to(p.device, p.dtype)
            frozen = None  # the pruned weights' fixed values, zero where kept: p * keep + frozen
            if self.ticket.pruned_values is not None and name in self.ticket.pruned_values:
                frozen = self.ticket.pruned_values[name].to(p.device, p.dtype) * (1 - keep)
            self._masked.append((p, keep, frozen))
        self._reapply_mask()
        # Lightning's optimizer wrapper and manual_backward cost ~15% per step on small nets;
        # they are only needed when the precision plugin scales the loss (16-mixed), and under DDP,
        # whose gradient averaging Lightning prepares in manual_backward.
        self._direct = getattr(self.trainer.precision_plugin, "scaler", None) is None and self.trainer.world_size == 1
        self._loss_sum = torch.zeros((), device=self.device)
        self._loss_count = 0
        self._fit_started = time.perf_counter()
        # Whether the last training loss was finite, copied to the host without waiting for the
        # device: on CUDA the copy is read one step later, so the check never stalls the queue.
        cuda = self.device.type == "cuda"
        self._finite = torch.ones((), dtype=torch.bool, pin_memory=cuda)
        self._finite_copied = torch.cuda.Event() if cuda else None
        self._loggers = list(self.trainer.loggers)

    def on_train_start(self) -> None:
        self._optimizer = self.optimizers(use_pl_optimizer=not self._direct)
        self._base_lrs = [group["lr"] for group in self.optimizers(use_pl_optimizer=False).param_groups]
        resumed = self.resume is not None
        if resumed:
            self._restore(self.resume)
            self.resume = None
        # taken after restoring: loading an optimizer's state replaces its parameter groups
        self._param_groups = self.optimizers(use_pl_optimizer=False).param_groups
        if not resumed:
            if self.iteration in self.capture_at:
                self.captured[self.iteration] = cpu_state(self.model)
            self._evaluate()
        if self.checkpoint is not None:
            self.checkpoint.restart_clock()

    def on_train_batch_start(self, batch, batch_idx):
        if self._stop_if_diverged():
            return -1  # Lightning: skip the rest of the (only) epoch

    def on_train_end(self) -> None:
        self._stop_if_diverged()

    def _stop_if_diverged(self) -> bool:
        """Whether training must stop: a step's loss was not finite (the first time, note where and evaluate there)."""
        if self.diverged_at is None:
            if self._finite_copied is not None:
                self._finite_copied.synchronize()
            if bool(self._finite):
                return False
            self.diverged_at = self.iteration
            if self.metrics[-1]["iteration"] != self.iteration:
                self._evaluate()
        return True

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.trainer.world_size > 1:  # DDP: this process's slice of the global batch
            share = x.shape[0] // self.trainer.world_size
            lo = self.trainer.global_rank * share
            x, y = x[lo:lo + share], y[lo:lo + share]
        if self.lr_factor is not None:
            factor = self.lr_factor(self.iteration)
            for group, base in zip(self._param_groups, self._base_lrs):
                group["lr"] = base * factor
        optimizer = self._optimizer
        loss = F.cross_entropy(self.model(x), y)
        self._finite.copy_(torch.isfinite(loss.detach()), non_blocking=self._finite_copied is not None)
        if self._finite_copied is not None:
            self._finite_copied.record()
        optimizer.zero_grad(set_to_none=True)
        if self._direct:
            loss.backward()
        else:
            self.manual_backward(loss)
        dense_grads = None
        if self.mask_updates is not None and self.mask_updates.due(self.iteration + 1):
            dense_grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
                           for p, _, _ in self._masked]
        for p, keep, _ in self._masked:
            if p.grad is not None:
                p.grad.mul_(keep)
        optimizer.step()
        self._reapply_mask()
        self._loss_sum += loss.detach().float()
        self._loss_count += 1
        self.iteration += 1
        if dense_grads is not None and bool(torch.isfinite(loss.detach())):  # never from a non-finite step
            self._update_masks(dense_grads)
        self._after_step()

    def _after_step(self) -> None:
        """Capture, evaluate and checkpoint at the iteration just reached, as due."""
        if self.iteration in self.capture_at:
            self.captured[self.iteration] = cpu_state(self.model)
        if self.iteration % self.eval_every == 0 or self.iteration == self.end_iteration:
            self._evaluate()
        if (self.checkpoint is not None and self.iteration < self.end_iteration and self.trainer.global_rank == 0
                and self.checkpoint.due(self.iteration) and not self._stop_if_diverged()):
            self.checkpoint.save(self._training_state())  # never the state after a non-finite loss

    def learning_rate(self) -> float:
        """The learning rate of the first parameter group at the current iteration."""
        factor = self.lr_factor(self.iteration) if self.lr_factor is not None else 1.0
        return self._base_lrs[0] * factor

    def training_seconds(self) -> float:
        """Seconds spent training this network so far, over every resumed session."""
        return self.prior_seconds + time.perf_counter() - self._fit_started

    # checkpoints -------------------------------------------------------------
    def _training_state(self) -> dict:
        """Everything needed to continue exactly from the current iteration (see tickets.checkpoint)."""
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        return {
            **checkpoint_key(self.ticket.start_iteration, self.end_iteration, self.capture_at),
            "iteration": self.iteration,
            "weights": cpu_state(self.model),
            "optimizer": self.optimizers(use_pl_optimizer=False).state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng,
            "metrics": list(self.metrics),
            "loss_sum": self._loss_sum.detach().cpu().clone(),
            "loss_count": self._loss_count,
            "captured": dict(self.captured),
            "seconds": self.training_seconds(),
            **({"masks": self._current_masks(), "mask_updates": self.mask_updates.state_dict()}
               if self.mask_updates is not None else {}),
        }

    def _restore(self, state: dict) -> None:
        """Continue from a saved training state (the weights were loaded before fitting)."""
        self.optimizers(use_pl_optimizer=False).load_state_dict(state["optimizer"])
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if scaler is not None and state["scaler"] is not None:
            scaler.load_state_dict(state["scaler"])
        self.metrics = list(state["metrics"])
        self.captured = dict(state["captured"])
        self._loss_sum.copy_(state["loss_sum"])
        self._loss_count = state["loss_count"]
        torch.set_rng_state(state["rng"]["cpu"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        if self.mask_updates is not None and "mask_updates" in state:  # the masks were restored in on_fit_start
            self.mask_updates.load_state_dict(state["mask_updates"])

    # sparse training -----------------------------------------------------------
    def _current_masks(self) -> dict[str, torch.Tensor]:
        return {name: keep.detach().bool().cpu() for name, (_, keep, _) in zip(self._mask_names, self._masked)}

    @torch.no_grad()
    def _update_masks(self, dense_grads: list[torch.Tensor]) -> None:
        """The updater's new mask after the step that reached ``self.iteration`` (see the module docstring)."""
        names = self._mask_names
        weights = {name: p.detach().cpu().clone() for name, (p, _, _) in zip(names, self._masked)}
        grads = {name: g.cpu() for name, g in zip(names, dense_grads)}
        new = self.mask_updates.update(self.iteration, weights, grads, self._current_masks())
        state = self.optimizers(use_pl_optimizer=False).state
        for i, (name, (p, keep, frozen)) in enumerate(zip(names, self._masked)):
            if name not in new:
                continue
            keep_new = new[name].to(p.device, p.dtype)
            grown = (keep_new > keep)
            for value in state.get(p, {}).values():  # fresh optimizer state for connections that become active
                if torch.is_tensor(value) and value.shape == p.shape:
                    value.masked_fill_(grown, 0)
            self._masked[i] = (p, keep_new, frozen)
        self._reapply_mask()

    # masking and evaluation --------------------------------------------------
    @torch.no_grad()
    def _reapply_mask(self) -> None:
        for p, keep, frozen in self._masked:
            p.mul_(keep)
            if frozen is not None:
                p.add_(frozen)

    @torch.no_grad()
    def _evaluate(self) -> None:
        was_training = self.model.training
        self.model.eval()
        with self.trainer.precision_plugin.forward_context():
            val_loss, val_acc = loss_and_accuracy(self.model, self.splits.val_x, self.splits.val_y)
            test_loss, test_acc = loss_and_accuracy(self.model, self.splits.test_x, self.splits.test_y)
        self.model.train(was_training)
        if self.trainer.world_size > 1:  # the mean over the whole global batches, as on one device
            self._loss_sum = self.trainer.strategy.reduce(self._loss_sum, reduce_op="mean")
        train_loss = (self._loss_sum / self._loss_count).item() if self._loss_count else math.nan
        self._loss_sum.zero_()
        self._loss_count = 0
        row = {"iteration": self.iteration, "train_loss": train_loss, "val_loss": val_loss,
               "val_acc": val_acc, "test_loss": test_loss, "test_acc": test_acc, "lr": self.learning_rate()}
        self.metrics.append(row)
        if self._loggers:
            values = {_curve_name(k): v for k, v in row.items() if k != "iteration" and math.isfinite(v)}
            for logger in self._loggers:
                logger.log_metrics(values, step=self.iteration)
        if self.on_eval is not None:
            self.on_eval(row)



def checkpoint_key(start: int, end: int, capture_at: Iterable[int]) -> dict:
    """What a checkpoint must match to be resumed from: the same span of training and capture points."""
    return {"start": start, "end": end, "capture_at": sorted(capture_at)}


def _curve_name(column: str) -> str:
    """A metrics.csv column as a logger's curve name: ``val_acc`` -> ``val/acc`` (loggers group by prefix)."""
    split, _, what = column.partition("_")
    return f"{split}/{what}" if split in ("train", "val", "test") and what else column


def cpu_state(model: nn.Module) -> State:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
