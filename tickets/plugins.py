"""The plugin manager: built-ins first, then every ``tickets`` entry point.

Environment variables:

- ``TICKETS_PLUGINS``: comma-separated entry-point or distribution names to load (all
  others are skipped); ``none`` loads no third-party plugin. Unset: load all.
- ``TICKETS_STRICT_PLUGINS=1``: a plugin that fails to load, or a name claimed twice, is
  fatal (same as ``--strict-plugins``).
"""
from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points

import pluggy

from tickets import PROJECT_NAME, __version__, hookspecs
from tickets.errors import TicketsError
from tickets.registry import KINDS, Provider, Registry, description_of

BUILTIN_MODULES = tuple(f"tickets.builtin.{kind}" for kind in KINDS)
ENV_ONLY = "TICKETS_PLUGINS"
ENV_STRICT = "TICKETS_STRICT_PLUGINS"


@dataclass
class PluginInfo:
    """One plugin as ``tickets plugins`` shows it."""

    name: str
    distribution: str
    version: str
    builtin: bool
    status: str = "active"  # active | failed | skipped
    reason: str = ""
    provides: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "status": self.status,
            "reason": self.reason,
            "provides": {k: [{"name": n, "description": d} for n, d in v] for k, v in self.provides.items()},
        }


@dataclass
class PluginSet:
    """The loaded registry together with what was loaded, from where, and what failed."""

    registry: Registry
    plugins: list[PluginInfo]


def strict_from_env() -> bool:
    return os.environ.get(ENV_STRICT, "").strip().lower() in {"1", "true", "yes", "on"}


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _selected(only: str | None, ep) -> bool:
    if only is None:
        return True
    wanted = {w.strip() for w in only.split(",") if w.strip()}
    if wanted <= {"none"}:
        return False
    dist = ep.dist.name if ep.dist is not None else ""
    return ep.name in wanted or dist in wanted


def _register_module(manager: pluggy.PluginManager, module, name: str) -> None:
    """Register a plugin module and reject hook implementations that match no spec."""
    manager.register(module, name=name)
    try:
        manager.check_pending()
    except pluggy.PluginValidationError:
        manager.unregister(name=name)
        raise


def _collect(manager: pluggy.PluginManager, plugin_name: str):
    """Call one plugin's register hooks and return what it registered: [(kind, name, obj, doc)]."""
    collected = []
    for kind in KINDS:
        caller = getattr(manager.hook, f"register_{kind}")
        for impl in caller.get_hookimpls():
            if impl.plugin_name != plugin_name:
                continue

            def register(name, obj, *, description=None, _kind=kind):
                collected.append((_kind, name, obj, description))

            impl.function(register=register)
    return collected


def load_plugins(strict: bool | None = None, only: str | None = None, warn=None) -> PluginSet:
    """Build the registry: built-in plugins, then every ``tickets`` entry point.

    A third-party plugin that fails to import, has an invalid hook, or raises while
    registering is reported by one warning line (``warn``) and skipped, unless ``strict``,
    in which case a :class:`TicketsError` names it and the reason.
    """
    strict = strict_from_env() if strict is None else strict
    only = os.environ.get(ENV_ONLY) if only is None else only
    warn = warn or (lambda line: print(line, file=sys.stderr))
    manager = pluggy.PluginManager(PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    registry = Registry()
    plugins: list[PluginInfo] = []

    def commit(info: PluginInfo, collected) -> None:
        provider = Provider(info.name, info.distribution, info.version)
        for kind, name, obj, description in collected:
            registry.add(kind, name, obj, description, provider)
            info.provides.setdefault(kind, []).append((name, description_of(obj, description)))

    for module_name in BUILTIN_MODULES:
        info = PluginInfo(module_name, "tickets", __version__, builtin=True)
        _register_module(manager, importlib.import_module(module_name), module_name)
        commit(info, _collect(manager, module_name))
        plugins.append(info)

    for ep in sorted(entry_points(group=PROJECT_NAME), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist is not None else "unknown"
        version = ep.dist.version if ep.dist is not None else "?"
        info = PluginInfo(ep.name, dist, version, builtin=False)
        plugins.append(info)
        if not _selected(only, ep):
            info.status, info.reason = "skipped", f"not listed in {ENV_ONLY}"
            continue
        try:
            _register_module(manager, ep.load(), ep.name)
            collected = _collect(manager, ep.name)
        except Exception as error:  # a broken plugin must not take tickets down
            if manager.has_plugin(ep.name):
                manager.unregister(name=ep.name)
            info.status, info.reason = "failed", _one_line(error)
            line = f"plugin {ep.name!r} from {dist} {version} failed to load: {info.reason}"
            registry.failed_plugins.append(f"{ep.name} ({dist} {version})")
            if strict:
                raise TicketsError(line + "; fix or uninstall it, or run without --strict-plugins") from None
            warn(f"tickets: warning: {line}; it is skipped (--strict-plugins makes this fatal)")
            continue
        commit(info, collected)

    if strict and registry.conflicts:
        kind, name = next(iter(registry.conflicts))
        raise TicketsError(registry.conflict_message(kind, name))
    return PluginSet(registry, plugins)


_loaded: PluginSet | None = None
_strict_override: bool | None = None


def set_strict(strict: bool | None) -> None:
    """Make plugin failures fatal (``--strict-plugins``); takes effect at the next load."""
    global _strict_override, _loaded
    _strict_override = strict
    _loaded = None


def plugin_set() -> PluginSet:
    """The process-wide plugin set, loaded on first use."""
    global _loaded
    if _loaded is None:
        _loaded = load_plugins(strict=_strict_override)
    return _loaded


def registry() -> Registry:
    """The process-wide registry of components (see :func:`plugin_set`)."""
    return plugin_set().registry


def reset() -> None:
    """Forget the loaded plugins (tests use this after changing sys.path or the environment)."""
    global _loaded
    _loaded = None
