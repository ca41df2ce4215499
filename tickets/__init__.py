"""tickets: a lottery-ticket laboratory.

Third-party plugins mark their hook implementations with :data:`tickets.hookimpl`.
"""
import os

# Intel MKL's strict conditional numerical reproducibility: matrix products give the same bits
# whatever the number of threads, so a network's result does not depend on how many workers
# share the machine. Set before torch loads MKL; a user's own setting wins.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

# Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 when it is imported (see tickets.training);
# remember whether the user had set it, so that tickets can undo Lightning's setting only.
NVML_CHECK_SET_BY_USER = "PYTORCH_NVML_BASED_CUDA_CHECK" in os.environ

import pluggy  # noqa: E402

__version__ = "0.1.0"

PROJECT_NAME = "tickets"
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = ["hookimpl", "__version__", "PROJECT_NAME"]
