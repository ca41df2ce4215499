"""SNIP, GraSP and SynFlow scores of the prunable weights at initialization.

Every criterion follows tickets' contract: ``score(ctx) -> {name: tensor}`` over the
prunable parameters (``ctx.final``'s names), CPU float tensors of the weights' shapes, and a
*higher score means keep*. The core turns the scores into the round's mask.

All three score the network *at initialization*: a copy of ``ctx.model`` whose prunable
weights are ``ctx.init`` times the current mask (weights pruned in earlier rounds stay zero),
biases zero and normalization layers at their defaults (fresh running statistics, unit
scale, zero shift) -- which is exactly how tickets initializes a network. So with
``--rounds 1 --rewind 0`` they prune at initialization; inside IMP (``--rounds N``) each
round re-scores the surviving weights at their initial values under the current mask.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from tickets.masks import SCOPES, fraction_for, pruned_count

BATCHES = 4  # training batches SNIP and GraSP use, unless the context says otherwise
GRASP_TEMPERATURE = 200.0  # logits are divided by this before the loss (Wang et al.'s setting)
SYNFLOW_ITERATIONS = 100  # pruning iterations per round (Tanaka et al.'s setting)

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def network_at_init(ctx) -> nn.Module:
    """A copy of ``ctx.model`` reset to its initial weights under the current mask.

    Prunable weights are ``ctx.init * ctx.mask``; biases are zero and normalization layers
    are reset to their defaults, as :func:`tickets.ticket.initialize_` leaves them. The
    trained ``ctx.model`` itself is not modified.
    """
    net = copy.deepcopy(ctx.model)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, _NORMS):
                module.reset_parameters()
        for name, p in net.named_parameters():
            if name in ctx.init:
                keep = ctx.mask.tensors[name].to(device=p.device, dtype=p.dtype)
                p.copy_(ctx.init[name].to(device=p.device, dtype=p.dtype) * keep)
            elif name.endswith("bias"):
                p.zero_()
    for p in net.parameters():
        p.requires_grad_(True)
    return net


def batch_count(ctx, default: int = BATCHES) -> int:
    """How many training batches a data-dependent criterion uses.

    ``ctx.criterion_batches`` (the config's ``prune.criterion_batches``) when the context
    carries it, else ``default``.
    """
    n = getattr(ctx, "criterion_batches", None)
    return int(n) if n else default


def _device(net: nn.Module) -> torch.device:
    first = next(net.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _batches(ctx, net: nn.Module, n: int) -> list:
    device = _device(net)
    return [(x.to(device), y.to(device)) for x, y in ctx.batches(n)]


def _weights(net: nn.Module, names) -> list[torch.Tensor]:
    params = dict(net.named_parameters())
    return [params[name] for name in names]


def _to_scores(names, tensors) -> dict[str, torch.Tensor]:
    return {name: t.detach().to("cpu", torch.float32) for name, t in zip(names, tensors)}


def snip(ctx, n_batches: int | None = None) -> dict[str, torch.Tensor]:
    """SNIP (Lee et al. 2019): connection sensitivity ``|g * w|`` at initialization.

    ``g`` is the gradient of the cross-entropy loss with respect to the weights, summed over
    ``n_batches`` training batches (network in training mode, so batch-norm layers use batch
    statistics). ``|g * w|`` is the magnitude of the loss's derivative with respect to each
    weight's mask variable; SNIP normalizes it by the sum over all weights, which changes no
    ranking and is skipped. Higher score = keep.
    """
    names = list(ctx.final)
    net = network_at_init(ctx).train()
    weights = _weights(net, names)
    grads = [torch.zeros_like(w) for w in weights]
    for x, y in _batches(ctx, net, n_batches or batch_count(ctx)):
        loss = F.cross_entropy(net(x), y)
        for total, g in zip(grads, torch.autograd.grad(loss, weights)):
            total.add_(g)
    return _to_scores(names, [(g * w).abs() for g, w in zip(grads, weights)])


def grasp(ctx, n_batches: int | None = None, temperature: float = GRASP_TEMPERATURE) -> dict[str, torch.Tensor]:
    """GraSP (Wang et al. 2020): keep score ``w * (H g)``, i.e. the paper's ``S(-w) = -w * (H g)`` negated.

    ``g`` is the loss gradient and ``H g`` the Hessian-gradient product, both with respect to
    the prunable weights at initialization and summed over ``n_batches`` training batches
    (logits divided by ``temperature``). The paper's score ``S(-w) = -w * Hg`` estimates how
    removing a weight changes the gradient norm ``g^T g``, and GraSP *removes* the weights with
    the largest ``S``, so that gradient flow is preserved. tickets keeps the highest scores, so
    this criterion returns ``-S = w * Hg``: same masks as the paper. Higher score = keep.
    """
    names = list(ctx.final)
    net = network_at_init(ctx).train()
    weights = _weights(net, names)
    batches = _batches(ctx, net, n_batches or batch_count(ctx))
    g = [torch.zeros_like(w) for w in weights]
    for x, y in batches:
        loss = F.cross_entropy(net(x) / temperature, y)
        for total, gi in zip(g, torch.autograd.grad(loss, weights)):
            total.add_(gi)
    hg = [torch.zeros_like(w) for w in weights]
    for x, y in batches:
        loss = F.cross_entropy(net(x) / temperature, y)
        grads = torch.autograd.grad(loss, weights, create_graph=True)
        # d/dw (grad(w) . g) with g held fixed is H g
        inner = sum((gi * g0).sum() for gi, g0 in zip(grads, g))
        for total, hgi in zip(hg, torch.autograd.grad(inner, weights)):
            total.add_(hgi)
    return _to_scores(names, [w * h for w, h in zip(weights, hg)])


def _groups(ctx) -> list[tuple[list[str], float]]:
    """The tensors the core prunes together this round, each group with its fraction.

    Mirrors :meth:`tickets.masks.Mask.prune`: per tensor with ``layerwise`` scope or a
    per-layer pattern, else pooled into one global group.
    """
    if ctx.scope not in SCOPES:
        raise ValueError(f"unknown scope {ctx.scope!r}; use one of {', '.join(SCOPES)}")
    groups, pooled = [], []
    for name in ctx.mask.tensors:
        f, own = fraction_for(name, ctx.fraction, ctx.layer_fractions)
        if ctx.scope == "layerwise" or own:
            groups.append(([name], f))
        else:
            pooled.append(name)
    if pooled:
        groups.append((pooled, float(ctx.fraction)))
    return groups


def _keep_top(alive: torch.Tensor, scores: torch.Tensor, n_keep: int) -> torch.Tensor:
    """Boolean mask keeping the ``n_keep`` highest-scoring alive entries (ties: lower index)."""
    idx = alive.nonzero().flatten()
    order = torch.argsort(scores[idx], descending=True, stable=True)
    out = torch.zeros_like(alive)
    out[idx[order[:n_keep]]] = True
    return out


def synflow(ctx, iterations: int = SYNFLOW_ITERATIONS) -> dict[str, torch.Tensor]:
    """SynFlow (Tanaka et al. 2020): iterative synaptic flow ``|dR/dw * w|``, data-free.

    On the network at initialization with every parameter and buffer replaced by its absolute
    value (float64, evaluation mode so batch norm uses its default statistics),
    ``R = sum(net(ones))`` for a single all-ones input of the data's shape. Each of
    ``iterations`` steps scores the surviving weights by ``|dR/dw * w|`` and prunes the lowest
    to the exponential schedule ``alive_0 * (keep / alive_0) ** (k / iterations)``, per pruning
    group (per tensor, or pooled for ``global`` scope, honouring per-layer fractions), ending
    at exactly the count the core keeps this round. The returned score is
    ``stage + 0.5 * last / max(last)``, where ``stage`` is the step at which a weight was pruned
    (``iterations + 1`` for survivors) and ``last`` its final SynFlow score, so the core's
    top-k reproduces the iterative mask exactly. Higher score = keep.
    """
    names = list(ctx.mask.tensors)
    net = network_at_init(ctx).eval().double()
    with torch.no_grad():
        for value in net.state_dict().values():
            if value.is_floating_point():
                value.abs_()
    params = dict(net.named_parameters())
    weights = [params[name] for name in names]
    magnitudes = [w.detach().clone() for w in weights]
    x0, _ = ctx.batches(1)[0]
    ones = torch.ones((1, *x0.shape[1:]), dtype=torch.float64, device=_device(net))

    alive = {name: ctx.mask.tensors[name].clone() for name in names}
    start = {name: m.clone() for name, m in alive.items()}
    stage = {name: torch.zeros(m.shape, dtype=torch.float64) for name, m in alive.items()}
    last = {name: torch.zeros(m.shape, dtype=torch.float64) for name, m in alive.items()}
    plan = []  # (names, alive at the start, count kept at the end of the round)
    for group, f in _groups(ctx):
        n0 = sum(int(alive[n].sum()) for n in group)
        plan.append((group, n0, n0 - pruned_count(n0, f)))

    for k in range(1, iterations + 1):
        with torch.no_grad():
            for name, w, m in zip(names, weights, magnitudes):
                w.copy_(m * alive[name].to(w.device, w.dtype))
        grads = torch.autograd.grad(net(ones).sum(), weights)
        scores = {name: (g * w).abs().detach().cpu() for name, g, w in zip(names, grads, weights)}
        for name in names:
            last[name] = torch.where(alive[name], scores[name], last[name])
        for group, n0, n_final in plan:
            if n0 == 0 or n_final == n0:
                continue
            target = n_final if k == iterations else round(n0 * (n_final / n0) ** (k / iterations))
            flat_alive = torch.cat([alive[n].flatten() for n in group])
            flat_scores = torch.cat([scores[n].flatten() for n in group])
            kept = _keep_top(flat_alive, flat_scores, target)
            offset = 0
            for n in group:
                size = alive[n].numel()
                now = kept[offset:offset + size].view_as(alive[n])
                stage[n][alive[n] & ~now] = k
                alive[n] = now
                offset += size
    top = max((float(t.max()) for t in last.values() if t.numel()), default=0.0)
    scale = 0.5 / top if top > 0 else 0.0
    out = {}
    for name in names:
        stage[name][alive[name]] = iterations + 1
        out[name] = torch.where(start[name], stage[name] + scale * last[name], torch.zeros_like(last[name]))
    return {name: t.to(torch.float32) for name, t in out.items()}
