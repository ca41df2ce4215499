"""Transferred tickets (Morcos et al. 2019): a source run's masks over its starting weights, trained elsewhere.

``tickets transfer RUN`` makes a run with prune's layout whose round r trains RUN's round-r
mask over RUN's theta_0 (theta_k when RUN rewinds to k) on other settings: another dataset,
optimizer or learning rate. Its controls (reinit and random_prune by default) are derived and
trained on the target too. The source is only read: its files are copied into the new run
(``prepare``), and run.json records each one's sha256, so a source changed afterwards stops the
transfer from resuming. When the target has another number of classes, the output layer starts
from fresh weights (the run's initializer) and trains dense; another input shape is refused.
A source that fine-tunes (``prune.retrain`` finetune or lr_rewind) has its retraining replayed on
the target: round r's ticket starts from the transfer's own round r-1 trained ticket under the
source's round-r mask, as finetune and lr_rewind controls do.

It is IMP with masks that come from elsewhere, so it lives beside IMP and trains ImpJobs.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from tickets import config as config_mod
from tickets.builtin.controls import FROM_RUN_FILES
from tickets.components import RunContext, fresh_state, stable_seed
from tickets.config import RunConfig
from tickets.engine.lifecycle import check_environment, load_run_config, open_run
from tickets.errors import TicketsError
from tickets.executors.run import run_graph
from tickets.experiments.imp.graph import ImpGraph
from tickets.experiments.imp.job import ImpJob
from tickets.masks import prunable_names
from tickets.registry import Registry
from tickets.store import DIVERGED, RunStore, atomic_torch_save, sha256_file

# What a transfer may change: anything but the architecture (and the pruning that made the masks).
FIXED_KEYS = ("model.name", "model.options", "model.init", "model.norm_init", "prune.rounds", "prune.fraction",
              "prune.criterion", "prune.scope", "prune.layer_fractions", "prune.rewind", "prune.retrain",
              "prune.retrain_iterations", "prune.structure", "seeds")
DEFAULT_CONTROLS = ["reinit", "random_prune"]


def transfer_config(source_dir: Path, changes: dict, controls: list[str] | None = None,
                    name: str | None = None) -> RunConfig:
    """The target's config: the source run's, with ``changes`` (dotted config keys -> values) applied."""
    source = load_run_config(source_dir)
    data = source.to_dict()
    before = config_mod.flatten(data)
    fixed = [k for k in changes if k in FIXED_KEYS or k.split(".")[0] == "supermask"]
    if fixed:
        raise TicketsError(f"a transfer keeps the source's architecture and masks, so it cannot change "
                           f"{', '.join(fixed)}; change the data or training settings (--dataset, --optimizer, "
                           f"--lr, --set train.*), or prune anew")
    target = config_mod.from_dict(data)
    config_mod.apply_dotted(target, changes, "transfer")
    target.prune.controls = list(DEFAULT_CONTROLS if controls is None else controls)
    changed = {k: v for k, v in config_mod.flatten(target.to_dict()).items()
               if k not in config_mod.RESUMABLE_KEYS and before.get(k) != v}
    if not changed:
        raise TicketsError("a transfer needs a change of settings: give --dataset, --optimizer, --lr or --set")
    target.name = name or f"{Path(source_dir).name}-to-{_slug(changed)}"
    config_mod.validate(target)
    return target


def _slug(changed: dict) -> str:
    words = [f"{k.split('.')[-1]}{v}" if k.endswith(("lr", "epochs", "batch_size")) else str(v)
             for k, v in sorted(changed.items())]
    return re.sub(r"[^A-Za-z0-9_.]+", "-", "-".join(words)).strip("-")[:60]


def source_files(source_dir: Path, config: RunConfig) -> dict[str, str]:
    """Every source file a transfer uses (relative path -> sha256): each seed's init.pt, rewind.pt, masks."""
    files = {}
    for seed in config.seeds:
        seed_dir = Path(source_dir) / f"seed_{seed}"
        for path in [seed_dir / "init.pt", seed_dir / "rewind.pt", *sorted(seed_dir.glob("round_*/mask.pt"))]:
            if path.is_file():
                files[path.relative_to(source_dir).as_posix()] = sha256_file(path)
    if not any(name.endswith("rewind.pt") for name in files):
        raise TicketsError(f"{source_dir} has no trained dense network yet (no rewind.pt); "
                           "finish it with `tickets prune` first")
    return files


class TransferGraph(ImpGraph):
    """Every seed's transferred rounds (IMP's graph, with the jobs, priorities and bookkeeping of prune, but
    no masks to compute): a network that starts from rewound or fresh weights needs only files copied from
    the source and starts at once; one that starts from round r-1's trained ticket waits for it."""

    @property
    def chained(self) -> bool:
        """A diverged ticket ends its chain only when later tickets start from it (fine-tuning sources)."""
        return self.waits("ticket")

    def __init__(self, context: RunContext, source_dir: Path, files: dict[str, str], source_context: RunContext):
        super().__init__(context)
        self.source_dir, self.files, self.source_context = Path(source_dir), files, source_context
        self.rounds = {seed: sorted(int(name.split("/")[1].split("_")[1]) for name in files
                                    if name.startswith(f"seed_{seed}/round_")) for seed in self.config.seeds}

    def expected(self) -> int:
        return sum(1 + sum(1 for r in rounds if r > 0) * (1 + len(self.config.prune.controls))
                   for rounds in self.rounds.values())

    def prepare(self) -> None:
        """Copy the source's files into the run (the output layer made afresh when the classes differ)."""
        target_model = self.context.new_model()
        shapes = {k: v.shape for k, v in target_model.state_dict().items()}
        prunable = set(prunable_names(target_model))
        for seed, rounds in self.rounds.items():
            fresh = None
            for name in [f"seed_{seed}/init.pt", f"seed_{seed}/rewind.pt",
                         *(f"seed_{seed}/round_{r}/mask.pt" for r in rounds)]:
                target = self.store.dir / name
                if target.exists():
                    continue
                state = torch.load(self.source_dir / name, map_location="cpu", weights_only=True)
                differs = [k for k, v in state.items() if k in shapes and v.shape != shapes[k]]
                if differs and fresh is None:
                    fresh = fresh_state(self.context, torch.Generator().manual_seed(stable_seed(seed, "transfer")))
                for key in differs:  # the output layer of another number of classes
                    state[key] = torch.ones(shapes[key], dtype=torch.bool) if name.endswith("mask.pt") \
                        else fresh[key].clone()
                    if name.endswith("mask.pt") and key not in prunable:
                        del state[key]
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_torch_save(state, target)

    def waits(self, variant: str) -> bool:
        """Whether round r's ``variant`` starts from round r-1's trained ticket (trained here, on the target):
        a fine-tuning or lr-rewinding ticket (``prune.retrain``), finetune, lr_rewind, or a plugin's control."""
        if variant == "ticket":
            return self.config.prune.retrain != "rewind"
        return variant not in FROM_RUN_FILES

    def roots(self):
        return [self.job(seed, r, v) for seed, rounds in self.rounds.items() for r in rounds
                for v in (("ticket",) if r == 0 else ("ticket", *self.config.prune.controls))
                if r == 0 or not self.waits(v)]

    def after(self, job: ImpJob, row: dict) -> list:
        """A ticket unblocks the next round's networks that start from it; every mask came from the source."""
        rounds, next_round = self.rounds[job.seed], job.round + 1
        if job.variant != "ticket" or next_round not in rounds:
            return []
        waiting = [v for v in ("ticket", *self.config.prune.controls) if self.waits(v)]
        if row.get("status") == DIVERGED:  # nothing can start from a diverged network
            later = [r for r in rounds if r >= next_round] if self.waits("ticket") else [next_round]
            self.progress.drop(len(later) * len(waiting))
            return []
        return [self.job(job.seed, next_round, v) for v in waiting]


def check_shapes(source: RunContext, target: RunContext) -> None:
    """Another input shape cannot take the source's weights: one line naming both."""
    a, b = tuple(source.splits.input_shape), tuple(target.splits.input_shape)
    if a != b:
        shape = lambda s: "x".join(map(str, s))  # noqa: E731
        raise TicketsError(f"the source run's inputs are {shape(a)} ({source.config.data.dataset}) but "
                           f"{target.config.data.dataset}'s are {shape(b)}: its tickets cannot take them; "
                           "transfer to a dataset of the same input shape")


def check_source_unchanged(store: RunStore, files: dict[str, str]) -> None:
    """A resumed transfer must read the same source files it started from."""
    recorded = store.read_run_json().get("source_files") or {}
    changed = [name for name, digest in recorded.items() if files.get(name) != digest]
    if changed:
        raise TicketsError(f"source file {changed[0]} changed since this transfer started "
                           f"({len(changed)} changed); transfer again under another --name")


def run_transfer(source_dir: str | Path, config: RunConfig, out_root: str | Path, registry: Registry, *,
                 quiet: bool = False) -> RunStore:
    """Train the source run's tickets (and the controls) on ``config``'s settings; see the module docstring."""
    source_dir = Path(source_dir).resolve()
    source_config = load_run_config(source_dir)
    source_context = RunContext.create(source_config, registry, RunStore(source_dir.parent, source_dir.name))
    context = RunContext.create(config, registry, RunStore(Path(out_root), config.name))
    check_shapes(source_context, context)
    check_environment(config)
    files = source_files(source_dir, source_config)
    store = open_run(config, Path(out_root), "transfer")
    if store.dir.exists():
        check_source_unchanged(store, files)
    sched = context.schedule
    return run_graph(TransferGraph(context, source_dir, files, source_context), context, "transfer",
                     max_parallel=config_mod.imp_parallelism(config), quiet=quiet, components=context.provenance,
                     iterations=sched.total, rewind_iteration=sched.rewind, iterations_per_epoch=sched.per_epoch,
                     source=str(source_dir), source_files=files)
