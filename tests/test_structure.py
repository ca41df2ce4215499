"""Structured pruning (Li et al. 2017; Liu et al. 2019): whole neurons and filters, checked on the saved files."""
import math

import pytest
import torch
from conftest import TINY, load, prune_tiny, read_results, run_cli


def alive(mask: torch.Tensor) -> torch.Tensor:
    return mask.flatten(1).any(1)


def expected_count(units: int, fraction: float = 0.2) -> int:
    return units - math.floor(units * fraction + 0.5)


@pytest.fixture(scope="module")
def neurons(tmp_path_factory):
    return prune_tiny(tmp_path_factory.mktemp("neurons"), "n", "--rounds", "3", "--structure", "neurons",
                      "--controls", "random_prune")


def test_neuron_masks_are_whole_rows_and_the_next_layer_loses_their_columns(neurons):
    for round_ in (1, 2, 3):
        m = load(neurons / "seed_0" / f"round_{round_}" / "mask.pt")
        fc1, fc2 = alive(m["fc1.weight"]), alive(m["fc2.weight"])
        assert torch.equal(m["fc1.weight"], fc1[:, None].expand_as(m["fc1.weight"]))  # reads every pixel
        assert torch.equal(m["fc2.weight"], fc2[:, None] & fc1[None, :])
        assert torch.equal(m["output.weight"], fc2[None, :].expand_as(m["output.weight"]))  # classes all kept


def test_each_round_removes_a_fifth_of_each_layers_units_by_the_l1_norm_of_their_rows(neurons):
    previous_alive = {"fc1.weight": torch.ones(300, dtype=torch.bool), "fc2.weight": torch.ones(100, dtype=torch.bool)}
    for round_ in (1, 2, 3):
        m = load(neurons / "seed_0" / f"round_{round_}" / "mask.pt")
        trained = load(neurons / "seed_0" / f"round_{round_ - 1}" / "ticket" / "final.pt")
        for name, before in previous_alive.items():
            now = alive(m[name])
            assert int(now.sum()) == expected_count(int(before.sum()))
            assert not bool((now & ~before).any())  # pruned units never come back
            norms = trained[name].abs().sum(1).masked_fill(~before, -1.0)  # Li et al.'s L1 norm of each row
            assert torch.equal(now, torch.zeros_like(now).index_fill_(0, norms.topk(int(now.sum())).indices, True))
            previous_alive[name] = now


def test_a_pruned_neurons_bias_is_zero_after_training(neurons):
    for variant in ("ticket", "random_prune"):
        net = neurons / "seed_0" / "round_3" / variant
        m = load(net / "mask.pt") if (net / "mask.pt").exists() else load(neurons / "seed_0" / "round_3" / "mask.pt")
        final = load(net / "final.pt")
        for layer in ("fc1", "fc2"):
            dead = ~alive(m[f"{layer}.weight"])
            assert int(dead.sum()) > 0
            assert float(final[f"{layer}.bias"][dead].abs().max()) == 0.0
            assert float(final[f"{layer}.weight"][dead].abs().max()) == 0.0
            assert float(final[f"{layer}.bias"][~dead].abs().sum()) > 0  # the kept ones trained


def test_random_prune_draws_whole_random_units_with_the_tickets_counts(neurons):
    for round_ in (1, 2, 3):
        ticket = load(neurons / "seed_0" / f"round_{round_}" / "mask.pt")
        random = load(neurons / "seed_0" / f"round_{round_}" / "random_prune" / "mask.pt")
        for name in ("fc1.weight", "fc2.weight"):
            assert int(alive(random[name]).sum()) == int(alive(ticket[name]).sum())
            assert not torch.equal(alive(random[name]), alive(ticket[name]))
        r1, r2 = alive(random["fc1.weight"]), alive(random["fc2.weight"])
        assert torch.equal(random["fc2.weight"], r2[:, None] & r1[None, :])
    rows = [r for r in read_results(neurons) if r["round"] == "3"]
    assert len({r["weights_remaining"] for r in rows}) == 1  # same units, so the same weights remain


def test_channels_prune_whole_filters_and_the_flattened_columns_they_become(tmp_path):
    run = prune_tiny(tmp_path, "c", "--rounds", "1", "--structure", "channels", "--model", "conv2",
                     "--controls", "none")
    m, final = load(run / "seed_0" / "round_1" / "mask.pt"), load(run / "seed_0" / "round_1" / "ticket" / "final.pt")
    first, second = alive(m["features.0.weight"]), alive(m["features.2.weight"])
    assert int(first.sum()) == int(second.sum()) == expected_count(64)
    assert torch.equal(m["features.2.weight"], second[:, None, None, None] & first[None, :, None, None]
                       .expand_as(m["features.2.weight"]))
    block = m["fc1.weight"].shape[1] // 64  # 14 x 14 positions per channel after the pool
    assert block == 14 * 14
    columns = second.repeat_interleave(block)
    fc1_alive = alive(m["fc1.weight"])
    assert torch.equal(m["fc1.weight"], fc1_alive[:, None] & columns[None, :])
    assert float(final["features.2.bias"][~second].abs().max()) == 0.0


def test_resnets_prune_only_the_channels_inside_blocks_and_bn_scale_keeps_the_largest_gammas(tmp_path):
    run = prune_tiny(tmp_path, "r", "--rounds", "1", "--structure", "channels", "--model", "resnet20",
                     "--criterion", "bn_scale", "--controls", "none")
    m = load(run / "seed_0" / "round_1" / "mask.pt")
    trained = load(run / "seed_0" / "round_0" / "ticket" / "final.pt")
    final = load(run / "seed_0" / "round_1" / "ticket" / "final.pt")
    for b in range(9):
        kept = alive(m[f"blocks.{b}.conv1.weight"])
        gamma = trained[f"blocks.{b}.bn1.weight"].abs()
        assert int(kept.sum()) == expected_count(gamma.numel())
        assert torch.equal(kept, torch.zeros_like(kept).index_fill_(0, gamma.topk(int(kept.sum())).indices, True))
        assert bool(m[f"blocks.{b}.conv2.weight"].any(0).any(-1).any(-1).eq(kept).all())  # its inputs go
        assert bool(alive(m[f"blocks.{b}.conv2.weight"]).all())  # the residual path's channels stay
        assert float(final[f"blocks.{b}.bn1.weight"][~kept].abs().max()) == 0.0  # the BN channel goes too
    assert bool(m["conv.weight"].all()) and bool(m["output.weight"].all())


@pytest.mark.parametrize("flags, words", [
    (["--structure", "rows"], "unknown prune.structure 'rows'"),
    (["--criterion", "bn_scale"], "use it with --structure channels"),
    (["--structure", "neurons", "--model", "resnet20"], "has no neurons that can be pruned whole"),
])
def test_bad_structured_settings_are_one_line_errors(tmp_path, flags, words):
    result = run_cli("prune", "--out", tmp_path, "--rounds", "1", *TINY, *flags, expect=2)
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1
