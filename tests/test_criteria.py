"""Zhou et al.'s mask criteria: each formula on a hand-built context,
and the supermask effect of large_final_same_sign."""
import pytest
import torch
from conftest import load, masked_accuracy, read_results
from torch import nn

from tickets.builtin import criteria
from tickets.config import build_config
from tickets.experiments.imp import run_imp
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
    mask = ctx.mask.prune(registry().get("criteria", name)(ctx), 1 - n_keep / 6, generator=ctx.generator)
    return set(mask.tensors["fc.weight"].flatten().nonzero().flatten().tolist())


def test_every_criterion_is_registered_with_a_formula():
    entries = registry().entries["criteria"]
    assert set(NAMES) <= set(entries)
    assert entries["magnitude"].obj is entries["large_final"].obj
    for name in NAMES:
        if name != "random":
            assert "w_" in entries[name].description, name


# Scores written out by hand from Zhou et al.'s definitions (figure 2 and section 5), per flat index
# (w_i, w_f): 0:(.5,.6) 1:(-.1,.4) 2:(.3,-.7) 3:(-.45,-.1) 4:(.2,.05) 5:(-.05,.9); same sign: 0, 3, 4.
@pytest.mark.parametrize("name, expected", [
    ("large_final", [.6, .4, .7, .1, .05, .9]),
    ("small_final", [-.6, -.4, -.7, -.1, -.05, -.9]),
    ("large_init", [.5, .1, .3, .45, .2, .05]),
    ("small_init", [-.5, -.1, -.3, -.45, -.2, -.05]),
    ("magnitude_increase", [.1, .3, .4, -.35, -.15, .85]),
    ("movement", [.1, .5, 1.0, .35, .15, .95]),
    # the sign filters score the other group 0 (Zhou: "max(0, ...)"), not "lower than every kept one"
    ("large_final_same_sign", [.6, 0, 0, .1, .05, 0]),
    ("large_final_diff_sign", [0, .4, .7, 0, 0, .9]),
    ("magnitude_increase_same_sign", [.1, 0, 0, -.35, -.15, 0]),
])
def test_score_formulas(name, expected):
    assert torch.allclose(score(name).double().flatten(), torch.tensor(expected, dtype=torch.float64), atol=1e-6)


def test_rankings_keep_what_the_names_say():
    assert kept("large_final", 2) == {2, 5}
    assert kept("small_final", 2) == {3, 4}
    assert kept("large_init", 2) == {0, 3}
    assert kept("small_init", 2) == {1, 5}
    assert kept("magnitude_increase", 2) == {5, 2}  # +.85, +.4
    assert kept("movement", 2) == {2, 5}  # 1.0, .95


def test_quadrant_criteria_apply_one_percentile_cutoff_to_init_and_final():
    # |w_i| from the top: 0, 3, 2, 4, 1, 5; |w_f| from the top: 5, 2, 0, 1, 3, 4.
    # The top 3 of both are {0, 2}; the top 5 of both are {0, 1, 2, 3}.
    assert kept("large_init_large_final", 2) == {0, 2}
    assert kept("large_init_large_final", 4) == {0, 1, 2, 3}
    # bottom 3 of |w_i|: 5, 1, 4; of |w_f|: 4, 3, 1 -> {1, 4} are small at both times
    assert kept("small_init_small_final", 2) == {1, 4}
    assert kept("small_init_small_final", 4) == {1, 2, 3, 4}  # bottom 5: {5, 1, 4, 2, 3} & {4, 3, 1, 0, 2}


@pytest.mark.parametrize("name", ["large_init_large_final", "small_init_small_final"])
@pytest.mark.parametrize("init_scale, final_scale", [(1, 100), (100, 1), (0.01, 1)])
def test_quadrant_criteria_do_not_depend_on_the_weights_scale(name, init_scale, final_scale):
    """Zhou's cutoff is a percentile within the layer: rescaling w_i or w_f changes nothing."""
    for n_keep in range(1, 6):
        scaled = context(W_I * init_scale, W_F * final_scale)
        assert kept(name, n_keep, scaled) == kept(name, n_keep), (n_keep, init_scale, final_scale)


def test_quadrant_criteria_rank_among_the_survivors_only():
    """Percentiles of the layer's survivors (Zhou's code puts pruned weights below every survivor)."""
    # pruned 0, 1 have the smallest |w_i| and largest |w_f|; survivors 2, 3, 4 rank
    # |w_i|: 2 < 4 < 3 and |w_f|: 4 < 3 < 2, so 3 is the only one in the top 2 at both times.
    # Counting the pruned weights would lift every survivor's init rank by 2 and keep 2 instead.
    init, final = torch.tensor([[0.01, 0.02, 0.1, 0.3, 0.2]]), torch.tensor([[5.0, 6.0, 0.9, 0.5, 0.1]])
    ctx = context(init, final)
    ctx.mask = Mask({"fc.weight": torch.tensor([[False, False, True, True, True]])})
    mask = ctx.mask.prune(criteria.large_init_large_final(ctx), 0.6, generator=ctx.generator)  # keep 1 of 3
    assert mask.tensors["fc.weight"].tolist() == [[False, False, False, True, False]]


def test_quadrant_criteria_compare_percentiles_across_layers_in_global_scope():
    # one weight in a, four in b, |w_i| = |w_f|: percentile ranks a: 1; b: .25 .5 .75 1
    init = {"a.weight": torch.tensor([[5.0]]), "b.weight": torch.tensor([[1.0, 2.0, 3.0, 4.0]])}
    ctx = CriterionContext(init=init, rewind=init, final=init,
                           mask=Mask({n: torch.ones_like(t) for n, t in init.items()}),
                           model=nn.Module(), batches=lambda n: [], generator=torch.Generator().manual_seed(0))
    mask = ctx.mask.prune(criteria.large_init_large_final(ctx), 0.6, scope="global", generator=ctx.generator)
    assert mask.tensors["a.weight"].tolist() == [[True]]  # the top percentile of each layer
    assert mask.tensors["b.weight"].tolist() == [[False, False, False, True]]


def test_large_init_large_final_over_constant_magnitudes_is_large_final():
    """Every |w_i| clears any percentile cutoff of a signed-constant layer, so only |w_f| decides."""
    signed = torch.where(W_I < 0, -0.3, 0.3)
    for n_keep in range(1, 6):
        assert kept("large_init_large_final", n_keep, context(signed, W_F)) == kept("large_final", n_keep)


def test_a_zero_has_no_sign():
    """Zhou's np.sign(0) = 0 matches neither sign: a weight at 0 at either time is not same-sign."""
    ctx = context(torch.tensor([[0.0, 0.3, 0.2]]), torch.tensor([[0.5, 0.0, 0.4]]))
    assert score("large_final_same_sign", ctx).flatten().tolist() == pytest.approx([0.0, 0.0, 0.4])
    assert score("magnitude_increase_same_sign", ctx).flatten().tolist() == pytest.approx([0.0, 0.0, 0.2])
    assert score("large_final_diff_sign", ctx).flatten().tolist() == pytest.approx([0.5, 0.0, 0.0])


def test_magnitude_increase_same_sign_ranks_shrunk_same_sign_weights_below_flipped_ones():
    # scores: 0 -> +.1; flipped 1, 2, 5 -> 0; 4 -> -.15; 3 -> -.35
    assert kept("magnitude_increase_same_sign", 1) == {0}
    assert kept("magnitude_increase_same_sign", 4) == {0, 1, 2, 5}  # the shrunk same-sign 3 and 4 go first
    assert kept("magnitude_increase_same_sign", 5) == {0, 1, 2, 4, 5}


def test_sign_filters_keep_the_preferred_group_first_then_the_rest_at_random():
    flat_same = {0, 3, 4}
    for name, preferred in (("large_final_same_sign", flat_same), ("large_final_diff_sign", {1, 2, 5})):
        extras = set()
        for seed in range(20):
            keep = kept(name, 4, context(seed=seed))
            assert preferred < keep and len(keep) == 4, (name, keep)
            extras |= keep - preferred
        assert extras == set(range(6)) - preferred, name  # every weight at 0 gets its chance, not the largest
    assert kept("large_final_same_sign", 2) == {0, 3}  # |w_f| .6 and .1 beat the flipped .9 and .7
    assert kept("large_final_diff_sign", 2) == {5, 2}


def test_ties_are_broken_at_random_with_the_criterion_generator():
    """large_init over signed-constant weights: every score ties; index order would prune whole trailing neurons."""
    init = {"fc.weight": torch.where(torch.rand(20, 50, generator=torch.Generator().manual_seed(0)) < 0.5, -0.1, 0.1)}
    masks = []
    for seed in (0, 0, 1):
        ctx = CriterionContext(init=init, rewind=init, final=init, mask=Mask({"fc.weight": torch.ones(20, 50)}),
                               model=nn.Module(), batches=lambda n: [], generator=torch.Generator().manual_seed(seed))
        masks.append(ctx.mask.prune(criteria.large_init(ctx), 0.5, generator=ctx.generator).tensors["fc.weight"])
    assert torch.equal(masks[0], masks[1]) and not torch.equal(masks[0], masks[2])  # seeded, and by that seed
    per_neuron = masks[0].sum(1)
    assert int(per_neuron.sum()) == 500 and per_neuron.min() >= 10 and per_neuron.max() <= 40


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


def test_large_final_same_sign_mask_on_untrained_weights_beats_magnitude_on_the_same_seed(tmp_path):
    """Zhou et al.'s supermask: the ticket's accuracy before any training (acc_at_init), far above
    chance and above the plain magnitude mask of the same trained weights at the same sparsity."""
    # Adam at lr 0.01 flips the signs of some large weights; at 1.2e-3 almost none of the largest flip
    # in 2 epochs, and the two masks coincide (0.713 each on this seed)
    config = build_config(None, {"name": "zhou", "prune.rounds": 1, "prune.fraction": 0.8, "train.epochs": 2,
                                 "train.lr": 0.01, "prune.criterion": "large_final_same_sign",
                                 "prune.controls": ["random_prune"]},
                          ["train.eval_every=50", "prune.layer_fractions={output.*: 0.5}"])
    run_imp(config, tmp_path, registry(), quiet=True)
    run_dir = tmp_path / "zhou"
    rows = {(r["round"], r["variant"]): r for r in read_results(run_dir)}
    ticket, control, dense = rows[("1", "ticket")], rows[("1", "random_prune")], rows[("0", "ticket")]
    assert 0.15 < float(ticket["weights_remaining"]) < 0.25
    assert float(dense["acc_at_init"]) < 0.25 and float(control["acc_at_init"]) < 0.25  # chance is 0.1

    init, final = load(run_dir / "seed_0/init.pt"), load(run_dir / "seed_0/round_0/ticket/final.pt")
    same_sign_mask = load(run_dir / "seed_0/round_1/mask.pt")
    names = list(same_sign_mask)
    ctx = CriterionContext(init={n: init[n] for n in names}, rewind={}, final={n: final[n] for n in names},
                           mask=Mask({n: torch.ones_like(m) for n, m in same_sign_mask.items()}), model=nn.Module(),
                           batches=lambda n: [], generator=torch.Generator().manual_seed(0))
    magnitude_mask = ctx.mask.prune(criteria.large_final(ctx), 0.8, {"output.*": 0.5}, generator=ctx.generator)
    assert magnitude_mask.counts() == Mask(same_sign_mask).counts()
    same_sign_acc = masked_accuracy(run_dir, init, same_sign_mask)
    magnitude_acc = masked_accuracy(run_dir, init, magnitude_mask.tensors)
    assert float(ticket["acc_at_init"]) == pytest.approx(same_sign_acc, abs=1e-5)
    assert same_sign_acc > 0.5
    assert same_sign_acc > magnitude_acc + 0.05  # measured: 0.643 vs 0.544 (seeds 1, 2: +0.088, +0.058)
