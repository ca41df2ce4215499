"""Export one ticket of a run as a file other code loads: ``tickets export`` and :func:`load_exported`.

Formats (one module each):

- ``dense`` (dense.py): a structured ticket as a physically smaller network (fewer neurons or
  filters), weights plus layer widths; loads as an ``nn.Sequential`` with torch alone.
- ``sparse`` (sparse.py): the run's architecture with its sparse Linear layers in CSR.
- ``torch-prune`` (torch_prune.py): the run's architecture with ``torch.nn.utils.prune`` masks
  registered (``weight_orig``, ``weight_mask``), to go on training.
- ``onnx`` (onnxfile.py): an ONNX graph of the (smaller, when structured) network.

Every export is checked before it is written: its logits on the run's test examples must be
those of the masked network within common.TOLERANCE. Files are written to a temporary name
beside ``out`` and renamed, so an existing file is replaced whole or not at all. This package
reads runs and models (beside report/); the API (api.export) finds the ticket and hands it here.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tickets.errors import TicketsError
from tickets.exporters import dense, onnxfile, sparse, torch_prune
from tickets.exporters.common import VERSION, build_reference, check_outputs, masked_copy, save_bytes, save_torch

FORMATS = ("dense", "sparse", "torch-prune", "onnx")
CHECKED_EXAMPLES = 256  # test examples every export is checked on before it is written


@dataclass
class Exported:
    """What :func:`export_ticket` wrote."""

    path: Path
    format: str
    description: str  # one line: what the file holds
    bytes: int
    max_difference: float  # the largest |logit - the masked network's logit| on the checked test examples


def check_format(format: str) -> str:
    if format not in FORMATS:
        raise TicketsError(f"unknown export format {format!r}; use one of {', '.join(FORMATS)}")
    return format


def export_ticket(network: nn.Module, mask: dict, *, format: str, out: str | Path, reference: dict,
                  inputs: torch.Tensor, source: dict, sparse_threshold: float | None = None) -> Exported:
    """Write the ticket (``network``'s weights under ``mask``) to ``out`` as ``format``.

    ``reference`` rebuilds the architecture (common.model_reference), ``inputs`` are test
    examples the export is checked on, ``source`` names the ticket (run, seed, round, variant).
    """
    check_format(format)
    out = Path(out)
    if out.is_dir():
        raise TicketsError(f"--out {out} is a folder; give the name of the file to write")
    ticket = masked_copy(network, mask)
    inputs = inputs[:CHECKED_EXAMPLES]
    header = {"version": VERSION, "source": dict(source)}
    if format == "dense":
        layers, net, widths = dense.shrink(ticket, mask, reference["input_shape"])
        worst = check_outputs(ticket, net, inputs, format)
        size = save_torch({"format": dense.FORMAT, **header, "input_shape": reference["input_shape"],
                           "layers": layers, "widths": widths, "state_dict": net.state_dict()}, out)
        described = ", ".join(f"{name} {before}->{after}" for name, (before, after) in widths.items())
        description = f"{described}; {dense.parameter_count(net):,} parameters"
    elif format == "sparse":
        threshold = sparse.DENSITY_THRESHOLD if sparse_threshold is None else float(sparse_threshold)
        net, chosen = sparse.convert(ticket, mask, threshold)
        worst = check_outputs(ticket, net, inputs, format)
        size = save_torch({"format": sparse.FORMAT, **header, "model": reference, "threshold": threshold,
                           **sparse.contents(net)}, out)
        layers = ", ".join(f"{name} ({density:.1%} of weights)" for name, density in chosen.items())
        description = (f"CSR: {layers}; the other layers dense" if layers else "no Linear layer is sparse enough "
                       f"for CSR (at most {threshold:.0%} of weights, at least {sparse.MIN_WEIGHTS:,}): all dense")
    elif format == "torch-prune":
        net = torch_prune.convert(ticket, mask)
        worst = check_outputs(ticket, net, inputs, format)
        size = save_torch({"format": torch_prune.FORMAT, **header, "model": reference, **torch_prune.contents(net)},
                          out)
        description = f"prune masks registered on {len(mask)} weights"
    else:
        net, description = _onnx_network(ticket, mask, reference)
        data = onnxfile.to_bytes(net, inputs[:2])
        worst = check_outputs(ticket, onnxfile.OnnxModule(data), inputs, format)
        size = save_bytes(data, out)
    return Exported(out, format, description, size, worst)


def _onnx_network(ticket: nn.Module, mask: dict, reference: dict) -> tuple[nn.Module, str]:
    """The smaller network of a structured ticket of a known architecture, else the masked network."""
    try:
        _, net, widths = dense.shrink(ticket, mask, reference["input_shape"])
    except TicketsError:
        return ticket, "graph of the masked network (not structured, or an architecture dense export does not know)"
    if all(before == after for before, after in widths.values()):
        return ticket, "graph of the network (no unit is pruned)"
    return net, "graph of the smaller network: " + ", ".join(f"{n} {b}->{a}" for n, (b, a) in widths.items())


def load_exported(path: str | Path) -> nn.Module:
    """The network a file of :func:`export_ticket` holds, as a torch module in eval mode.

    dense: an ``nn.Sequential``; sparse: the architecture with SparseLinear layers;
    torch-prune: the architecture with the prune masks registered; onnx: an
    onnxfile.OnnxModule that runs the graph with onnxruntime.
    """
    path = Path(path)
    if not path.is_file():
        raise TicketsError(f"{path} does not exist; give a file written by `tickets export`")
    if not zipfile.is_zipfile(path):
        try:
            return onnxfile.OnnxModule(str(path))
        except TicketsError:
            raise
        except Exception:  # onnxruntime's own errors: not a model
            raise TicketsError(f"{path} is neither a torch file nor an ONNX model; give a file written by "
                               "`tickets export`") from None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise TicketsError(f"{path} cannot be read as a tickets export ({type(error).__name__}); "
                           "it may be damaged: export it again") from None
    kind = saved.get("format") if isinstance(saved, dict) else None
    if kind not in (dense.FORMAT, sparse.FORMAT, torch_prune.FORMAT):
        raise TicketsError(f"{path} is a torch file, but not one `tickets export` wrote")
    if saved.get("version", 0) > VERSION:
        raise TicketsError(f"{path} was written by a newer tickets (export version {saved['version']}); "
                           "upgrade tickets to load it")
    if kind == dense.FORMAT:
        return dense.load(saved)
    module = sparse if kind == sparse.FORMAT else torch_prune
    return module.load(saved, build_reference(saved["model"]))
