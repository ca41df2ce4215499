"""tickets: a lottery-ticket laboratory.

The public face: the commands as functions (:func:`prune`, :func:`train`, :func:`compare`, :func:`transfer`,
:func:`stability`, :func:`supermask`, :func:`check`, :func:`load_run`), the
:class:`Run` they return, :class:`TicketsError` for bad input, and :data:`hookimpl`, the marker
third-party plugins put on their hook implementations. See :mod:`tickets.api`.
"""
from tickets import _startup  # noqa: F401 - before anything imports torch (MKL_CBWR, see there)
from tickets._startup import NVML_CHECK_SET_BY_USER  # noqa: F401
from tickets.errors import TicketsError
from tickets.meta import PROJECT_NAME, __version__, hookimpl

# (`report` stays tickets.api.report and Run.report: tickets.report is the report package.)
_API = ("prune", "train", "compare", "transfer", "stability", "supermask", "sparse_train", "connect", "check",
        "load_run", "Run", "export", "load_exported")

__all__ = ["hookimpl", "TicketsError", "__version__", "PROJECT_NAME", *_API]


def __getattr__(name: str):
    """The API's functions, imported on first use (``import tickets`` stays quick for plugins and the CLI)."""
    if name in _API:
        from tickets import api

        return getattr(api, name)
    raise AttributeError(f"module 'tickets' has no attribute {name!r}")
