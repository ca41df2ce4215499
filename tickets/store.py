"""The outputs/ layout: run directories, atomic writes, results.csv, run.json, locking, checksums.

Every file is written to a temporary name in its directory and moved into place with
``os.replace``, so an interrupted run never leaves a half-written file behind. A network
directory counts as complete only once its ``done.json`` exists. ``done.json`` holds the
network's results.csv row, the sha256 of every file of its directory (``files``) and of the
run's shared files it read (``inputs``: init.pt, rewind.pt, the round's mask.pt). Any process
can verify a job's directory or the run's shared files with :meth:`RunStore.damaged_files` and
:meth:`RunStore.damaged_inputs`; results.csv is always rebuilt from the done.json files, so
it can be lost or damaged without losing a row.
"""
from __future__ import annotations

import csv
import hashlib
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


def _file_mode() -> int:
    """The mode open() would give a new file under this process's umask (mkstemp's 0600 would hide runs
    from the rest of a group sharing outputs/)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()  # read once: os.umask is process-wide and not safe to flip while threads write


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            os.fchmod(handle.fileno(), _FILE_MODE)
        os.replace(tmp, path)
    except BaseException as error:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(error, OSError) and error.filename is None:
            error.filename = str(path)  # a write through a descriptor names no file: name the one it was for
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
    """The row in a done.json: everything but the checksums."""
    return {k: v for k, v in record.items() if k not in RECORD_KEYS}


def _row_key(record: dict) -> tuple:
    return tuple(str(record[k]) for k in ROW_KEY)


def _in_results_order(rows) -> list[dict]:
    return sorted(rows, key=lambda r: (int(r["seed"]), int(r["round"]), r["variant"] != "ticket", r["variant"]))


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
        self._rows: dict[tuple, dict] | None = None  # results.csv's rows by network, once read (add_result)

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

    def relative(self, path: Path) -> str:
        """``path`` relative to the run directory, with forward slashes (how done.json names files)."""
        return Path(path).resolve().relative_to(self.dir.resolve()).as_posix()

    def damage_message(self, name: str, problem: str) -> str:
        """One line for a damaged shared file ``name`` (relative to the run): the file, the problem, the fix."""
        parts = name.split("/")
        if name == "config.yaml":
            fix = "start the run anew under another --name"
        elif parts[0] == "stability":  # stability/seed_<s>/rewind_<k>.pt: the analysis of that seed reads it
            fix = f"delete {self.dir / parts[0] / parts[1]} to analyse {parts[1].replace('_', ' ')} anew"
        elif len(parts) == 2:  # seed_<s>/init.pt, seed_<s>/rewind.pt: every network of the seed depends on them
            fix = f"delete {self.dir / parts[0]} to train {parts[0].replace('_', ' ')} anew"
        else:  # seed_<s>/round_<r>/mask.pt: that round and the later ones depend on it
            fix = (f"delete {self.dir / parts[0] / parts[1]} and the later rounds of "
                   f"{parts[0].replace('_', ' ')} to train them anew")
        return f"{self.dir / name} {problem}; restore it from a copy of the run, or {fix}"

    # finished jobs -----------------------------------------------------------
    # Every job of every kind writes one directory and marks it done the same way, so the
    # checks below hold for IMP networks, stability copies and supermasks alike.
    def mark_done(self, job_dir: Path, row: dict, inputs: Iterable[Path] = ()) -> None:
        """Mark a job's directory complete: its done.json holds its row, the sha256 of every file now in
        the directory and of each shared file in ``inputs`` (the run's files it was trained from).

        A job calls this; the driver alone writes results.csv (:meth:`rebuild_results`).
        """
        files = {p.name: sha256_file(p) for p in sorted(Path(job_dir).iterdir())
                 if p.is_file() and p.name != "done.json" and not p.name.startswith(".")}
        recorded = {self.relative(p): sha256_file(p) for p in inputs}
        atomic_write_json(Path(job_dir) / "done.json", {**row, "files": files, "inputs": recorded})

    @staticmethod
    def is_done(job_dir: Path) -> bool:
        return (Path(job_dir) / "done.json").exists()

    @staticmethod
    def done_record(job_dir: Path) -> dict | None:
        """A finished job's done.json, or None when it is missing or unreadable."""
        return _read_record(Path(job_dir) / "done.json")

    def done_row(self, job_dir: Path) -> dict:
        """A finished job's row (its done.json without the checksums)."""
        return _row_of(self.done_record(job_dir) or {})

    def damaged_files(self, job_dir: Path) -> list[str]:
        """What is wrong with a finished job's files (``["final.pt is missing"]``); empty when intact."""
        record = self.done_record(job_dir)
        if record is None:
            return ["done.json cannot be read"]
        return [f"{name} {problem}" for name, digest in record.get("files", {}).items()
                if (problem := _file_problem(Path(job_dir) / name, digest))]

    def intact_row(self, job_dir: Path) -> tuple[dict | None, list[str]]:
        """``(row, [])`` for a finished job whose files match their checksums; ``(None, problems)`` otherwise
        (no problems when the job has not finished)."""
        if not self.is_done(job_dir):
            return None, []
        problems = self.damaged_files(job_dir)
        return (None, problems) if problems else (self.done_row(job_dir), [])

    def done_files(self) -> list[Path]:
        """The done.json of every finished job of the run, of every kind."""
        return sorted(self.dir.rglob("done.json"))

    def recorded_inputs(self) -> dict[str, tuple[str, str]]:
        """Shared file (relative to the run) -> (its sha256, the first job that recorded it)."""
        recorded: dict[str, tuple[str, str]] = {}
        for done in self.done_files():
            for name, digest in (_read_record(done) or {}).get("inputs", {}).items():
                recorded.setdefault(name, (digest, self.relative(done.parent)))
        return recorded

    def damaged_inputs(self) -> list[tuple[str, str]]:
        """(file, problem) for each shared file that differs from what the finished jobs recorded."""
        problems = []
        for name, (digest, user) in sorted(self.recorded_inputs().items()):
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
        return _in_results_order(self._read_finished_rows().values())

    def _read_finished_rows(self) -> dict[tuple, dict]:
        return {_row_key(record): _row_of(record) for done in self.dir.glob("seed_*/round_*/*/done.json")
                if (record := _read_record(done)) is not None and all(k in record for k in ROW_KEY)}

    def rebuild_results(self) -> None:
        """Write results.csv from the finished networks' done.json files (heals a lost or damaged one)."""
        self._rows = self._read_finished_rows()
        write_csv_rows(self.results_path, RESULT_COLUMNS, _in_results_order(self._rows.values()))

    def add_result(self, job_dir: Path) -> None:
        """Add a network that just finished to results.csv: :meth:`rebuild_results`'s file, reading one done.json.

        The driver calls it after every network, so it keeps the rows it read; it reads them all
        once, on the first call.
        """
        if self._rows is None:
            return self.rebuild_results()
        record = self.done_record(job_dir)
        if record is not None and all(k in record for k in ROW_KEY):
            self._rows[_row_key(record)] = _row_of(record)
        write_csv_rows(self.results_path, RESULT_COLUMNS, _in_results_order(self._rows.values()))

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
    """Versions of the software a run used (Lightning's from its metadata: importing it takes seconds)."""
    from importlib.metadata import version

    from tickets.meta import __version__

    return {
        "tickets": __version__,
        "torch": torch.__version__,
        "pytorch_lightning": version("pytorch_lightning"),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
