"""tickets connect: curves between two trained networks (Garipov et al. 2018), checked against plain torch."""
import csv
import json
import shutil
from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import load, run_cli, snapshot
from torch import nn

import tickets
from tickets import config as config_mod
from tickets.components import load_splits
from tickets.experiments.connect import job as job_mod
from tickets.experiments.connect.curves import (
    Position,
    attach_curve,
    barrier,
    curved_name,
    evaluate,
    on_curve,
    on_line,
)
from tickets.plugins import registry
from tickets.store import sha256_file

QUIET = ["--set", "execution.workers=1", "--quiet"]
CURVE = ["--epochs", "1", "--points", "11", "--quiet"]  # t = 0, 0.1, ..., 1


def rows(path):
    with path.open() as handle:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(handle)]


def done(run_dir):
    return json.loads(next(run_dir.glob("seed_*/round_0/*/done.json")).read_text())


def plain_errors(run_dir, state):
    """(train loss, train error, test error) of ``state`` on its run's splits, with plain torch."""
    config = config_mod.from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    splits = load_splits(config, registry().get("datasets", config.data.dataset))
    model = registry().get("models", config.model.name)(splits.num_classes, splits.input_shape)
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        train_logits, test_logits = model(splits.train_x), model(splits.test_x)
    return (nn.functional.cross_entropy(train_logits, splits.train_y).item(),
            (train_logits.argmax(1) != splits.train_y).float().mean().item(),
            (test_logits.argmax(1) != splits.test_y).float().mean().item())


# --- the mathematics --------------------------------------------------------------------------------

@pytest.mark.parametrize("t", [0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0])
def test_curves_are_garipovs_formulas(t):
    a, theta, b = {"w": torch.tensor([1.0, -2.0])}, {"w": torch.tensor([5.0, 3.0])}, {"w": torch.tensor([-4.0, 7.0])}
    bezier = (1 - t) ** 2 * a["w"] + 2 * t * (1 - t) * theta["w"] + t ** 2 * b["w"]
    chain = 2 * (t * theta["w"] + (0.5 - t) * a["w"]) if t <= 0.5 else 2 * ((t - 0.5) * b["w"] + (1 - t) * theta["w"])
    assert torch.allclose(on_curve("bezier", t, a, theta, b)["w"], bezier)
    assert torch.allclose(on_curve("polychain", t, a, theta, b)["w"], chain)
    assert torch.allclose(on_line(t, a, b, ["w"])["w"], (1 - t) * a["w"] + t * b["w"])
    for curve in ("bezier", "polychain"):  # the ends are the two networks, exactly
        assert torch.equal(on_curve(curve, 0.0, a, theta, b)["w"], a["w"])
        assert torch.equal(on_curve(curve, 1.0, a, theta, b)["w"], b["w"])
    assert barrier([0.1, 0.5, 0.2, 0.3]) == pytest.approx(0.5 - 0.2)


def test_an_attached_curve_trains_only_its_bends_from_the_midpoint():
    def net():
        return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))

    torch.manual_seed(0)
    a, b, model = net().state_dict(), net().state_dict(), net()
    names = [n for n, _ in model.named_parameters()]
    attach_curve(model, "bezier", a, b)
    params = dict(model.named_parameters())
    assert sorted(params) == sorted(curved_name(n) for n in names)  # the bends are the only parameters
    for n in names:
        assert torch.allclose(params[curved_name(n)], (a[n] + b[n]) / 2)
    x = torch.randn(5, 3)
    model.eval()  # evaluation: t = 0.5, where the Bezier curve starts on the line's midpoint
    plain = net()
    plain.load_state_dict(on_line(0.5, a, b, names))
    plain.eval()
    assert torch.allclose(model(x), plain(x), atol=1e-6)
    model.train()  # training: every forward pass draws its own t from the global RNG
    torch.manual_seed(1)
    first = [model(x) for _ in range(2)]
    torch.manual_seed(1)
    again = [model(x) for _ in range(2)]
    assert not torch.allclose(first[0], first[1]) and all(torch.equal(p, q) for p, q in zip(first, again))


def test_batchnorm_statistics_are_recomputed_at_each_point():
    net = nn.Sequential(nn.BatchNorm1d(1), nn.Linear(1, 2))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state["0.running_mean"] = torch.tensor([100.0])  # what the curve's buffers happen to hold
    x = torch.arange(12, dtype=torch.float32).view(12, 1)  # mean 5.5
    splits = SimpleNamespace(train_x=x, train_y=torch.zeros(12, dtype=torch.long), test_x=x,
                             test_y=torch.zeros(12, dtype=torch.long))
    evaluate(net, state, splits, batch_size=6)
    assert net[0].running_mean.item() == pytest.approx(5.5) and not net.training and net[0].momentum == 0.1


def test_a_network_finds_its_own_mask_or_its_rounds(tmp_path):
    from tickets.experiments.connect.ends import _mask_path

    run = tmp_path / "run"
    nets = {"imp": run / "seed_0/round_2/reinit", "own": run / "seed_0/round_2/random_prune",
            "copy": run / "stability/seed_0/round_2/ticket/k_0/copy_1", "dense": run / "stability/seed_1/x/copy_0"}
    for net in nets.values():
        net.mkdir(parents=True)
    for mask in (run / "seed_0/round_2/mask.pt", nets["own"] / "mask.pt"):
        mask.write_bytes(b"")
    assert _mask_path(nets["imp"], run) == _mask_path(nets["copy"], run) == run / "seed_0/round_2/mask.pt"
    assert _mask_path(nets["own"], run) == nets["own"] / "mask.pt" and _mask_path(nets["dense"], run) is None


# --- a curve between two dense LeNet-300-100 -------------------------------------------------------

@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    out = tmp_path_factory.mktemp("pair")
    run_cli("train", "--out", out, "--name", "pair", "--seeds", "0,1", "--epochs", "0.5", *QUIET)
    return out / "pair"


def ends(pair):
    return pair / "seed_0/round_0/ticket", pair / "seed_1/round_0/ticket"


@pytest.fixture(scope="module")
def curve(pair, tmp_path_factory):
    out = tmp_path_factory.mktemp("curve")
    result = run_cli("connect", *ends(pair), "--out", out, *CURVE)
    (run_dir,) = out.iterdir()
    assert run_dir.name.startswith("connect-bezier-") and "barrier (test error)" in result.stdout
    return run_dir


def test_the_ends_are_the_two_networks_own_errors(pair, curve):
    found = rows(curve / "connect.csv")
    assert [r["t"] for r in found] == pytest.approx([i / 10 for i in range(11)])
    for row, net in ((found[0], ends(pair)[0]), (found[-1], ends(pair)[1])):
        loss, train_err, test_err = plain_errors(pair, load(net / "final.pt"))
        assert row["train_err"] == pytest.approx(train_err, abs=1e-6)
        assert row["test_err"] == pytest.approx(test_err, abs=1e-6)
        assert row["train_loss"] == pytest.approx(loss, abs=1e-5)
        assert (row["line_train_err"], row["line_test_err"]) == (row["train_err"], row["test_err"])


def test_the_line_columns_are_plain_torch_interpolations(pair, curve):
    a, b = (load(net / "final.pt") for net in ends(pair))
    found = rows(curve / "connect.csv")
    for i in (3, 5, 8):
        t = i / 10
        _, train_err, test_err = plain_errors(pair, {k: (1 - t) * a[k] + t * b[k] for k in a})
        assert found[i]["line_train_err"] == pytest.approx(train_err, abs=1.01 / 3000)  # one example at most
        assert found[i]["line_test_err"] == pytest.approx(test_err, abs=1.01 / 1000)


def test_the_bezier_bend_starts_at_the_midpoint(curve):
    with (next(curve.glob("seed_0/round_0/bezier")) / "metrics.csv").open() as handle:
        start = next(csv.DictReader(handle))  # iteration 0, before any step: the curve at t = 0.5
    middle = rows(curve / "connect.csv")[5]
    assert int(start["iteration"]) == 0 and middle["t"] == 0.5
    assert 1 - float(start["test_acc"]) == pytest.approx(middle["line_test_err"], abs=1.01 / 1000)


def test_the_curve_joins_two_independent_networks_where_the_line_cannot(curve):
    found = rows(curve / "connect.csv")
    curve_barrier = max(r["test_err"] for r in found) - (found[0]["test_err"] + found[-1]["test_err"]) / 2
    line_barrier = max(r["line_test_err"] for r in found) - (found[0]["test_err"] + found[-1]["test_err"]) / 2
    assert curve_barrier <= 0.03 and line_barrier >= 0.10, (curve_barrier, line_barrier)
    row = done(curve)
    assert (row["barrier"], row["line_barrier"]) == (pytest.approx(curve_barrier), pytest.approx(line_barrier))
    report = (curve / "report" / "report.md").read_text()
    assert "## Mode connectivity" in report and f"| {100 * curve_barrier:.2f} |" in report
    assert f"| {100 * line_barrier:.2f} |" in report and (curve / "connect.png").stat().st_size > 0


def test_check_verifies_the_curve_and_the_copies_of_its_ends(pair, curve):
    result = run_cli("check", curve)
    assert "1 jobs finished and intact" in result.stdout and "no problems found" in result.stdout
    inputs = done(curve)["inputs"]
    assert inputs == {"seed_0/net_a.pt": sha256_file(ends(pair)[0] / "final.pt"),
                      "seed_0/net_b.pt": sha256_file(ends(pair)[1] / "final.pt")}


def test_a_finished_curve_is_not_trained_again_and_its_name_keeps_its_settings(pair, curve):
    before = snapshot(curve)
    run_cli("connect", *ends(pair), "--out", curve.parent, *CURVE)
    after = snapshot(curve)
    assert {p: d for p, d in after.items() if "report" not in p.parts and p.name not in ("run.json", "connect.png")} \
        == {p: d for p, d in before.items() if "report" not in p.parts and p.name not in ("run.json", "connect.png")}
    result = run_cli("connect", *ends(pair), "--out", curve.parent, "--name", curve.name, *CURVE,
                     "--curve", "polychain", expect=2)
    assert "other settings" in result.stderr and "curve: 'bezier' -> 'polychain'" in result.stderr


def fake_network(root, state):
    """A network directory with ``state`` as final.pt in a run with the pair's config."""
    net = root / "seed_0/round_0/ticket"
    net.mkdir(parents=True)
    torch.save(state, net / "final.pt")
    (net / "done.json").write_text(json.dumps({"files": {"final.pt": sha256_file(net / "final.pt")}}))
    return net


def test_different_architectures_are_one_line_and_exit_2_with_nothing_written(pair, tmp_path):
    a = ends(pair)[0]
    state = load(a / "final.pt")
    wider = fake_network(tmp_path / "wider", {**state, "fc2.weight": torch.zeros(120, 300)})
    shutil.copy(pair / "config.yaml", tmp_path / "wider" / "config.yaml")
    damaged = fake_network(tmp_path / "damaged", state)
    shutil.copy(pair / "config.yaml", tmp_path / "damaged" / "config.yaml")
    torch.save({**state, "fc2.bias": torch.zeros(100)}, damaged / "final.pt")  # not what its done.json recorded
    out = tmp_path / "out"
    out.mkdir()
    for b, words in ((wider, "fc2.weight is (120, 300), not (100, 300)"), (pair, "not a trained network"),
                     (damaged, "final.pt does not match its checksum")):
        result = run_cli("connect", a, b, "--out", out, *CURVE, expect=2)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], result.stderr
        assert snapshot(out) == {}
    with pytest.raises(tickets.TicketsError, match="unknown curve 'spline'"):
        tickets.connect(a, ends(pair)[1], curve="spline", out=out)
    with pytest.raises(tickets.TicketsError, match="--points must be at least 3"):
        tickets.connect(a, ends(pair)[1], points=2, out=out)
    assert snapshot(out) == {}


# --- a ticket and its control, under their mask ------------------------------------------------------

@pytest.fixture(scope="module")
def imp(tmp_path_factory):
    out = tmp_path_factory.mktemp("imp")
    return tickets.prune(rounds=1, controls=["reinit"], seeds=[0], epochs=0.3, workers=1, out=out, name="imp",
                         quiet=True).path


CHAIN = ["--curve", "polychain", "--epochs", "0.3", "--points", "3", "--quiet"]  # 17 iterations


def chain_command(imp, out, *extra):
    round_1 = imp / "seed_0/round_1"
    return ["connect", round_1 / "ticket", round_1 / "reinit", *CHAIN, "--out", out, *extra]


DRAWN = []  # the t of every training forward pass of the chain fixture's curve


@pytest.fixture(scope="module")
def chain(imp, tmp_path_factory):
    out = tmp_path_factory.mktemp("chain")
    real = Position.__call__

    def spy(self, module, args):
        real(self, module, args)
        if module.training:
            DRAWN.append(self.t)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Position, "__call__", spy)
        run_cli(*chain_command(imp, out))
    (run_dir,) = out.iterdir()
    return run_dir


def test_every_training_step_draws_its_own_t(chain):
    assert len(DRAWN) == done(chain)["iterations"] == 17 and len(set(DRAWN)) == 17
    assert all(0 <= t < 1 for t in DRAWN) and min(DRAWN) < 0.25 and max(DRAWN) > 0.75


def same_job_files(run_dir, other):
    job_dir = "seed_0/round_0/polychain"
    for name in ("bend.pt", "final.pt", "connect.csv", "metrics.csv"):
        assert sha256_file(run_dir / job_dir / name) == sha256_file(other / job_dir / name), name


def test_a_curve_between_a_ticket_and_its_control_stays_under_their_mask(imp, chain):
    round_1 = imp / "seed_0/round_1"
    mask, bend = load(round_1 / "mask.pt"), load(chain / "seed_0/round_0/polychain/bend.pt")
    final = load(chain / "seed_0/round_0/polychain/final.pt")  # the polygonal chain at t = 0.5 is its bend
    a = load(round_1 / "ticket" / "final.pt")
    for name, keep in mask.items():
        assert torch.equal(bend[name][~keep], torch.zeros(int((~keep).sum())))
        assert not torch.equal(bend[name][keep], a[name][keep])  # the bend trained
    assert all(torch.equal(final[k], bend[k]) for k in bend)
    own = load(chain / "seed_0/round_0/polychain/mask.pt")  # final.pt is a network with its mask beside it
    assert own.keys() == mask.keys() and all(torch.equal(own[k], mask[k]) for k in mask)
    assert "seed_0/mask.pt" in done(chain)["inputs"] and done(chain)["weights_remaining"] < 1
    assert "no problems found" in run_cli("check", chain).stdout


def test_the_same_curve_in_a_worker_process(imp, chain, tmp_path):
    run_cli(*chain_command(imp, tmp_path, "--workers", "2"))
    (other,) = tmp_path.iterdir()
    same_job_files(chain, other)
    assert json.loads((other / "run.json").read_text())["execution"]["executor"] == "local"


def test_interrupted_then_resumed_gives_the_same_curve(imp, chain, tmp_path, monkeypatch):
    real, calls = job_mod.path_rows, []

    def dies_once(*args):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt  # training is over; its last checkpoint (iteration 15 of 17) is left
        return real(*args)

    monkeypatch.setattr(job_mod, "path_rows", dies_once)
    command = chain_command(imp, tmp_path, "--set", "train.checkpoint_every=5")
    run_cli(*command, expect=130)
    (run_dir,) = tmp_path.iterdir()
    job_dir = run_dir / "seed_0/round_0/polychain"
    assert run_dir.name == chain.name and not (job_dir / "done.json").exists()
    assert torch.load(job_dir / "checkpoint.pt", weights_only=False)["iteration"] == 15
    run_cli(*command)  # resumes from iteration 15: the t drawn from there on come from the checkpoint's RNG
    same_job_files(chain, run_dir)
    (job_dir / "bend.pt").write_bytes(b"damaged")
    result = run_cli("check", run_dir, expect=4)
    assert "bend.pt does not match its checksum" in result.stdout


def test_networks_under_different_masks_are_refused(imp, tmp_path):
    result = run_cli("connect", imp / "seed_0/round_1/ticket", imp / "seed_0/round_0/ticket", "--out", tmp_path,
                     "--quiet", expect=2)
    assert len(result.stderr.strip().splitlines()) == 1 and "different masks" in result.stderr
    assert snapshot(tmp_path) == {}
