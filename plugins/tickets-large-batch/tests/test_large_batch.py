"""LARS and LAMB: one step checked against the papers' formulas by hand, convergence, registration."""
import json

import pytest

# A missing plugin must fail these tests, never skip them: pip install ./plugins/tickets-large-batch
import tickets_large_batch
import torch
from tickets_large_batch import LAMB, LARS, lamb, lars


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.nn.Parameter(torch.randn(4, 3, generator=g))
    b = torch.nn.Parameter(torch.randn(4, generator=g))
    gw, gb = torch.randn(4, 3, generator=g), torch.randn(4, generator=g)
    return w, b, gw, gb


def _step(opt, params, grads):
    for p, g in zip(params, grads):
        p.grad = g.clone()
    opt.step()


def test_lars_two_steps_by_hand():
    w, b, gw, gb = _params()
    w0, b0 = w.detach().clone(), b.detach().clone()
    lr, m, wd, eta = 0.5, 0.9, 0.01, 0.002
    opt = LARS([w, b], lr=lr, momentum=m, weight_decay=wd, trust_coefficient=eta)
    _step(opt, [w, b], [gw, gb])
    local = eta * w0.norm() / (gw.norm() + wd * w0.norm())
    v_w = lr * local * (gw + wd * w0)
    v_b = lr * 1.0 * (gb + wd * b0)  # 1-D: excluded from the adaptation
    assert torch.allclose(w, w0 - v_w, atol=1e-6)
    assert torch.allclose(b, b0 - v_b, atol=1e-6)
    w1 = w.detach().clone()
    _step(opt, [w, b], [gw, gb])
    local1 = eta * w1.norm() / (gw.norm() + wd * w1.norm())
    assert torch.allclose(w, w1 - (m * v_w + lr * local1 * (gw + wd * w1)), atol=1e-6)


def test_lars_adapts_1d_when_asked():
    _, b, _, gb = _params()
    b0 = b.detach().clone()
    opt = LARS([b], lr=1.0, momentum=0.0, trust_coefficient=0.01, exclude_1d=False)
    _step(opt, [b], [gb])
    assert torch.allclose(b, b0 - 0.01 * b0.norm() / gb.norm() * gb, atol=1e-6)


def test_lamb_two_steps_by_hand():
    w, b, gw, gb = _params(1)
    lr, (b1, b2), eps, wd = 0.1, (0.8, 0.95), 1e-6, 0.05
    opt = LAMB([w, b], lr=lr, betas=[b1, b2], eps=eps, weight_decay=wd)
    ref = {"w": [w.detach().clone(), torch.zeros(4, 3), torch.zeros(4, 3)],
           "b": [b.detach().clone(), torch.zeros(4), torch.zeros(4)]}
    for t, scale in ((1, 1.0), (2, -0.5)):
        _step(opt, [w, b], [gw * scale, gb * scale])
        for key, g, adapt in (("w", gw * scale, True), ("b", gb * scale, False)):
            x, m, v = ref[key]
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            r = (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + eps) + wd * x
            trust = x.norm() / r.norm() if adapt else 1.0
            ref[key] = [x - lr * trust * r, m, v]
        assert torch.allclose(w, ref["w"][0], atol=1e-6)
        assert torch.allclose(b, ref["b"][0], atol=1e-6)


def test_lamb_step_size_is_lr_times_weight_norm():
    """With the trust ratio, a layer moves by exactly lr * ||w|| per step (without weight decay)."""
    w, _, gw, _ = _params(2)
    w0 = w.detach().clone()
    _step(LAMB([w], lr=0.01), [w], [gw])
    assert (w - w0).norm().item() == pytest.approx(0.01 * w0.norm().item(), rel=1e-5)


def test_zero_weights_still_move():
    w = torch.nn.Parameter(torch.zeros(3, 3))
    for opt in (LARS([w], lr=0.1), LAMB([w], lr=0.1)):
        w.data.zero_()
        _step(opt, [w], [torch.ones(3, 3)])
        assert (w != 0).all()


@pytest.mark.parametrize("make,options", [(lars, dict(lr=1.0, trust_coefficient=0.02)), (lamb, dict(lr=0.05))])
def test_reduces_a_regression_loss(make, options):
    g = torch.Generator().manual_seed(0)
    x, true_w = torch.randn(64, 10, generator=g), torch.randn(10, 3, generator=g)
    y = x @ true_w
    torch.manual_seed(0)
    model = torch.nn.Linear(10, 3)
    opt = make(model.parameters(), **options)

    def loss_fn():
        return torch.nn.functional.mse_loss(model(x), y)

    first = loss_fn().item()
    for _ in range(100):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    assert loss_fn().item() < 0.05 * first


def test_bad_options():
    p = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(TypeError):
        lars(p, lr=0.1, nesterov=True)
    with pytest.raises(TypeError):
        lamb(p, lr=0.1, amsgrad=True)
    with pytest.raises(ValueError):
        lars(p, lr=0.0)
    with pytest.raises(ValueError):
        lamb(p, lr=0.1, betas=(0.9, 1.5))


def test_registered_through_the_entry_point(monkeypatch):
    from click.testing import CliRunner

    from tickets import plugins
    from tickets.cli import main

    monkeypatch.delenv("TICKETS_PLUGINS", raising=False)
    plugins.reset()
    reg = plugins.load_plugins(strict=True).registry
    for name in ("lars", "lamb"):
        entry = reg.entry("optimizers", name)
        assert entry.provider.distribution == "tickets-large-batch"
        assert entry.provider.version == tickets_large_batch.__version__
    out = CliRunner().invoke(main, ["plugins", "--json", "--kind", "optimizers"])
    assert out.exit_code == 0, out.output
    mine = [p for p in json.loads(out.stdout)["plugins"] if p["distribution"] == "tickets-large-batch"]
    assert [d["name"] for d in mine[0]["provides"]["optimizers"]] == ["lars", "lamb"]
    assert mine[0]["status"] == "active"


def test_trains_through_the_cli(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from tickets import plugins
    from tickets.cli import main

    monkeypatch.delenv("TICKETS_PLUGINS", raising=False)
    plugins.reset()
    args = ["train", "--optimizer", "lamb", "--lr", "0.01", "--epochs", "0.2", "--set", "train.eval_every=5",
            "--quiet", "--out", str(tmp_path), "--name", "lamb"]
    out = CliRunner().invoke(main, args, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    run = json.loads((tmp_path / "lamb" / "run.json").read_text())
    assert run["components"]["optimizer"]["distribution"] == "tickets-large-batch"
