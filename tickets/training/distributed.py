"""One network on several devices (``--devices N``): Lightning's DDP strategy, one process each.

The job spawns one process per device; each sets the environment of an externally launched
Lightning run (so Lightning starts no processes of its own) and trains the same network. Every
process takes its slice of each global batch, so the batch size, the data order and the masks
are those of single-device training, and DDP's gradient averaging gives the gradient of the
whole batch. BatchNorm statistics are synchronized across processes for the same reason.
Rank 0 alone writes the network's files.
"""
from __future__ import annotations

import os
import socket

import torch

from tickets.machine import cpu_cores


def device_count(devices) -> int:
    """How many devices a ``train.devices`` value asks for (``auto`` counts as one)."""
    if isinstance(devices, int):
        return devices
    if isinstance(devices, (list, tuple)):
        return len(devices)
    return 1


def in_rank_process() -> bool:
    """True inside one of the processes of a distributed network."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def rank() -> int:
    return int(os.environ.get("RANK", 0))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(local_rank: int, world: int, port: int, threads: int, target, args) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world),
                       "LOCAL_RANK": str(local_rank), "NODE_RANK": "0", "RANK": str(local_rank)})
    torch.set_num_threads(threads)
    target(*args)


def run_distributed(world: int, target, *args) -> None:
    """Run ``target(*args)`` in ``world`` spawned processes that form one DDP group."""
    threads = max(1, cpu_cores() // world)
    torch.multiprocessing.start_processes(_rank_main, args=(world, _free_port(), threads, target, args),
                                          nprocs=world, start_method="spawn", join=True)
