"""The report's section for a ``tickets sparse-train --like RUN`` run: its methods beside RUN's tickets.

Each round's sparse networks have exactly the weights remaining of RUN's ticket of that round,
and share its seed (theta_0 and batches), so the table pairs them by seed: the mean test
accuracy at early stop of RUN's tickets and of each method, and the mean paired difference
(method - ticket) over the seeds that have both, in points.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from tickets.store import DIVERGED, read_csv_rows

METRIC = "test_acc_at_early_stop"


def _values(rows: list[dict], variant: str) -> dict[tuple[int, int], float]:
    return {(int(r["seed"]), int(r["round"])): float(r[METRIC]) for r in rows
            if r["variant"] == variant and r.get("status") != DIVERGED and r.get(METRIC) not in (None, "")}


def _mean(values) -> str:
    values = list(values)
    return f"{100 * sum(values) / len(values):.2f}" if values else "-"


def report_section(run_dir: Path, relative_to: Path) -> list[str]:
    """Markdown lines comparing a ``--like`` run's methods with its RUN's tickets; none for other runs."""
    run_dir = Path(run_dir)
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []
    like = (config.get("sparse") or {}).get("like")
    rows = read_csv_rows(run_dir / "results.csv")
    if not like or not rows or not (Path(like) / "results.csv").is_file():
        return []
    imp = read_csv_rows(Path(like) / "results.csv")
    tickets = _values(imp, "ticket")
    methods = list(dict.fromkeys(r["variant"] for r in rows))
    own = {m: _values(rows, m) for m in methods}
    remaining = {int(r["round"]): r["weights_remaining"] for r in rows}
    header = ["round", "weights remaining", "ticket"] + [c for m in methods for c in (m, f"{m} - ticket")]
    lines = [f"## Sparse training vs IMP tickets ({run_dir.name} vs {Path(like).name})", "",
             f"Test accuracy at early stop (%), mean over seeds, at each round's exact weights remaining; "
             f"method - ticket: the mean paired difference over the seeds with both (points). Masks: "
             f"{(config.get('sparse') or {}).get('distribution')} at the start.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for round_ in sorted(remaining):
        cells = [str(round_), f"{float(remaining[round_]):.4f}",
                 _mean(v for (s, r), v in tickets.items() if r == round_)]
        for m in methods:
            pairs = [(v, tickets[key]) for key, v in own[m].items() if key[1] == round_ and key in tickets]
            cells += [_mean(v for (s, r), v in own[m].items() if r == round_),
                      f"{100 * sum(a - b for a, b in pairs) / len(pairs):+.2f}" if pairs else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]
