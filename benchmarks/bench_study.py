"""Wall time of a whole study: `tickets prune` against a plain PyTorch script doing the same work.

The study: 3 seeds x (1 dense network + 10 rounds x (ticket, reinit, random_prune)) = 93
LeNet-300-100 networks on the embedded digits (3,500 train after the 500 held out for
validation, 1,000 test), SGD lr 0.1, batch 128, 5 epochs of 27 full batches (135 iterations)
each, evaluated on validation and test at the start, every 20 iterations and at the end.

- tickets: `tickets prune --rounds 10 --epochs 5 --seeds 0,1,2 --controls reinit,random_prune
  --optimizer sgd --lr 0.1 --batch-size 128 --quiet` with its default executor (workers auto:
  one per core), in a fresh --out every turn, so nothing is resumed. It runs as
  `python -m tickets.cli` from the temporary folder: set PYTHONPATH to time another checkout.
- plain (this file with --plain): the same data split, theta_0 (Kaiming normal, zero biases),
  batches, fused SGD step, masking (gradients masked before the step, weights re-masked after
  it), evaluations, layerwise magnitude pruning (20% a round, the output layer 10%),
  rewinding to theta_0 and controls, and the same parallelism: the same job graph (round r's
  ticket needs round r-1's ticket, the controls their round's mask; tickets first) over one
  worker process per core (forked from the driver once it has imported torch and loaded the
  data; cores // workers threads each), masks computed in the driver. It writes no files.
  Its early-stop iterations and test accuracies are compared with tickets' results.csv: equal
  results show that both ways did the same work.

Each way is launched as a fresh process and timed from launch to exit: imports, start-up and,
for tickets, the report are included. The ways take turns (--repeat), the first of a turn
alternating, so that a slow spell of the machine hits both; each ratio compares the two runs
of one turn, and each turn prints the load average before it (other people's work on the
machine makes the numbers drift). Also printed for both: the CPU time of all their processes
(the work done, waits left out), the start-up (launch until the first network starts
training; for tickets, a network's metrics.csv is written when its training ends, its
train_seconds after it began), what follows the last network (until exit; tickets writes its
report there), and the sum of the networks' training seconds.

    python benchmarks/bench_study.py [--repeat 2] [--rounds 10] [--epochs 5]
"""
from __future__ import annotations

import argparse
import csv
import ctypes
import heapq
import json
import math
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")  # as tickets sets it before torch loads MKL: the same numerics

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

SEEDS, CONTROLS = (0, 1, 2), ("reinit", "random_prune")
LR, BATCH, EVAL_EVERY, VAL_SIZE = 0.1, 128, 20, 500
DIGITS = Path(__file__).resolve().parents[1] / "tickets" / "datasets_files" / "digits.npz"
PR_SET_CHILD_SUBREAPER = 36
FIELDS = ("early_stop_iter", "test_acc_at_early_stop", "final_test_acc")  # compared between the ways


# --- the plain script --------------------------------------------------------------------------
class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.output = nn.Linear(784, 300), nn.Linear(300, 100), nn.Linear(100, 10)

    def forward(self, x):
        return self.output(F.relu(self.fc2(F.relu(self.fc1(x.flatten(1))))))


def load_data() -> dict:
    """The digits, normalized, with tickets' validation split (500 train examples, drawn with seed 1234)."""
    with np.load(DIGITS) as arrays:
        a = {k: torch.from_numpy(arrays[k].copy()) for k in ("train_x", "train_y", "test_x", "test_y")}
    train_x = a["train_x"].unsqueeze(1)
    pixels = train_x.double() / 255
    mean, std = torch.tensor([round(pixels.mean().item(), 4)]), torch.tensor([round(pixels.std().item(), 4)])
    norm = lambda x: ((x.float() / 255 - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)).contiguous()  # noqa: E731
    order = torch.randperm(train_x.shape[0], generator=torch.Generator().manual_seed(1234))
    x, y = norm(train_x), a["train_y"].long()
    val, train = order[:VAL_SIZE], order[VAL_SIZE:]
    return {"train": (x[train].contiguous(), y[train].contiguous()), "val": (x[val].contiguous(), y[val].contiguous()),
            "test": (norm(a["test_x"].unsqueeze(1)), a["test_y"].long().contiguous())}


def stable_seed(*parts) -> int:
    return zlib.crc32("/".join(str(p) for p in parts).encode())


def initial_state(generator: torch.Generator) -> dict:
    """Kaiming normal (fan in, ReLU) weights, zero biases."""
    model = LeNet()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                nn.init.kaiming_normal_(p, mode="fan_in", nonlinearity="relu", generator=generator)
            else:
                p.zero_()
    return {k: v.clone() for k, v in model.state_dict().items()}


def prune(mask: dict, final: dict) -> dict:
    """Remove the smallest-magnitude 20% (output layer 10%) of each layer's surviving weights."""
    new = {}
    for name, keep in mask.items():
        alive = int(keep.sum())
        n_keep = alive - math.floor(alive * (0.1 if name.startswith("output") else 0.2) + 0.5)
        scores = final[name].abs().masked_fill(~keep, -math.inf).flatten()
        new[name] = torch.zeros(keep.numel(), dtype=torch.bool).index_fill_(0, scores.topk(n_keep).indices, True)
        new[name] = new[name].view_as(keep)
    return new


def random_mask(mask: dict, generator: torch.Generator) -> dict:
    """A random mask with ``mask``'s number of survivors in every layer (the random_prune control)."""
    def layer(keep):
        kept = torch.randperm(keep.numel(), generator=generator)[:int(keep.sum())]
        return torch.zeros(keep.numel(), dtype=torch.bool).index_fill_(0, kept, True).view_as(keep)
    return {name: layer(keep) for name, keep in mask.items()}


@torch.no_grad()
def evaluate(model, split: str) -> tuple[float, float]:
    """Mean cross-entropy and accuracy on the validation or test split, in eval mode."""
    x, y = _data[split]
    model.eval()
    logits = model(x)
    model.train()
    return ((F.cross_entropy(logits, y, reduction="sum") / len(y)).item(),
            ((logits.argmax(1) == y).sum().float() / len(y)).item())


_data: dict = {}  # split -> (x, y), loaded by the driver; the workers fork from it


def train(seed: int, round_: int, variant: str, state: dict, mask: dict, iterations: int) -> dict:
    """One network from ``state`` under ``mask`` (a control derives its own start first)."""
    generator = torch.Generator().manual_seed(stable_seed(seed, round_, variant))
    if variant == "reinit":
        state = initial_state(generator)
    elif variant == "random_prune":
        mask = random_mask(mask, generator)
    model = LeNet()
    model.load_state_dict(state)
    masked = [(p, mask[name].float()) for name, p in model.named_parameters() if name in mask]
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, fused=True)
    (x, y), n = _data["train"], len(_data["train"][1])
    started, started_perf = time.time(), time.perf_counter()
    with torch.no_grad():
        for p, keep in masked:
            p.mul_(keep)
    # (iteration, val loss, val acc, test loss, test acc, mean train loss since the last one): metrics.csv's rows
    evals = [(0, *evaluate(model, "val"), *evaluate(model, "test"), math.nan)]
    loss_sum, count, per_epoch = torch.zeros(()), 0, n // BATCH
    for i in range(iterations):
        epoch, position = divmod(i, per_epoch)
        if position == 0:
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        idx = perm[position * BATCH:(position + 1) * BATCH]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for p, keep in masked:
            p.grad.mul_(keep)
        optimizer.step()
        with torch.no_grad():
            for p, keep in masked:
                p.mul_(keep)
        loss_sum += loss.detach()
        count += 1
        if (i + 1) % EVAL_EVERY == 0 or i + 1 == iterations:
            evals.append((i + 1, *evaluate(model, "val"), *evaluate(model, "test"), (loss_sum / count).item()))
            loss_sum.zero_()
            count = 0
    best = min(evals, key=lambda e: (e[1], e[0]))  # early stop: the minimum validation loss
    row = {"early_stop_iter": best[0], "test_acc_at_early_stop": round(best[4], 6),
           "final_test_acc": round(evals[-1][4], 6)}
    return {"key": (seed, round_, variant), "row": row, "final": model.state_dict() if variant == "ticket" else None,
            "started": started, "seconds": time.perf_counter() - started_perf, "ended": time.time()}


def plain_study(rounds: int, epochs: float) -> dict:
    """Run every network of the study over one worker per core; return the rows and the timings."""
    cores = len(os.sched_getaffinity(0))
    workers = max(1, min(cores, len(SEEDS) * (1 + len(CONTROLS))))
    _data.update(load_data())
    iterations = max(1, round(epochs * (len(_data["train"][1]) // BATCH)))  # full batches only
    theta0 = {seed: initial_state(torch.Generator().manual_seed(seed)) for seed in SEEDS}
    dense = {n: torch.ones_like(p, dtype=torch.bool) for n, p in theta0[0].items() if n.endswith("weight")}
    masks = {(seed, 0): dense for seed in SEEDS}
    ready = [((False, 0, seed, "ticket"), (seed, 0, "ticket")) for seed in SEEDS]
    results, running = [], {}
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                             initializer=torch.set_num_threads, initargs=(max(1, cores // workers),)) as pool:
        while ready or running:
            while ready and len(running) < workers:  # tickets first: they are the critical path
                seed, round_, variant = heapq.heappop(ready)[1]
                running[pool.submit(train, seed, round_, variant, theta0[seed], masks[seed, round_],
                                    iterations)] = (seed, round_, variant)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                del running[future]
                result = future.result()
                results.append(result)
                seed, round_, variant = result["key"]
                if variant == "ticket" and round_ < rounds:
                    masks[seed, round_ + 1] = prune(masks[seed, round_], result["final"])
                    for v in ("ticket", *CONTROLS):
                        heapq.heappush(ready, ((v != "ticket", round_ + 1, seed, v), (seed, round_ + 1, v)))
    return {"rows": [[*r["key"], r["row"]] for r in results], "first_start": min(r["started"] for r in results),
            "last_end": max(r["ended"] for r in results), "train_seconds": sum(r["seconds"] for r in results)}


# --- the benchmark -----------------------------------------------------------------------------
def timed(command: list[str], **options) -> tuple[float, float, float, subprocess.CompletedProcess]:
    """Run ``command``; its launch and exit times and the CPU seconds of it and all its descendants.

    This process is their subreaper: tickets' fork server outlives the driver's exit, and its
    workers' CPU time counts only once it is waited for.
    """
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    launched = time.time()
    done = subprocess.run(command, check=True, **options)
    exited = time.time()
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return launched, exited, after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime, done


def run_tickets(out: Path, rounds: int, epochs: float) -> dict:
    command = [sys.executable, "-m", "tickets.cli", "prune", "--rounds", str(rounds), "--epochs", str(epochs),
               "--seeds", ",".join(map(str, SEEDS)), "--controls", ",".join(CONTROLS), "--optimizer", "sgd",
               "--lr", str(LR), "--batch-size", str(BATCH), "--out", str(out), "--name", "study", "--quiet"]
    # cwd: not this checkout, so that the tickets on sys.path runs
    launched, exited, cpu, _ = timed(command, stdout=subprocess.DEVNULL, cwd=out.parent)
    with (out / "study" / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    starts, ends = [], []
    for r in rows:
        net_dir = out / "study" / f"seed_{r['seed']}" / f"round_{r['round']}" / r["variant"]
        starts.append((net_dir / "metrics.csv").stat().st_mtime - float(r["train_seconds"]))
        ends.append((net_dir / "done.json").stat().st_mtime)
    return {"wall": exited - launched, "cpu": cpu, "startup": min(starts) - launched, "after": exited - max(ends),
            "train_seconds": sum(float(r["train_seconds"]) for r in rows),
            "rows": {(int(r["seed"]), int(r["round"]), r["variant"]): r for r in rows}}


def run_plain(rounds: int, epochs: float) -> dict:
    command = [sys.executable, __file__, "--plain", "--rounds", str(rounds), "--epochs", str(epochs)]
    launched, exited, cpu, done = timed(command, stdout=subprocess.PIPE, text=True)
    study = json.loads(done.stdout)
    return {"wall": exited - launched, "cpu": cpu, "startup": study["first_start"] - launched,
            "after": exited - study["last_end"], "train_seconds": study["train_seconds"],
            "rows": {(s, r, v): row for s, r, v, row in study["rows"]}}


def differences(tickets_rows: dict, plain_rows: dict) -> int:
    """Networks whose early-stop iteration or test accuracies differ between the ways."""
    assert tickets_rows.keys() == plain_rows.keys(), "the ways trained different networks"
    return sum(any(float(tickets_rows[k][f]) != float(plain_rows[k][f]) for f in FIELDS) for k in plain_rows)


def cell(values: list[float], fmt: str = "{:.1f}") -> str:
    """The median and the values of each turn."""
    return f"{fmt.format(statistics.median(values))} ({', '.join(fmt.format(v) for v in values)})"


def benchmark(args) -> None:
    ways = {"tickets": lambda out: run_tickets(out, args.rounds, args.epochs),
            "plain": lambda out: run_plain(args.rounds, args.epochs)}
    measured: dict[str, list[dict]] = {way: [] for way in ways}
    with tempfile.TemporaryDirectory() as tmp:
        for turn in range(args.repeat):
            order = list(ways) if turn % 2 == 0 else list(ways)[::-1]
            load = os.getloadavg()[0]  # others' work on the machine slows the ways, not always alike
            for way in order:
                measured[way].append(ways[way](Path(tmp) / f"turn{turn}"))
            t, p = measured["tickets"][-1], measured["plain"][-1]
            print(f"  turn {turn + 1} ({' then '.join(order)}; load average {load:.1f} before): "
                  f"tickets {t['wall']:.1f} s, plain {p['wall']:.1f} s, ratio {t['wall'] / p['wall']:.2f}x "
                  f"(CPU time {t['cpu']:.1f} s against {p['cpu']:.1f} s, {t['cpu'] / p['cpu']:.2f}x); "
                  f"tickets' start-up {t['startup']:.1f} s ({t['startup'] / t['wall']:.0%} of its wall time); "
                  f"networks whose results differ: {differences(t['rows'], p['rows'])} of {len(p['rows'])}",
                  file=sys.stderr, flush=True)
    ratios = [t["wall"] / p["wall"] for t, p in zip(measured["tickets"], measured["plain"])]
    print(f"\n{len(measured['plain'][0]['rows'])} networks, {args.rounds} rounds, {args.epochs:g} epochs, "
          f"{args.repeat} turn(s); seconds, median (per turn)\n")
    print("| way | wall time | CPU time, all processes | start-up (launch to first training) | share of wall time "
          "| after the last network | training, sum over networks |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for way, runs in measured.items():
        print(f"| {way} | {cell([r['wall'] for r in runs])} | {cell([r['cpu'] for r in runs])} "
              f"| {cell([r['startup'] for r in runs])} "
              f"| {cell([r['startup'] / r['wall'] for r in runs], '{:.0%}')} | {cell([r['after'] for r in runs])} "
              f"| {cell([r['train_seconds'] for r in runs])} |")
    cpu_ratios = [t["cpu"] / p["cpu"] for t, p in zip(measured["tickets"], measured["plain"])]
    print(f"\nratio tickets / plain, wall time: {cell(ratios, '{:.2f}x')}; CPU time: {cell(cpu_ratios, '{:.2f}x')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="turns (the machine's speed drifts)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--epochs", type=float, default=5)
    parser.add_argument("--plain", action="store_true", help="run the plain study once and print its results (JSON)")
    args = parser.parse_args()
    if args.plain:
        print(json.dumps(plain_study(args.rounds, args.epochs)))
    else:
        ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1)  # Linux: orphaned descendants become ours (see timed)
        benchmark(args)


if __name__ == "__main__":
    main()
