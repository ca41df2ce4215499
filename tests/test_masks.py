"""Mask: exact counts, the rounding rule, monotone pruning, per-layer fractions, global scope."""
import math

import pytest
import torch
from torch import nn

from tickets.errors import TicketsError
from tickets.masks import SCOPES, Mask, prunable_names, pruned_count


def small_net():
    torch.manual_seed(0)
    net = nn.Sequential()
    net.add_module("fc1", nn.Linear(30, 20))
    net.add_module("bn", nn.BatchNorm1d(20))
    net.add_module("fc2", nn.Linear(20, 15))
    net.add_module("output", nn.Linear(15, 10))
    return net


def magnitude(net):
    params = dict(net.named_parameters())
    return {n: params[n].detach().abs() for n in prunable_names(net)}


def test_prunable_names_are_weights_of_linear_layers_only():
    assert prunable_names(small_net()) == ["fc1.weight", "fc2.weight", "output.weight"]


def test_layerwise_counts_follow_the_rounding_rule_for_many_rounds():
    net = small_net()
    mask = Mask.ones_for(net)
    expected = {"fc1.weight": 600, "fc2.weight": 300, "output.weight": 150}
    for _ in range(12):
        scores = {n: torch.rand(t.shape) for n, t in mask.tensors.items()}
        mask = mask.prune(scores, 0.2, {"output.*": 0.1}, "layerwise")
        for name in expected:
            f = 0.1 if name.startswith("output") else 0.2
            expected[name] -= int(math.floor(expected[name] * f + 0.5))
            assert mask.count(name) == expected[name]
    assert expected["fc1.weight"] == 42  # 600 * 0.8**12 = 41.2; round-half-up per round keeps 42


def test_pruned_count_rounds_half_up():
    assert pruned_count(10, 0.25) == 3  # 2.5 -> 3
    assert pruned_count(10, 0.24) == 2
    assert pruned_count(0, 0.2) == 0


def test_masks_never_revive_even_when_pruned_weights_score_highest():
    net = small_net()
    mask = Mask.ones_for(net).prune(magnitude(net), 0.5)
    inverted = {n: -s for n, s in magnitude(net).items()}  # pruned (small) weights now score highest
    nxt = mask.prune(inverted, 0.5)
    assert nxt.is_subset_of(mask)
    assert nxt.count("fc1.weight") == 150


def test_keeps_the_largest_scores():
    scores = {"w": torch.tensor([[0.1, 0.9, 0.5, 0.3]])}
    mask = Mask({"w": torch.ones(1, 4, dtype=torch.bool)}).prune(scores, 0.5)
    assert mask.tensors["w"].tolist() == [[False, True, True, False]]


def test_global_scope_pools_layers_and_respects_own_fractions():
    net = small_net()
    mask = Mask.ones_for(net).prune(magnitude(net), 0.2, {"output.*": 0.1}, "global")
    assert mask.count("fc1.weight") + mask.count("fc2.weight") == 900 - pruned_count(900, 0.2)
    assert mask.count("output.weight") == 150 - pruned_count(150, 0.1)
    # global scope ranks raw magnitudes across layers: the pooled layers lose unequal shares
    assert mask.count("fc1.weight") / 600 != pytest.approx(mask.count("fc2.weight") / 300, abs=1e-3)


def test_global_scope_pools_any_number_of_layers_by_score():
    """Three pooled tensors of different sizes: the lowest scores go, wherever they are."""
    scores = {"a": torch.tensor([[0.9, 0.1]]), "b": torch.tensor([[0.2, 0.8, 0.3]]),
              "c": torch.tensor([[0.4, 0.7, 0.6, 0.5]])}
    mask = Mask({n: torch.ones_like(t, dtype=torch.bool) for n, t in scores.items()}).prune(scores, 0.5, scope="global")
    assert {n: t.tolist() for n, t in mask.tensors.items()} == {  # 5 of 9 pruned: .9 .8 .7 .6 stay
        "a": [[True, False]], "b": [[False, True, False]], "c": [[False, True, True, False]]}


def test_sizes_counts_and_density():
    mask = Mask({"a": torch.tensor([[True, False, True]]), "b": torch.tensor([[False], [False]])})
    assert mask.names() == ["a", "b"]
    assert (mask.count(), mask.count("a"), mask.count("b"), mask.size()) == (2, 2, 0, 5)
    assert mask.counts() == {"a": 2, "b": 0}
    assert mask.density() == 0.4


def test_ties_follow_the_generator_in_both_scopes_and_seed_0_without_one():
    mask = Mask({"a": torch.ones(10, 10, dtype=torch.bool), "b": torch.ones(5, 10, dtype=torch.bool)})
    tied = {n: torch.ones(t.shape) for n, t in mask.tensors.items()}
    for scope in SCOPES:
        a, b, c = (mask.prune(tied, 0.5, scope=scope, generator=torch.Generator().manual_seed(s)) for s in (3, 3, 4))
        assert a == b and a != c, scope
        torch.manual_seed(99)  # the global generator plays no part
        assert mask.prune(tied, 0.5, scope=scope) == mask.prune(tied, 0.5, scope=scope,
                                                                 generator=torch.Generator().manual_seed(0))


def test_nan_scores_are_pruned_first():
    scores = {"w": torch.tensor([[float("nan"), -5.0, 0.0, float("nan")]])}
    mask = Mask({"w": torch.ones(1, 4, dtype=torch.bool)}).prune(scores, 0.5)
    assert mask.tensors["w"].tolist() == [[False, True, True, False]]


def test_fraction_zero_leaves_a_layer_unpruned():
    net = small_net()
    mask = Mask.ones_for(net).prune(magnitude(net), 0.5, {"output.*": 0.0})
    assert mask.count("output.weight") == 150


def test_random_with_counts_keeps_per_layer_counts_but_moves_weights():
    net = small_net()
    mask = Mask.ones_for(net).prune(magnitude(net), 0.7)
    other = mask.random_with_counts(torch.Generator().manual_seed(1))
    assert other.counts() == mask.counts()
    assert other != mask


def test_save_load_is_a_plain_dict_of_bool_tensors(tmp_path):
    net = small_net()
    mask = Mask.ones_for(net).prune(magnitude(net), 0.3)
    mask.save(tmp_path / "mask.pt")
    raw = torch.load(tmp_path / "mask.pt", weights_only=True)
    assert isinstance(raw, dict) and all(t.dtype == torch.bool for t in raw.values())
    assert Mask.load(tmp_path / "mask.pt") == mask


def test_apply_zeroes_pruned_weights():
    net = small_net()
    mask = Mask.ones_for(net).prune(magnitude(net), 0.5)
    mask.apply_(net)
    for name, p in net.named_parameters():
        if name in mask.tensors:
            assert (p[~mask.tensors[name]] == 0).all()
            assert (p[mask.tensors[name]] != 0).all()


def test_bad_scores_are_clear_errors():
    mask = Mask({"w": torch.ones(2, 2, dtype=torch.bool)})
    with pytest.raises(TicketsError, match="no scores for w"):
        mask.prune({}, 0.5)
    with pytest.raises(TicketsError, match="no scores for v, w$"):
        Mask({"v": torch.ones(1, dtype=torch.bool), "w": torch.ones(1, dtype=torch.bool)}).prune({}, 0.5)
    with pytest.raises(TicketsError, match="unknown scope 'pooled'; use one of layerwise, global$"):
        mask.prune({"w": torch.ones(2, 2)}, 0.5, scope="pooled")
    with pytest.raises(TicketsError, match="shape"):
        mask.prune({"w": torch.ones(4)}, 0.5)
