"""A run's life: open or resume it (same settings only), check inputs and the machine, lock it, keep run.json.

Every experiment kind opens its run here, so resuming, the settings fingerprint, the lock and
the checks of shared files behave the same for prune, stability, supermask and what comes next.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from tickets import config as config_mod
from tickets.config import RunConfig
from tickets.errors import TicketsError
from tickets.loggers import check_loggers
from tickets.store import RunLock, RunStore
from tickets.training import check_trainer_settings


def check_environment(config: RunConfig) -> None:
    """Fail before anything is written when this machine cannot train with the config (device, loggers)."""
    t = config.train
    check_trainer_settings(t.accelerator, t.devices, t.precision)
    check_loggers(t.loggers)


def check_out_root(out_root: Path) -> None:
    """``--out`` must be a folder, or a path where one can be made."""
    for folder in [Path(out_root), *Path(out_root).parents]:
        if folder.exists():
            if not folder.is_dir():
                raise TicketsError(f"--out {out_root}: {folder} is a file, not a folder; "
                                   "give --out a folder (it is created if missing)")
            return


def open_run(config: RunConfig, out_root: Path, verb: str = "prune") -> RunStore:
    """The run's store; an existing run must have been made with the same settings."""
    check_out_root(out_root)
    name = config.name or config_mod.default_name(config, verb)
    store = RunStore(out_root, name)
    if store.dir.exists():
        if not store.dir.is_dir():
            raise TicketsError(f"{store.dir} is a file, not a run folder; choose another --name or --out")
        if not store.config_path.exists():
            if any(store.dir.iterdir()):
                raise TicketsError(f"{store.dir} exists and is not a tickets run; choose another --name or --out")
        else:
            stored = config_mod.from_dict(store.read_config())
            if config_mod.fingerprint(stored) != config_mod.fingerprint(config):
                old, new = config_mod.flatten(stored.to_dict()), config_mod.flatten(config.to_dict())
                diff = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in new
                        if k not in config_mod.RESUMABLE_KEYS and old.get(k) != new.get(k)]
                raise TicketsError(f"run {store.dir} was made with other settings ({'; '.join(diff)}); "
                                   "use another --name, or the same settings to resume it")
    return store


def load_run_config(run_dir: Path) -> RunConfig:
    """The config a run was made with (its config.yaml), named after its directory."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise TicketsError(f"{run_dir} is not a tickets run (no config.yaml); give a folder made by `tickets prune`")
    config = config_mod.from_dict(RunStore(run_dir.parent, run_dir.name).read_config())
    config.name = run_dir.name
    return config


def check_inputs(store: RunStore) -> None:
    """A TicketsError (one line: the file and the fix) when a shared file differs from its record."""
    problems = store.damaged_inputs()
    if problems:
        name, problem = problems[0]
        more = f" ({len(problems) - 1} more: see `tickets check {store.dir}`)" if len(problems) > 1 else ""
        raise TicketsError(store.damage_message(name, problem) + more)


@contextmanager
def session(store: RunStore, config: RunConfig, verb: str, *, attach: bool = False, **fields):
    """The run held for one command: locked, its config.yaml and run.json written (status running, then
    complete or interrupted).

    ``attach``: the command adds an analysis to an existing run (``tickets stability RUN``): the
    run is locked, and its config.yaml and run.json stay as they are.
    """
    if attach:
        with RunLock(store.dir):
            yield store
        return
    with store.running(config_mod.dump(config), verb=verb, **fields):
        yield store


def diverged_warning(label: str, iteration: int, ends_chain: bool) -> str:
    """The warning line for a network whose training loss became non-finite."""
    then = "; its seed's later rounds are not trained" if ends_chain else ""
    return (f"{label} diverged: the training loss was not finite at iteration {iteration}, so training stopped "
            f"(status diverged in results.csv){then}; a lower --lr may help")
