"""Shared helpers: run the CLI in-process on tiny settings (the embedded digits, a few iterations)."""
import csv
import hashlib
import os
import re
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tickets import plugins
from tickets.cli import main

os.environ.setdefault("TICKETS_STRICT_PLUGINS", "1")  # tests run strict, as design.md asks

# one seed, trained in this process (prune's defaults are 3 seeds and a worker per core)
TINY = ["--epochs", "0.3", "--set", "train.eval_every=5", "--seeds", "0", "--set", "execution.workers=1", "--quiet"]


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


def masked_accuracy(run_dir: Path, state: dict, mask: dict) -> float:
    """Test accuracy of the run's model with weights ``state * mask``, computed here with plain torch.

    Independent of the training code: what a reader of the paper would compute for ``theta ⊙ m``.
    """
    import yaml

    from tickets import config as config_mod
    from tickets.components import load_splits
    from tickets.plugins import registry

    config = config_mod.from_dict(yaml.safe_load((Path(run_dir) / "config.yaml").read_text()))
    splits = load_splits(config, registry().get("datasets", config.data.dataset))
    model = registry().get("models", config.model.name)(splits.num_classes, splits.input_shape, **config.model.options)
    model.load_state_dict({k: v * mask[k] if k in mask else v for k, v in state.items()})
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(x).argmax(1) == y).sum())
                      for x, y in zip(splits.test_x.split(1000), splits.test_y.split(1000)))
    return correct / splits.test_y.shape[0]


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` -> its sha256 (to show that a command wrote nothing)."""
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


# A temporary folder on sys.path that "installs" plugin distributions (test_plugins, test_augment).
class Site:
    """A folder on sys.path into which tests 'install' distributions."""

    def __init__(self, root: Path):
        self.root = root
        self.modules: list[str] = []

    def install(self, dist: str, version: str, modules: dict[str, str], entry_points: dict[str, str]) -> None:
        for name, source in modules.items():
            (self.root / f"{name}.py").write_text(textwrap.dedent(source))
            self.modules.append(name)
        info = self.root / f"{re.sub(r'[-.]+', '_', dist)}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
        (info / "entry_points.txt").write_text(f"[tickets]\n{lines}")


@pytest.fixture
def site(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv("TICKETS_PLUGINS", raising=False)
    monkeypatch.delenv("TICKETS_STRICT_PLUGINS", raising=False)
    plugins.set_strict(None)
    plugins.reset()
    s = Site(root)
    yield s
    for name in s.modules:
        sys.modules.pop(name, None)
    plugins.reset()


def invoke(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)
