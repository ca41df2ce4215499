"""The Lightning Trainer that runs one network, and the device checks made before a run writes anything."""
from __future__ import annotations

import logging

import torch

from tickets.errors import TicketsError
from tickets.machine import available_devices
from tickets.training.distributed import device_count, in_rank_process

# Settings every machine can train with: checking them needs no Trainer (nor Lightning's import).
ALWAYS_AVAILABLE = {"accelerator": ("cpu",), "devices": (1, "1"), "precision": ("32-true", "32", 32)}


def make_trainer(accelerator: str, devices, precision: str, loggers: list | None = None):
    """A Lightning Trainer with everything but the training loop switched off (and ``loggers``, if any).

    Inside the processes of a distributed network (see :mod:`tickets.distributed`) it uses DDP
    with synchronized BatchNorm; otherwise it trains on one device. Settings this machine cannot
    run are a TicketsError that says what the machine has.
    """
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    from tickets.training.lightning import LIGHTNING_LOGGERS, pl

    for name in LIGHTNING_LOGGERS:  # its per-fit chatter ("GPU available: False ...") says nothing useful
        logging.getLogger(name).setLevel(logging.WARNING)

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
    """Fail (TicketsError, one line) now, before a run writes anything,
    if this machine cannot train with these settings.

    Several devices train one network in as many processes (DDP): each process then uses one.
    """
    wanted = device_count(devices)
    if wanted > 1:
        if accelerator != "cpu" and torch.cuda.device_count() < wanted:
            raise TicketsError(f"--devices {wanted} asks for {wanted} GPUs, "
                               f"but this machine has {available_devices()}; "
                               "use fewer devices or --accelerator cpu")
        devices = 1
    settings = {"accelerator": accelerator, "devices": devices, "precision": precision}
    if all(value in ALWAYS_AVAILABLE[key] for key, value in settings.items()):
        return
    make_trainer(accelerator, devices, precision)
