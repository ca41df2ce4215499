"""``sparse``: an unstructured ticket whose sparse Linear layers compute with torch sparse CSR.

The run's own architecture keeps every layer, except that each ``nn.Linear`` of at least
MIN_WEIGHTS weights whose share of surviving weights is at most DENSITY_THRESHOLD becomes a
:class:`SparseLinear`: its weight is a CSR tensor and ``forward`` is
``addmm(bias, W_csr, x^T)^T``. Denser or smaller Linear layers stay dense (a CSR product is
slower than a dense one there, as measured), and convolutions always stay dense: torch has no
sparse convolution kernel on CPU, so a pruned filter keeps its zeros in a dense tensor.

The file (``torch.load(path, weights_only=True)``) holds ``model`` (the architecture, see
common.build_reference), ``state_dict`` (every parameter and buffer of the converted network
except the sparse weights) and ``sparse``: per layer name ``crow_indices``, ``col_indices``,
``values`` and ``size`` of its CSR weight, as plain tensors (readable by any CSR library).
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

FORMAT = "tickets-sparse"

# A Linear layer goes sparse when at most this share of its weights survive and it has at least
# MIN_WEIGHTS weights. Measured with benchmarks/bench_export.py (docs/benchmarks.md, one thread,
# CSR against dense): fc1 (300 x 784) is faster in CSR at batch 256 below about 25% of its
# weights (2.6x at 10%, 3.5x at 5%), at batch 1 only below about 3%; fc2 (100 x 300) at batch
# 256 below about 25% (1.9x at 10%), at batch 1 never (0.4-0.5x); the output layer (10 x 100)
# never. 10% takes most of batch 256's gain and costs batch 1 a few microseconds a layer.
DENSITY_THRESHOLD = 0.1
MIN_WEIGHTS = 10_000  # the output layer's 1,000 never gained; fc2's 30,000 did


def csr(weight: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return weight.detach().to_sparse_csr()


class SparseLinear(nn.Module):
    """``nn.Linear`` with a CSR weight (a buffer, not trained): ``y = x W^T + b``."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight", weight, persistent=False)  # saved by the exporter as CSR parts
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).t()
        out = torch.mm(self.weight, flat) if self.bias is None else torch.addmm(self.bias[:, None], self.weight, flat)
        return out.t().reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.weight._nnz()}"


def convert(model: nn.Module, mask: dict, threshold: float = DENSITY_THRESHOLD,
            min_weights: int = MIN_WEIGHTS) -> tuple[nn.Module, dict]:
    """A copy of ``model`` (masked weights zero) with its sparse Linear layers as SparseLinear; and their densities."""
    model = copy.deepcopy(model).eval()
    chosen = {}
    for name, module in list(model.named_modules()):
        keep = mask.get(f"{name}.weight")
        if type(module) is not nn.Linear or keep is None or keep.numel() < min_weights:
            continue
        density = float(keep.float().mean())
        if density <= threshold:
            model.set_submodule(name, SparseLinear(csr(module.weight * keep), module.bias))
            chosen[name] = density
    return model, chosen


def contents(model: nn.Module) -> dict:
    """``state_dict`` and ``sparse`` of a converted network."""
    parts = {}
    for name, module in model.named_modules():
        if isinstance(module, SparseLinear):
            w = module.weight
            parts[name] = {"crow_indices": w.crow_indices().clone(), "col_indices": w.col_indices().clone(),
                           "values": w.values().clone(), "size": list(w.shape)}
    return {"state_dict": model.state_dict(), "sparse": parts}


def load(saved: dict, model: nn.Module) -> nn.Module:
    """``model`` (the run's architecture, fresh) with the file's weights and sparse layers, in eval mode."""
    for name, parts in saved["sparse"].items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            weight = torch.sparse_csr_tensor(parts["crow_indices"], parts["col_indices"], parts["values"],
                                             size=tuple(parts["size"]), check_invariants=True)
        bias = model.get_submodule(name).bias
        model.set_submodule(name, SparseLinear(weight, None if bias is None else torch.zeros_like(bias)))
    model.load_state_dict(saved["state_dict"])
    return model.eval()
