"""`tickets runs`: the runs under an output folder and how far each has got."""
from __future__ import annotations

from pathlib import Path

from tickets.store import RunStore, _alive, read_csv_rows, read_json


def run_status(run_dir: Path) -> str:
    """complete, running (a live process holds the lock), or stopped (interrupted / killed)."""
    info = read_json(run_dir / "run.json") if (run_dir / "run.json").exists() else {}
    lock = run_dir / ".lock"
    if lock.exists():
        try:
            if _alive(int(lock.read_text().strip())):
                return "running"
        except (OSError, ValueError):
            pass
    status = info.get("status", "unknown")
    return "stopped" if status in ("running", "interrupted") else status


def list_runs(out: Path) -> list[dict]:
    """One dict per run directory under ``out``: name, status, done/expected networks, summary."""
    rows = []
    if not out.is_dir():
        return rows
    for run_dir in sorted(p for p in out.iterdir() if (p / "config.yaml").exists()):
        store = RunStore(out, run_dir.name)
        info = store.read_run_json()
        done = sum(1 for _ in run_dir.glob("seed_*/round_*/*/done.json"))
        results = read_csv_rows(store.results_path)
        tickets = [r for r in results if r["variant"] == "ticket"]
        summary = ""
        if tickets:
            last = max(tickets, key=lambda r: int(r["round"]))
            summary = (f"latest ticket: round {last['round']}, {100 * float(last['weights_remaining']):.1f}% weights,"
                       f" test acc {100 * float(last['test_acc_at_early_stop']):.2f}%")
        rows.append({"name": run_dir.name, "status": run_status(run_dir), "done": done,
                     "expected": info.get("expected_networks", "?"), "summary": summary})
    return rows
