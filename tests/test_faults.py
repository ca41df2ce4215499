"""Faults that used to end in a traceback (issue 17): --out a file, a full disk, a learning rate nothing learns at.

Each is one line on stderr with a fix and an exit code, and a run interrupted by one resumes to the results of
an uninterrupted run."""
import hashlib
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from conftest import TINY, load, masked_accuracy, read_results, run_cli

# --- --out is a file ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("verb, extra", [
    ("prune", ()), ("train", ()), ("supermask", ()), ("stability", ("--at", "0", "--points", "3")),
])
@pytest.mark.parametrize("below", [False, True], ids=["file", "below-a-file"])
def test_out_that_is_a_file_is_one_line_and_exit_2(tmp_path, verb, extra, below):
    file = tmp_path / "results.txt"
    file.write_bytes(b"my notes\n")
    out = file / "runs" if below else file
    result = run_cli(verb, "--out", out, *TINY, *extra, expect=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    assert lines[0] == (f"Error: --out {out}: {file} is a file, not a folder; give --out a folder "
                        "(it is created if missing)")
    assert file.read_bytes() == b"my notes\n" and sorted(tmp_path.iterdir()) == [file]


# --- a full disk ---------------------------------------------------------------------------------------------

# Four networks of LeNet-300-100: init.pt, rewind.pt and four final.pt of about 1 MB each, 7 MB in all.
FULL = ["prune", "--name", "full", "--rounds", "3", "--controls", "none", "--epochs", "0.3", "--set",
        "train.eval_every=5", "--seeds", "0", "--workers", "1", "--quiet"]


def mount(folder, size: str) -> bool:
    folder.mkdir(exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def full_disk(tmp_path_factory):
    """A run on a 6 MB disk that fills up before it ends: the disk, and the finished process."""
    disk = tmp_path_factory.mktemp("disk") / "small"
    if not mount(disk, "6m"):
        pytest.skip("needs to mount a small tmpfs (root)")
    try:
        done = subprocess.run([sys.executable, "-m", "tickets.cli", *FULL, "--out", str(disk)], capture_output=True,
                              text=True, timeout=600)
        yield disk, done
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_full_disk_is_one_line_and_exit_5(full_disk):
    disk, done = full_disk
    assert done.returncode == 5, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("Error: cannot write ") and "the disk is full" in lines[0]
    assert "run the same command: it resumes where it stopped" in lines[0]


def test_a_full_disk_names_where_it_could_not_write(full_disk):
    disk, done = full_disk
    assert f"cannot write {disk}" in done.stderr, done.stderr


def test_a_run_stopped_by_a_full_disk_resumes_to_the_uninterrupted_results(full_disk, tmp_path):
    from tickets.api import check

    disk, done = full_disk
    assert done.returncode == 5
    finished = read_results(disk / "full")
    assert 0 < len(finished) < 4  # it stopped part of the way
    assert check(disk / "full").problems == []  # what it wrote is intact
    reference = tmp_path / "full"
    run_cli(*FULL, "--out", tmp_path)  # uninterrupted
    subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
    run_cli(*FULL, "--out", disk)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "train_seconds"} for r in rows]
    assert strip(read_results(disk / "full")) == strip(read_results(reference))
    for final in reference.glob("seed_0/round_*/ticket/final.pt"):
        assert hashlib.sha256((disk / "full" / final.relative_to(reference)).read_bytes()).digest() == \
            hashlib.sha256(final.read_bytes()).digest()


# --- a learning rate at which nothing learns ---------------------------------------------------------------

def test_networks_that_did_not_learn_are_named_in_one_line_each(tmp_path):
    from tickets.cli import main

    args = ["prune", "--out", tmp_path, "--name", "adam", "--rounds", "1", "--controls", "none", "--optimizer",
            "adam", "--lr", "1e6", *TINY]
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    rows = read_results(tmp_path / "adam")
    assert {r["status"] for r in rows} <= {"ok", "diverged"} and len(rows) == 2
    assert result.exit_code == (3 if any(r["status"] == "diverged" for r in rows) else 0), result.stderr
    warnings = [line for line in result.stderr.splitlines() if "did not learn" in line]
    assert any(line.startswith("warning: seed 0 | round 0/1 | ticket did not learn") for line in warnings)
    names = [line.removeprefix("warning: ").split(" did not learn")[0] for line in warnings]
    assert len(names) == len(set(names))  # one line per network
    assert set(names) <= {"seed 0 | round 0/1 | ticket", "seed 0 | round 1/1 | ticket"}
    # what the warning says, computed here with plain torch from the saved network
    run = tmp_path / "adam"
    final = load(run / "seed_0/round_0/ticket/final.pt")
    (dense,) = [r for r in rows if r["round"] == "0"]
    accuracy = masked_accuracy(run, final, {})
    assert accuracy == pytest.approx(float(dense["final_test_acc"]), abs=1e-6) and accuracy < 0.15
    assert plain_test_loss(run, final) > 1e6
    report = (run / "report" / "report.md").read_text().splitlines()
    (heading,) = [i for i, line in enumerate(report) if line.startswith("#") and "did not learn" in line]
    listed = [line for line in report[heading:] if line.startswith("- ")]
    assert all(any(item.startswith(f"- {name}") for item in listed) for name in names)


def test_a_network_that_learned_is_not_warned_about(tmp_path):
    result = run_cli("prune", "--out", tmp_path, "--name", "fine", "--rounds", "0", *TINY)
    assert "did not learn" not in result.stderr
    assert "did not learn" not in (tmp_path / "fine" / "report" / "report.md").read_text()


def plain_test_loss(run_dir, state) -> float:
    """Test cross-entropy of the run's model with ``state``, with plain torch."""
    import yaml

    from tickets import config as config_mod
    from tickets.components import load_splits
    from tickets.plugins import registry

    config = config_mod.from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    splits = load_splits(config, registry().get("datasets", config.data.dataset))
    model = registry().get("models", config.model.name)(splits.num_classes, splits.input_shape, **config.model.options)
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        return F.cross_entropy(model(splits.test_x), splits.test_y).item()
