"""Built-in pruning criteria (score = keep): Frankle & Carbin's magnitude and Zhou et al.'s family.

Notation: ``w_i`` is a weight at initialization (``ctx.init``, theta_0) and ``w_f`` after
training (``ctx.final``). Every criterion returns one score tensor per prunable weight; the
core keeps the highest scores. Already-pruned weights are ignored by the core whatever
their score, so criteria need not look at the mask.

The sign-filtered criteria (``*_same_sign``, ``*_diff_sign``) rank every weight of the
preferred group above every weight of the other one: the other group is kept only when the
preferred one is exhausted, and then by the same score (Zhou et al. 2019, section 5).
"""
import torch

from tickets import hookimpl


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


def large_init_large_final(ctx):
    """large_init_large_final: min(|w_i|, |w_f|), keep weights large both at init and after training."""
    return {name: torch.minimum(ctx.init[name].abs(), w.abs()) for name, w in ctx.final.items()}


def small_init_small_final(ctx):
    """small_init_small_final: -max(|w_i|, |w_f|), keep weights small both at init and after training."""
    return {name: -torch.maximum(ctx.init[name].abs(), w.abs()) for name, w in ctx.final.items()}


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


def prefer(scores: dict, preferred: dict) -> dict:
    """``scores`` shifted so that every preferred weight outranks every other one (order kept within each group).

    The non-preferred scores are lowered by (max - min + 1) of all scores, pooled over the
    tensors so the ordering holds for global pruning too.
    """
    flat = torch.cat([s.detach().double().flatten() for s in scores.values()])
    shift = (flat.max() - flat.min()).item() + 1.0 if flat.numel() else 0.0
    return {name: torch.where(preferred[name], s.double(), s.double() - shift) for name, s in scores.items()}


def large_final_same_sign(ctx):
    """large_final_same_sign: |w_f| among weights with sign(w_f) = sign(w_i) first, then the sign-flipped ones."""
    return prefer(large_final(ctx), same_sign(ctx))


def large_final_diff_sign(ctx):
    """large_final_diff_sign: |w_f| among weights with sign(w_f) != sign(w_i) first, then the others."""
    return prefer(large_final(ctx), {n: ~s for n, s in same_sign(ctx).items()})


def magnitude_increase_same_sign(ctx):
    """magnitude_increase_same_sign: |w_f| - |w_i| among weights with sign(w_f) = sign(w_i) first."""
    return prefer(magnitude_increase(ctx), same_sign(ctx))


CRITERIA = (large_final, small_final, large_init, small_init, large_init_large_final, small_init_small_final,
            magnitude_increase, movement, random, large_final_same_sign, large_final_diff_sign,
            magnitude_increase_same_sign)


def _description(score) -> str:
    """The docstring's first line after the name: the formula and what it keeps."""
    return score.__doc__.strip().splitlines()[0].split(": ", 1)[1]


@hookimpl
def register_criteria(register):
    """magnitude (= large_final) and Zhou et al.'s criteria: init/final magnitudes, movement, signs, random."""
    register("magnitude", magnitude, description="|w_f|, keep the largest trained weights (large_final; Frankle & Carbin)")
    for score in CRITERIA:
        register(score.__name__, score, description=_description(score))
