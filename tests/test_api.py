"""The Python API: the example of tickets.api's docstring, as written (on tiny settings), checked against the
run's files with plain torch; bad input raises TicketsError before anything is written."""
import shutil

import pandas as pd
import pytest
import torch
import yaml
from conftest import load, masked_accuracy

import tickets
from tickets.store import RESULT_COLUMNS

FAST = {"epochs": 0.3, "set": {"train.eval_every": 5}, "quiet": True}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("api")
    return tickets.prune(rounds=2, seeds=[0, 1], controls=["reinit"], out=out, name="demo", workers=1, **FAST)


def copy_of(run, tmp_path) -> "tickets.Run":
    shutil.copytree(run.path, tmp_path / run.name)
    return tickets.load_run(tmp_path / run.name)


def test_prune_returns_the_run_and_its_results(demo):
    assert isinstance(demo, tickets.Run) and demo.path.name == "demo" and demo.name == "demo"
    results = demo.results
    assert isinstance(results, pd.DataFrame) and list(results.columns) == RESULT_COLUMNS
    assert len(results) == 2 * (1 + 2 * 2) == 10
    assert sorted(zip(results.seed, results["round"], results.variant)) == sorted(
        [(s, 0, "ticket") for s in (0, 1)] + [(s, r, v) for s in (0, 1) for r in (1, 2) for v in ("ticket", "reinit")])
    assert (results.status == "ok").all()
    assert demo.config.prune.rounds == 2 and demo.config.seeds == [0, 1]


def test_mask_is_the_rounds_mask_file(demo):
    mask = demo.mask(seed=0, round=2)
    saved = load(demo.path / "seed_0/round_2/mask.pt")
    assert set(mask) == set(saved) and all(m.dtype == torch.bool for m in mask.values())
    assert all(torch.equal(mask[k], saved[k]) for k in saved)
    row = demo.results.query("seed == 0 and round == 2 and variant == 'ticket'").iloc[0]
    assert sum(int(m.sum()) for m in mask.values()) == row.params_remaining


def test_network_is_the_trained_network_with_its_pruned_weights_zero(demo):
    from tickets.components import load_splits
    from tickets.plugins import registry

    model = demo.network(seed=0, round=2, variant="ticket")
    assert isinstance(model, torch.nn.Module) and not model.training
    mask, final = demo.mask(seed=0, round=2), load(demo.path / "seed_0/round_2/ticket/final.pt")
    state = model.state_dict()
    assert all(torch.equal(state[k], final[k]) for k in final)
    for name, keep in mask.items():
        assert (state[name][~keep] == 0).all() and (state[name][keep] != 0).any()
    config = demo.config
    splits = load_splits(config, registry().get("datasets", config.data.dataset))
    with torch.no_grad():  # the module as returned, evaluated here
        accuracy = (model(splits.test_x).argmax(1) == splits.test_y).float().mean().item()
    row = demo.results.query("seed == 0 and round == 2 and variant == 'ticket'").iloc[0]
    assert accuracy == pytest.approx(row.final_test_acc, abs=1e-6)
    assert masked_accuracy(demo.path, final, mask) == pytest.approx(row.final_test_acc, abs=1e-6)


def test_unknown_network_is_a_tickets_error(demo):
    with pytest.raises(tickets.TicketsError, match="seed_7"):
        demo.mask(seed=7, round=0)
    with pytest.raises(tickets.TicketsError, match="random_prune"):
        demo.network(seed=0, round=1, variant="random_prune")


def test_report_and_load_run(demo, tmp_path):
    run = copy_of(demo, tmp_path)
    path = run.report()
    assert path == run.path / "report" / "report.md" and path.is_file()
    assert "reinit" in path.read_text()
    pd.testing.assert_frame_equal(tickets.load_run(demo.path).results, demo.results)
    pd.testing.assert_frame_equal(run.results, demo.results)
    with pytest.raises(tickets.TicketsError, match="not a tickets run"):
        tickets.load_run(tmp_path / "nowhere")


def test_compare_adds_the_control_and_retrains_nothing(demo, tmp_path):
    run = copy_of(demo, tmp_path)
    finals = {p: p.stat().st_mtime_ns for p in run.path.rglob("final.pt")}
    added = tickets.compare(run, controls=["signed_reinit"], quiet=True)
    assert added.path == run.path
    results = added.results
    new = results[results.variant == "signed_reinit"]
    assert sorted(zip(new.seed, new["round"])) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    old = results[results.variant != "signed_reinit"].reset_index(drop=True)
    pd.testing.assert_frame_equal(old, demo.results)  # train_seconds too: nothing was trained again
    assert {p: p.stat().st_mtime_ns for p in finals} == finals
    # the control trained under the ticket's mask
    mask = demo.mask(seed=0, round=1)
    assert all(torch.equal(added.mask(seed=0, round=1, variant="signed_reinit")[k], mask[k]) for k in mask)
    final = load(run.path / "seed_0/round_1/signed_reinit/final.pt")
    assert all(not final[k][~m].any() for k, m in mask.items())
    assert yaml.safe_load((run.path / "config.yaml").read_text())["prune"]["controls"] == ["reinit", "signed_reinit"]

def test_stability_of_the_runs_last_round(demo, tmp_path):
    run = copy_of(demo, tmp_path)
    analysed = tickets.stability(run, at="0", points=3, rounds=[2], controls=[], quiet=True)
    csv = run.path / "stability" / "stability.csv"
    assert analysed.path == run.path and csv.is_file()
    rows = analysed.stability
    pd.testing.assert_frame_equal(rows, pd.read_csv(csv))
    assert list(zip(rows.seed, rows["round"], rows.variant, rows.k)) == [(0, 2, "ticket", 0), (1, 2, "ticket", 0)]
    for row in rows.to_dict("records"):
        seed = row["seed"]
        mask = demo.mask(seed=seed, round=2)
        for column, copy in (("err_0.00", 0), ("err_1.00", 1)):
            final = load(run.path / f"stability/seed_{seed}/round_2/ticket/k_0/copy_{copy}/final.pt")
            assert all(not final[k][~m].any() for k, m in mask.items())  # trained under the run's mask
            assert row[column] == pytest.approx(1 - masked_accuracy(run.path, final, mask), abs=1e-6)
        assert row["instability"] == pytest.approx(
            max(row[c] for c in ("err_0.00", "err_0.50", "err_1.00")) - (row["err_0.00"] + row["err_1.00"]) / 2,
            abs=2e-6)
    pd.testing.assert_frame_equal(run.results, demo.results)  # the run's own results are untouched


def test_supermask_through_the_api(tmp_path):
    run = tickets.supermask(out=tmp_path, name="sm", seeds=[0], workers=1, **FAST)
    (row,) = run.results.to_dict("records")
    variant = "supermask_edge_popup"
    assert (row["seed"], row["round"], row["variant"]) == (0, 0, variant)
    mask = run.mask(seed=0, round=0, variant=variant)
    saved = load(run.path / f"seed_0/round_0/{variant}/mask.pt")
    assert all(torch.equal(mask[k], saved[k]) for k in saved)
    assert sum(int(m.sum()) for m in mask.values()) == row["params_remaining"]
    init = load(run.path / "seed_0/init.pt")
    assert masked_accuracy(run.path, init, mask) == pytest.approx(row["test_acc_at_early_stop"], abs=1e-6)


# --- bad input ------------------------------------------------------------------------------------------------

def test_bad_rounds_raise_one_line_and_write_nothing(tmp_path):
    with pytest.raises(tickets.TicketsError) as caught:
        tickets.prune(rounds=-1, out=tmp_path)
    message = str(caught.value)
    assert "rounds" in message and "\n" not in message
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("call, name", [
    (lambda out: tickets.supermask(rounds=5, out=out), "rounds"),
    (lambda out: tickets.train(controls=["reinit"], out=out), "controls"),
    (lambda out: tickets.prune(epoch=1, out=out), "epoch"),
], ids=["supermask-rounds", "train-controls", "prune-epoch"])
def test_an_unknown_keyword_raises_naming_it(tmp_path, call, name):
    with pytest.raises(tickets.TicketsError) as caught:
        call(tmp_path)
    message = str(caught.value)
    assert name in message and "\n" not in message
    assert not any(tmp_path.iterdir())
