"""tickets: a lottery-ticket laboratory.

Third-party plugins mark their hook implementations with :data:`tickets.hookimpl`.
"""
import pluggy

__version__ = "0.1.0"

PROJECT_NAME = "tickets"
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = ["hookimpl", "__version__", "PROJECT_NAME"]
