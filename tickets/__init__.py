"""tickets: a lottery-ticket laboratory.

The public face: the commands as functions (:func:`prune`, :func:`train`, :func:`compare`,
:func:`stability`, :func:`supermask`, :func:`check`, :func:`load_run`), the
:class:`Run` they return, :class:`TicketsError` for bad input, and :data:`hookimpl`, the marker
third-party plugins put on their hook implementations. See :mod:`tickets.api`.
"""
import os

# Intel MKL's strict conditional numerical reproducibility: matrix products give the same bits
# whatever the number of threads, so a network's result does not depend on how many workers
# share the machine. Set before torch loads MKL; a user's own setting wins.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

# Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 when it is imported (see tickets.training.lightning);
# remember whether the user had set it, so that tickets can undo Lightning's setting only.
NVML_CHECK_SET_BY_USER = "PYTORCH_NVML_BASED_CUDA_CHECK" in os.environ

import pluggy  # noqa: E402

from tickets.errors import TicketsError  # noqa: E402

__version__ = "0.1.0"

PROJECT_NAME = "tickets"
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

# (`report` stays tickets.api.report and Run.report: tickets.report is the report package.)
_API = ("prune", "train", "compare", "stability", "supermask", "check", "load_run", "Run")

__all__ = ["hookimpl", "TicketsError", "__version__", "PROJECT_NAME", *_API]


def __getattr__(name: str):
    """The API's functions, imported on first use (``import tickets`` stays quick for plugins and the CLI)."""
    if name in _API:
        from tickets import api

        return getattr(api, name)
    raise AttributeError(f"module 'tickets' has no attribute {name!r}")
