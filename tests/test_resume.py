"""Resume: re-running continues where a run stopped, never retrains a finished network, no duplicate rows."""
import os

import pytest
from conftest import TINY, prune_tiny, read_results, run_cli

from tickets.training import loop as jobs  # where every network job gets train() from


def strip(rows):
    return [{k: v for k, v in r.items() if k not in ("run", "train_seconds")} for r in rows]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return prune_tiny(tmp_path_factory.mktemp("ref"), "ref", "--rounds", "2")


def test_rerunning_a_finished_run_trains_nothing(reference):
    stamps = {p: p.stat().st_mtime_ns for p in reference.glob("seed_0/round_*/*/final.pt")}
    before = read_results(reference)
    result = run_cli("prune", "--out", reference.parent, "--name", "ref", "--rounds", "2", *TINY[:-1])
    assert "already done" in result.stderr
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert read_results(reference) == before


def test_interrupted_run_resumes_to_the_same_results(reference, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = jobs.train

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # the 4th network is interrupted in the middle of its training
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(jobs, "train", flaky)
    run_cli("prune", "--out", tmp_path, "--name", "cut", "--rounds", "2", *TINY, expect=130)
    run_dir = tmp_path / "cut"
    assert len(read_results(run_dir)) == 3
    assert (run_dir / "run.json").read_text().count('"interrupted"') == 1
    monkeypatch.setattr(jobs, "train", real)
    trained = []
    monkeypatch.setattr(jobs, "train", lambda *a, **k: trained.append(1) or real(*a, **k))
    prune_tiny(tmp_path, "cut", "--rounds", "2")
    assert len(trained) == 4  # only the networks that were not finished
    assert strip(read_results(run_dir)) == strip(read_results(reference))


def test_more_rounds_extend_a_run_without_duplicates(reference, tmp_path):
    run_dir = prune_tiny(tmp_path, "grow", "--rounds", "1")
    prune_tiny(tmp_path, "grow", "--rounds", "2")
    rows = read_results(run_dir)
    keys = [(r["seed"], r["round"], r["variant"]) for r in rows]
    assert len(keys) == len(set(keys)) == 7
    assert strip(rows) == strip(read_results(reference))


def test_a_lost_results_csv_is_rebuilt_from_finished_networks(reference, tmp_path):
    run_dir = prune_tiny(tmp_path, "lost", "--rounds", "1")
    before = read_results(run_dir)
    os.remove(run_dir / "results.csv")
    prune_tiny(tmp_path, "lost", "--rounds", "1")
    assert read_results(run_dir) == before


def test_runs_lists_progress(reference):
    result = run_cli("runs", "--out", reference.parent)
    assert "ref" in result.stdout and "complete" in result.stdout and "7/7" in result.stdout


def test_compare_trains_only_the_missing_controls_of_saved_tickets(tmp_path):
    run_dir = prune_tiny(tmp_path, "cmp", "--rounds", "2", "--controls", "none")
    stamps = {p: p.stat().st_mtime_ns for p in run_dir.glob("seed_0/round_*/ticket/final.pt")}
    run_cli("compare", run_dir, "--controls", "reinit", "--accelerator", "cpu", "--quiet")
    rows = read_results(run_dir)
    assert [(r["round"], r["variant"]) for r in rows] == [
        ("0", "ticket"), ("1", "ticket"), ("1", "reinit"), ("2", "ticket"), ("2", "reinit")]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert (run_dir / "report" / "comparison.csv").exists()


def test_compare_needs_a_run_folder(tmp_path):
    result = run_cli("compare", tmp_path, "--controls", "reinit", expect=2)
    assert "is not a tickets run" in result.stderr
