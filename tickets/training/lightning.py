"""The one place tickets imports PyTorch Lightning, and the two things that import needs around it.

- Lightning's import-time deprecation chatter says nothing a tickets user can act on: it is
  silenced for the import only (``warnings.catch_warnings``), not for the rest of the process.
- Lightning's import sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` (so that checking for CUDA does
  not break fork-started processes). With it, every ``torch.cuda.is_available()`` loads NVML
  anew until CUDA is initialized, and Adam asks on every step: 70 us a step on a CPU, 2-5% of a
  LeNet step. The plain check is safe here: tickets never forks a process that has checked for
  CUDA (GPU workers are spawned; CPU workers fork from a server that only imported these
  modules). A value the user set is left alone.
"""
from __future__ import annotations

import os
import warnings

from tickets._startup import NVML_CHECK_SET_BY_USER

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated.*")
    warnings.filterwarnings("ignore", message=r".*is an invalid version and will not be supported.*")
    import pytorch_lightning as pl

if not NVML_CHECK_SET_BY_USER:
    os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)

# Per-fit chatter: filtered around each fit (see quiet_fit), never process-wide.
FIT_WARNINGS = (
    r".*does not have many workers.*",
    r".*Trying to infer the `batch_size`.*",
    r".*smaller than the logging interval.*",  # tickets logs its evaluations itself
    r".*LeafSpec.*is deprecated.*",
)
LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric")

__all__ = ["pl", "FIT_WARNINGS", "LIGHTNING_LOGGERS"]
