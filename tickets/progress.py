"""Progress of a run: networks done and left, the running network(s), time elapsed and time left.

On a terminal a live display (rich) shows networks done of the total, each running network
with its iteration and test accuracy, the time elapsed and the estimated time left; every
finished network leaves one line above it. Elsewhere (logs, CI, pipes) only the line of each
finished network is printed. Warnings are printed in both modes, even with ``quiet``.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class _Running:
    started: float
    end_iteration: int
    first_iteration: int | None = None
    row: dict = field(default_factory=dict)

    def fraction(self) -> float:
        """How much of its training the network has done, from its latest evaluation."""
        if not self.row or self.first_iteration is None or self.end_iteration <= self.first_iteration:
            return 0.0
        return (self.row["iteration"] - self.first_iteration) / (self.end_iteration - self.first_iteration)


def duration(seconds: float) -> str:
    """``42s``, ``4m05s``, ``2h07m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Shows which networks are training (seed, round, variant), how far along, and what is left.

    Use it as a context manager around the run (it starts and stops the live display).
    ``clock`` gives seconds (``time.perf_counter``); ``live`` forces the display on or off
    (default: on when ``stream`` is a terminal).
    """

    def __init__(self, total_networks: int, stream=None, quiet: bool = False,
                 clock: Callable[[], float] = time.perf_counter, live: bool | None = None):
        self.total = total_networks
        self.done = 0
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.clock = clock
        is_terminal = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.live = not quiet and (is_terminal if live is None else live)
        self.started = clock()
        self.running: dict[str, _Running] = {}
        self._trained = 0  # networks trained (not skipped) so far, and the seconds they took
        self._trained_seconds = 0.0
        self._display = None

    # live display --------------------------------------------------------------
    def __enter__(self) -> "Progress":
        if self.live:
            from rich.console import Console
            from rich.live import Live

            self._display = Live(get_renderable=self.render, console=Console(file=self.stream),
                                 refresh_per_second=4, transient=True)
            self._display.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._display is not None:
            self._display.stop()
            self._display = None

    def render(self):
        """The live display: a header line, then one line per running network."""
        from rich.table import Table
        from rich.text import Text

        table = Table.grid(padding=(0, 2))
        left = self.eta()
        table.add_row(Text(f"{self.done}/{self.total} networks done", style="bold"),
                      f"elapsed {duration(self.clock() - self.started)}",
                      "left " + (f"about {duration(left)}" if left is not None else "estimating"))
        for label, entry in list(self.running.items()):
            row = entry.row
            where = f"it {row['iteration']}/{entry.end_iteration}" if row else "starting"
            acc = f"test acc {100 * row['test_acc']:.2f}%" if row else ""
            table.add_row(f"  {label}", where, acc)
        return table

    # events ----------------------------------------------------------------------
    def start(self, label: str, end_iteration: int) -> None:
        self.running[label] = _Running(self.clock(), end_iteration)

    def update(self, label: str, row: dict) -> None:
        """A new evaluation row of a running network."""
        entry = self.running.get(label)
        if entry is not None:
            if entry.first_iteration is None:
                entry.first_iteration = row["iteration"]
            entry.row = row

    def drop(self, networks: int) -> None:
        """Take networks that will not be trained (their seed's chain ended) out of the total."""
        self.total -= networks

    def skip(self, label: str) -> None:
        self.done += 1
        self._line(f"[{self.done}/{self.total}] {label} | already done")

    def finish(self, label: str, row: dict) -> None:
        entry = self.running.pop(label, None)
        if entry is not None:
            self._trained += 1
            self._trained_seconds += self.clock() - entry.started
        self.done += 1
        left = self.eta()
        self._line(
            f"[{self.done}/{self.total}] {label} | {100 * row['weights_remaining']:.1f}% weights"
            f" | test acc {100 * row['test_acc_at_early_stop']:.2f}% @ it {row['early_stop_iter']}"
            f" (final {100 * row['final_test_acc']:.2f}%) | {row['train_seconds']:.1f}s"
            f" | elapsed {duration(self.clock() - self.started)}"
            + (f", about {duration(left)} left" if left is not None and self.done < self.total else ""))

    def end(self, label: str, text: str) -> None:
        """A running piece of work outside the count of networks (e.g. a dense trajectory) ended."""
        self.running.pop(label, None)
        self._line(text)

    def note(self, text: str) -> None:
        """An information line (e.g. a network resuming from its checkpoint); not shown when quiet."""
        self._line(text)

    def warn(self, text: str) -> None:
        """A warning line, shown even when quiet."""
        self._line(f"warning: {text}", always=True)

    def eta(self) -> float | None:
        """Estimated seconds left, or None before there is anything to go by.

        Every network not finished takes the mean time of the networks trained so far (or, before
        one has finished, the time the running ones project from their share of iterations done);
        the running ones have already had part of theirs.
        """
        now = self.clock()
        running = list(self.running.values())
        if self._trained:
            per_network = self._trained_seconds / self._trained
        else:
            projected = [(now - r.started) / r.fraction() for r in running if r.fraction() > 0]
            if not projected:
                return None
            per_network = sum(projected) / len(projected)
        spent = sum(min(now - r.started, per_network) for r in running)
        return max(0.0, (self.total - self.done) * per_network - spent)

    def _line(self, text: str, always: bool = False) -> None:
        if self.quiet and not always:
            return
        if self._display is not None:
            self._display.console.print(text, markup=False, highlight=False)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()
