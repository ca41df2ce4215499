"""Shared helpers: run the CLI in-process on tiny settings (the embedded digits, a few iterations)."""
import csv
import hashlib
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tickets import plugins

os.environ.setdefault("TICKETS_STRICT_PLUGINS", "1")  # tests run strict, as design.md asks

TINY = ["--epochs", "0.3", "--set", "train.eval_every=5", "--quiet"]


@pytest.fixture(autouse=True)
def fresh_plugins():
    plugins.reset()
    yield
    plugins.reset()


def run_cli(*args, expect=0):
    """Invoke ``tickets ARGS`` in-process; assert the exit code; return the result."""
    from tickets.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == expect, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result


def prune_tiny(out: Path, name: str, *extra):
    run_cli("prune", "--out", out, "--name", name, *TINY, *extra)
    return out / name


def read_results(run_dir: Path) -> list[dict]:
    with (run_dir / "results.csv").open() as handle:
        return list(csv.DictReader(handle))


def load(path: Path):
    return torch.load(path, weights_only=True)


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` -> its sha256 (to show that a command wrote nothing)."""
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}
