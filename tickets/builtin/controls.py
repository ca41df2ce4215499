"""Built-in controls: how comparison networks are derived from a ticket."""
from tickets import hookimpl


def reinit(ticket, ctx):
    """The ticket's mask over fresh weights from the same initializer (another seed)."""
    return ticket.with_(state=ctx.initialize(ctx.generator), pruned_values=None)


def random_prune(ticket, ctx):
    """A random mask with the ticket's per-layer counts, over the ticket's (rewound) weights."""
    return ticket.with_(mask=ticket.mask.random_with_counts(ctx.generator))


@hookimpl
def register_controls(register):
    """The reinit and random_prune controls."""
    register("reinit", reinit, description="ticket's mask, fresh weights from the same initializer (new seed)")
    register("random_prune", random_prune, description="random mask with the ticket's per-layer counts, over the rewound weights")
