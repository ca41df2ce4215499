"""What tickets must set before torch and Lightning load (a leaf: imports nothing of tickets).

- Intel MKL's strict conditional numerical reproducibility: matrix products give the same bits
  whatever the number of threads, so a network's result does not depend on how many workers
  share the machine. A user's own setting wins.
- Whether the user set ``PYTORCH_NVML_BASED_CUDA_CHECK`` themselves: Lightning sets it when it is
  imported, and :mod:`tickets.training.lightning` undoes Lightning's setting only.
"""
import os

os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
NVML_CHECK_SET_BY_USER = "PYTORCH_NVML_BASED_CUDA_CHECK" in os.environ
