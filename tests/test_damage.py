"""Damaged files: checksums in done.json, retraining damaged networks,
clear errors for damaged inputs, `tickets check`."""
import hashlib
import json
import shutil

import pytest
from conftest import TINY, prune_tiny, read_results, run_cli, snapshot

ARGS = ["--rounds", "2", "--controls", "reinit,random_prune"]


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def strip(rows):
    return [{k: v for k, v in r.items() if k not in ("run", "train_seconds")} for r in rows]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return prune_tiny(tmp_path_factory.mktemp("ref"), "ref", *ARGS)


@pytest.fixture
def copy(reference, tmp_path):
    """A fresh copy of the finished reference run, to damage."""
    shutil.copytree(reference, tmp_path / "ref")
    return tmp_path / "ref"


def resume(run_dir, expect=0):
    return run_cli("prune", "--out", run_dir.parent, "--name", run_dir.name, *ARGS, *TINY[:-1], expect=expect)


def test_done_json_records_the_sha256_of_every_file_it_used(reference):
    net = reference / "seed_0/round_1/random_prune"
    done = json.loads((net / "done.json").read_text())
    assert done["files"] == {name: sha256(net / name) for name in ("final.pt", "mask.pt", "metrics.csv")}
    assert done["inputs"] == {name: sha256(reference / name)
                              for name in ("seed_0/init.pt", "seed_0/rewind.pt", "seed_0/round_1/mask.pt")}


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_network_with_a_damaged_file_is_trained_again(copy, reference, damage):
    final = copy / "seed_0/round_1/ticket/final.pt"
    if damage == "truncate":
        final.write_bytes(final.read_bytes()[:1000])
    else:
        final.unlink()
    untouched = {p: p.stat().st_mtime_ns for p in copy.glob("seed_0/round_*/*/final.pt") if p != final}
    result = resume(copy)
    problem = "is missing" if damage == "delete" else "does not match its checksum"
    assert f"warning: seed 0 | round 1/2 | ticket: final.pt {problem}; training it again" in result.stderr
    assert final.read_bytes() == (reference / "seed_0/round_1/ticket/final.pt").read_bytes()  # CPU: the same weights
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched  # nothing else retrained
    assert strip(read_results(copy)) == strip(read_results(reference))


def test_a_damaged_control_mask_retrains_that_control(copy):
    mask = copy / "seed_0/round_2/random_prune/mask.pt"
    mask.write_bytes(mask.read_bytes()[:-7] + b"garbage")
    result = resume(copy)
    assert "round 2/2 | random_prune: mask.pt does not match its checksum; training it again" in result.stderr


@pytest.mark.parametrize("name,fix", [
    ("seed_0/round_2/mask.pt", "delete {run}/seed_0/round_2 and the later rounds of seed 0 to train them anew"),
    ("seed_0/init.pt", "delete {run}/seed_0 to train seed 0 anew"),
    ("seed_0/rewind.pt", "delete {run}/seed_0 to train seed 0 anew"),
])
def test_a_damaged_shared_input_is_one_line_and_exit_2(copy, name, fix):
    path = copy / name
    path.write_bytes(path.read_bytes()[:500])
    before = snapshot(copy)
    result = resume(copy, expect=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert lines[0].startswith(f"Error: {copy / name} does not match its checksum")
    assert lines[0].endswith("restore it from a copy of the run, or " + fix.format(run=copy))
    assert snapshot(copy) == before  # nothing written


def test_an_unreadable_shared_file_no_network_recorded_is_one_line_and_exit_2(tmp_path):
    run_dir = prune_tiny(tmp_path, "young", "--rounds", "1", "--controls", "none")
    mask = run_dir / "seed_0/round_1/mask.pt"
    for done in run_dir.glob("seed_0/round_1/*/done.json"):  # as if interrupted before round 1 finished
        done.unlink()
    mask.write_bytes(mask.read_bytes()[:300])
    result = run_cli("prune", "--out", tmp_path, "--name", "young", "--rounds", "1", "--controls", "none", *TINY,
                     expect=2)
    assert result.stderr.startswith(f"Error: {mask} cannot be read (")
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_edited_config_yaml_is_one_line_and_exit_2(copy):
    config = copy / "config.yaml"
    config.write_text(config.read_text().replace("lr: 0.0012", "lr: 0.1"))
    result = resume(copy, expect=2)
    assert result.stderr.strip() == (f"Error: {config} is not the config this run wrote (its checksum in run.json "
                                     "differs); restore it from a copy of the run, or start the run anew under "
                                     "another --name")


def test_a_damaged_results_csv_is_rebuilt(copy, reference):
    results = copy / "results.csv"
    results.write_text(results.read_text()[:250])  # cut in the middle of a row
    resume(copy)
    assert results.read_text() == (reference / "results.csv").read_text()


def test_check_says_what_is_wrong_and_changes_nothing(copy):
    ok = run_cli("check", copy)
    assert ok.stdout.splitlines() == [f"{copy}: 7 jobs finished and intact (0 diverged), 0 unfinished",
                                      "no problems found"]
    (copy / "seed_0/round_1/ticket/final.pt").write_bytes(b"not a checkpoint")
    (copy / "seed_0/round_2/reinit/metrics.csv").unlink()
    init = copy / "seed_0/init.pt"
    data = bytearray(init.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte of a weight flipped: the file still loads
    init.write_bytes(bytes(data))
    (copy / "results.csv").write_text("run,seed\n")
    before = snapshot(copy)
    result = run_cli("check", copy, expect=4)
    assert snapshot(copy) == before
    lines = result.stdout.splitlines()
    assert lines[0] == f"{copy}: 5 jobs finished and intact (0 diverged), 0 unfinished"
    assert lines[1:] == [
        f"problem: {init} does not match its checksum (recorded when seed_0/round_0/ticket was trained); restore it "
        f"from a copy of the run, or delete {copy / 'seed_0'} to train seed 0 anew",
        f"problem: {copy / 'seed_0/round_1/ticket'}: final.pt does not match its checksum; it is trained "
        "again when the run is resumed",
        f"problem: {copy / 'seed_0/round_2/reinit'}: metrics.csv is missing; it is trained again when the "
        "run is resumed",
        f"problem: {copy / 'results.csv'} differs from the rows in the networks' done.json; it is rebuilt from them "
        "when the run is resumed",
        "4 problems found",
    ]


def test_check_needs_a_run(tmp_path):
    result = run_cli("check", tmp_path, expect=2)
    assert "is not a tickets run" in result.stderr
