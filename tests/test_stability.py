"""Instability analysis: hand-checkable paths, interpolation of parameters and buffers, the command end to end."""
import csv
import importlib.util
import os

import pytest
import torch
from conftest import load, prune_tiny, run_cli
from torch import nn

from tickets.experiments.stability import instability, interpolate, path_errors, reset_batchnorm
from tickets.store import read_json

HAVE_RAY = importlib.util.find_spec("ray") is not None
STEPS = ["--set", "train.iterations=12", "--set", "train.eval_every=6", "--quiet"]


def rows(run_dir):
    with (run_dir / "stability" / "stability.csv").open() as handle:
        return list(csv.DictReader(handle))


def two_unit_net(w1, w2):
    net = nn.Sequential(nn.Linear(1, 2, bias=False), nn.ReLU(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(w1))
        net[2].weight.copy_(torch.tensor(w2))
    return net


def test_a_permuted_copy_of_a_network_is_unstable_by_hand():
    # A: logits (relu(x), relu(-x)) classify x=+1 as 0 and x=-1 as 1 (error 0). B swaps the two hidden
    # units: the same function (error 0). Halfway, both hidden weights are 0: logits tie, argmax says 0,
    # so x=-1 is wrong: error 0.5, and instability = 0.5 - (0 + 0) / 2.
    a = two_unit_net([[1.0], [-1.0]], [[1.0, 0.0], [0.0, 1.0]]).state_dict()
    b = two_unit_net([[-1.0], [1.0]], [[0.0, 1.0], [1.0, 0.0]]).state_dict()
    x, y = torch.tensor([[1.0], [-1.0]]), torch.tensor([0, 1])
    model = two_unit_net([[0.0], [0.0]], [[0.0, 0.0], [0.0, 0.0]])
    errors = path_errors(model, a, b, 3, x, y)
    assert errors == [0.0, 0.5, 0.0] and instability(errors) == 0.5
    same = path_errors(model, a, a, 5, x, y)
    assert same == [0.0] * 5 and instability(same) == 0.0


def test_interpolation_covers_parameters_and_buffers():
    def bn_net(scale):
        net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
        with torch.no_grad():
            for t in net.state_dict().values():
                t.copy_(torch.full_like(t, scale) if t.is_floating_point() else torch.tensor(int(scale)))
        return net.state_dict()

    a, b = bn_net(1.0), bn_net(5.0)
    quarter = interpolate(a, b, 0.25)
    assert set(quarter) == set(a)  # weights, biases, running_mean, running_var, num_batches_tracked
    assert torch.equal(quarter["1.running_mean"], torch.full((2,), 2.0))
    assert torch.equal(quarter["0.weight"], torch.full((2, 2), 2.0))
    assert quarter["1.num_batches_tracked"].dtype == torch.long and int(quarter["1.num_batches_tracked"]) == 2
    assert all(torch.equal(interpolate(a, b, 0.0)[k], a[k]) and torch.equal(interpolate(a, b, 1.0)[k], b[k])
               for k in a)


def test_reset_batchnorm_gives_the_training_set_statistics():
    net = nn.Sequential(nn.BatchNorm1d(1))
    data = torch.arange(12, dtype=torch.float32).view(12, 1)  # mean 5.5
    net[0].running_mean.fill_(100.0)
    reset_batchnorm(net, [data[:6], data[6:]])
    assert net[0].running_mean.item() == pytest.approx(5.5)  # mean of the two batch means 2.5 and 8.5
    assert not net.training and net[0].momentum == 0.1


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    out = tmp_path_factory.mktemp("stab")
    run_cli("stability", "--out", out, "--name", "dense", "--at", "0,5it", "--points", "3", *STEPS)
    return out / "dense"


def test_dense_stability_rows_columns_and_report(dense):
    found = rows(dense)
    assert list(found[0]) == ["seed", "round", "variant", "weights_remaining", "k", "instability", "err_start",
                              "err_end", "err_0.00", "err_0.50", "err_1.00"]
    assert [(r["round"], r["variant"], r["k"]) for r in found] == [("0", "ticket", "0"), ("0", "ticket", "5")]
    for r in found:
        errors = [float(r[c]) for c in ("err_0.00", "err_0.50", "err_1.00")]
        assert float(r["err_start"]) == errors[0] and float(r["err_end"]) == errors[2]
        assert float(r["instability"]) == pytest.approx(max(errors) - (errors[0] + errors[2]) / 2, abs=1e-6)
        assert 0 < errors[0] < 0.9  # trained copies
    copies = [load(dense / f"stability/seed_0/round_0/ticket/k_5/copy_{i}/final.pt")["fc1.weight"] for i in (0, 1)]
    assert not torch.equal(*copies)  # different data orders
    report = (dense / "report" / "report.md").read_text()
    assert "## Instability (linear mode connectivity)" in report and "| 0 | 100% | ticket | 5 |" in report
    assert (dense / "stability" / "instability.png").exists() and (dense / "stability" / "path_round_0.png").exists()
    assert not list(dense.rglob("checkpoint.pt"))


def test_rerunning_stability_trains_nothing(dense):
    stamps = {p: p.stat().st_mtime_ns for p in dense.glob("stability/**/final.pt")}
    before = rows(dense)
    run_cli("stability", "--out", dense.parent, "--name", "dense", "--at", "0,5it", "--points", "3", *STEPS)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps and rows(dense) == before


def test_stability_does_not_depend_on_the_executor(dense, tmp_path):
    assert read_json(dense / "run.json")["execution"]["executor"] == "local"  # the fixture ran on 2 workers
    ways = [["--workers", "1"]] + ([["--executor", "ray"]] if HAVE_RAY or os.environ.get("CI") else [])
    for i, way in enumerate(ways):
        run_cli("stability", "--out", tmp_path, "--name", f"way{i}", "--at", "0,5it", "--points", "3", *STEPS, *way)
        assert rows(tmp_path / f"way{i}") == rows(dense), way
        for copy in dense.glob("stability/**/copy_*/final.pt"):
            other = load(tmp_path / f"way{i}" / copy.relative_to(dense))
            assert all(torch.equal(load(copy)[k], other[k]) for k in other)


def test_theta_k_is_the_dense_networks_weights_at_k(dense, tmp_path):
    run_dir = prune_tiny(tmp_path, "run", "--rounds", "0", "--rewind", "5it", *STEPS)
    trajectory = load(dense / "stability/seed_0/rewind_5.pt")
    rewind = load(run_dir / "seed_0/rewind.pt")
    assert all(torch.equal(trajectory[k], rewind[k]) for k in rewind)


def test_stability_of_a_runs_tickets_and_controls(tmp_path):
    run_dir = prune_tiny(tmp_path, "run", "--rounds", "1", "--rewind", "5it", "--controls", "reinit", *STEPS)
    run_cli("stability", run_dir, "--at", "0,5it", "--points", "3", "--rounds", "1", "--workers", "2", "--quiet")
    found = rows(run_dir)
    assert [(r["round"], r["variant"], r["k"]) for r in found] == [
        ("1", "ticket", "0"), ("1", "ticket", "5"), ("1", "reinit", "0"), ("1", "reinit", "5")]
    assert {r["weights_remaining"] for r in found} == {"0.800376"}
    assert not (run_dir / "stability/seed_0/rewind_5.pt").exists()  # k = the run's rewind point: its rewind.pt
    mask = load(run_dir / "seed_0/round_1/mask.pt")
    final = load(run_dir / "stability/seed_0/round_1/ticket/k_5/copy_0/final.pt")
    assert all(not final[n][~m].any() for n, m in mask.items())  # pruned weights stay zero
    assert "## Instability" in (run_dir / "report" / "report.md").read_text()


BAD = [
    (["--at", "0,900ep"], "--at 900ep (iteration 52200) is not before the end of training (iteration 12"),
    (["--at", "0", "--points", "2"], "--points must be at least 3"),
    (["--at", "soon"], "--at 'soon' is not understood"),
    (["--at", "0", "--reset-bn"], "--reset-bn: model 'lenet_300_100' has no BatchNorm layers"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_stability_input_is_one_line_exit_2(tmp_path, args, message):
    result = run_cli("stability", "--out", tmp_path, *STEPS, *args, expect=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not any(tmp_path.iterdir())
