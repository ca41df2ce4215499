"""Wall time of one run executed three ways: serial, local worker processes, Ray.

Each way runs the same `tickets prune` job (by default the newcomer's default job: 3 seeds,
10 rounds, two controls) in a fresh output folder, in its own process, start-up and imports
included, and the results are checked to be identical (timings aside). Printed: a table of wall
times with the ratio to serial. With --gpu, instead: LeNet-300-100 and ResNet-20 (digits) with
1, 4, 8 and 16 workers sharing one GPU.

    python benchmarks/bench_scale.py [--rounds 10] [--epochs 5] [--repeat 3] [--skip-ray]
    python benchmarks/bench_scale.py --gpu
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(out: Path, name: str, args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tickets.cli", "prune", "--out", str(out), "--name", name, "--quiet",
                    *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def training_seconds(run_dir: Path) -> float:
    """The sum of the networks' train_seconds: the training itself, without start-up or the driver's work."""
    with (run_dir / "results.csv").open() as handle:
        return sum(float(r["train_seconds"]) for r in csv.DictReader(handle))


def rows_without_timing(run_dir: Path) -> list[dict]:
    with (run_dir / "results.csv").open() as handle:
        return [{k: v for k, v in r.items() if k not in ("run", "train_seconds")} for r in csv.DictReader(handle)]


def cpu_table(args) -> None:
    job = ["--rounds", str(args.rounds), "--epochs", str(args.epochs)]
    ways = [("serial (--workers 1)", ["--workers", "1"]), ("--workers 2", ["--workers", "2"])]
    if not args.skip_ray and importlib.util.find_spec("ray"):
        ways.append(("--executor ray (local, 2 CPUs)", ["--executor", "ray"]))
    times: dict[str, list[float]] = {label: [] for label, _ in ways}
    training: dict[str, list[float]] = {label: [] for label, _ in ways}
    reference = None
    with tempfile.TemporaryDirectory() as tmp:
        # The ways take turns, so that a slow spell of the machine hits all of them alike;
        # each ratio compares a way with the serial run of the same turn.
        for turn in range(args.repeat):
            for i, (label, extra) in enumerate(ways):
                out = Path(tmp) / f"turn{turn}"
                times[label].append(run(out, f"way{i}", job + extra))
                training[label].append(training_seconds(out / f"way{i}"))
                rows = rows_without_timing(out / f"way{i}")
                reference = reference or rows
                same = "identical" if rows == reference else "DIFFERENT"
                ratio = times[label][-1] / times[ways[0][0]][-1]
                print(f"  turn {turn + 1}, {label}: {times[label][-1]:.1f} s ({ratio:.2f}x), "
                      f"results {same}", file=sys.stderr)
                if rows != reference:
                    raise SystemExit(f"{label} gave different results from serial")
    print(f"\n`tickets prune {' '.join(job)}` (3 seeds, {len(reference)} networks), wall time incl. start-up, "
          f"{args.repeat} turn(s)\n")
    print("| execution | wall time (s), median | per turn (s) | ratio to serial, median | per turn "
          "| training (s), median |")
    print("|---|---:|---|---:|---|---:|")
    serial = times[ways[0][0]]
    for label, seconds in times.items():
        ratios = [s / base for s, base in zip(seconds, serial)]
        print(f"| {label} | {statistics.median(seconds):.1f} | {', '.join(f'{s:.1f}' for s in seconds)} | "
              f"{statistics.median(ratios):.2f}x | {', '.join(f'{r:.2f}' for r in ratios)} | "
              f"{statistics.median(training[label]):.1f} |")
    print("\ntraining: the sum of the networks' train_seconds (a worker's networks train side by side, "
          "on one thread each; serial ones in turn, on every thread)")


def gpu_table(args) -> None:
    import torch

    print(f"\nOne GPU: {torch.cuda.get_device_name(0)}\n")
    print("| network | workers on the GPU | networks | wall time (s) | networks per minute |")
    print("|---|---:|---:|---:|---:|")
    models = [("LeNet-300-100", ["--model", "lenet_300_100"]),
              ("ResNet-20", ["--config", "resnet20_digits"] if args.resnet_config else ["--model", "resnet20"])]
    with tempfile.TemporaryDirectory() as tmp:
        for model, extra in models:
            for workers in (1, 4, 8, 16):
                seeds = ",".join(str(s) for s in range(max(1, workers // 3 + 1)))
                job = ["--rounds", "2", "--epochs", str(args.epochs), "--seeds", seeds, "--accelerator", "gpu",
                       "--workers", str(workers), "--workers-per-gpu", str(workers), *extra]
                seconds = run(Path(tmp), f"{model}-{workers}", job)
                n = len(rows_without_timing(Path(tmp) / f"{model}-{workers}"))
                print(f"| {model} | {workers} | {n} | {seconds:.1f} | {60 * n / seconds:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--epochs", type=float, default=5)
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="turns of the CPU table (the machine's speed drifts)")
    parser.add_argument("--gpu", action="store_true", help="workers sharing one GPU instead of the CPU table")
    parser.add_argument("--resnet-config", action="store_true", help="ResNet-20 with the resnet20_digits config")
    args = parser.parse_args()
    gpu_table(args) if args.gpu else cpu_table(args)


if __name__ == "__main__":
    main()
