"""SNIP, GraSP and SynFlow against their formulas computed independently, plus a CLI run."""
import json

import pytest

# A missing plugin must fail these tests, never skip them: pip install ./plugins/tickets-prune-at-init
import tickets_prune_at_init
import torch
import torch.nn.functional as F
from tickets_prune_at_init import grasp, snip, synflow
from torch import nn

from tickets.builtin.initializers import kaiming_normal
from tickets.masks import Mask, pruned_count
from tickets.ticket import CriterionContext, clone_state, initialize_, prunable_state


class Net(nn.Module):
    def __init__(self, batchnorm=False):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4) if batchnorm else nn.Identity()
        self.fc1 = nn.Linear(4 * 4 * 4, 12)
        self.output = nn.Linear(12, 3)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x))).flatten(1)
        return self.output(torch.relu(self.fc1(x)))


def _batches(seed=0):
    g = torch.Generator().manual_seed(seed)
    data = [(torch.randn(8, 1, 4, 4, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(6)]
    return lambda n: data[:n]


def _ctx(batchnorm=False, mask=None, fraction=0.5, layer_fractions=None, scope="layerwise", data_seed=0):
    """A context like the IMP driver's: theta_0, then a 'trained' model whose weights differ."""
    model = Net(batchnorm)
    initialize_(model, kaiming_normal, torch.Generator().manual_seed(0))
    theta0 = clone_state(model)
    names = [n for n, p in model.named_parameters() if n.endswith("weight") and p.dim() >= 2]
    with torch.no_grad():  # training moved every parameter and the BN statistics
        for p in model.parameters():
            p.add_(torch.randn_like(p))
        if batchnorm:
            model.bn.running_mean.fill_(3.0)
    mask = mask or Mask.ones_for(model)
    mask.apply_(model)
    final = clone_state(model)
    return CriterionContext(
        init=prunable_state(theta0, names), rewind=prunable_state(theta0, names),
        final=prunable_state(final, names), mask=mask, model=model, batches=_batches(data_seed),
        generator=torch.Generator().manual_seed(1), fraction=fraction,
        layer_fractions=layer_fractions or {}, scope=scope,
    ), theta0


def _init_net(ctx, theta0, batchnorm=False):
    net = Net(batchnorm)
    net.load_state_dict(theta0)
    ctx.mask.apply_(net)
    return net


def test_snip_is_abs_grad_times_weight_at_init():
    ctx, theta0 = _ctx()
    trained = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    scores = snip(ctx)
    net = _init_net(ctx, theta0)
    loss = sum(F.cross_entropy(net(x), y) for x, y in ctx.batches(4))
    params = dict(net.named_parameters())
    grads = torch.autograd.grad(loss, [params[n] for n in ctx.final])
    for (name, w), g in zip(((n, params[n]) for n in ctx.final), grads):
        assert scores[name].dtype == torch.float32 and scores[name].device.type == "cpu"
        assert torch.allclose(scores[name], (g * w).abs(), rtol=1e-4, atol=1e-7)
    assert all(torch.equal(v, trained[k]) for k, v in ctx.model.state_dict().items())  # model untouched


def test_grasp_is_weight_times_hessian_gradient_keep_high():
    """keep score = w * (H g): the negation of the paper's S(-w) = -w * Hg, whose largest values GraSP removes."""
    ctx, theta0 = _ctx()
    scores = grasp(ctx, temperature=1.0)
    net = _init_net(ctx, theta0)
    names = list(ctx.final)
    shapes = [ctx.final[n].shape for n in names]
    flat0 = torch.cat([dict(net.named_parameters())[n].detach().flatten() for n in names])

    def loss_of(flat):
        pieces, offset = {}, 0
        for n, shape in zip(names, shapes):
            pieces[n] = flat[offset:offset + shape.numel()].view(shape)
            offset += shape.numel()
        params = {**dict(net.named_parameters()), **pieces}
        return sum(F.cross_entropy(torch.func.functional_call(net, params, (x,)), y) for x, y in ctx.batches(4))

    flat = flat0.clone().requires_grad_()
    g = torch.autograd.grad(loss_of(flat), flat)[0]
    hessian = torch.autograd.functional.hessian(loss_of, flat0)
    expected = flat0 * (hessian @ g)
    got = torch.cat([scores[n].flatten() for n in names])
    assert torch.allclose(got, expected.float(), rtol=1e-3, atol=1e-6 * expected.abs().max().item())


def test_one_synflow_iteration_is_single_shot_synaptic_flow():
    ctx, theta0 = _ctx(batchnorm=True)
    scores = synflow(ctx, iterations=1)
    net = _init_net(ctx, theta0, batchnorm=True).double().eval()
    with torch.no_grad():
        for v in net.state_dict().values():
            if v.is_floating_point():
                v.abs_()
    params = dict(net.named_parameters())
    weights = [params[n] for n in ctx.final]
    grads = torch.autograd.grad(net(torch.ones(1, 1, 4, 4, dtype=torch.float64)).sum(), weights)
    flow = {n: (g * w).abs() for n, g, w in zip(ctx.final, grads, weights)}
    expected = ctx.mask.prune(flow, ctx.fraction, ctx.layer_fractions, ctx.scope)
    assert ctx.mask.prune(scores, ctx.fraction, ctx.layer_fractions, ctx.scope) == expected


def test_synflow_is_data_free():
    a, _ = _ctx(data_seed=0)
    b, _ = _ctx(data_seed=1)
    sa, sb = synflow(a, iterations=5), synflow(b, iterations=5)
    assert all(torch.equal(sa[n], sb[n]) for n in sa)


@pytest.mark.parametrize("scope,layer_fractions", [("layerwise", {}), ("global", {"output.*": 0.1}),
                                                   ("global", {})])
def test_synflow_scores_reproduce_the_iterative_mask_with_the_cores_counts(scope, layer_fractions):
    ctx, _ = _ctx(fraction=0.6, scope=scope, layer_fractions=layer_fractions)
    # a second round: start from a mask that already pruned some weights
    start = ctx.mask.prune(ctx.final, 0.3, {}, "layerwise")
    ctx, _ = _ctx(mask=start, fraction=0.6, scope=scope, layer_fractions=layer_fractions)
    scores = synflow(ctx)
    mask = ctx.mask.prune(scores, ctx.fraction, ctx.layer_fractions, ctx.scope)
    kept_by_stage = Mask({n: s >= 101 for n, s in scores.items()})  # survivors of all 100 iterations
    assert mask == kept_by_stage
    assert mask.is_subset_of(start)
    assert mask.count() > 0
    if scope == "layerwise":
        for name in start.names():
            alive = start.count(name)
            assert mask.count(name) == alive - pruned_count(alive, 0.6)
    elif layer_fractions:
        alive = start.count("output.weight")
        assert mask.count("output.weight") == alive - pruned_count(alive, 0.1)


def test_all_criteria_handle_batchnorm_and_an_existing_mask():
    ctx, _ = _ctx(batchnorm=True)
    ctx.mask = ctx.mask.prune(ctx.final, 0.5)
    for criterion in (snip, grasp, synflow):
        scores = criterion(ctx)
        assert set(scores) == set(ctx.final)
        for name, s in scores.items():
            assert s.shape == ctx.final[name].shape and torch.isfinite(s).all()
        new = ctx.mask.prune(scores, 0.5)
        assert new.is_subset_of(ctx.mask)


def test_registered_and_used_by_tickets_prune(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from tickets import plugins
    from tickets.cli import main

    monkeypatch.delenv("TICKETS_PLUGINS", raising=False)
    plugins.reset()
    entry = plugins.load_plugins(strict=True).registry.entry("criteria", "snip")
    assert entry.provider.distribution == "tickets-prune-at-init"
    args = ["prune", "--criterion", "synflow", "--rounds", "1", "--rewind", "0", "--prune-fraction", "0.9",
            "--epochs", "0.2", "--controls", "none", "--set", "train.eval_every=5", "--seeds", "0", "--quiet",
            "--out", str(tmp_path), "--name", "pai"]
    out = CliRunner().invoke(main, args, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    run = json.loads((tmp_path / "pai" / "run.json").read_text())
    assert run["components"]["criterion"] == {
        "name": "synflow", "plugin": "prune_at_init", "distribution": "tickets-prune-at-init",
        "version": tickets_prune_at_init.__version__}
    mask = torch.load(tmp_path / "pai" / "seed_0" / "round_1" / "mask.pt", weights_only=True)
    assert 0.08 < sum(int(m.sum()) for m in mask.values()) / sum(m.numel() for m in mask.values()) < 0.2
