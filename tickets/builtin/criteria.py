"""Built-in pruning criteria (score = keep): Frankle & Carbin's magnitude and Zhou et al.'s family.

Notation: ``w_i`` is a weight at initialization (``ctx.init``, theta_0) and ``w_f`` after
training (``ctx.final``). Every criterion returns one score tensor per prunable weight (or, in
structured runs, may give one score per unit: ``bn_scale``); the core keeps the highest scores
and breaks ties at random with the criterion's generator.
Already-pruned weights are ignored by the core whatever their score, so criteria need not
look at the mask (the percentile criteria rank among the survivors only).

The definitions are Zhou et al.'s (2019, figure 2 and their released code):

- the sign-filtered criteria score the weights outside their sign group 0: a flipped weight
  scores 0 under ``*_same_sign``, so under ``magnitude_increase_same_sign`` a same-sign weight
  whose magnitude shrank (a negative score) ranks below every flipped weight, and the weights
  at 0 are kept in random order when the preferred group runs out;
- ``large_init_large_final`` and ``small_init_small_final`` apply the same percentile cutoff
  to ``|w_i|`` and to ``|w_f|`` within each layer: a weight scores the lower of its two
  percentile ranks among the layer's survivors, which does not depend on the weights' scale.
"""
import torch

from tickets.meta import hookimpl


def large_final(ctx):
    """large_final: |w_f|, keep the weights largest after training (Frankle & Carbin's magnitude)."""
    return {name: w.abs() for name, w in ctx.final.items()}


magnitude = large_final  # the historical name, kept for configs written against it


def small_final(ctx):
    """small_final: -|w_f|, keep the weights smallest after training."""
    return {name: -w.abs() for name, w in ctx.final.items()}


def large_init(ctx):
    """large_init: |w_i|, keep the weights largest at initialization."""
    return {name: w.abs() for name, w in ctx.init.items()}


def small_init(ctx):
    """small_init: -|w_i|, keep the weights smallest at initialization."""
    return {name: -w.abs() for name, w in ctx.init.items()}


def percentile_rank(values: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """Each entry's percentile rank among the surviving entries of its tensor, in [0, 1].

    The fraction of survivors whose value is at most the entry's (the empirical distribution
    function), so equal values share the highest rank of their group and every survivor
    clears a cutoff that its value clears.
    """
    pool = values[alive].double().sort().values
    return torch.searchsorted(pool, values.double().contiguous(), right=True).double() / max(pool.numel(), 1)


def both_above(ctx, magnitude) -> dict:
    """min of the percentile ranks of ``magnitude(w_i)`` and ``magnitude(w_f)`` within each layer.

    Keeping the top k of this score keeps exactly the weights that clear one percentile cutoff
    at both times (Zhou et al.'s quadrant), whatever the scale of ``w_i`` and ``w_f``.
    """
    out = {}
    for name, w in ctx.final.items():
        alive = ctx.mask.tensors[name]
        out[name] = torch.minimum(percentile_rank(magnitude(ctx.init[name]), alive),
                                  percentile_rank(magnitude(w), alive))
    return out


def large_init_large_final(ctx):
    ("""large_init_large_final: min(rank |w_i|, rank |w_f|) in the layer, """
     """keep weights large at init and after training.""")
    return both_above(ctx, lambda w: w.abs())


def small_init_small_final(ctx):
    ("""small_init_small_final: min(rank -|w_i|, rank -|w_f|) in the layer, """
     """keep weights small at init and after training.""")
    return both_above(ctx, lambda w: -w.abs())


def magnitude_increase(ctx):
    """magnitude_increase: |w_f| - |w_i|, keep the weights whose magnitude grew most."""
    return {name: w.abs() - ctx.init[name].abs() for name, w in ctx.final.items()}


def movement(ctx):
    """movement: |w_f - w_i|, keep the weights that moved most in training."""
    return {name: (w - ctx.init[name]).abs() for name, w in ctx.final.items()}


def random(ctx):
    """random: uniform random scores (a random mask over the survivors)."""
    return {name: torch.rand(w.shape, generator=ctx.generator, dtype=torch.float64) for name, w in ctx.final.items()}


def same_sign(ctx) -> dict:
    """name -> bool tensor: True where w_f and w_i have the same (nonzero) sign."""
    return {name: (w * ctx.init[name]) > 0 for name, w in ctx.final.items()}


def zero_outside(scores: dict, group: dict) -> dict:
    """``scores`` inside ``group`` and 0 outside it (Zhou et al.'s sign filter)."""
    return {name: torch.where(group[name], s.double(), 0.0) for name, s in scores.items()}


def large_final_same_sign(ctx):
    """large_final_same_sign: |w_f| where sign(w_f) = sign(w_i), else 0."""
    return zero_outside(large_final(ctx), same_sign(ctx))


def large_final_diff_sign(ctx):
    """large_final_diff_sign: |w_f| where sign(w_f) != sign(w_i), else 0."""
    return zero_outside(large_final(ctx), {n: ~s for n, s in same_sign(ctx).items()})


def magnitude_increase_same_sign(ctx):
    ("""magnitude_increase_same_sign: |w_f| - |w_i| where sign(w_f) = sign(w_i), else 0 """
     """(shrunk ones rank below flipped ones).""")
    return zero_outside(magnitude_increase(ctx), same_sign(ctx))


def bn_scale(ctx):
    """bn_scale: |gamma| of the BatchNorm channel after each unit (network slimming; structured pruning only)."""
    from tickets.errors import TicketsError
    from tickets.structure import unit_groups

    if ctx.structure == "weights":
        raise TicketsError("criterion bn_scale scores whole channels by their BatchNorm scale; "
                           "use it with --structure channels")
    scores = {name: w.abs() for name, w in ctx.final.items()}
    for group in unit_groups(ctx.model, ctx.input_shape, ctx.structure):
        if group.norm is not None:  # one score per unit; layers without BatchNorm keep their L1 norms
            scores[group.weight] = ctx.model.get_submodule(group.norm).weight.detach().abs()
    return scores


CRITERIA = (large_final, small_final, large_init, small_init, large_init_large_final, small_init_small_final,
            magnitude_increase, movement, random, large_final_same_sign, large_final_diff_sign,
            magnitude_increase_same_sign, bn_scale)


def _description(score) -> str:
    """The docstring's first line after the name: the formula and what it keeps."""
    return score.__doc__.strip().splitlines()[0].split(": ", 1)[1]


@hookimpl
def register_criteria(register):
    """magnitude (= large_final) and Zhou et al.'s criteria: init/final magnitudes, movement, signs, random."""
    register("magnitude", magnitude,
             description="|w_f|, keep the largest trained weights (large_final; Frankle & Carbin)")
    for score in CRITERIA:
        register(score.__name__, score, description=_description(score))
