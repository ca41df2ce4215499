"""``onnx``: the ticket as an ONNX graph (torch.onnx's exporter), run with onnxruntime.

A structured ticket of a known architecture is exported as its smaller dense network (see
dense.py); any other ticket as the run's network with its masked weights zero (ONNX runtimes
compute dense, so that file is as large and as fast as the dense network). The graph has one
input ``input`` (``batch x C x H x W``, the batch size free) and one output ``logits``; the
weights are inside the one file. Needs ``pip install 'tickets[export]'`` (onnx, onnxscript for
torch's exporter, onnxruntime to load it back).
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from tickets.errors import TicketsError

INPUT, OUTPUT = "input", "logits"


def _missing(package: str, what: str) -> TicketsError:
    return TicketsError(f"{what} needs the {package} package, which is not installed; "
                        "pip install 'tickets[export]' (onnx, onnxscript, onnxruntime)")


def to_bytes(module: nn.Module, example: torch.Tensor) -> bytes:
    """The serialized ONNX model of ``module`` (eval mode), traced on ``example`` (a batch of two or more)."""
    for package in ("onnx", "onnxscript"):
        try:
            __import__(package)
        except ImportError:
            raise _missing(package, "--format onnx") from None
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module.eval(), (example,), dynamo=True, input_names=[INPUT],
                                    output_names=[OUTPUT], dynamic_shapes=({0: batch},), external_data=False,
                                    verbose=False)
    return program.model_proto.SerializeToString()


class OnnxModule(nn.Module):
    """An ONNX file as a torch module: ``forward(x)`` runs it with onnxruntime on the CPU."""

    def __init__(self, model: bytes | str, threads: int | None = None):
        super().__init__()
        try:
            import onnxruntime
        except ImportError:
            raise _missing("onnxruntime", "loading an ONNX export") from None
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (logits,) = self.session.run([OUTPUT], {INPUT: x.detach().cpu().float().contiguous().numpy()})
        return torch.from_numpy(logits)
