"""One supermask: a mask learned over one seed's frozen initial weights, as a network job.

Only the scores train: the weights (drawn by ``model.init``, e.g. ``signed_constant`` for the
signed Kaiming constant), biases and normalization parameters are frozen. The scores train with
the config's learning-rate schedule and warmup and on its augmented batches, as `tickets prune`
trains a network; a supermask is not checkpointed mid-network (an interrupted one trains again).

The frozen weights never change, but a model's normalization statistics (BatchNorm running
means and variances) do, so every reported number is saved with everything needed to reproduce
it with torch alone. In ``seed_<s>/round_0/supermask_<method>/``:

- ``mask.pt``: the mask at the early-stop iteration (minimum validation loss), name -> bool
  tensor: the row's ``weights_remaining`` is its density, ``params_remaining`` its kept count,
  and ``test_acc_at_early_stop`` its accuracy;
- ``early_stop.pt``: the network as evaluated there, a plain state dict for the model factory's
  module (the frozen weights multiplied by ``mask.pt``, and the running statistics of that
  iteration), so ``model.load_state_dict(torch.load("early_stop.pt"))`` gives
  ``test_acc_at_early_stop``;
- ``final_mask.pt`` and ``final.pt``: the same at the last iteration (``final_test_acc``);
- ``scores.pt`` (name -> float tensor, the last iteration's scores), ``metrics.csv``, ``done.json``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from tickets.components import RunContext, stable_seed
from tickets.engine.netjob import Network, NetworkJob, load_input, result_row
from tickets.experiments.supermask.weights import EarlyStopSnapshot, attach_supermask, learned_mask, plain_state
from tickets.masks import Mask
from tickets.store import atomic_torch_save
from tickets.ticket import Ticket, clone_state
from tickets.training import TrainOutcome


@dataclass(frozen=True)
class SupermaskJob(NetworkJob):
    """Learn seed ``seed``'s supermask (the run's ``supermask`` settings) over its theta_0."""

    run_dir: str
    seed: int
    method: str

    @property
    def variant(self) -> str:
        return f"supermask_{self.method}"

    @property
    def key(self) -> tuple:
        return self.seed, 0, self.variant

    @property
    def dir(self) -> Path:
        return Path(self.run_dir) / f"seed_{self.seed}" / "round_0" / self.variant

    def describe(self) -> str:
        return f"seed {self.seed} {self.variant}"

    def logger_address(self) -> tuple[int, int, str]:
        return self.key

    def network(self, context: RunContext, model) -> Network:
        from tickets.plugins import registry

        s = context.config.supermask
        init_path = context.store.seed_dir(self.seed) / "init.pt"
        model.load_state_dict(load_input(context, init_path, "supermask"))
        score_init = registry().get("initializers", s.score_init)
        generator = torch.Generator().manual_seed(stable_seed(self.seed, self.variant, "scores"))
        wrapped = attach_supermask(model, s.method, s.density, score_init, generator)
        snapshot = EarlyStopSnapshot(model, wrapped)
        make_optimizer = context.make_optimizer
        return Network(Ticket(Mask({}), clone_state(model)), data_seed=self.seed,
                       torch_seed=stable_seed(*self.key),  # the Bernoulli samples
                       inputs=[init_path], checkpoint=False, observe=snapshot.observe,
                       make_optimizer=lambda params: make_optimizer([p for p in params if p.requires_grad]),
                       extra={"wrapped": wrapped, "snapshot": snapshot})

    def finish(self, context: RunContext, model, network: Network, outcome: TrainOutcome) -> dict:
        wrapped, snapshot = network.extra["wrapped"], network.extra["snapshot"]
        if snapshot.iteration != outcome.fields["early_stop_iter"]:
            raise RuntimeError(f"early-stop snapshot at iteration {snapshot.iteration}, "
                               f"but the result reports {outcome.fields['early_stop_iter']}")
        model.cpu()
        snapshot.mask.save(self.dir / "mask.pt")
        atomic_torch_save(snapshot.state, self.dir / "early_stop.pt")
        learned_mask(wrapped).save(self.dir / "final_mask.pt")
        atomic_torch_save({name: w.scores.detach().cpu().clone() for name, w in wrapped.items()},
                          self.dir / "scores.pt")
        return result_row(context, self.seed, 0, self.variant, self.method, snapshot.mask, outcome)

    def final_state(self, model, network: Network, outcome: TrainOutcome) -> dict:
        return plain_state(model, network.extra["wrapped"])
