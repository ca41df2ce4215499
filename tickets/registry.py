"""Name -> component lookup, one namespace per kind, with clear unknown-name and conflict errors."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from tickets.errors import TicketsError

KINDS = ("criteria", "initializers", "optimizers", "models", "datasets", "controls", "schedules", "augmentations",
         "mask_updates")

# How a kind is named in messages ("unknown criterion 'x'").
SINGULAR = {
    "criteria": "criterion",
    "initializers": "initializer",
    "optimizers": "optimizer",
    "models": "model",
    "datasets": "dataset",
    "controls": "control",
    "schedules": "schedule",
    "augmentations": "augmentation",
    "mask_updates": "mask update",
}


def description_of(obj: Any, description: str | None) -> str:
    """The given description, or else the first line of the object's docstring."""
    if description is not None:
        return description
    lines = (getattr(obj, "__doc__", None) or "").strip().splitlines()
    return lines[0] if lines else ""


def _closest(name: str, known: list[str]) -> str | None:
    """The known name most like ``name`` (case-insensitive), if any is reasonably close."""
    lowered = {k.lower(): k for k in known}
    if name.lower() in lowered:
        return lowered[name.lower()]
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.5)
    return lowered[close[0]] if close else None


@dataclass(frozen=True)
class Provider:
    """Which plugin registered a component: its plugin name, distribution and version."""

    plugin: str
    distribution: str
    version: str

    def describe(self) -> str:
        return f"{self.plugin} ({self.distribution} {self.version})"


@dataclass(frozen=True)
class Entry:
    """One registered component."""

    kind: str
    name: str
    obj: Any
    description: str
    provider: Provider


@dataclass
class Registry:
    """All registered components, plus the plugins that failed to load (for error messages)."""

    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in KINDS})
    failed_plugins: list[str] = field(default_factory=list)  # "plugin (dist version): reason"
    skipped_plugins: list[str] = field(default_factory=list)  # not selected by TICKETS_PLUGINS
    # (kind, name) -> every provider that claimed it, for names claimed more than once.
    conflicts: dict[tuple[str, str], list[Provider]] = field(default_factory=dict)

    def add(self, kind: str, name: str, obj: Any, description: str | None, provider: Provider) -> None:
        """Register ``obj`` as ``name``.

        A name claimed twice is recorded as a conflict: looking it up then raises an error that
        names both providers, while every other name keeps working.
        """
        if kind not in self.entries:
            raise TicketsError(f"unknown component kind {kind!r}; kinds are {', '.join(KINDS)}")
        if not isinstance(name, str) or not name:
            raise TicketsError(f"{provider.describe()} registered a {SINGULAR[kind]} with an invalid name {name!r}")
        taken = self.entries[kind].get(name)
        if taken is not None:
            self.conflicts.setdefault((kind, name), [taken.provider]).append(provider)
            return
        self.entries[kind][name] = Entry(kind, name, obj, description_of(obj, description), provider)

    def conflict_message(self, kind: str, name: str) -> str:
        """One line naming every provider of a name claimed more than once, and the fix."""
        providers = " and by ".join(p.describe() for p in self.conflicts[(kind, name)])
        return (
            f"{SINGULAR[kind]} {name!r} is registered twice: by {providers}; "
            "uninstall one of them or choose plugins with TICKETS_PLUGINS"
        )

    def names(self, kind: str) -> list[str]:
        """The registered names of one kind, sorted."""
        return sorted(self.entries[kind])

    def entry(self, kind: str, name: str) -> Entry:
        """The entry for ``name``.

        An unknown name raises a TicketsError listing the known names of that kind, the
        closest match, the plugins that failed to load (with their reasons) and those that
        ``TICKETS_PLUGINS`` left out; a name claimed twice raises the conflict error.
        """
        if kind not in self.entries:
            raise TicketsError(f"unknown component kind {kind!r}; kinds are {', '.join(KINDS)}")
        if (kind, name) in self.conflicts:
            raise TicketsError(self.conflict_message(kind, name))
        found = self.entries[kind].get(name)
        if found is not None:
            return found
        known = self.names(kind)
        message = f"unknown {SINGULAR[kind]} {name!r}"
        close = _closest(str(name), known)
        if close:
            message += f" (did you mean {close!r}?)"
        message += f"; known {kind}: {', '.join(known) or 'none'}"
        if self.failed_plugins:
            message += f"; plugins that failed to load: {'; '.join(self.failed_plugins)}"
        if self.skipped_plugins:
            message += f"; plugins not loaded because of TICKETS_PLUGINS: {', '.join(self.skipped_plugins)}"
        message += "; see `tickets plugins`"
        raise TicketsError(message)

    def get(self, kind: str, name: str) -> Any:
        """The registered object for ``name`` (see :meth:`entry`)."""
        return self.entry(kind, name).obj
