"""tickets-large-batch: the LARS and LAMB optimizers for tickets.

Installing this distribution registers, through the ``tickets`` entry point ``large_batch``,
the optimizers ``lars`` and ``lamb`` (see :mod:`tickets_large_batch.optim`). Their options
come from ``train.optimizer_options`` in a config (``--set train.optimizer_options=...``).
"""
import tickets
from tickets_large_batch.optim import LAMB, LARS

__version__ = "0.1.0"
__all__ = ["LAMB", "LARS", "lamb", "lars", "register_optimizers"]


def lars(params, lr, momentum=0.9, weight_decay=0.0, trust_coefficient=0.001, exclude_1d=True):
    """LARS: SGD with momentum, step scaled per layer by eta * ||w|| / (||g|| + wd * ||w||)."""
    return LARS(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                trust_coefficient=trust_coefficient, exclude_1d=exclude_1d)


def lamb(params, lr, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, bias_correction=True, exclude_1d=True):
    """LAMB: Adam moments, step scaled per layer by ||w|| / ||update||."""
    return LAMB(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                bias_correction=bias_correction, exclude_1d=exclude_1d)


@tickets.hookimpl
def register_optimizers(register):
    """LARS and LAMB (options: see their docstrings)."""
    register("lars", lars, description="LARS (You et al. 2017): momentum SGD, layer-wise trust ratio "
                                       "eta*||w||/(||g||+wd*||w||); options momentum, weight_decay, trust_coefficient")
    register("lamb", lamb, description="LAMB (You et al. 2019): Adam moments, layer-wise trust ratio "
                                       "||w||/||r||; options betas, eps, weight_decay, bias_correction")
