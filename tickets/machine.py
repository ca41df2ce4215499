"""What this machine has: CPU cores, GPUs, accelerators (a leaf: imports nothing of tickets).

torch is imported only inside the functions that need it, so the CLI can ask how many cores
there are before the slow imports.
"""
from __future__ import annotations

import os


def cpu_cores() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def gpu_count(accelerator: str) -> int:
    """GPUs networks would train on with this accelerator (0 when training on the CPU)."""
    if accelerator not in ("gpu", "cuda", "auto"):
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def available_devices() -> str:
    """What this machine offers Lightning, in words: ``CPU only: no CUDA GPU, no Apple MPS``,
    ``CPU and 2 CUDA GPUs (...)``."""
    import torch

    found = []
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        found.append(f"{n} CUDA GPU{'s' if n != 1 else ''} ({torch.cuda.get_device_name(0)})")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("Apple MPS")
    return "CPU and " + ", ".join(found) if found else "CPU only: no CUDA GPU, no Apple MPS"
