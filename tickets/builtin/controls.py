"""Built-in controls: how comparison networks are derived from a ticket.

Frankle & Carbin's controls (reinit, random_prune) and Zhou et al.'s treatments of the kept
weights (reshuffle, signed_reinit, signed_constant, rand_signed_constant) and of the pruned
ones (freeze_pruned). "Initial" values are the ticket's starting weights (``ticket.state``:
theta_0, or theta_k with late rewinding). Those controls change only the prunable weights;
biases and normalization parameters stay as in the ticket. None modifies the ticket it is given.

The retraining strategies say where a network starts and which span of the schedule it
trains (Renda et al. 2020; Liu et al. 2019), with T the schedule's iterations and k the rewind
point; all see the dense network's batches for the iterations they train, with fresh
optimizer state:

- ``finetune``: the previous round's trained ticket under this round's mask, trained
  ``prune.retrain_iterations`` (default T - k) at the schedule's final learning rate.
- ``lr_rewind``: the same start, trained from k to T replaying the schedule's learning rates.
- ``scratch``: fresh weights (drawn like reinit's) under the mask, trained from 0 to T (Scratch-E).

``prune.retrain: finetune | lr_rewind`` trains the round's ticket itself with that strategy.
"""
import torch

from tickets.meta import hookimpl


def _with_weights(ticket, ctx, make):
    """A copy of ``ticket`` whose prunable weights are ``make(name, start, keep)``."""
    state = dict(ticket.state)
    for name in ctx.prunable:
        state[name] = make(name, ticket.state[name], ticket.mask.tensors[name])
    return ticket.with_(state=state)


def _signs(t: torch.Tensor) -> torch.Tensor:
    """+1 / -1 per entry (0 counts as +1, so every weight gets a sign)."""
    return torch.where(t < 0, -1.0, 1.0).to(t.dtype)


def reinit(ticket, ctx):
    """The ticket's mask over fresh weights from the same initializer (another seed)."""
    return ticket.with_(state=ctx.initialize(ctx.generator), pruned_values=None)


def random_prune(ticket, ctx):
    """A random mask with the ticket's per-layer counts (of weights, or of units when pruning structure),
    over the ticket's (rewound) weights."""
    return ticket.with_(mask=ctx.random_like(ticket.mask, ctx.generator))


def reshuffle(ticket, ctx):
    """The ticket's mask; the kept initial values permuted at random within each layer."""
    def make(name, start, keep):
        out = start.clone()
        kept = start[keep]
        out[keep] = kept[torch.randperm(kept.numel(), generator=ctx.generator)]
        return out
    return _with_weights(ticket, ctx, make)


def signed_reinit(ticket, ctx):
    """The ticket's mask; fresh magnitudes |w'| from the run's initializer with the initial signs: sign(w_i)|w'|."""
    fresh = ctx.initialize(ctx.generator)
    return _with_weights(ticket, ctx, lambda name, start, keep: _signs(start) * fresh[name].abs().to(start.dtype))


def signed_constant(ticket, ctx):
    """The ticket's mask; every weight sign(w_i) * std(layer at theta_0): a constant magnitude, the initial signs."""
    return _with_weights(ticket, ctx, lambda name, start, keep: _signs(start) * ctx.init[name].float().std().item())


def rand_signed_constant(ticket, ctx):
    """The ticket's mask; every weight +-std(layer at theta_0) with random signs."""
    def make(name, start, keep):
        signs = torch.randint(0, 2, start.shape, generator=ctx.generator).to(start.dtype) * 2 - 1
        return signs * ctx.init[name].float().std().item()
    return _with_weights(ticket, ctx, make)


def freeze_pruned(ticket, ctx):
    """The ticket, but pruned weights frozen at their initial values instead of zero (do zeros matter?)."""
    return ticket.with_(pruned_values={name: ticket.state[name].clone() for name in ctx.prunable})


def finetune(ticket, ctx):
    """The previous round's trained ticket under this mask, ``retrain_iterations`` at the final learning rate."""
    start = ctx.rewind_iteration
    return ticket.with_(state=ctx.trained(), pruned_values=None, start_iteration=start,
                        end_iteration=start + ctx.retrain_iterations, lr_offset=ctx.schedule_end - 1 - start)


def lr_rewind(ticket, ctx):
    """The previous round's trained ticket under this mask, trained from k to T on the schedule's learning rates."""
    return ticket.with_(state=ctx.trained(), pruned_values=None, start_iteration=ctx.rewind_iteration,
                        end_iteration=ctx.schedule_end, lr_offset=0)


def scratch(ticket, ctx):
    """Fresh weights (the run's initializer) under the ticket's mask, trained the whole schedule, 0 to T."""
    return ticket.with_(state=ctx.initialize(ctx.generator), pruned_values=None, start_iteration=0,
                        end_iteration=ctx.schedule_end, lr_offset=0)


RETRAINING = (finetune, lr_rewind, scratch)
CONTROLS = (reinit, random_prune, reshuffle, signed_reinit, signed_constant, rand_signed_constant, freeze_pruned)
# The controls whose start reads only a run's own files (theta_0, theta_k, the mask) or fresh draws, never
# a trained network: a transfer trains them without waiting for the round before. A plugin's control may
# call ctx.trained(), so it is not in this set and waits.
FROM_RUN_FILES = frozenset(control.__name__ for control in (*CONTROLS, scratch))


@hookimpl
def register_controls(register):
    """reinit, random_prune (Frankle & Carbin), Zhou et al.'s reshuffle, signed reinit, signed constants,
    frozen pruned weights, and the retraining strategies finetune, lr_rewind (Renda et al.), scratch (Liu et al.)."""
    register("reinit", reinit, description="ticket's mask, fresh weights from the same initializer (new seed)")
    register("random_prune", random_prune,
             description="random mask with the ticket's per-layer counts, over the rewound weights")
    register("reshuffle", reshuffle, description="ticket's mask, kept initial values permuted within each layer")
    register("signed_reinit", signed_reinit,
             description="ticket's mask, fresh magnitudes with the initial signs: sign(w_i)|w_new|")
    register("signed_constant", signed_constant, description="ticket's mask, weights sign(w_i) * std(layer's init)")
    register("rand_signed_constant", rand_signed_constant,
             description="ticket's mask, weights +-std(layer's init) with random signs")
    register("freeze_pruned", freeze_pruned,
             description="ticket, pruned weights frozen at their initial values instead of zero")
    register("finetune", finetune,
             description="previous round's trained ticket under the mask, retrained at the final learning rate")
    register("lr_rewind", lr_rewind,
             description="previous round's trained ticket under the mask, learning rates replayed from k to T")
    register("scratch", scratch, description="fresh weights under the mask, trained the whole schedule 0 to T")
