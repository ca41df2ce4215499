"""LARS and LAMB: layer-wise adaptive optimizers for large-batch training.

Both scale each parameter tensor's ("layer's") step by a *trust ratio* built from the norm
of its weights and the norm of its update. By default, 1-D tensors (biases, normalization
scales and shifts) are excluded from the adaptation (their trust ratio is 1), as is usual in
practice. A trust ratio whose numerator or denominator is zero is taken as 1, so that a
tensor of zeros can still move. Weight decay (``weight_decay``) applies to every tensor.
"""
from __future__ import annotations

import torch
from torch.optim import Optimizer


def _check(lr: float, weight_decay: float) -> None:
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator, or 1 where either is zero (a 0-dim tensor, no host sync)."""
    usable = (numerator > 0) & (denominator > 0)
    return torch.where(usable, numerator / torch.where(usable, denominator, torch.ones_like(denominator)),
                       torch.ones_like(numerator))


class LARS(Optimizer):
    """LARS (You, Gitman & Ginsburg 2017): SGD with momentum and a layer-wise trust ratio.

    For each parameter tensor ``w`` with gradient ``g`` (Algorithm 1 of the paper)::

        local_lr = trust_coefficient * ||w|| / (||g|| + weight_decay * ||w||)
        v = momentum * v + lr * local_lr * (g + weight_decay * w)
        w = w - v

    With ``exclude_1d`` (default), 1-D tensors use ``local_lr = 1``: plain SGD with momentum.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001, exclude_1d: bool = True):
        _check(lr, weight_decay)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if not trust_coefficient > 0:
            raise ValueError(f"trust_coefficient must be positive, got {trust_coefficient}")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                        trust_coefficient=trust_coefficient, exclude_1d=bool(exclude_1d))
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        """One LARS step over every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            wd, eta = group["weight_decay"], group["trust_coefficient"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if g.is_sparse:
                    raise RuntimeError("LARS does not support sparse gradients")
                if group["exclude_1d"] and p.dim() <= 1:
                    local_lr = torch.ones((), device=p.device, dtype=p.dtype)
                else:
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    local_lr = eta * _ratio(w_norm, g_norm + wd * w_norm)
                update = g.add(p, alpha=wd) if wd else g.clone()
                buf = self.state[p].get("momentum_buffer")
                if buf is None:
                    buf = self.state[p]["momentum_buffer"] = torch.zeros_like(p)
                buf.mul_(group["momentum"]).add_(update.mul_(local_lr * group["lr"]))
                p.sub_(buf)
        return loss


class LAMB(Optimizer):
    """LAMB (You et al. 2019): Adam's moments with a layer-wise trust ratio.

    For each parameter tensor ``w`` with gradient ``g`` at step ``t`` (Algorithm 2 of the
    paper, with the identity as scaling function ``phi``)::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        r = (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + eps) + weight_decay * w
        w = w - lr * (||w|| / ||r||) * r

    ``bias_correction=False`` drops the ``1 - beta**t`` factors. With ``exclude_1d``
    (default), 1-D tensors use a trust ratio of 1 (an AdamW-like step).
    """

    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-6, weight_decay: float = 0.0,
                 bias_correction: bool = True, exclude_1d: bool = True):
        _check(lr, weight_decay)
        betas = tuple(float(b) for b in betas)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas}")
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps}")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        bias_correction=bool(bias_correction), exclude_1d=bool(exclude_1d))
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        """One LAMB step over every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if g.is_sparse:
                    raise RuntimeError("LAMB does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                if group["bias_correction"]:
                    m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
                else:
                    m_hat, v_hat = m, v
                r = m_hat / (v_hat.sqrt() + group["eps"])
                if group["weight_decay"]:
                    r.add_(p, alpha=group["weight_decay"])
                if group["exclude_1d"] and p.dim() <= 1:
                    trust = torch.ones((), device=p.device, dtype=p.dtype)
                else:
                    trust = _ratio(torch.linalg.vector_norm(p), torch.linalg.vector_norm(r))
                p.sub_(r.mul_(trust * group["lr"]))
        return loss
