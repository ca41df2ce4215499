"""Divergence: a network whose training loss becomes non-finite stops there, is marked, and ends its seed's chain."""
import math

import torch
import torch.nn.functional as F
from conftest import TINY, read_results, run_cli

from tickets.components import load_splits
from tickets.config import build_config
from tickets.masks import Mask
from tickets.plugins import registry
from tickets.ticket import Ticket, clone_state, initialize_
from tickets.training import BatchStream, train_network

HUGE_LR = ["--lr", "1e6", "--optimizer", "sgd"]  # the recipe: every loss goes non-finite within a few steps


def first_non_finite_step(model, state, splits, lr, iterations):
    """A plain PyTorch loop over the same batches: the count of steps done when the loss is first non-finite."""
    model.load_state_dict(state)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for step, (x, y) in enumerate(BatchStream(splits.train_x, splits.train_y, 60, 0, 0, iterations), start=1):
        loss = F.cross_entropy(model(x), y)
        if not math.isfinite(loss.item()):
            return step
        opt.zero_grad()
        loss.backward()
        opt.step()
    return None


def test_training_stops_at_the_first_non_finite_loss():
    splits = load_splits(build_config(None, {}), registry().get("datasets", "digits"))
    model = registry().get("models", "lenet_300_100")(10, (1, 28, 28))
    initialize_(model, registry().get("initializers", "kaiming_normal"), torch.Generator().manual_seed(0))
    state = clone_state(model)
    expected = first_non_finite_step(model, state, splits, 1e6, 50)
    assert expected is not None and expected < 50

    outcome = train_network(model, Ticket(Mask.ones_for(model), state, 0),
                            lambda params: torch.optim.SGD(params, lr=1e6), splits,
                            end_iteration=50, eval_every=20, batch_size=60, data_seed=0)
    assert outcome.status == "diverged" and outcome.diverged_at == expected
    assert outcome.iterations == expected  # no step after the non-finite one
    last = outcome.metrics[-1]
    assert last["iteration"] == expected and not math.isfinite(last["train_loss"])

    sane = train_network(model, Ticket(Mask.ones_for(model), state, 0),
                         lambda params: torch.optim.SGD(params, lr=0.05), splits,
                         end_iteration=10, eval_every=5, batch_size=60, data_seed=0)
    assert sane.status == "ok" and sane.diverged_at is None and sane.iterations == 10


def test_a_diverged_ticket_ends_its_seed_and_the_run_exits_3(tmp_path):
    result = run_cli("prune", "--out", tmp_path, "--name", "nan", "--rounds", "2", *TINY, "--seeds", "0,1",
                     "--controls", "reinit", *HUGE_LR, expect=3)
    run_dir = tmp_path / "nan"
    rows = read_results(run_dir)
    # both seeds' dense networks were trained (seed 1 went on after seed 0 diverged), nothing after them
    assert [(r["seed"], r["round"], r["variant"], r["status"]) for r in rows] == [
        ("0", "0", "ticket", "diverged"), ("1", "0", "ticket", "diverged")]
    assert not (run_dir / "seed_0" / "round_1").exists()  # no mask from non-finite weights
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2
    assert "seed 0 | round 0/2 | ticket diverged" in warnings[0] and "seed 1 | round 0/2 | ticket" in warnings[1]
    assert "2 networks diverged" in result.stderr and "Traceback" not in result.output

    # resuming does not train them again, and still says the run holds diverged networks
    stamps = {p: p.stat().st_mtime_ns for p in run_dir.glob("seed_*/round_0/ticket/final.pt")}
    run_cli("prune", "--out", tmp_path, "--name", "nan", "--rounds", "2", *TINY, "--seeds", "0,1",
            "--controls", "reinit", *HUGE_LR, expect=3)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_a_run_without_divergence_exits_0_with_status_ok(tmp_path):
    run_cli("train", "--out", tmp_path, "--name", "fine", *TINY)
    assert [r["status"] for r in read_results(tmp_path / "fine")] == ["ok"]
