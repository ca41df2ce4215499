"""The built-in optimizers follow their papers' update rules, and their steps do not depend on threads."""
import pytest
import torch

from tickets.builtin.optimizers import adam, adamw, sgd

STEPS = 20


def gradients(shape, steps=STEPS):
    g = torch.Generator().manual_seed(3)
    return [torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(steps)]


def optimizer_result(make, theta0, grads, **options):
    p = torch.nn.Parameter(theta0.float().clone())
    opt = make([p], **options)
    for g in grads:
        p.grad = g.float()
        opt.step()
    return p.detach().double()


def adam_by_hand(theta, grads, lr, b1=0.9, b2=0.999, eps=1e-8, l2=0.0, decoupled=0.0):
    """Kingma & Ba (2015), Algorithm 1; L2 added to the gradient (Adam) or decay applied to theta first (AdamW)."""
    m, v = torch.zeros_like(theta), torch.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        theta = theta * (1 - lr * decoupled)
        g = g + l2 * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        theta = theta - lr * m_hat / (v_hat.sqrt() + eps)
    return theta


def sgd_by_hand(theta, grads, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """SGD with heavy-ball momentum, buffer b = mu * b + g (Sutskever et al., 2013, as PyTorch writes it)."""
    b = None
    for g in grads:
        g = g + weight_decay * theta
        b = g if b is None else momentum * b + g
        theta = theta - lr * ((g + momentum * b) if nesterov else b)
    return theta


@pytest.mark.parametrize("options, by_hand", [
    ({"lr": 1e-2}, {}),
    ({"lr": 1e-2, "weight_decay": 0.1}, {"l2": 0.1}),
    ({"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6}, {"b1": 0.8, "b2": 0.99, "eps": 1e-6}),
])
def test_adam_is_kingma_and_ba(options, by_hand):
    theta0 = torch.randn(7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    grads = gradients(theta0.shape)
    expected = adam_by_hand(theta0, grads, options["lr"], **by_hand)
    torch.testing.assert_close(optimizer_result(adam, theta0, grads, **options), expected, rtol=1e-5, atol=1e-6)


def test_adamw_decays_theta_apart_from_the_gradient():
    theta0 = torch.randn(7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    grads = gradients(theta0.shape)
    expected = adam_by_hand(theta0, grads, 1e-2, decoupled=0.5)
    torch.testing.assert_close(optimizer_result(adamw, theta0, grads, lr=1e-2, weight_decay=0.5), expected,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("options", [{}, {"momentum": 0.9}, {"momentum": 0.9, "nesterov": True},
                                     {"momentum": 0.9, "weight_decay": 0.01}])
def test_sgd_is_heavy_ball_momentum(options):
    theta0 = torch.randn(7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    grads = gradients(theta0.shape)
    expected = sgd_by_hand(theta0, grads, 0.1, **options)
    torch.testing.assert_close(optimizer_result(sgd, theta0, grads, lr=0.1, **options), expected,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make, options", [(adam, {"lr": 1e-3}), (adamw, {"lr": 1e-3}),
                                           (sgd, {"lr": 0.1, "momentum": 0.9})])
def test_a_step_gives_the_same_bits_on_one_thread_and_on_two(make, options):
    # Serial runs train on every core, workers on one each: their networks must still be equal.
    theta0 = torch.randn(300, 784, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    grads = gradients(theta0.shape, steps=3)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = optimizer_result(make, theta0, grads, **options)
        torch.set_num_threads(2)
        two = optimizer_result(make, theta0, grads, **options)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
