"""The outputs/ layout: run directories, atomic writes, results.csv, run.json, locking, checksums.

Every file is written to a temporary name in its directory and moved into place with
``os.replace``, so an interrupted run never leaves a half-written file behind. A network
directory counts as complete only once its ``done.json`` exists. ``done.json`` holds the
network's results.csv row, the sha256 of every file of its directory (``files``) and of the
run's shared files it read (``inputs``: init.pt, rewind.pt, the round's mask.pt). Any process
can verify a network or a seed's shared files with :meth:`RunStore.damaged_files` and
:meth:`RunStore.damaged_inputs`; results.csv is always rebuilt from the done.json files, so
it can be lost or damaged without losing a row.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import platform
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable

import torch
import yaml

from tickets.errors import TicketsError

RESULT_COLUMNS = [
    "run", "seed", "round", "variant", "criterion", "weights_remaining", "params_remaining",
    "acc_at_init", "best_val_loss", "early_stop_iter", "test_acc_at_early_stop", "final_test_acc",
    "final_test_loss", "iterations", "train_seconds", "status",
]
ROW_KEY = ("seed", "round", "variant")
OK, DIVERGED = "ok", "diverged"  # the values of the status column
RECORD_KEYS = ("files", "inputs")  # the keys of done.json that are not columns of the row


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


def sha256_file(path: str | Path) -> str:
    """The sha256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def csv_bytes(columns: list[str], rows: Iterable[dict]) -> bytes:
    """Rows (dicts) as the bytes of a CSV file with a header (missing values empty)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return out.getvalue().encode()


def write_csv_rows(path: str | Path, columns: list[str], rows: Iterable[dict]) -> None:
    """Write rows (dicts) as a CSV with a header, atomically."""
    atomic_write_bytes(path, csv_bytes(columns, rows))


def read_csv_rows(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _read_record(path: Path) -> dict | None:
    """A done.json as a dict, or None when it is missing or not a JSON object."""
    try:
        record = read_json(path)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _row_of(record: dict) -> dict:
    """The results.csv row in a done.json. Rows written before the status column get one:
    a network whose final test loss is not finite diverged."""
    row = {k: v for k, v in record.items() if k not in RECORD_KEYS}
    if not row.get("status"):
        try:
            finite = math.isfinite(float(row.get("final_test_loss")))
        except (TypeError, ValueError):
            finite = True
        row["status"] = OK if finite else DIVERGED
    return row


def _file_problem(path: Path, digest: str) -> str | None:
    """"is missing", "does not match its checksum", or None when the file has the recorded sha256."""
    if not path.is_file():
        return "is missing"
    return None if sha256_file(path) == digest else "does not match its checksum"


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

    def relative(self, path: Path) -> str:
        """``path`` relative to the run directory, with forward slashes (how done.json names files)."""
        return Path(path).relative_to(self.dir).as_posix()

    def damage_message(self, name: str, problem: str) -> str:
        """One line for a damaged shared file ``name`` (relative to the run): the file, the problem, the fix."""
        parts = name.split("/")
        if name == "config.yaml":
            fix = "start the run anew under another --name"
        elif len(parts) == 2:  # seed_<s>/init.pt, seed_<s>/rewind.pt: every network of the seed depends on them
            fix = f"delete {self.dir / parts[0]} to train {parts[0].replace('_', ' ')} anew"
        else:  # seed_<s>/round_<r>/mask.pt: that round and the later ones depend on it
            fix = f"delete {self.dir / parts[0] / parts[1]} and the later rounds of {parts[0].replace('_', ' ')} to train them anew"
        return f"{self.dir / name} {problem}; restore it from a copy of the run, or {fix}"

    # finished networks --------------------------------------------------------
    def finish_network(self, seed: int, round_: int, variant: str, row: dict, inputs: Iterable[Path] = ()) -> None:
        """Mark a network complete and record its row.

        done.json holds the row, the sha256 of every file now in the network's directory and
        of each shared file in ``inputs`` (the run's files the network was trained from).
        """
        net_dir = self.network_dir(seed, round_, variant)
        files = {p.name: sha256_file(p) for p in sorted(net_dir.iterdir())
                 if p.is_file() and p.name != "done.json" and not p.name.startswith(".")}
        recorded = {self.relative(p): sha256_file(p) for p in inputs}
        atomic_write_json(net_dir / "done.json", {**row, "files": files, "inputs": recorded})
        self.rebuild_results()

    def done_record(self, seed: int, round_: int, variant: str) -> dict | None:
        """A finished network's done.json, or None when it is missing or unreadable."""
        return _read_record(self.network_dir(seed, round_, variant) / "done.json")

    def done_row(self, seed: int, round_: int, variant: str) -> dict:
        """A finished network's results.csv row (from its done.json)."""
        return _row_of(self.done_record(seed, round_, variant) or {})

    def damaged_files(self, seed: int, round_: int, variant: str) -> list[str]:
        """What is wrong with a finished network's files (``["final.pt is missing"]``); empty when intact.

        A done.json written before checksums were recorded has nothing to compare, so it counts as intact.
        """
        net_dir = self.network_dir(seed, round_, variant)
        record = self.done_record(seed, round_, variant)
        if record is None:
            return ["done.json cannot be read"]
        return [f"{name} {problem}" for name, digest in record.get("files", {}).items()
                if (problem := _file_problem(net_dir / name, digest))]

    def recorded_inputs(self, seed: int) -> dict[str, tuple[str, str]]:
        """Shared file of a seed (relative to the run) -> (its sha256, the first network that recorded it)."""
        recorded: dict[str, tuple[str, str]] = {}
        for done in sorted(self.seed_dir(seed).glob("round_*/*/done.json")):
            for name, digest in (_read_record(done) or {}).get("inputs", {}).items():
                recorded.setdefault(name, (digest, self.relative(done.parent)))
        return recorded

    def damaged_inputs(self, seed: int) -> list[tuple[str, str]]:
        """(file, problem) for each shared file of a seed that differs from what its finished networks recorded."""
        problems = []
        for name, (digest, user) in sorted(self.recorded_inputs(seed).items()):
            problem = _file_problem(self.dir / name, digest)
            if problem:
                problems.append((name, f"{problem} (recorded when {user} was trained)"))
        return problems

    def load(self, path: Path) -> Any:
        """``torch_load`` of a shared file; an unreadable one is a TicketsError naming it and the fix."""
        try:
            return torch_load(path)
        except Exception as error:  # torch raises many types for a damaged archive
            reason = " ".join(str(error).split())[:160] or type(error).__name__
            raise TicketsError(self.damage_message(self.relative(path), f"cannot be read ({reason})")) from None

    # results ----------------------------------------------------------------
    def read_results(self) -> list[dict]:
        return read_csv_rows(self.results_path)

    def finished_rows(self) -> list[dict]:
        """The rows of every finished network, from the done.json files, in results.csv order."""
        rows = [_row_of(record) for done in self.dir.glob("seed_*/round_*/*/done.json")
                if (record := _read_record(done)) is not None and all(k in record for k in ROW_KEY)]
        rows.sort(key=lambda r: (int(r["seed"]), int(r["round"]), r["variant"] != "ticket", r["variant"]))
        return rows

    def rebuild_results(self) -> None:
        """Write results.csv from the finished networks' done.json files (heals a lost or damaged one)."""
        write_csv_rows(self.results_path, RESULT_COLUMNS, self.finished_rows())

    def results_problem(self) -> str | None:
        """Why results.csv does not hold exactly the finished networks' rows, or None when it does."""
        rows = self.finished_rows()
        if not self.results_path.exists():
            return "is missing" if rows else None
        try:
            actual = self.results_path.read_bytes()
        except OSError as error:
            return f"cannot be read ({error})"
        return None if actual == csv_bytes(RESULT_COLUMNS, rows) else "differs from the rows in the networks' done.json"

    # run.json ---------------------------------------------------------------
    def read_run_json(self) -> dict:
        """run.json, or {} when there is none (or it cannot be read: it is rewritten on the next run)."""
        return _read_record(self.run_json_path) or {}

    def read_config(self) -> dict:
        """The run's config.yaml as a dict; a damaged one (unreadable, or not what the run wrote) is a TicketsError."""
        try:
            text = self.config_path.read_bytes()
            data = yaml.safe_load(text) or {}
        except (OSError, ValueError, yaml.YAMLError) as error:  # UnicodeDecodeError is a ValueError
            first = " ".join(str(error).split())[:160]
            raise TicketsError(self.damage_message("config.yaml", f"cannot be read ({first})")) from None
        recorded = self.read_run_json().get("config_sha256")
        if recorded and recorded != hashlib.sha256(text).hexdigest():
            raise TicketsError(self.damage_message("config.yaml", "is not the config this run wrote (its checksum in "
                                                                  "run.json differs)"))
        if not isinstance(data, dict):
            raise TicketsError(self.damage_message("config.yaml", "is not a mapping of config sections"))
        return data

    def update_run_json(self, **fields: Any) -> dict:
        data = self.read_run_json()
        data.update(fields)
        atomic_write_json(self.run_json_path, data)
        return data

    @contextmanager
    def running(self, config_text: str, **fields: Any):
        """Lock the run, write config.yaml (its sha256 goes to run.json), rebuild results.csv from the finished
        networks, and keep run.json's status: running, then complete or interrupted."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with RunLock(self.dir):
            atomic_write_text(self.config_path, config_text)
            previous = self.read_run_json()
            self.update_run_json(name=self.name, status="running", started=previous.get("started", now()),
                                 resumed=previous.get("status") is not None, versions=environment_versions(),
                                 config_sha256=hashlib.sha256(config_text.encode()).hexdigest(), **fields)
            self.rebuild_results()
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
