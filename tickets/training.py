"""Training one masked network on PyTorch Lightning.

- :class:`BatchStream` yields minibatches by slicing tensors that already sit on the
  training device: no per-sample collation, and a seed fixes the order of every epoch.
- :class:`MaskedTraining` is the LightningModule. It masks gradients before every optimizer
  step and re-applies the mask after it, so pruned weights stay exactly zero (or at their
  frozen values) whatever momentum or weight decay would do. It evaluates on the validation
  and test tensors every ``eval_every`` iterations, keeping losses in on-device accumulators
  between evaluations, and sends each evaluation to the Trainer's loggers, if any. Training
  stops after the first iteration whose loss is not finite (the network diverged).
- :func:`train_network` runs one ``Trainer.fit`` and returns the metrics, the final weights
  and the result fields (early-stop iteration, test accuracy there, final accuracy).

The step at iteration t uses the learning rate ``lr * lr_factor(t)`` (see
:mod:`tickets.schedules`) on the batch of iteration t, augmented (see :mod:`tickets.augment`).
With a :class:`tickets.checkpoint.Checkpoint`, the whole training state is saved as it goes
and a re-run resumes from it exactly.
"""
from __future__ import annotations

import logging
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable

# Lightning's import-time and per-fit chatter says nothing a tickets user can act on.
warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated.*")
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
warnings.filterwarnings("ignore", message=r".*Trying to infer the `batch_size`.*")
warnings.filterwarnings("ignore", message=r".*is an invalid version and will not be supported.*")
warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")  # tickets logs its evaluations itself

import pytorch_lightning as pl  # noqa: E402
import torch
import torch.nn.functional as F
from torch import nn

from tickets.augment import Augmenter
from tickets.checkpoint import Checkpoint
from tickets.data import Splits
from tickets.distributed import device_count, in_rank_process
from tickets.errors import TicketsError
from tickets.ticket import State, Ticket

import tickets  # noqa: E402  (the package, for its start-up settings)

# Lightning's import sets PYTORCH_NVML_BASED_CUDA_CHECK=1 (so that checking for CUDA does not
# break fork-started processes). With it, every torch.cuda.is_available() loads NVML anew until
# CUDA is initialized, and Adam asks on every step: 70 us a step on a CPU, 2-5% of a LeNet step.
# The plain check is safe here: tickets never forks a process that has checked for CUDA (GPU
# workers are spawned; CPU workers fork from a server that only imported these modules).
if not tickets.NVML_CHECK_SET_BY_USER:
    os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)

EVAL_CHUNK = 2048
METRIC_COLUMNS = ["iteration", "train_loss", "val_loss", "val_acc", "test_loss", "test_acc", "lr"]

for _name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
    logging.getLogger(_name).setLevel(logging.WARNING)


def iterations_per_epoch(n_train: int, batch_size: int) -> int:
    """Full batches per pass over the training set (the last partial batch is dropped)."""
    return max(1, n_train // batch_size)


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


@dataclass
class TrainOutcome:
    """What training one network produced."""

    metrics: list[dict]
    final_state: State
    captured: dict[int, State]  # iteration -> weights there, for each requested capture point
    seconds: float
    iterations: int
    fields: dict = field(default_factory=dict)
    resumed_from: int | None = None  # the checkpoint's iteration when training resumed from one
    diverged_at: int | None = None  # the iteration whose training loss was not finite; training stopped there

    @property
    def status(self) -> str:
        """``ok``, or ``diverged`` when the training loss became non-finite (results.csv's status column)."""
        return "ok" if self.diverged_at is None else "diverged"


class MaskedTraining(pl.LightningModule):
    """Trains ``model`` under a mask; see the module docstring.

    ``lr_factor(t)`` scales every parameter group's learning rate at iteration t;
    ``capture_at`` lists iterations whose weights are kept (rewind points); ``checkpoint``
    saves the training state when due, and ``resume`` (a saved state) continues from one.
    """

    def __init__(self, model: nn.Module, ticket: Ticket, make_optimizer: Callable, splits: Splits,
                 end_iteration: int, eval_every: int, capture_at: Iterable[int] = (),
                 on_eval: Callable[[dict], None] | None = None, lr_factor: Callable[[int], float] | None = None,
                 checkpoint: Checkpoint | None = None, resume: dict | None = None):
        super().__init__()
        self.automatic_optimization = False
        self.model = model
        self.ticket = ticket
        self.make_optimizer = make_optimizer
        self.splits = splits
        self.end_iteration = end_iteration
        self.eval_every = eval_every
        self.capture_at = frozenset(capture_at)
        self.on_eval = on_eval
        self.lr_factor = lr_factor
        self.checkpoint = checkpoint
        self.resume = resume
        self.iteration = resume["iteration"] if resume else ticket.start_iteration
        self.metrics: list[dict] = []
        self.captured: dict[int, State] = {}
        self.prior_seconds = resume["seconds"] if resume else 0.0
        self.diverged_at: int | None = None
        self._masked: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
        self._direct = False

    def configure_optimizers(self):
        return self.make_optimizer(self.model.parameters())

    def on_fit_start(self) -> None:
        self.model.train()  # whatever mode the caller left it in (Lightning keeps submodules' modes)
        params = dict(self.model.named_parameters())
        self._masked = []
        for name, keep in self.ticket.mask.tensors.items():
            p = params[name]
            keep = keep.to(p.device, p.dtype)
            frozen = None  # the pruned weights' fixed values, zero where kept: p * keep + frozen
            if self.ticket.pruned_values is not None:
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
                self.captured[self.iteration] = _cpu_state(self.model)
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
        for p, keep, _ in self._masked:
            if p.grad is not None:
                p.grad.mul_(keep)
        optimizer.step()
        self._reapply_mask()
        self._loss_sum += loss.detach().float()
        self._loss_count += 1
        self.iteration += 1
        self._after_step()

    def _after_step(self) -> None:
        """Capture, evaluate and checkpoint at the iteration just reached, as due."""
        if self.iteration in self.capture_at:
            self.captured[self.iteration] = _cpu_state(self.model)
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
            "weights": _cpu_state(self.model),
            "optimizer": self.optimizers(use_pl_optimizer=False).state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng,
            "metrics": list(self.metrics),
            "loss_sum": self._loss_sum.detach().cpu().clone(),
            "loss_count": self._loss_count,
            "captured": dict(self.captured),
            "seconds": self.training_seconds(),
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


@torch.no_grad()
def loss_and_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (as it is: train or eval mode) on ``x``, ``y``, in chunks."""
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for i in range(0, x.shape[0], EVAL_CHUNK):
        logits = model(x[i:i + EVAL_CHUNK]).float()
        target = y[i:i + EVAL_CHUNK]
        loss_sum += F.cross_entropy(logits, target, reduction="sum")
        correct += (logits.argmax(1) == target).sum()
    n = x.shape[0]
    return (loss_sum / n).item(), (correct.float() / n).item()


def checkpoint_key(start: int, end: int, capture_at: Iterable[int]) -> dict:
    """What a checkpoint must match to be resumed from: the same span of training and capture points."""
    return {"start": start, "end": end, "capture_at": sorted(capture_at)}


def _curve_name(column: str) -> str:
    """A metrics.csv column as a logger's curve name: ``val_acc`` -> ``val/acc`` (loggers group by prefix)."""
    split, _, what = column.partition("_")
    return f"{split}/{what}" if split in ("train", "val", "test") and what else column


def _cpu_state(model: nn.Module) -> State:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def available_devices() -> str:
    """What this machine offers Lightning, in words: ``CPU only: no CUDA GPU, no Apple MPS``, ``CPU and 2 CUDA GPUs (...)``."""
    found = []
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        found.append(f"{n} CUDA GPU{'s' if n != 1 else ''} ({torch.cuda.get_device_name(0)})")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("Apple MPS")
    return "CPU and " + ", ".join(found) if found else "CPU only: no CUDA GPU, no Apple MPS"


def make_trainer(accelerator: str, devices, precision: str, loggers: list | None = None) -> pl.Trainer:
    """A Lightning Trainer with everything but the training loop switched off (and ``loggers``, if any).

    Inside the processes of a distributed network (see :mod:`tickets.distributed`) it uses DDP
    with synchronized BatchNorm; otherwise it trains on one device. Settings this machine cannot
    run are a TicketsError that says what the machine has.
    """
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    settings = f"accelerator={accelerator!r} devices={devices!r} precision={precision!r}"
    distributed = in_rank_process()  # one of the processes of a network on several devices (DDP)
    strategy = "auto"
    if distributed:
        from pytorch_lightning.strategies import DDPStrategy

        strategy = DDPStrategy(process_group_backend="gloo" if accelerator == "cpu" else None)
    try:
        trainer = pl.Trainer(
            accelerator=accelerator, devices=devices, precision=precision, strategy=strategy,
            sync_batchnorm=distributed,
            max_epochs=1, limit_val_batches=0, num_sanity_val_steps=0,
            logger=loggers or False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False,
        )
    except (MisconfigurationException, ImportError, ValueError, TypeError, RuntimeError) as error:
        first = " ".join(str(error).split())
        raise TicketsError(f"{settings} cannot be used here ({first}); this machine has {available_devices()}; "
                           "choose settings it supports, e.g. --accelerator cpu") from None
    if trainer.world_size != 1 and not distributed:
        raise TicketsError(f"tickets trains one network per process, but {settings} asks for {trainer.world_size} "
                           f"devices; use --devices 1 (this machine has {available_devices()})")
    if trainer.strategy.root_device.type == "cuda":
        # TF32 matmuls on GPUs that have them: much faster, and accuracy differs by noise only.
        torch.set_float32_matmul_precision("high")
    return trainer


def check_trainer_settings(accelerator: str, devices, precision: str) -> None:
    """Fail (TicketsError, one line) now, before a run writes anything, if this machine cannot train with these settings.

    Several devices train one network in as many processes (DDP): each process then uses one.
    """
    wanted = device_count(devices)
    if wanted > 1:
        if accelerator != "cpu" and torch.cuda.device_count() < wanted:
            raise TicketsError(f"--devices {wanted} asks for {wanted} GPUs, but this machine has {available_devices()}; "
                               "use fewer devices or --accelerator cpu")
        devices = 1
    make_trainer(accelerator, devices, precision)


def train_network(model: nn.Module, ticket: Ticket, make_optimizer: Callable, splits: Splits, *,
                  end_iteration: int, eval_every: int, batch_size: int, data_seed: int,
                  accelerator: str = "cpu", devices=1, precision: str = "32-true",
                  capture_at: Iterable[int] = (), on_eval: Callable[[dict], None] | None = None,
                  loggers: list | None = None, lr_factor: Callable[[int], float] | None = None,
                  augment: list[Callable] = (), checkpoint: Checkpoint | None = None) -> TrainOutcome:
    """Train ``model`` from ``ticket`` to iteration ``end_iteration``; see :class:`MaskedTraining`.

    ``capture_at`` asks for copies of the weights at those iterations (rewind points).
    ``loggers`` (Lightning loggers) receive every evaluation as curves ``train/loss``, ``val/acc``, ...
    Training stops early when the loss becomes non-finite (``TrainOutcome.diverged_at``).
    ``lr_factor(t)`` multiplies the optimizer's learning rate at iteration t; ``augment``
    transforms every training batch (seeded by ``data_seed`` and the iteration);
    ``checkpoint`` saves the training state as it goes, and training resumes from a saved
    state of the same span (start, end, capture points) when there is one.
    """
    resume = checkpoint.load(**checkpoint_key(ticket.start_iteration, end_iteration, capture_at)) \
        if checkpoint is not None else None
    model.load_state_dict(resume["weights"] if resume else ticket.state)
    trainer = make_trainer(accelerator, devices, precision, loggers)
    device = trainer.strategy.root_device
    splits = splits.to(device)
    module = MaskedTraining(model, ticket, make_optimizer, splits, end_iteration, eval_every, capture_at, on_eval,
                            lr_factor, checkpoint, resume)
    stream = BatchStream(splits.train_x, splits.train_y, batch_size, data_seed, module.iteration, end_iteration,
                         augment)
    trainer.fit(module, train_dataloaders=stream)
    if trainer.interrupted:
        raise KeyboardInterrupt
    final = _cpu_state(model)
    return TrainOutcome(module.metrics, final, module.captured, module.training_seconds(),
                        module.iteration - ticket.start_iteration, summarize_metrics(module.metrics),
                        diverged_at=module.diverged_at, resumed_from=resume["iteration"] if resume else None)


def summarize_metrics(metrics: list[dict]) -> dict:
    """Result fields from the evaluation rows: early stop = the minimum validation loss."""
    best = min(metrics, key=lambda r: (math.inf if math.isnan(r["val_loss"]) else r["val_loss"], r["iteration"]))
    last = metrics[-1]
    return {
        "acc_at_init": metrics[0]["test_acc"],
        "best_val_loss": best["val_loss"],
        "early_stop_iter": best["iteration"],
        "test_acc_at_early_stop": best["test_acc"],
        "final_test_acc": last["test_acc"],
        "final_test_loss": last["test_loss"],
    }
