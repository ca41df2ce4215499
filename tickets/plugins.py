"""The plugin manager: built-ins first, then every ``tickets`` entry point, in name order.

A plugin is whatever an entry point of the ``tickets`` group loads (usually a module) with
functions marked ``@tickets.hookimpl`` and named like the hooks of :mod:`tickets.hookspecs`.
Loading one plugin is all or nothing: a plugin that fails to import, has an invalid hook
(an unknown hook name, a wrong argument, an unmarked ``register_*`` function), or raises or
registers something invalid while registering, contributes no name at all. It is reported
by one warning line naming its distribution, version and the reason, and everything else
keeps working, unless strict mode makes it fatal.

Environment variables:

- ``TICKETS_PLUGINS``: comma-separated entry-point or distribution names of the third-party
  plugins to load (all others are skipped); ``none`` loads no third-party plugin. Unset or
  empty: load all. Built-in plugins are always loaded.
- ``TICKETS_STRICT_PLUGINS=1``: a plugin that fails to load, a name claimed twice, or a
  ``TICKETS_PLUGINS`` entry that matches no installed plugin is fatal (same as
  ``--strict-plugins``).
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import os
import re
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points

import pluggy

from tickets import hookspecs
from tickets.errors import TicketsError
from tickets.meta import PROJECT_NAME, __version__
from tickets.registry import KINDS, SINGULAR, Provider, Registry, description_of

BUILTIN_MODULES = tuple(f"tickets.builtin.{kind}" for kind in KINDS)
HOOKS = tuple(f"register_{kind}" for kind in KINDS)
ENV_ONLY = "TICKETS_PLUGINS"
ENV_STRICT = "TICKETS_STRICT_PLUGINS"
# Names usable in flags, configs and comma-separated lists.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+\-]*$")


class PluginError(Exception):
    """Why one plugin cannot be used; the message is shown as the plugin's failure reason."""


@dataclass
class PluginInfo:
    """One plugin as ``tickets plugins`` shows it."""

    name: str
    distribution: str
    version: str
    builtin: bool
    status: str = "active"  # active | failed | skipped
    reason: str = ""
    entry_point: str = ""  # what the entry point loads, e.g. "tickets_snip" or "pkg.mod:obj"
    provides: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def describe(self) -> str:
        """``name (distribution version)``, as messages name a plugin."""
        return f"{self.name} ({self.distribution} {self.version})"

    def as_dict(self) -> dict:
        """A JSON-ready dict (``tickets plugins --json``)."""
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "entry_point": self.entry_point,
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
    """True when ``TICKETS_STRICT_PLUGINS`` is set to 1, true, yes or on."""
    return os.environ.get(ENV_STRICT, "").strip().lower() in {"1", "true", "yes", "on"}


def normalize(name: str) -> str:
    """A plugin or distribution name compared the way pip does (PEP 503): case and -_. ignored."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _wanted(only: str | None) -> set[str] | None:
    """The normalized names ``TICKETS_PLUGINS`` selects: None for all, an empty set for none."""
    if only is None or not only.strip():
        return None
    names = {normalize(w.strip()) for w in only.split(",") if w.strip()}
    return set() if names == {"none"} else names


def _check_hooks(plugin) -> None:
    """Reject hook implementations tickets would not call: every hook must be known and well formed.

    pluggy would silently ignore an unmarked ``register_criteria`` and only complain late
    about a misspelled one; a plugin author gets a precise reason instead.
    """
    marker = f"{PROJECT_NAME}_impl"
    found = 0
    for attr in dir(plugin):
        try:
            value = getattr(plugin, attr)
        except Exception:  # a lazy attribute that fails is not a hook
            continue
        if not inspect.isroutine(value):
            continue
        opts = getattr(value, marker, None)
        if not isinstance(opts, dict):
            if attr in HOOKS:
                raise PluginError(f"invalid hook: {attr} is not marked with @tickets.hookimpl")
            continue
        hook = opts.get("specname") or attr
        if hook not in HOOKS:
            close = difflib.get_close_matches(hook, HOOKS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise PluginError(f"invalid hook: unknown hook {hook!r}{hint}; hooks are {', '.join(HOOKS)}")
        if opts.get("hookwrapper") or opts.get("wrapper"):
            raise PluginError(f"invalid hook: {attr} is a hook wrapper; tickets hooks are plain functions")
        try:
            params = inspect.signature(value).parameters.values()
        except (TypeError, ValueError):
            params = []
        required = [p.name for p in params
                    if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.default is p.empty]
        if required != ["register"]:
            raise PluginError(f"invalid hook: {attr}({', '.join(required)}) must take one argument named "
                              f"'register', as in def {hook}(register)")
        found += 1
    if not found:
        raise PluginError(f"no hook found: mark functions named {' / '.join(HOOKS)} with @tickets.hookimpl")


def _register_module(manager: pluggy.PluginManager, plugin, name: str) -> None:
    """Register a plugin with pluggy after checking its hooks (pluggy's own checks as a backstop)."""
    _check_hooks(plugin)
    manager.register(plugin, name=name)
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as error:
        manager.unregister(name=name)
        raise PluginError(f"invalid hook: {' '.join(str(error).split())}") from None


def _check_component(kind: str, name, obj, description) -> None:
    singular = SINGULAR[kind]
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise PluginError(f"registered a {singular} with an invalid name {name!r} "
                          "(use letters, digits and _ - . +, starting with a letter or digit)")
    if not callable(obj):
        raise PluginError(f"registered {singular} {name!r} as a {type(obj).__name__}, which is not callable")
    if description is not None and not isinstance(description, str):
        raise PluginError(f"registered {singular} {name!r} with a description that is not a string")


def _collect(manager: pluggy.PluginManager, plugin_name: str):
    """Call one plugin's register hooks; return what it registered as ``[(kind, name, obj, description)]``."""
    collected = []
    for kind in KINDS:
        caller = getattr(manager.hook, f"register_{kind}")
        for impl in caller.get_hookimpls():
            if impl.plugin_name != plugin_name:
                continue
            seen = {n for k, n, _, _ in collected if k == kind}

            def register(name, obj, *, description=None, _kind=kind, _seen=seen):
                _check_component(_kind, name, obj, description)
                if name in _seen:
                    raise PluginError(f"registered {SINGULAR[_kind]} {name!r} twice")
                _seen.add(name)
                collected.append((_kind, name, obj, description))

            try:
                impl.function(register=register)
            except PluginError:
                raise
            except Exception as error:
                raise PluginError(f"{impl.function.__name__} raised {_one_line(error)}") from error
    return collected


def _entry_points():
    """The ``tickets`` entry points, sorted by name (then distribution) so loading order is stable."""
    found = entry_points(group=PROJECT_NAME)

    def key(ep):
        dist = getattr(ep.dist, "name", None) or ""
        return (ep.name, dist)

    return sorted(found, key=key)


def load_plugins(strict: bool | None = None, only: str | None = None, warn=None) -> PluginSet:
    """Build the registry: built-in plugins, then every ``tickets`` entry point in name order.

    ``strict`` defaults to ``TICKETS_STRICT_PLUGINS``, ``only`` to ``TICKETS_PLUGINS`` (see
    the module docstring). A third-party plugin that cannot be used is reported by one line
    passed to ``warn`` (default: stderr) naming its distribution, version and the reason,
    and skipped; with ``strict`` a :class:`TicketsError` carrying that line is raised
    instead. A name registered by two plugins is a warning (using the name is an error
    naming both providers), or with ``strict`` an error.
    """
    strict = strict_from_env() if strict is None else strict
    only = os.environ.get(ENV_ONLY) if only is None else only
    warn = warn or (lambda line: print(line, file=sys.stderr))
    wanted = _wanted(only)
    manager = pluggy.PluginManager(PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    registry = Registry()
    plugins: list[PluginInfo] = []

    def commit(info: PluginInfo, collected) -> None:
        provider = Provider(info.name, info.distribution, info.version)
        for kind, name, obj, description in collected:
            registry.add(kind, name, obj, description, provider)
            info.provides.setdefault(kind, []).append((name, description_of(obj, description)))

    def problem(line: str, skipped: str = "") -> None:
        if strict:
            raise TicketsError(f"{line} (fatal in strict plugin mode: --strict-plugins or {ENV_STRICT}=1)")
        warn(f"tickets: warning: {line}{skipped}")

    for module_name in BUILTIN_MODULES:  # a broken built-in is a bug in tickets: let it raise
        info = PluginInfo(module_name, "tickets", __version__, builtin=True, entry_point=module_name)
        _register_module(manager, importlib.import_module(module_name), module_name)
        commit(info, _collect(manager, module_name))
        plugins.append(info)

    matched: set[str] = set()
    for ep in _entry_points():
        dist = getattr(ep.dist, "name", None) or "unknown-distribution"
        version = getattr(ep.dist, "version", None) or "unknown-version"
        info = PluginInfo(ep.name, dist, version, builtin=False, entry_point=ep.value)
        plugins.append(info)
        if wanted is not None:
            hits = wanted & {normalize(ep.name), normalize(dist)}
            matched |= hits
            if not hits:
                info.status, info.reason = "skipped", f"not listed in {ENV_ONLY}={only}"
                registry.skipped_plugins.append(info.describe())
                continue
        key = f"{dist}:{ep.name}"  # unique within pluggy even when two distributions reuse a name
        try:
            try:
                plugin = ep.load()
            except Exception as error:
                raise PluginError(f"import failed: {_one_line(error)}") from error
            _register_module(manager, plugin, key)
            collected = _collect(manager, key)
        except Exception as error:  # a broken plugin must not take tickets down
            if manager.has_plugin(key):
                manager.unregister(name=key)
            info.status = "failed"
            info.reason = str(error) if isinstance(error, PluginError) else _one_line(error)
            registry.failed_plugins.append(f"{info.describe()}: {info.reason}")
            problem(f"plugin {ep.name!r} from {dist} {version} failed to load: {info.reason}",
                    "; it is skipped, all else works")
            continue
        commit(info, collected)

    if wanted:
        missing = sorted(wanted - matched)
        if missing:
            installed = sorted({p.name for p in plugins if not p.builtin})
            problem(f"{ENV_ONLY} names {', '.join(missing)}, which no installed plugin provides "
                    f"(installed: {', '.join(installed) or 'none'})")
    for kind, name in registry.conflicts:
        problem(registry.conflict_message(kind, name))
    return PluginSet(registry, plugins)


_loaded: PluginSet | None = None
_strict_override: bool | None = None


def set_strict(strict: bool | None) -> None:
    """Make plugin failures fatal (``--strict-plugins``); None defers to the environment.

    Takes effect at the next load.
    """
    global _strict_override, _loaded
    _strict_override = strict
    _loaded = None


def strict_enabled() -> bool:
    """Whether plugin failures are fatal: ``--strict-plugins``, else ``TICKETS_STRICT_PLUGINS``."""
    return strict_from_env() if _strict_override is None else _strict_override


def plugin_set() -> PluginSet:
    """The process-wide plugin set, loaded on first use."""
    global _loaded
    if _loaded is None:
        _loaded = load_plugins(strict=strict_enabled())
    return _loaded


def registry() -> Registry:
    """The process-wide registry of components (see :func:`plugin_set`)."""
    return plugin_set().registry


def reset() -> None:
    """Forget the loaded plugins (tests use this after changing sys.path or the environment)."""
    global _loaded
    _loaded = None
