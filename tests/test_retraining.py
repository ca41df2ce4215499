"""Retraining strategies (Renda et al. 2020; Liu et al. 2019): where each network starts, which
iterations it trains and at which learning rates, checked against the run's own files with
plain torch and against the definitions in the papers.
"""
import csv
import math

import pytest
from conftest import TINY, load, masked_accuracy, prune_tiny, read_results, run_cli

# A cosine schedule makes every iteration's learning rate distinct; an evaluation at every
# iteration puts each one in metrics.csv. The rewind point k = 5 sits inside the schedule.
SETTINGS = ["--rounds", "2", "--rewind", "5it", "--schedule", "cosine", "--set", "train.eval_every=1"]
RETRAINING = "finetune,lr_rewind,scratch"


def metrics(run_dir, seed, round_, variant) -> list[dict]:
    with (run_dir / f"seed_{seed}" / f"round_{round_}" / variant / "metrics.csv").open() as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def row_of(run_dir, round_, variant) -> dict:
    return next(r for r in read_results(run_dir) if int(r["round"]) == round_ and r["variant"] == variant)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return prune_tiny(tmp_path_factory.mktemp("retrain"), "r", *SETTINGS, "--controls", RETRAINING)


def test_finetune_and_lr_rewind_start_from_the_previous_trained_ticket_under_this_mask(run):
    for round_ in (1, 2):
        previous = load(run / "seed_0" / f"round_{round_ - 1}" / "ticket" / "final.pt")
        mask = load(run / "seed_0" / f"round_{round_}" / "mask.pt")
        expected = masked_accuracy(run, previous, mask)
        for variant in ("finetune", "lr_rewind"):
            assert float(row_of(run, round_, variant)["acc_at_init"]) == pytest.approx(expected, abs=1e-6), variant
        # and not from theta_k (what the ticket starts from): the start really is the trained network
        assert float(row_of(run, round_, "ticket")["acc_at_init"]) != pytest.approx(expected, abs=1e-6)


def test_finetune_trains_t_minus_k_iterations_at_the_final_learning_rate(run):
    dense = metrics(run, 0, 0, "ticket")
    final_lr = next(r["lr"] for r in dense if r["iteration"] == dense[-1]["iteration"] - 1)  # the step at T - 1
    import yaml

    lr = yaml.safe_load((run / "config.yaml").read_text())["train"]["lr"]
    total, k = int(dense[-1]["iteration"]), 5
    assert final_lr == pytest.approx(lr * 0.5 * (1 + math.cos(math.pi * (total - 1) / total)), rel=1e-6)
    for round_ in (1, 2):
        rows = metrics(run, 0, round_, "finetune")
        assert [int(r["iteration"]) for r in rows] == list(range(k, total + 1))
        assert {r["lr"] for r in rows} == {final_lr}
        assert int(row_of(run, round_, "finetune")["iterations"]) == total - k


def test_lr_rewind_replays_the_rewound_tickets_iterations_and_learning_rates(run):
    for round_ in (1, 2):
        replay, ticket = metrics(run, 0, round_, "lr_rewind"), metrics(run, 0, round_, "ticket")
        assert [(r["iteration"], r["lr"]) for r in replay] == [(r["iteration"], r["lr"]) for r in ticket]
        assert len({r["lr"] for r in replay}) > 10  # a real schedule, not a constant


def test_scratch_trains_from_0_to_t_with_the_dense_networks_learning_rates_from_fresh_weights(run):
    dense = metrics(run, 0, 0, "ticket")
    init = load(run / "seed_0" / "init.pt")
    for round_ in (1, 2):
        rows = metrics(run, 0, round_, "scratch")
        assert [(r["iteration"], r["lr"]) for r in rows] == [(r["iteration"], r["lr"]) for r in dense]
        mask = load(run / "seed_0" / f"round_{round_}" / "mask.pt")
        assert float(row_of(run, round_, "scratch")["acc_at_init"]) != pytest.approx(
            masked_accuracy(run, init, mask), abs=1e-6)  # fresh weights, not theta_0


def test_every_retrained_network_records_the_trained_network_it_started_from(run):
    import json

    for variant in ("finetune", "lr_rewind"):
        inputs = json.loads((run / "seed_0" / "round_2" / variant / "done.json").read_text())["inputs"]
        assert "seed_0/round_1/ticket/final.pt" in inputs
    assert run_cli("check", run).exit_code == 0


def magnitude_mask(final: dict, mask: dict) -> dict:
    """Frankle & Carbin's layerwise magnitude pruning of one round, written out here:
    remove round(0.2 n) of each layer's n survivors (the output layer 10%) with the smallest |w|."""
    out = {}
    for name, keep in mask.items():
        alive = int(keep.sum())
        n_keep = alive - math.floor(alive * (0.1 if name.startswith("output") else 0.2) + 0.5)
        scores = final[name].abs().masked_fill(~keep, -1.0).flatten()
        flat = keep.flatten().clone().zero_()
        flat[scores.topk(n_keep).indices] = True
        out[name] = flat.view_as(keep)
    return out


def test_imp_with_fine_tuning_prunes_the_fine_tuned_network_and_starts_from_trained_weights(tmp_path):
    run = prune_tiny(tmp_path, "ft", *SETTINGS, "--controls", "none", "--retrain", "finetune")
    dense = metrics(run, 0, 0, "ticket")
    total = int(dense[-1]["iteration"])
    for round_ in (1, 2):
        trained = load(run / "seed_0" / f"round_{round_ - 1}" / "ticket" / "final.pt")
        mask = load(run / "seed_0" / f"round_{round_}" / "mask.pt")
        assert float(row_of(run, round_, "ticket")["acc_at_init"]) == pytest.approx(
            masked_accuracy(run, trained, mask), abs=1e-6)
        assert {r["lr"] for r in metrics(run, 0, round_, "ticket")} == {
            next(r["lr"] for r in dense if r["iteration"] == total - 1)}
    fine_tuned = load(run / "seed_0" / "round_1" / "ticket" / "final.pt")
    expected = magnitude_mask(fine_tuned, load(run / "seed_0" / "round_1" / "mask.pt"))
    actual = load(run / "seed_0" / "round_2" / "mask.pt")
    assert all(bool((expected[n] == actual[n]).all()) for n in expected)


def test_imp_with_lr_rewinding_replays_the_schedule_from_k(tmp_path):
    run = prune_tiny(tmp_path, "lr", *SETTINGS, "--controls", "none", "--retrain", "lr_rewind",
                     "--retrain-iterations", "7it")  # finetune's length: lr_rewind ignores it
    dense = metrics(run, 0, 0, "ticket")
    rows = metrics(run, 0, 1, "ticket")
    replayed = [(r["iteration"], r["lr"]) for r in dense if r["iteration"] >= 5]
    assert [(r["iteration"], r["lr"]) for r in rows] == replayed
    assert [(r["iteration"], r["lr"]) for r in rows] == replayed


def test_retrain_iterations_set_fine_tunings_length(tmp_path):
    run = prune_tiny(tmp_path, "len", "--rounds", "1", "--controls", "finetune", "--retrain-iterations", "7it")
    assert int(row_of(run, 1, "finetune")["iterations"]) == 7


@pytest.mark.parametrize("flags, words", [
    (["--retrain", "sideways"], "unknown prune.retrain 'sideways'"),
    (["--retrain-iterations", "soon"], "prune.retrain_iterations 'soon' is not understood"),
])
def test_bad_retraining_settings_are_one_line_errors(tmp_path, flags, words):
    result = run_cli("prune", "--out", tmp_path, *TINY, *flags, expect=2)
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_the_default_is_weight_rewinding_and_keeps_run_names(tmp_path):
    from tickets import config as config_mod

    default = config_mod.from_dict({})
    assert default.prune.retrain == "rewind" and default.prune.retrain_iterations is None
    explicit = config_mod.from_dict({"prune": {"retrain": "rewind"}})
    assert config_mod.fingerprint(explicit) == config_mod.fingerprint(default)
    assert config_mod.fingerprint(config_mod.from_dict({"prune": {"retrain": "finetune"}})) != \
        config_mod.fingerprint(default)


SHORT_FINETUNE = '''
import tickets


def short_finetune(ticket, ctx):
    """Three iterations from the previous round's trained ticket at the learning rate of iteration 10."""
    k = ctx.rewind_iteration
    return ticket.with_(state=ctx.trained(), start_iteration=k, end_iteration=k + 3, lr_offset=10 - k)


@tickets.hookimpl
def register_controls(register):
    register("short_finetune", short_finetune, description="three iterations from the trained ticket")
'''


def test_a_control_plugin_says_where_its_network_starts_and_what_it_trains(tmp_path, site):
    site.install("tickets-short", "0.1", {"short_finetune_plugin": SHORT_FINETUNE}, {"short": "short_finetune_plugin"})
    run = prune_tiny(tmp_path / "out", "p", *SETTINGS, "--controls", "short_finetune")
    rows = metrics(run, 0, 1, "short_finetune")
    dense = metrics(run, 0, 0, "ticket")
    lr_at = {int(r["iteration"]): r["lr"] for r in dense}
    assert [int(r["iteration"]) for r in rows] == [5, 6, 7, 8]
    assert [r["lr"] for r in rows] == [lr_at[10], lr_at[11], lr_at[12], lr_at[13]]
    previous = load(run / "seed_0" / "round_0" / "ticket" / "final.pt")
    mask = load(run / "seed_0" / "round_1" / "mask.pt")
    assert float(row_of(run, 1, "short_finetune")["acc_at_init"]) == pytest.approx(
        masked_accuracy(run, previous, mask), abs=1e-6)


def test_retraining_gives_the_same_results_on_two_workers(run, tmp_path):
    args = [a if a != "execution.workers=1" else "execution.workers=2" for a in TINY]
    run_cli("prune", "--out", tmp_path, "--name", "r", *args, *SETTINGS, "--controls", RETRAINING)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("run", "train_seconds")} for r in rows]  # noqa: E731
    assert strip(read_results(tmp_path / "r")) == strip(read_results(run))
