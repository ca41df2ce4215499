"""The main job end to end on tiny settings: rows, exact sparsity, zeros, rewinding, determinism, resume."""
import math

import pytest
import torch
from conftest import load, masked_accuracy, prune_tiny, read_results

from tickets.components import load_splits
from tickets.config import build_config
from tickets.data import make_splits
from tickets.masks import Mask, pruned_count
from tickets.plugins import registry
from tickets.ticket import Ticket
from tickets.training import train_network

LAYERS = {"fc1.weight": 784 * 300, "fc2.weight": 300 * 100, "output.weight": 100 * 10}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny run with SGD + momentum + weight decay, the hardest case for keeping zeros."""
    out = tmp_path_factory.mktemp("out")
    return prune_tiny(out, "base", "--rounds", "3", "--optimizer", "sgd", "--lr", "0.05",
                      "--set", "train.optimizer_options={momentum: 0.9, weight_decay: 0.01}")


def test_one_row_per_network_with_schema(run):
    rows = read_results(run)
    assert [(r["round"], r["variant"]) for r in rows] == [("0", "ticket")] + [
        (str(r), v) for r in (1, 2, 3) for v in ("ticket", "random_prune", "reinit")]
    assert list(rows[0]) == ["run", "seed", "round", "variant", "criterion", "weights_remaining",
                             "params_remaining", "acc_at_init", "best_val_loss", "early_stop_iter",
                             "test_acc_at_early_stop", "final_test_acc", "final_test_loss", "iterations",
                             "train_seconds", "status"]
    assert {r["status"] for r in rows} == {"ok"}
    assert float(rows[0]["weights_remaining"]) == 1.0
    assert all(0.3 < float(r["test_acc_at_early_stop"]) <= 1 for r in rows)


def test_exact_sparsity_per_layer_every_round(run):
    expected = dict(LAYERS)
    for round_ in (1, 2, 3):
        mask = Mask.load(run / f"seed_0/round_{round_}/mask.pt")
        for name in expected:
            expected[name] -= pruned_count(expected[name], 0.1 if name == "output.weight" else 0.2)
            assert mask.count(name) == expected[name]
        rows = [r for r in read_results(run) if r["round"] == str(round_)]
        assert {int(r["params_remaining"]) for r in rows} == {sum(expected.values())}
        assert (float(rows[0]["weights_remaining"])
                == pytest.approx(sum(expected.values()) / sum(LAYERS.values()), abs=1e-6))


def test_pruned_weights_are_zero_after_training_for_every_variant(run):
    for round_ in (1, 2, 3):
        ticket_mask = Mask.load(run / f"seed_0/round_{round_}/mask.pt")
        own_mask = {"ticket": ticket_mask, "reinit": ticket_mask,
                    "random_prune": Mask.load(run / f"seed_0/round_{round_}/random_prune/mask.pt")}
        assert own_mask["random_prune"].counts() == ticket_mask.counts() and own_mask["random_prune"] != ticket_mask
        for variant, mask in own_mask.items():
            final = load(run / f"seed_0/round_{round_}/{variant}/final.pt")
            # zero exactly where the network's mask prunes (a trained weight is never exactly 0)
            assert Mask({n: final[n] != 0 for n in LAYERS}) == mask, (round_, variant)


def test_a_ticket_starts_from_theta0_times_its_mask(run):
    """acc_at_init of every round's ticket is the accuracy of theta_0 ⊙ mask, computed independently."""
    init = load(run / "seed_0/init.pt")
    rows = {(r["round"], r["variant"]): r for r in read_results(run)}
    for round_ in (1, 2, 3):
        expected = masked_accuracy(run, init, load(run / f"seed_0/round_{round_}/mask.pt"))
        assert float(rows[(str(round_), "ticket")]["acc_at_init"]) == pytest.approx(expected, abs=1e-5), round_


def test_a_control_under_another_mask_keeps_that_mask_in_its_directory(run):
    for round_ in (1, 2, 3):
        ticket_mask = Mask.load(run / f"seed_0/round_{round_}/mask.pt")
        own = Mask.load(run / f"seed_0/round_{round_}/random_prune/mask.pt")
        assert own != ticket_mask and own.counts() == ticket_mask.counts()  # random, with the ticket's layer counts
        final = load(run / f"seed_0/round_{round_}/random_prune/final.pt")
        assert all(not (final[n][~own.tensors[n]] != 0).any() for n in LAYERS)  # it trained under this mask
        for variant in ("ticket", "reinit"):  # these train under the round's mask, which is saved once per round
            assert not (run / f"seed_0/round_{round_}/{variant}/mask.pt").exists()


def test_masks_are_monotone_across_rounds(run):
    masks = [Mask.load(run / f"seed_0/round_{r}/mask.pt") for r in range(4)]
    for earlier, later in zip(masks, masks[1:]):
        assert later.is_subset_of(earlier) and later.count() < earlier.count()


def test_rewind_zero_restores_theta0_exactly(run):
    init = load(run / "seed_0/init.pt")
    rewind = load(run / "seed_0/rewind.pt")
    assert all(torch.equal(init[k], rewind[k]) for k in init)
    # the ticket's first evaluation is at iteration 0, before any training
    first = (run / "seed_0/round_2/ticket/metrics.csv").read_text().splitlines()[1]
    assert first.startswith("0,")


def test_rewind_to_iteration_k_restores_theta_k_exactly(tmp_path):
    run_dir = prune_tiny(tmp_path, "late", "--rounds", "1", "--rewind", "7it", "--controls", "none")
    rewind = load(run_dir / "seed_0/rewind.pt")
    init = load(run_dir / "seed_0/init.pt")
    # train the dense network independently for exactly 7 iterations from theta_0
    config = build_config(None, {"train.epochs": 0.3})
    splits = load_splits(config, registry().get("datasets", "digits"))
    model = registry().get("models", "lenet_300_100")(10, (1, 28, 28))
    make_opt = lambda params: torch.optim.Adam(params, lr=config.train.lr, fused=True)  # noqa: E731 - as built in
    ticket = Ticket(Mask.ones_for(model), init, 0)
    torch.manual_seed(0)
    outcome = train_network(model, ticket, make_opt, splits, end_iteration=7, eval_every=5, batch_size=60, data_seed=0)
    assert all(torch.equal(outcome.final_state[k], rewind[k]) for k in rewind)
    assert not torch.equal(rewind["fc1.weight"], init["fc1.weight"])
    # the ticket starts from theta_k ⊙ mask: its first accuracy is that network's, computed independently
    theta_k_acc = masked_accuracy(run_dir, outcome.final_state, load(run_dir / "seed_0/round_1/mask.pt"))
    assert float(read_results(run_dir)[1]["acc_at_init"]) == pytest.approx(theta_k_acc, abs=1e-5)
    metrics = (run_dir / "seed_0/round_1/ticket/metrics.csv").read_text().splitlines()
    assert metrics[1].startswith("7,")  # the ticket trains from iteration 7 on
    assert read_results(run_dir)[1]["iterations"] == str(17 - 7)


def test_training_from_theta_k_sees_the_batches_from_k_on(tmp_path):
    """Plain SGD and a full mask: theta_k trained from iteration k to T is the dense network's theta_T, bit for bit."""
    run_dir = prune_tiny(tmp_path, "from_k", "--rounds", "1", "--rewind", "7it", "--controls", "none",
                         "--optimizer", "sgd", "--lr", "0.05", "--set", "prune.layer_fractions={'*': 0}")
    assert Mask.load(run_dir / "seed_0/round_1/mask.pt").density() == 1.0
    dense, ticket = load(run_dir / "seed_0/round_0/ticket/final.pt"), load(run_dir / "seed_0/round_1/ticket/final.pt")
    assert all(torch.equal(dense[k], ticket[k]) for k in dense)
    assert not torch.equal(dense["fc1.weight"], load(run_dir / "seed_0/rewind.pt")["fc1.weight"])


def test_tied_scores_are_broken_at_random_per_seed_not_by_position(tmp_path):
    """large_init over signed-constant weights: every score in a layer ties. Breaking ties by index would
    prune the last 60 of fc1's 300 neurons whole, the same ones for every seed."""
    run_dir = prune_tiny(tmp_path, "ties", "--rounds", "1", "--seeds", "0,1", "--controls", "none",
                         "--criterion", "large_init", "--set", "model.init=signed_constant",
                         "--set", "train.iterations=3")
    masks = [Mask.load(run_dir / f"seed_{s}/round_1/mask.pt").tensors["fc1.weight"] for s in (0, 1)]
    for mask in masks:
        per_neuron = mask.sum(1)
        assert int(per_neuron.sum()) == 784 * 300 - pruned_count(784 * 300, 0.2)
        assert per_neuron.min() > 784 * 0.7 and per_neuron.max() < 784 * 0.9  # about 80% of every neuron kept
    assert not torch.equal(masks[0], masks[1])


def test_same_seed_same_results(run, tmp_path):
    again = prune_tiny(tmp_path, "again", "--rounds", "3", "--optimizer", "sgd", "--lr", "0.05",
                       "--set", "train.optimizer_options={momentum: 0.9, weight_decay: 0.01}")
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("run", "train_seconds")} for r in rows]  # noqa: E731
    assert strip(read_results(again)) == strip(read_results(run))
    for r in range(4):
        assert Mask.load(again / f"seed_0/round_{r}/mask.pt") == Mask.load(run / f"seed_0/round_{r}/mask.pt")


def test_different_seeds_differ(tmp_path):
    run_dir = prune_tiny(tmp_path, "seeds", "--rounds", "0", "--seeds", "0,1")
    rows = read_results(run_dir)
    assert [r["seed"] for r in rows] == ["0", "1"]
    assert not torch.equal(load(run_dir / "seed_0/init.pt")["fc1.weight"],
                           load(run_dir / "seed_1/init.pt")["fc1.weight"])


def test_global_scope_prunes_the_pooled_layers_exactly(tmp_path):
    run_dir = prune_tiny(tmp_path, "global", "--rounds", "1", "--scope", "global", "--controls", "none")
    mask = Mask.load(run_dir / "seed_0/round_1/mask.pt")
    pooled = LAYERS["fc1.weight"] + LAYERS["fc2.weight"]
    assert mask.count("fc1.weight") + mask.count("fc2.weight") == pooled - pruned_count(pooled, 0.2)
    assert mask.count("output.weight") == 1000 - pruned_count(1000, 0.1)


def test_epochs_and_iterations_set_the_training_length(tmp_path):
    run_dir = prune_tiny(tmp_path, "len", "--rounds", "0", "--set", "train.iterations=12")
    assert read_results(run_dir)[0]["iterations"] == "12"


def test_validation_split_is_held_out_of_training():
    data = registry().get("datasets", "digits")(None, False)
    splits = make_splits(data, 500)
    assert splits.val_x.shape[0] == 500 and splits.train_x.shape[0] == data.train_x.shape[0] - 500
    flat = lambda x: {tuple(row.tolist()) for row in x.flatten(1)[:, ::7]}  # noqa: E731
    assert not flat(splits.val_x) & flat(splits.train_x)
    assert math.isclose(float(splits.train_x.mean()), 0.0, abs_tol=0.2)  # normalized
