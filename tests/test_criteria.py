"""Zhou et al.'s mask criteria: each formula on a hand-built context, and the supermask effect of large_final_same_sign."""
import pytest
import torch
from torch import nn

from conftest import read_results
from tickets.builtin import criteria
from tickets.config import build_config
from tickets.lottery import LotteryRun
from tickets.masks import Mask
from tickets.plugins import registry
from tickets.ticket import CriterionContext

# One layer, six weights: (w_i, w_f) chosen so every criterion ranks them differently.
W_I = torch.tensor([[0.5, -0.1, 0.3], [-0.45, 0.2, -0.05]])
W_F = torch.tensor([[0.6, 0.4, -0.7], [-0.1, 0.05, 0.9]])
SAME_SIGN = torch.tensor([[True, False, False], [True, True, False]])

NAMES = ["magnitude", "large_final", "small_final", "large_init", "small_init", "large_init_large_final",
         "small_init_small_final", "magnitude_increase", "movement", "random", "large_final_same_sign",
         "large_final_diff_sign", "magnitude_increase_same_sign"]


def context(init=W_I, final=W_F, seed=0) -> CriterionContext:
    init, final = {"fc.weight": init}, {"fc.weight": final}
    return CriterionContext(init=init, rewind=init, final=final, mask=Mask({"fc.weight": torch.ones_like(W_F)}),
                            model=nn.Module(), batches=lambda n: [], generator=torch.Generator().manual_seed(seed))


def score(name, ctx=None):
    return registry().get("criteria", name)(ctx or context())["fc.weight"]


def kept(name, n_keep, ctx=None):
    """The set of flat indices a criterion keeps when pruning down to ``n_keep`` of 6."""
    ctx = ctx or context()
    mask = ctx.mask.prune(registry().get("criteria", name)(ctx), 1 - n_keep / 6)
    return set(mask.tensors["fc.weight"].flatten().nonzero().flatten().tolist())


def test_every_criterion_is_registered_with_a_formula():
    entries = registry().entries["criteria"]
    assert set(NAMES) <= set(entries)
    assert entries["magnitude"].obj is entries["large_final"].obj
    for name in NAMES:
        if name != "random":
            assert "w_" in entries[name].description, name


@pytest.mark.parametrize("name, expected", [
    ("large_final", W_F.abs()),
    ("small_final", -W_F.abs()),
    ("large_init", W_I.abs()),
    ("small_init", -W_I.abs()),
    ("large_init_large_final", torch.minimum(W_I.abs(), W_F.abs())),
    ("small_init_small_final", -torch.maximum(W_I.abs(), W_F.abs())),
    ("magnitude_increase", W_F.abs() - W_I.abs()),
    ("movement", (W_F - W_I).abs()),
])
def test_score_formulas(name, expected):
    assert torch.allclose(score(name).double(), expected.double())


def test_rankings_keep_what_the_names_say():
    # flat order (w_i, w_f): 0:(.5,.6) 1:(-.1,.4) 2:(.3,-.7) 3:(-.45,-.1) 4:(.2,.05) 5:(-.05,.9)
    assert kept("large_final", 2) == {2, 5}
    assert kept("small_final", 2) == {3, 4}
    assert kept("large_init", 2) == {0, 3}
    assert kept("small_init", 2) == {1, 5}
    assert kept("large_init_large_final", 2) == {0, 2}  # large at both times
    assert kept("small_init_small_final", 2) == {4, 1}  # max(|w_i|, |w_f|) = .2 and .4
    assert kept("magnitude_increase", 2) == {5, 2}  # +.85, +.4
    assert kept("movement", 2) == {2, 5}  # 1.0, .95


def test_same_sign_variants_never_keep_a_flipped_weight_while_same_sign_ones_remain():
    flat_same = {i for i, s in enumerate(SAME_SIGN.flatten().tolist()) if s}  # {0, 3, 4}
    for n_keep in range(1, 7):
        for name, preferred in (("large_final_same_sign", flat_same),
                                ("magnitude_increase_same_sign", flat_same),
                                ("large_final_diff_sign", set(range(6)) - flat_same)):
            keep = kept(name, n_keep)
            assert len(keep) == n_keep
            if keep - preferred:  # a non-preferred weight is kept only when every preferred one is
                assert preferred <= keep, (name, n_keep, keep)
            else:
                assert keep <= preferred
    assert kept("large_final_same_sign", 2) == {0, 3}  # |w_f| .6 and .1 beat the flipped .9 and .7
    assert kept("large_final_same_sign", 4) == {0, 3, 4, 5}  # then the largest flipped one
    assert kept("magnitude_increase_same_sign", 1) == {0}  # +.1 beats -.35 and -.15
    assert kept("large_final_diff_sign", 2) == {5, 2}


def test_same_sign_ordering_holds_across_layers_for_global_pruning():
    init = {"a.weight": torch.tensor([[1.0, 1.0]]), "b.weight": torch.tensor([[1.0, 1.0]])}
    final = {"a.weight": torch.tensor([[100.0, -100.0]]), "b.weight": torch.tensor([[0.01, -0.01]])}
    ctx = CriterionContext(init=init, rewind=init, final=final, mask=Mask({n: torch.ones(1, 2) for n in init}),
                           model=nn.Module(), batches=lambda n: [], generator=torch.Generator())
    mask = ctx.mask.prune(criteria.large_final_same_sign(ctx), 0.5, scope="global")
    assert mask.tensors["a.weight"].tolist() == [[True, False]]
    assert mask.tensors["b.weight"].tolist() == [[True, False]]


def test_random_is_seeded_and_ignores_the_weights():
    assert torch.equal(score("random", context(seed=3)), score("random", context(W_F, W_I, seed=3)))
    assert not torch.equal(score("random", context(seed=3)), score("random", context(seed=4)))


def test_large_final_same_sign_mask_on_untrained_weights_is_far_above_chance(tmp_path):
    """Zhou et al.'s supermask: the ticket's accuracy before any training (acc_at_init)."""
    config = build_config(None, {"name": "zhou", "prune.rounds": 1, "prune.fraction": 0.8, "train.epochs": 2,
                                 "prune.criterion": "large_final_same_sign", "prune.controls": ["random_prune"]},
                          ["train.eval_every=50", "prune.layer_fractions={output.*: 0.5}"])
    LotteryRun(config, tmp_path, registry(), quiet=True).run()
    rows = {(r["round"], r["variant"]): r for r in read_results(tmp_path / "zhou")}
    ticket, control, dense = rows[("1", "ticket")], rows[("1", "random_prune")], rows[("0", "ticket")]
    assert 0.15 < float(ticket["weights_remaining"]) < 0.25
    assert float(dense["acc_at_init"]) < 0.25 and float(control["acc_at_init"]) < 0.25  # chance is 0.1
    assert float(ticket["acc_at_init"]) > 0.5
