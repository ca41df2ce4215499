"""One sparse network trained from theta_0 under a random mask of fixed per-layer counts, as a network job.

It starts from the seed's theta_0 (the same init.pt `tickets prune` draws) under the round's
starting mask (``seed_<s>/round_<r>/mask.pt``, drawn by the driver, the same for every method)
and trains the run's schedule on the seed's batches. ``static`` keeps that mask; a registered
mask update (``set``, ``rigl``) changes it as :mod:`~tickets.experiments.sparse.updates` says.
Mid-network checkpoints hold the current mask and the update log, so a killed network resumes
exactly. In ``seed_<s>/round_<r>/<method>/``:

- ``mask_init.pt``: the mask it started with; ``mask.pt``: the mask at the end (name -> bool);
- ``final.pt``: the trained state dict, inactive weights exactly 0;
- ``mask_updates.csv``: one row per layer and update (iteration, layer, fraction, size, active,
  dropped, grown); only the header for static;
- ``metrics.csv``, ``done.json`` (the row: variant the method, criterion the distribution).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tickets.components import RunContext, stable_seed
from tickets.engine.netjob import Network, NetworkJob, load_input, result_row
from tickets.experiments.sparse.updates import LOG_COLUMNS, STATIC, MaskUpdates, method_schedule, resolve_rule
from tickets.masks import Mask
from tickets.store import write_csv_rows
from tickets.ticket import Ticket
from tickets.training import TrainOutcome

VERB = "sparse-train"


@dataclass(frozen=True)
class SparseJob(NetworkJob):
    """Train seed ``seed``'s round ``round`` sparse network with ``method`` (the run's ``sparse`` settings)."""

    run_dir: str
    seed: int
    round: int
    method: str

    @property
    def key(self) -> tuple[int, int, str]:
        return self.seed, self.round, self.method

    @property
    def dir(self) -> Path:
        return Path(self.run_dir) / f"seed_{self.seed}" / f"round_{self.round}" / self.method

    def describe(self) -> str:
        return f"seed {self.seed} round {self.round} {self.method}"

    def logger_address(self) -> tuple[int, int, str]:
        return self.key

    def network(self, context: RunContext, model) -> Network:
        store = context.store
        init_path, mask_path = store.seed_dir(self.seed) / "init.pt", store.round_dir(self.seed, self.round) / "mask.pt"
        state = load_input(context, init_path, VERB)
        mask = Mask(load_input(context, mask_path, VERB))
        updates = None
        if self.method != STATIC:
            from tickets.plugins import registry

            rule = resolve_rule(registry(), self.method).obj
            schedule = method_schedule(self.method, rule, context.config.sparse, context.schedule.total)
            updates = MaskUpdates(self.method, rule, schedule, self.key, mask.tensors)
        return Network(Ticket(mask, state, 0), data_seed=self.seed, torch_seed=stable_seed(*self.key),
                       inputs=[init_path, mask_path], mask_updates=updates, extra={"updates": updates})

    def finish(self, context: RunContext, model, network: Network, outcome: TrainOutcome) -> dict:
        updates = network.extra["updates"]
        start = network.ticket.mask
        final = start if updates is None else Mask(updates.masks)
        for name, keep in final.tensors.items():
            if outcome.final_state[name][~keep].any():
                raise RuntimeError(f"{self.describe()}: inactive weights of {name} are not zero")
        start.save(self.dir / "mask_init.pt")
        final.save(self.dir / "mask.pt")
        write_csv_rows(self.dir / "mask_updates.csv", LOG_COLUMNS, [] if updates is None else updates.rows)
        return result_row(context, self.seed, self.round, self.method, context.config.sparse.distribution, final,
                          outcome)
