"""Reading runs for the report: results.csv, diverged networks, and labels for several runs."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from tickets.errors import TicketsError
from tickets.report.statistics import METRICS
from tickets.store import DIVERGED, OK

REQUIRED_COLUMNS = ("seed", "round", "variant", "weights_remaining") + METRICS
# Config keys that differ between runs without being what the runs compare.
IGNORED_CONFIG_KEYS = ("name", "seeds", "prune.rounds", "prune.controls", "train.accelerator", "train.devices")


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
    configs = []
    for d in run_dirs:
        path = Path(d) / "config.yaml"
        loaded = yaml.safe_load(path.read_text()) if path.is_file() else None
        configs.append(_flatten(loaded) if isinstance(loaded, dict) else None)
    if len(run_dirs) < 2 or None in configs:
        return names
    keys = list(dict.fromkeys(k for c in configs for k in c))
    keys = [k for k in keys if not any(k == i or k.startswith(i + ".") for i in IGNORED_CONFIG_KEYS)]
    unset = object()
    differing = [k for k in keys if len({repr(c.get(k, unset)) for c in configs}) > 1]
    last = [k.rsplit(".", 1)[-1] for k in differing]
    short = {k: s if last.count(s) == 1 else k for k, s in zip(differing, last)}
    labels = [", ".join(f"{short[k]}={_format_value(c[k]) if k in c else 'unset'}" for k in differing)
              for c in configs]
    return labels if differing and len(set(labels)) == len(labels) else names
