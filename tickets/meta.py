"""The package's name, version and hook marker (a leaf: the modules of tickets import these from here)."""
import pluggy

__version__ = "0.1.0"
PROJECT_NAME = "tickets"
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
