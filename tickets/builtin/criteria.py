"""Built-in pruning criteria (score = keep)."""
import torch

from tickets import hookimpl


def magnitude(ctx):
    """large_final: keep the weights with the largest trained magnitude |w_final|."""
    return {name: w.abs() for name, w in ctx.final.items()}


def random(ctx):
    """random: uniform random scores (a random mask over the survivors)."""
    return {name: torch.rand(w.shape, generator=ctx.generator, dtype=torch.float64) for name, w in ctx.final.items()}


@hookimpl
def register_criteria(register):
    """The magnitude and random criteria."""
    register("magnitude", magnitude, description="large_final: keep the largest |w_final| (Frankle & Carbin)")
    register("random", random, description="keep a uniformly random subset of the survivors")
