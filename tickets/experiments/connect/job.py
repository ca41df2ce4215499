"""The curve between two networks as one network job: train its bend, then evaluate the path.

Training goes through the project's Lightning core (:mod:`tickets.engine.netjob`,
``MaskedTraining``): the curve fits it once every parameter of the model is parametrized as
phi(t) of its bend (:func:`~tickets.experiments.connect.curves.attach_curve`). The model's only
parameters are then the bends, so the config's optimizer, learning rate, schedule, warmup and
augmentation train them as they train any network; the shared mask keeps the bend's pruned
weights at zero; a forward pre-hook draws t ~ U[0, 1] from the global torch RNG before every
training step, so the seeded RNG (``torch_seed``) fixes the draws and the core's checkpoints
(which save that RNG) resume them exactly after kill -9. Evaluation in training (metrics.csv) is
of the curve's midpoint t = 0.5, with the running statistics as they are.

In ``seed_<s>/round_0/<curve>/``: ``bend.pt`` (parameter name -> theta), ``final.pt`` (the
network at t = 0.5, BatchNorm statistics recomputed; a network like any other, with its mask in
``mask.pt`` when the ends share one), ``connect.csv`` (the path), metrics.csv, done.json (with
the sha256 of the copies of the two networks and of their mask it read).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tickets.components import RunContext, stable_seed
from tickets.engine.contexts import Overrides
from tickets.engine.netjob import Network, NetworkJob, load_input
from tickets.experiments.connect.curves import (
    attach_curve,
    barrier,
    bend,
    curved_name,
    evaluate,
    on_curve,
    on_line,
    ts,
)
from tickets.masks import Mask
from tickets.store import atomic_torch_save, write_csv_rows
from tickets.ticket import Ticket, clone_state
from tickets.training import TrainOutcome, batch_norms, reset_batchnorm

COLUMNS = ["t", "train_loss", "train_err", "test_err", "line_train_err", "line_test_err"]


def ends_dir(run_dir: str | Path, seed: int) -> Path:
    """Where a connect run keeps its copies of the two networks (net_a.pt, net_b.pt) and their mask (mask.pt)."""
    return Path(run_dir) / f"seed_{seed}"


@dataclass(frozen=True)
class ConnectJob(NetworkJob):
    """Train the bend of ``curve`` between the run's copies of NET_A and NET_B; evaluate ``points`` points."""

    run_dir: str
    seed: int
    curve: str
    points: int
    masked: bool
    overrides: Overrides = ()

    @property
    def key(self) -> tuple:
        return self.seed, 0, self.curve

    @property
    def dir(self) -> Path:
        return ends_dir(self.run_dir, self.seed) / "round_0" / self.curve

    def describe(self) -> str:
        return f"seed {self.seed} {self.curve} curve"

    def _inputs(self) -> list[Path]:
        ends = ends_dir(self.run_dir, self.seed)
        return [ends / "net_a.pt", ends / "net_b.pt", *([ends / "mask.pt"] if self.masked else [])]

    def network(self, context: RunContext, model) -> Network:
        inputs = self._inputs()
        a, b = (load_input(context, path, "connect") for path in inputs[:2])
        wrapped = attach_curve(model, self.curve, a, b)
        ends_mask = load_input(context, inputs[2], "connect") if self.masked else {}
        mask = Mask({curved_name(n): keep for n, keep in ends_mask.items()})
        return Network(Ticket(mask, clone_state(model)),
                       data_seed=stable_seed(self.seed, "connect", "batches"),
                       torch_seed=stable_seed(self.seed, "connect", "t"), inputs=inputs,
                       extra={"wrapped": wrapped, "a": a, "b": b, "mask": ends_mask})

    def finish(self, context: RunContext, model, network: Network, outcome: TrainOutcome) -> dict:
        a, b, wrapped = network.extra["a"], network.extra["b"], network.extra["wrapped"]
        theta = bend(model, wrapped)
        atomic_torch_save(theta, self.dir / "bend.pt")
        rows, midpoint = path_rows(context, self.curve, self.points, a, theta, b)
        network.extra["midpoint"] = midpoint
        write_csv_rows(self.dir / "connect.csv", COLUMNS, rows)
        if self.masked:  # final.pt's own mask, as a control with a mask of its own keeps it
            atomic_torch_save(network.extra["mask"], self.dir / "mask.pt")
        masks = network.ticket.mask
        weights = round(masks.density(), 6) if masks.tensors else 1.0
        return {"seed": self.seed, "curve": self.curve, "points": self.points, "weights_remaining": weights,
                "barrier": round(barrier([r["test_err"] for r in rows]), 6),
                "line_barrier": round(barrier([r["line_test_err"] for r in rows]), 6),
                "train_barrier": round(barrier([r["train_err"] for r in rows]), 6),
                "line_train_barrier": round(barrier([r["line_train_err"] for r in rows]), 6),
                **{k: round(v, 6) if isinstance(v, float) else v for k, v in outcome.fields.items()},
                "iterations": outcome.iterations, "train_seconds": round(outcome.seconds, 3),
                "status": outcome.status, "diverged_at": outcome.diverged_at}

    def final_state(self, model, network: Network, outcome: TrainOutcome) -> dict:
        return network.extra["midpoint"]


def path_rows(context: RunContext, curve: str, points: int, a, theta, b) -> tuple[list[dict], dict]:
    """connect.csv's rows (errors as fractions, 6 digits) and the network at t = 0.5 (for final.pt)."""
    from tickets.training import make_trainer

    t = context.config.train
    device = make_trainer(t.accelerator, t.devices, t.precision).strategy.root_device
    splits = context.splits.to(device)
    model = context.new_model().to(device)
    rows = []
    for point in ts(points):
        loss, train_err, test_err = evaluate(model, on_curve(curve, point, a, theta, b), splits, t.batch_size)
        _, line_train, line_test = evaluate(model, on_line(point, a, b, theta), splits, t.batch_size)
        rows.append({"t": round(point, 6), "train_loss": round(loss, 6), "train_err": round(train_err, 6),
                     "test_err": round(test_err, 6), "line_train_err": round(line_train, 6),
                     "line_test_err": round(line_test, 6)})
    model.load_state_dict({k: v.to(device) for k, v in on_curve(curve, 0.5, a, theta, b).items()})
    if batch_norms(model):
        reset_batchnorm(model, splits.train_x.split(t.batch_size))
    return rows, clone_state(model.cpu())
