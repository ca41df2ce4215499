"""Built-in weight initializers. Each fills a weight in place from a seeded generator."""
import math

import torch
from torch import nn

from tickets.meta import hookimpl


def _fan_in(param: torch.Tensor) -> int:
    return param[0].numel()


def kaiming_normal(param, name, generator):
    """Kaiming/He normal, fan-in, ReLU gain: N(0, 2 / fan_in)."""
    nn.init.kaiming_normal_(param, mode="fan_in", nonlinearity="relu", generator=generator)


def kaiming_normal_fan_out(param, name, generator):
    """Kaiming/He normal, fan-out, ReLU gain: N(0, 2 / fan_out)."""
    nn.init.kaiming_normal_(param, mode="fan_out", nonlinearity="relu", generator=generator)


def kaiming_uniform(param, name, generator):
    """Kaiming/He uniform, fan-in, ReLU gain: U(-b, b), b = sqrt(6 / fan_in)."""
    nn.init.kaiming_uniform_(param, mode="fan_in", nonlinearity="relu", generator=generator)


def xavier_normal(param, name, generator):
    """Xavier/Glorot normal: N(0, 2 / (fan_in + fan_out))."""
    nn.init.xavier_normal_(param, generator=generator)


def xavier_uniform(param, name, generator):
    """Xavier/Glorot uniform: U(-b, b), b = sqrt(6 / (fan_in + fan_out))."""
    nn.init.xavier_uniform_(param, generator=generator)


def lecun_normal(param, name, generator):
    """LeCun normal: N(0, 1 / fan_in)."""
    with torch.no_grad():
        param.normal_(0.0, 1.0 / math.sqrt(_fan_in(param)), generator=generator)


def orthogonal(param, name, generator):
    """Orthogonal (Saxe et al.), gain sqrt(2) for ReLU."""
    nn.init.orthogonal_(param, gain=math.sqrt(2.0), generator=generator)


def signed_constant(param, name, generator):
    """Signed Kaiming constant: +-sqrt(2 / fan_in) with random signs (Ramanujan et al.)."""
    with torch.no_grad():
        signs = torch.randint(0, 2, param.shape, generator=generator, device=param.device) * 2 - 1
        param.copy_(signs.to(param.dtype) * math.sqrt(2.0 / _fan_in(param)))


@hookimpl
def register_initializers(register):
    """Kaiming, Xavier, LeCun, orthogonal and signed-constant initializers."""
    for init in (kaiming_normal, kaiming_normal_fan_out, kaiming_uniform, xavier_normal,
                 xavier_uniform, lecun_normal, orthogonal, signed_constant):
        register(init.__name__, init)
