"""``tickets connect NET_A NET_B``: a run of its own with one network job, the curve, on any executor.

The run's config is NET_A's run's (model, dataset, optimizer, learning rate, schedule,
augmentation, batch size), with ``--epochs`` for the bend's training when given. Its name is
derived from that config, the settings and the sha256 of the two networks (``connect-<hash>``),
so the same command resumes it. The networks (and their mask) are copied into the run, and
run.json records what was connected, so a run is never resumed with other networks::

    config.yaml  run.json  results.csv (no rows)  connect.csv  connect.png  report/
    seed_<s>/net_a.pt  net_b.pt  [mask.pt]          the two networks' final.pt and their mask
    seed_<s>/round_0/<curve>/                       the job (see :mod:`~tickets.experiments.connect.job`)
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tickets import config as config_mod
from tickets.components import RunContext
from tickets.engine.graph import Graph
from tickets.engine.lifecycle import check_environment, load_run_config, open_run
from tickets.errors import TicketsError
from tickets.executors.run import run_graph
from tickets.experiments.connect.curves import check_curve
from tickets.experiments.connect.ends import End, check_pair, find_end
from tickets.experiments.connect.job import ConnectJob, ends_dir
from tickets.experiments.connect.section import write_plot
from tickets.registry import Registry
from tickets.store import RunStore, atomic_write_bytes, sha256_file

DEFAULT_POINTS = 31


class ConnectGraph(Graph):
    """One job: the curve."""

    def __init__(self, context: RunContext, job: ConnectJob, a: End, b: End):
        self.context, self.job, self.ends = context, job, (a, b)

    def expected(self) -> int:
        return 1

    def prepare(self) -> None:
        """Copy the two networks' final.pt (and their mask) into the run, unless the copies are there and equal."""
        a, b = self.ends
        ends = ends_dir(self.job.run_dir, self.job.seed)
        copies = [(a.dir / "final.pt", ends / "net_a.pt"), (b.dir / "final.pt", ends / "net_b.pt")]
        copies += [(a.mask_path, ends / "mask.pt")] if self.job.masked else []
        for source, target in copies:
            if not target.is_file() or sha256_file(target) != sha256_file(source):
                atomic_write_bytes(target, Path(source).read_bytes())

    def roots(self):
        return [self.job]

    def label(self, job: ConnectJob) -> str:
        return f"seed {job.seed} | {job.curve} curve (test acc at t = 0.5)"

    def end_iteration(self, job) -> int:
        return self.context.schedule.total

    def record(self, job: ConnectJob, row: dict) -> None:
        if row.get("diverged_at") is not None:
            self.progress.warn(f"{self.label(job)} diverged at iteration {row['diverged_at']}: its path errors are "
                               "those of non-finite weights; a lower --lr may help")

    def complete(self) -> None:
        """connect.csv (a copy of the job's) and connect.png at the top of the run."""
        out = Path(self.job.run_dir)
        atomic_write_bytes(out / "connect.csv", (self.job.dir / "connect.csv").read_bytes())
        write_plot(out / "connect.csv", self.job.curve, out / "connect.png")


def connect_config(a: End, epochs: float | None, seed: int, sets: dict, execution: dict):
    """NET_A's run config, for training the bend: ``--epochs``, ``train.*`` keys of ``sets``, execution settings."""
    config = load_run_config(a.run_dir)
    wrong = [k for k in sets if not k.startswith("train.")]
    if wrong:
        raise TicketsError(f"tickets connect takes NET_A's run config; --set may change only train.* keys "
                           f"(the bend's training), not {', '.join(wrong)}")
    config_mod.apply_dotted(config, dict(sets), "--set")
    if epochs is not None:
        config.train.epochs, config.train.iterations = float(epochs), None
    config.seeds, config.prune.rounds, config.prune.controls, config.prune.rewind = [seed], 0, [], "0"
    config.prune.retrain, config.prune.retrain_iterations = "rewind", None
    for key, value in execution.items():
        setattr(config.execution, key, value)
    config.train.loggers = []
    config_mod.validate(config)
    return config


def run_connect(net_a: str | Path, net_b: str | Path, registry: Registry, *, curve: str = "bezier",
                points: int = DEFAULT_POINTS, epochs: float | None = None, seed: int = 0, sets: dict | None = None,
                execution: dict | None = None, out: str | Path = "outputs", name: str | None = None,
                quiet: bool = False) -> RunStore:
    """Train (or resume, or skip when done) the curve from NET_A to NET_B; see the module docstring."""
    check_curve(curve)
    if not isinstance(points, int) or points < 3:
        raise TicketsError(f"--points must be at least 3 (the two ends and a point between), got {points!r}")
    if not isinstance(seed, int) or seed < 0:
        raise TicketsError(f"--seed must be a whole number of at least 0, got {seed!r}")
    a, b = find_end(net_a, "NET_A"), find_end(net_b, "NET_B")
    config = connect_config(a, epochs, seed, sets or {}, execution or {})
    masked = a.mask is not None
    settings = {"net_a": str(a.dir), "net_b": str(b.dir), "mask": str(a.mask_path) if masked else None,
                "net_a_sha256": a.sha256, "net_b_sha256": b.sha256,
                "mask_sha256": sha256_file(a.mask_path) if masked else None, "curve": curve, "points": points,
                "seed": seed}
    derived = {k: v for k, v in settings.items() if k not in ("net_a", "net_b", "mask")}  # the same files anywhere
    digest = hashlib.sha256(json.dumps([config_mod.fingerprint(config), derived], sort_keys=True).encode())
    config.name = name or f"connect-{curve}-{digest.hexdigest()[:8]}"
    context = RunContext.create(config, registry, RunStore(Path(out), config.name))
    check_pair(a, b, context.new_model().state_dict())
    check_environment(config)
    store = open_run(config, Path(out), "connect")
    recorded = store.read_run_json().get("connect") if store.dir.exists() else None
    if recorded is not None:
        changed = [f"{k}: {recorded.get(k)!r} -> {v!r}" for k, v in derived.items() if recorded.get(k) != v]
        if changed:
            raise TicketsError(f"run {store.dir} connected other networks or with other settings "
                               f"({'; '.join(changed)}); use another --name, or the same ones to resume it")
    job = ConnectJob(str(store.dir.resolve()), seed, curve, points, masked)
    sched = context.schedule
    return run_graph(ConnectGraph(context, job, a, b), context, "connect", max_parallel=1, quiet=quiet,
                     components=context.provenance, iterations=sched.total, iterations_per_epoch=sched.per_epoch,
                     connect=settings)
