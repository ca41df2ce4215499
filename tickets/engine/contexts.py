"""A run's :class:`~tickets.components.RunContext` in any process, rebuilt from its config.yaml.

A worker keeps the context of the run it is working on (the data, the components), so it
loads them once per run, not once per job.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from tickets import config as config_mod
from tickets.components import RunContext
from tickets.store import RunStore

Overrides = tuple[tuple[str, object], ...]  # (dotted config key, value) pairs set on the run's config

_contexts: dict[str, RunContext] = {}


def _key(run_dir: Path, text: str, overrides: Overrides) -> str:
    return f"{run_dir}\n{text}\n{overrides!r}"


def load_context(run_dir: str | Path, overrides: Overrides = ()) -> RunContext:
    """The run's context rebuilt from its config.yaml (cached: a worker loads the data once per run).

    ``overrides`` are (dotted key, value) pairs set on the config first, e.g. the accelerator an
    analysis of a finished run trains on.
    """
    run_dir = Path(run_dir).resolve()
    text = (run_dir / "config.yaml").read_text()
    key = _key(run_dir, text, overrides)
    if key not in _contexts:
        from tickets.plugins import registry

        config = config_mod.from_dict(yaml.safe_load(text) or {})
        for dotted, value in overrides:
            section, _, name = dotted.rpartition(".")
            setattr(getattr(config, section) if section else config, name, value)
        _contexts.clear()  # one run at a time per worker: don't keep other runs' data alive
        _contexts[key] = RunContext.create(config, registry(), RunStore(run_dir.parent, run_dir.name))
    return _contexts[key]


def remember_context(context: RunContext, overrides: Overrides = ()) -> None:
    """Let jobs of this process reuse a context the driver already built."""
    run_dir = context.store.dir.resolve()
    _contexts.clear()
    _contexts[_key(run_dir, (run_dir / "config.yaml").read_text(), overrides)] = context
