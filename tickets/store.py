"""The outputs/ layout: run directories, atomic writes, results.csv, run.json, locking.

Every file is written to a temporary name in its directory and moved into place with
``os.replace``, so an interrupted run never leaves a half-written file behind. A network
directory counts as complete only once its ``done.json`` exists.
"""
from __future__ import annotations

import csv
import io
import json
import os
import platform
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable

import torch

from tickets.errors import TicketsError

RESULT_COLUMNS = [
    "run", "seed", "round", "variant", "criterion", "weights_remaining", "params_remaining",
    "acc_at_init", "best_val_loss", "early_stop_iter", "test_acc_at_early_stop", "final_test_acc",
    "final_test_loss", "iterations", "train_seconds",
]
ROW_KEY = ("seed", "round", "variant")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def torch_load(path: str | Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def write_csv_rows(path: str | Path, columns: list[str], rows: Iterable[dict]) -> None:
    """Write rows (dicts) as a CSV with a header, atomically."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    atomic_write_text(path, out.getvalue())


def read_csv_rows(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


class RunLock:
    """An exclusive lock file, so two processes never write the same run at once."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / ".lock"

    def __enter__(self) -> "RunLock":
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = self._holder()
            if holder is not None and _alive(holder):
                raise TicketsError(
                    f"run {self.path.parent} is in use by process {holder}; wait for it to finish or stop it"
                ) from None
            self.path.unlink(missing_ok=True)  # stale lock of a process that died
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        return self

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)

    def _holder(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunStore:
    """One run directory: ``outputs/<run>/`` and everything inside it (see design.md)."""

    def __init__(self, root: str | Path, name: str):
        self.root = Path(root)
        self.name = name
        self.dir = self.root / name

    # layout -----------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.dir / "config.yaml"

    @property
    def results_path(self) -> Path:
        return self.dir / "results.csv"

    @property
    def run_json_path(self) -> Path:
        return self.dir / "run.json"

    def seed_dir(self, seed: int) -> Path:
        return self.dir / f"seed_{seed}"

    def round_dir(self, seed: int, round_: int) -> Path:
        return self.seed_dir(seed) / f"round_{round_}"

    def network_dir(self, seed: int, round_: int, variant: str) -> Path:
        return self.round_dir(seed, round_) / variant

    def is_done(self, seed: int, round_: int, variant: str) -> bool:
        return (self.network_dir(seed, round_, variant) / "done.json").exists()

    # results ----------------------------------------------------------------
    def read_results(self) -> list[dict]:
        return read_csv_rows(self.results_path)

    def add_result(self, row: dict) -> None:
        """Add (or replace) the row of one network; results.csv never holds duplicate rows."""
        key = tuple(str(row[k]) for k in ROW_KEY)
        rows = [r for r in self.read_results() if tuple(str(r[k]) for k in ROW_KEY) != key]
        rows.append(row)
        rows.sort(key=lambda r: (int(r["seed"]), int(r["round"]), r["variant"] != "ticket", r["variant"]))
        write_csv_rows(self.results_path, RESULT_COLUMNS, rows)

    def mark_done(self, seed: int, round_: int, variant: str, row: dict) -> None:
        """Mark a network complete: its done.json holds its result row."""
        atomic_write_json(self.network_dir(seed, round_, variant) / "done.json", row)

    def finish_network(self, seed: int, round_: int, variant: str, row: dict) -> None:
        """Mark a network complete and record its row in results.csv."""
        self.mark_done(seed, round_, variant, row)
        self.add_result(row)

    def done_row(self, seed: int, round_: int, variant: str) -> dict:
        return read_json(self.network_dir(seed, round_, variant) / "done.json")

    # run.json ---------------------------------------------------------------
    def read_run_json(self) -> dict:
        return read_json(self.run_json_path) if self.run_json_path.exists() else {}

    def update_run_json(self, **fields: Any) -> dict:
        data = self.read_run_json()
        data.update(fields)
        atomic_write_json(self.run_json_path, data)
        return data

    @contextmanager
    def running(self, config_text: str, **fields: Any):
        """Lock the run, write config.yaml, and keep run.json's status: running, then complete or interrupted."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with RunLock(self.dir):
            atomic_write_text(self.config_path, config_text)
            previous = self.read_run_json()
            self.update_run_json(name=self.name, status="running", started=previous.get("started", now()),
                                 resumed=previous.get("status") is not None, versions=environment_versions(),
                                 **fields)
            try:
                yield self
            except BaseException:
                self.update_run_json(status="interrupted", stopped=now())
                raise
            seconds = sum(float(r["train_seconds"] or 0) for r in self.read_results())
            self.update_run_json(status="complete", finished=now(), train_seconds=round(seconds, 2))


def environment_versions() -> dict:
    """Versions of the software a run used."""
    import pytorch_lightning

    import tickets

    return {
        "tickets": tickets.__version__,
        "torch": torch.__version__,
        "pytorch_lightning": pytorch_lightning.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
