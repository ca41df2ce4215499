"""Progress display for long runs: one live line per network on a terminal, one summary line each."""
from __future__ import annotations

import sys
import time


class Progress:
    """Shows which network is training (seed, round, variant), how far along, and its accuracy.

    On a terminal the current line is redrawn at every evaluation; elsewhere (logs, CI) only
    the line of each finished network is printed. ``quiet`` prints nothing.
    """

    def __init__(self, total_networks: int, stream=None, quiet: bool = False):
        self.total = total_networks
        self.done = 0
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.started = time.perf_counter()
        self.label = ""
        self.end_iteration = 0

    def _write(self, text: str, final: bool) -> None:
        if self.quiet:
            return
        if self.live:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        elif final:
            self.stream.write(text + "\n")
        self.stream.flush()

    def start(self, label: str, end_iteration: int) -> None:
        self.label, self.end_iteration = label, end_iteration
        self._write(f"[{self.done + 1}/{self.total}] {label} ...", final=False)

    def update(self, row: dict) -> None:
        if self.live and not self.quiet:
            self._write(f"[{self.done + 1}/{self.total}] {self.label} | it {row['iteration']}/{self.end_iteration}"
                        f" | val loss {row['val_loss']:.4f} | test acc {100 * row['test_acc']:.2f}%", final=False)

    def skip(self, label: str) -> None:
        self.done += 1
        self._write(f"[{self.done}/{self.total}] {label} | already done", final=True)

    def finish(self, label: str, row: dict) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.started
        self._write(
            f"[{self.done}/{self.total}] {label} | {100 * row['weights_remaining']:.1f}% weights"
            f" | test acc {100 * row['test_acc_at_early_stop']:.2f}% @ it {row['early_stop_iter']}"
            f" (final {100 * row['final_test_acc']:.2f}%) | {row['train_seconds']:.1f}s, {elapsed:.0f}s total",
            final=True)

    def message(self, text: str) -> None:
        self._write(text, final=True)
