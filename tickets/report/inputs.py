"""Reading runs for the report: results.csv, diverged networks, and labels for several runs."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from tickets.errors import TicketsError
from tickets.report.statistics import METRICS
from tickets.store import DIVERGED, OK

REQUIRED_COLUMNS = ("seed", "round", "variant", "weights_remaining") + METRICS
# Config keys that differ between runs without being what the runs compare.
IGNORED_CONFIG_KEYS = ("name", "seeds", "prune.rounds", "prune.controls", "train.accelerator", "train.devices")
# Config sections only these verbs read: another verb's config.yaml carries their defaults, which say
# nothing about that run and must not label it.
SECTION_READERS = {"supermask": ("supermask",), "sparse": ("sparse-train",)}


def load_results(run_dir: Path) -> pd.DataFrame:
    """A run's results.csv, with ``status`` ``ok`` where a row (e.g. one written by hand) has none.

    Raises TicketsError when the file is missing, empty or lacks columns. A network retrained after
    an interrupted resume counts once: its latest row.
    """
    path = Path(run_dir) / "results.csv"
    if not path.is_file():
        raise TicketsError(f"no results at {path}: run `tickets prune` first (or pass the run's directory)")
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        df = pd.DataFrame()
    if df.empty:
        raise TicketsError(f"{path} has no rows yet: run `tickets prune` first and let a round finish")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise TicketsError(f"{path} lacks columns {', '.join(missing)}: rerun `tickets prune` with this version")
    status = df["status"] if "status" in df.columns else pd.Series(OK, index=df.index)
    df = df.assign(status=status.fillna(OK).astype(str).str.strip().replace("", OK))
    return df.drop_duplicates(subset=["seed", "round", "variant"], keep="last").reset_index(drop=True)


def split_diverged(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(ok rows, diverged rows)``: every status other than ``diverged`` counts as ok."""
    diverged = df["status"] == DIVERGED
    return df[~diverged].reset_index(drop=True), df[diverged].reset_index(drop=True)


def _flatten(mapping: dict, prefix: str = "") -> dict[str, object]:
    """Nested mapping -> {"dotted.key": leaf value}."""
    flat = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= _flatten(value, name + ".")
        else:
            flat[name] = value
    return flat


def _format_value(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


def run_labels(run_dirs: list[Path]) -> list[str]:
    """One label per run: ``key=value`` for the config keys whose values differ between the runs.

    Keys are dotted paths into config.yaml, shortened to their last part where that is unambiguous
    (``prune.criterion`` -> ``criterion``); :data:`IGNORED_CONFIG_KEYS` are not compared. A single
    run, runs without config.yaml, or runs whose configs do not differ are labelled by directory name.
    """
    names = [Path(d).resolve().name for d in run_dirs]
    if len(set(names)) < len(names):
        names = [str(d) for d in run_dirs]
    configs = [_read_config(Path(d)) for d in run_dirs]
    if len(run_dirs) < 2 or None in configs:
        return names
    keys = list(dict.fromkeys(k for c in configs for k in c))
    keys = [k for k in keys if not any(k == i or k.startswith(i + ".") for i in IGNORED_CONFIG_KEYS)]
    verbs = [_verb(Path(d)) for d in run_dirs]
    # a section the run's verb does not read holds defaults that say nothing about the run
    configs = [{k: v for k, v in c.items() if _reads(verb, k)} for c, verb in zip(configs, verbs)]
    if len(set(verbs)) > 1:
        keys = ["verb"] + keys
        configs = [{**c, "verb": verb} for c, verb in zip(configs, verbs)]
    unset = object()
    differing = [k for k in keys if len({repr(c.get(k, unset)) for c in configs}) > 1]
    last = [k.rsplit(".", 1)[-1] for k in differing]
    short = {k: s if last.count(s) == 1 else k for k, s in zip(differing, last)}
    labels = [", ".join(f"{short[k]}={_format_value(c[k]) if k in c else 'unset'}" for k in differing
                        if _reads(verb, k)) for c, verb in zip(configs, verbs)]
    return labels if differing and len(set(labels)) == len(labels) else names


def _read_config(run_dir: Path) -> dict | None:
    path = run_dir / "config.yaml"
    loaded = yaml.safe_load(path.read_text()) if path.is_file() else None
    return _flatten(loaded) if isinstance(loaded, dict) else None


def _verb(run_dir: Path) -> str:
    """The command that made the run (run.json's ``verb``; prune for runs written before it was recorded)."""
    try:
        return json.loads((run_dir / "run.json").read_text()).get("verb") or "prune"
    except (OSError, ValueError, AttributeError):
        return "prune"


def _reads(verb: str, key: str) -> bool:
    """Whether runs made by ``verb`` read config ``key`` (every section but the ones of other verbs)."""
    return all(verb in readers or not key.startswith(section + ".") for section, readers in SECTION_READERS.items())
