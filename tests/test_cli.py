"""The CLI shell: its verbs, the flags each refuses, bad values, and the README's exit codes, as a user sees them."""
import csv
import errno
import re
import shutil
from pathlib import Path

import pytest
from conftest import invoke, snapshot

import tickets.api
from tickets import store as store_mod

# the README's list of commands
VERBS = ["prune", "train", "supermask", "stability", "compare", "report", "runs", "check", "plugins"]
TINY = ["--epochs", "0.2", "--seeds", "0", "--workers", "1", "--quiet", "--set", "train.eval_every=5"]


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One dense network trained by `tickets train` (about a second): the run directory."""
    out = tmp_path_factory.mktemp("cli")
    result = invoke("train", "--out", out, "--name", "dense", *TINY)
    assert result.exit_code == 0, result.output
    return out / "dense"


def readme_verbs() -> set[str]:
    """The verbs of the README's example commands (`tickets VERB ...` lines)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    return set(re.findall(r"^tickets ([a-z]+)", readme, flags=re.MULTILINE))


def test_help_lists_every_verb():
    result = invoke("--help")
    assert result.exit_code == 0
    commands = result.stdout.split("Commands:")[1].splitlines()
    listed = {line.split()[0] for line in commands if line.strip()}
    assert set(VERBS) <= readme_verbs()  # the README shows them all
    assert set(VERBS) | readme_verbs() <= listed
    for verb in listed:  # each one has its own help
        help_ = invoke(verb, "--help")
        assert help_.exit_code == 0 and help_.stdout.startswith(f"Usage: main {verb} ")


# each verb has only the flags it uses ------------------------------------------------------------------
REFUSED = [
    (["supermask"], "--rounds", "5"),
    (["supermask"], "--rewind", "0"),
    (["supermask"], "--controls", "reinit"),
    (["supermask"], "--criterion", "magnitude"),
    (["train"], "--controls", "reinit"),
    (["train"], "--criterion", "random"),
    (["train"], "--rounds", "2"),
    (["train"], "--prune-fraction", "0.5"),
    (["train"], "--scope", "global"),
    (["stability", "--at", "0"], "--criterion", "magnitude"),
    (["stability", "--at", "0"], "--rewind", "0"),
    (["stability", "--at", "0"], "--logger", "csv"),
    (["compare", "RUN", "--controls", "reinit"], "--epochs", "1"),
    (["compare", "RUN", "--controls", "reinit"], "--rounds", "2"),
    (["check", "RUN"], "--seeds", "0"),
    (["report", "RUN"], "--rounds", "1"),
    (["runs"], "--rounds", "1"),
    (["plugins"], "--seeds", "0"),
]


@pytest.mark.parametrize("verb,flag,value", REFUSED, ids=[f"{v[0]} {f}" for v, f, _ in REFUSED])
def test_a_verb_refuses_a_flag_it_does_not_use(tmp_path, monkeypatch, verb, flag, value):
    monkeypatch.chdir(tmp_path)  # the default --out (./outputs) is here: nothing may appear
    args = [str(tmp_path / "run") if a == "RUN" else a for a in verb]
    out = ["--out", tmp_path / "out"] if verb[0] in ("prune", "train", "supermask", "stability", "runs") else []
    result = invoke(*args, *out, flag, value)
    assert result.exit_code == 2
    line = one_error_line(result)
    assert f"No such option '{flag}'" in line and f" {verb[0]} --help')" in line  # in-process the program is "main"
    assert not any(tmp_path.iterdir())
    assert flag not in invoke(verb[0], "--help").stdout  # nor does its help offer it


# bad values ---------------------------------------------------------------------------------------------
BAD_VALUES = [
    (["prune", "--rounds", "-1"], "rounds must be 0 or more, got -1"),
    (["prune", "--rounds", "two"], "'two' is not a valid integer"),
    (["train", "--seeds", "a"], "--seeds 'a': expected comma-separated integers"),
    (["supermask", "--seeds", "0,a"], "--seeds '0,a': expected comma-separated integers"),
    (["prune", "--criterion", "nope"], "unknown criterion 'nope'"),
    (["train", "--epochs", "many"], "'many' is not a valid float"),
    (["train", "--workers", "lots"], "--workers 'lots': give a count of at least 1 or auto"),
    (["train", "--devices", "x"], "--devices 'x': give a count (1), device indices (0 or 0,1) or auto"),
    (["stability", "--at", "0", "--rounds", "x"], "--rounds 'x': expected comma-separated integers"),
    (["plugins", "--kind", "wheels"], "unknown kind 'wheels'"),
]


@pytest.mark.parametrize("args,message", BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_a_bad_value_is_one_line_exit_2_and_writes_nothing(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    out = ["--out", tmp_path / "out"] if args[0] != "plugins" else []
    result = invoke(*args, *out, "--quiet" if args[0] != "plugins" else "--json")
    assert result.exit_code == 2, result.output
    assert message in one_error_line(result)
    assert not any(tmp_path.iterdir())


def test_a_bad_value_leaves_an_existing_run_untouched(trained):
    before = snapshot(trained.parent)
    result = invoke("train", "--out", trained.parent, "--name", "dense", *TINY, "--seeds", "a")
    assert result.exit_code == 2 and "expected comma-separated integers" in one_error_line(result)
    assert snapshot(trained.parent) == before


# runs ---------------------------------------------------------------------------------------------------
def test_runs_on_an_empty_folder(tmp_path):
    result = invoke("runs", "--out", tmp_path)
    assert result.exit_code == 0
    assert result.stdout.strip() == f"no runs under {tmp_path}"
    assert not any(tmp_path.iterdir())


def test_runs_refuses_a_file_for_out(tmp_path):
    not_a_folder = tmp_path / "results.csv"
    not_a_folder.write_text("seed,round\n")
    result = invoke("runs", "--out", not_a_folder)
    assert result.exit_code == 2 and "is a file, not a folder of runs" in one_error_line(result)
    assert not_a_folder.read_text() == "seed,round\n"


def test_runs_lists_a_finished_run(trained):
    result = invoke("runs", "--out", trained.parent)
    assert result.exit_code == 0
    [line] = result.stdout.strip().splitlines()
    assert line.split()[:3] == ["dense", "complete", "1/1"]


# the README's exit codes -------------------------------------------------------------------------------
def test_exit_0_check_of_an_intact_run(trained):
    result = invoke("check", trained)
    assert result.exit_code == 0
    assert result.stdout.strip().splitlines()[-1] == "no problems found"


def test_exit_4_check_finds_a_damaged_file(trained, tmp_path):
    copy = tmp_path / "dense"
    shutil.copytree(trained, copy)
    final = copy / "seed_0/round_0/ticket/final.pt"
    data = bytearray(final.read_bytes())
    data[-100] ^= 0xFF
    final.write_bytes(bytes(data))
    result = invoke("check", copy)
    assert result.exit_code == 4
    problems = [line for line in result.stdout.splitlines() if line.startswith("problem: ")]
    assert len(problems) == 1 and "final.pt" in problems[0]


def test_exit_2_check_of_a_folder_that_is_not_a_run(tmp_path):
    result = invoke("check", tmp_path)
    assert result.exit_code == 2 and "is not a tickets run" in one_error_line(result)


def test_exit_3_a_network_diverged(tmp_path):
    result = invoke("train", "--out", tmp_path, "--name", "huge", *TINY, "--lr", "1e6", "--optimizer", "sgd")
    assert result.exit_code == 3
    assert "diverged" in result.stderr and "seed 0 round 0 ticket" in result.stderr
    with (tmp_path / "huge" / "results.csv").open() as handle:
        assert [r["status"] for r in csv.DictReader(handle)] == ["diverged"]


def test_exit_5_a_file_that_cannot_be_written_is_named(tmp_path, monkeypatch):
    real_replace = store_mod.os.replace

    def full_disk(src, dst):
        if str(dst).endswith("config.yaml"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(store_mod.os, "replace", full_disk)
    result = invoke("train", "--out", tmp_path, "--name", "full", *TINY)
    assert result.exit_code == 5
    line = one_error_line(result)
    assert line.startswith(f"Error: cannot write {tmp_path / 'full' / 'config.yaml'}: the disk is full;")
    assert "run the same command" in line
    leftovers = [p.name for p in (tmp_path / "full").iterdir()]
    assert leftovers == []  # no temporary file, no lock left behind


def test_exit_130_interrupted(tmp_path, monkeypatch):
    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tickets.api, "train", interrupted)
    result = invoke("train", "--out", tmp_path, *TINY)
    assert result.exit_code == 130
    assert "Interrupted: run the same command again to resume" in result.stderr
    assert "Traceback" not in result.output
