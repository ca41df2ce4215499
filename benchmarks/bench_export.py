"""Latency and file size of exported tickets (dense, sparse, torch-prune, onnx) against the dense network.

The networks: LeNet-300-100 trained densely on the embedded digits with ``tickets.train``
(``--epochs``, seed 0), and Conv-4 at its initialization (theta_0 of seed 0; latency does not
depend on the weights' values). The tickets are built from them here, not by IMP:

- unstructured LeNet tickets at 20%, 5%, 4.4% and 2% of weights: one-shot layerwise magnitude
  masks of the trained network, at IMP's per-layer rates (the output layer pruned at half the
  hidden layers' rate, as ``prune.layer_fractions: {output.*: 0.1}`` against 0.2 per round:
  output density = hidden density ** (log 0.9 / log 0.8));
- a structured LeNet ticket keeping 26% of fc1's neurons (78 of 300, by the L1 norm of their
  weight rows; fc2 keeps its 100 neurons and loses the columns that read pruned fc1 neurons);
- a structured Conv-4 ticket keeping ``--conv-keep`` of every conv's filters and of fc1's and
  fc2's neurons (by L1 norm of their rows), each next layer losing what read the pruned ones.

Each ticket is exported with tickets.exporters.export_ticket and loaded back with
load_exported (onnx: onnxruntime with the same thread count). Latency: batch 1 and batch 256
of test digits, one thread and all threads; in each of ``--turns`` turns every network (the
dense network first) is timed over ``--calls`` calls; the table gives the median per call and
its ratio to the dense network's (the VM's speed drifts, so ratios are taken turn by turn).
File size: the export against the dense network's state_dict saved with torch.save. A first
table measures the CSR/dense crossover of each LeNet layer, behind sparse.DENSITY_THRESHOLD.

    python benchmarks/bench_export.py [--turns 7] [--calls 20] [--epochs 2] [--conv-keep 0.5]
"""
from __future__ import annotations

import argparse
import io
import math
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import tickets
from tickets.components import load_splits
from tickets.exporters import export_ticket, load_exported, onnxfile, sparse
from tickets.exporters.common import masked_copy, model_reference
from tickets.plugins import registry
from tickets.ticket import initialize_

DENSITIES = (0.20, 0.05, 0.044, 0.02)
STRUCTURED_LENET = "LeNet structured, 26% of fc1 neurons"


def per_call(fn, x, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        fn(x)
    return (time.perf_counter() - started) / calls


def timed_in_turns(networks: dict, x: torch.Tensor, turns: int, calls: int) -> dict:
    """name -> (median seconds per call, median ratio to the first network's time in the same turn)."""
    times = {name: [] for name in networks}
    with torch.inference_mode():
        for fn in networks.values():
            fn(x)  # warm up
        for _ in range(turns):
            for name, fn in networks.items():
                times[name].append(per_call(fn, x, calls))
    base = next(iter(times.values()))
    return {name: (statistics.median(t), statistics.median(b / s for b, s in zip(base, t)))
            for name, t in times.items()}


def magnitude_mask(model: nn.Module, density: float) -> dict:
    """Layerwise magnitude masks at IMP's per-layer rates, ``density`` of all weights kept."""
    weights = {n: p.detach() for n, p in model.named_parameters() if n.endswith("weight") and p.dim() >= 2}
    total = sum(w.numel() for w in weights.values())
    exponent = math.log(0.9) / math.log(0.8)

    def kept(hidden: float) -> dict:
        return {n: hidden ** exponent if n.startswith("output") else hidden for n in weights}

    low, high = 0.0, 1.0
    for _ in range(60):  # bisection on the hidden layers' density
        mid = (low + high) / 2
        share = sum(weights[n].numel() * d for n, d in kept(mid).items()) / total
        low, high = (mid, high) if share < density else (low, mid)
    mask = {}
    for name, d in kept(high).items():
        w = weights[name].abs().flatten()
        keep = torch.zeros_like(w, dtype=torch.bool)
        keep[w.argsort(descending=True)[: max(1, round(d * w.numel()))]] = True
        mask[name] = keep.view_as(weights[name])
    return mask


def structured_mask(model: nn.Module, keep: dict[str, float]) -> dict:
    """Keep the top ``keep[layer]`` of each named layer's units by L1 norm of their rows; the next layer
    loses the inputs (columns, input channels, or a channel's block after a flatten) of pruned units."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    mask = {f"{n}.weight": torch.ones_like(m.weight, dtype=torch.bool) for n, m in layers}
    for (name, module), (next_name, _) in zip(layers, layers[1:]):
        if name not in keep:
            continue
        score = module.weight.detach().abs().flatten(1).sum(1)
        rows = torch.zeros_like(score, dtype=torch.bool)
        rows[score.argsort(descending=True)[: round(keep[name] * score.numel())]] = True
        mask[f"{name}.weight"][~rows] = False
        reader = mask[f"{next_name}.weight"]
        reader.view(reader.shape[0], score.numel(), -1)[:, ~rows] = False
    return mask


def threshold_table(turns: int, calls: int) -> list[str]:
    """Speed of CSR over dense for LeNet's layer shapes, by density and batch (one thread)."""
    torch.set_num_threads(1)
    grid = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5)
    lines = ["| layer (out x in) | batch | " + " | ".join(f"{d:.0%}" for d in grid) + " |",
             "|---|---:|" + "---:|" * len(grid)]
    generator = torch.Generator().manual_seed(0)
    for out_features, in_features, name in ((300, 784, "fc1"), (100, 300, "fc2"), (10, 100, "output")):
        layer = nn.Linear(in_features, out_features).eval()
        for batch in (1, 256):
            x = torch.randn(batch, in_features, generator=generator)
            cells = []
            for density in grid:
                keep = torch.rand(layer.weight.shape, generator=generator) < density
                csr = sparse.SparseLinear(sparse.csr(layer.weight * keep), layer.bias)
                result = timed_in_turns({"dense": layer, "csr": csr}, x, turns, calls)
                cells.append(f"{result['csr'][1]:.2f}x")
            lines.append(f"| {name} ({out_features} x {in_features}) | {batch} | " + " | ".join(cells) + " |")
    return lines


def state_bytes(model: nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return len(buffer.getvalue())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20, help="calls per timing (batch 256 of Conv-4: a fifth)")
    parser.add_argument("--epochs", type=float, default=2, help="dense LeNet training")
    parser.add_argument("--conv-keep", type=float, default=0.5, help="share of Conv-4's filters and neurons kept")
    args = parser.parse_args()
    all_threads = os.cpu_count() or 1
    print(f"{all_threads} CPUs, load average {os.getloadavg()[0]:.1f} at the start\n")

    print(f"## CSR against dense per layer (one thread, median of {args.turns} turns: >1x means CSR is faster)\n")
    print("\n".join(threshold_table(args.turns, args.calls)))

    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    run = tickets.train(epochs=args.epochs, seeds=[0], workers=1, out=work, name="lenet", quiet=True)
    config = run.config
    splits = load_splits(config, registry().get("datasets", config.data.dataset))
    lenet = run.network(seed=0, round=0)
    conv = registry().get("models", "conv4")(splits.num_classes, splits.input_shape)
    initialize_(conv, registry().get("initializers", config.model.init), torch.Generator().manual_seed(0))
    conv.eval()
    cases = [(f"LeNet unstructured {d:.1%}", "lenet_300_100", lenet, magnitude_mask(lenet, d), False)
             for d in DENSITIES]
    cases.append((STRUCTURED_LENET, "lenet_300_100", lenet, structured_mask(lenet, {"fc1": 0.26}), True))
    keep = {n: args.conv_keep for n, m in conv.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    keep.pop("output")
    cases.append((f"Conv-4 structured, {args.conv_keep:.0%} of filters and neurons", "conv4", conv,
                  structured_mask(conv, keep), True))

    header = ("| ticket | weights kept | network | file | b1, 1 thread | b256, 1 thread | "
              f"b1, {all_threads} threads | b256, {all_threads} threads |")
    rows = [header, "|---|---:|---|---:|---:|---:|---:|---:|"]
    targets = {}
    for label, model_name, model, mask, structured in cases:
        ticket = masked_copy(model, mask)
        kept = sum(int(m.sum()) for m in mask.values()) / sum(m.numel() for m in mask.values())
        reference = model_reference(model_name, {}, splits.num_classes, splits.input_shape)
        formats = ["dense", "sparse", "torch-prune", "onnx"] if structured else ["sparse", "torch-prune", "onnx"]
        files = {}
        for fmt in formats:
            path = work / f"{model_name}-{len(rows)}.{fmt}"
            done = export_ticket(model, mask, format=fmt, out=path, reference=reference, inputs=splits.test_x,
                                 source={"run": "bench", "seed": 0, "round": 0, "variant": label})
            files[fmt] = (path, done.bytes)
        cells = {}
        for threads in (1, all_threads):
            torch.set_num_threads(threads)
            nets = {"dense network": ticket}
            for fmt, (path, _) in files.items():
                nets[fmt] = onnxfile.OnnxModule(str(path), threads=threads) if fmt == "onnx" else load_exported(path)
            for batch in (1, 256):
                calls = max(1, args.calls // 5) if (batch == 256 and model_name == "conv4") else args.calls
                x = splits.test_x[:batch]
                for name, (seconds, ratio) in timed_in_turns(nets, x, args.turns, calls).items():
                    unit = f"{seconds * 1e6:.0f} us" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"
                    cells[name, threads, batch] = f"{unit} ({ratio:.2f}x)"
                    targets[label, name, threads, batch] = ratio
        sizes = {"dense network": state_bytes(ticket), **{f: b for f, (_, b) in files.items()}}
        for name in ["dense network", *files]:
            first = name == "dense network"
            row = [label if first else "", f"{kept:.1%}" if first else "", name, f"{sizes[name] / 1024:.0f} kB"]
            row += [cells[name, t, b] for t in (1, all_threads) for b in (1, 256)]
            rows.append("| " + " | ".join(row) + " |")
    print(f"\n## Exports against the dense network (median per call of {args.turns} turns; ratio: dense time / "
          "this time)\n")
    print("\n".join(rows))
    structured = targets[STRUCTURED_LENET, "dense", 1, 256]
    unstructured = targets["LeNet unstructured 4.4%", "sparse", 1, 256]
    shutil.rmtree(work)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    print(f"\ntargets (batch 256, one thread): structured LeNet 26% of fc1 as dense {structured:.2f}x (>= 2.5x: "
          f"{'met' if structured >= 2.5 else 'NOT met'}); unstructured 4.4% as sparse {unstructured:.2f}x (>= 3x: "
          f"{'met' if unstructured >= 3 else 'NOT met'})")


if __name__ == "__main__":
    main()
