"""The IMP driver: rounds of train -> prune -> rewind, controls, resume.

For each seed: initialize (seeded) and save theta_0; round 0 trains the dense network and
captures theta_k at the rewind point; round r scores the previous round's trained ticket
with the criterion, prunes ``fraction`` of the surviving weights, rewinds the survivors to
theta_k and trains them; each control derives its network from that ticket and trains it.
Every trained network gets its own directory and a row in results.csv. A network whose
directory holds ``done.json`` (and files that match its checksums) is never trained again, so
re-running resumes. A network whose training loss becomes non-finite stops there and gets
status ``diverged``; a diverged ticket ends its seed's chain (no mask comes from non-finite
weights), and the other seeds go on.
"""
from __future__ import annotations

import heapq
from functools import partial
from pathlib import Path

import torch

from tickets import config as config_mod
from tickets.components import RunContext, stable_seed
from tickets.config import RunConfig
from tickets.errors import TicketsError
from tickets.executors import ExecutionPlan, imp_parallelism, make_executor
from tickets.jobs import NetworkJob, remember_context
from tickets.loggers import check_loggers
from tickets.masks import Mask, prunable_names
from tickets.progress import Progress
from tickets.registry import Registry
from tickets.store import DIVERGED, RunStore
from tickets.ticket import CriterionContext, prunable_state
from tickets.training import BatchStream, check_trainer_settings


def check_environment(config: RunConfig) -> None:
    """Fail before anything is written when this machine cannot train with the config (device, loggers)."""
    t = config.train
    check_trainer_settings(t.accelerator, t.devices, t.precision)
    check_loggers(t.loggers)


def open_run(config: RunConfig, out_root: Path, verb: str = "prune") -> RunStore:
    """The run's store; an existing run must have been made with the same settings."""
    name = config.name or config_mod.default_name(config, verb)
    store = RunStore(out_root, name)
    if store.dir.exists():
        if not store.config_path.exists():
            if any(store.dir.iterdir()):
                raise TicketsError(f"{store.dir} exists and is not a tickets run; choose another --name or --out")
        else:
            stored = config_mod.from_dict(store.read_config())
            if config_mod.fingerprint(stored) != config_mod.fingerprint(config):
                old, new = config_mod.flatten(stored.to_dict()), config_mod.flatten(config.to_dict())
                diff = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in new
                        if k not in config_mod.RESUMABLE_KEYS and old.get(k) != new.get(k)]
                raise TicketsError(f"run {store.dir} was made with other settings ({'; '.join(diff)}); "
                                   "use another --name, or the same settings to resume it")
    return store


def load_run_config(run_dir: Path) -> RunConfig:
    """The config a run was made with (its config.yaml), named after its directory."""
    if not (run_dir / "config.yaml").is_file():
        raise TicketsError(f"{run_dir} is not a tickets run (no config.yaml); give a folder made by `tickets prune`")
    config = config_mod.from_dict(RunStore(run_dir.parent, run_dir.name).read_config())
    config.name = run_dir.name
    return config


def compare_run(run_dir: Path, controls: list[str], registry: Registry, *, accelerator: str | None = None,
                devices=None, loggers: list[str] | None = None, quiet: bool = False,
                execution: dict | None = None) -> RunStore:
    """Train the controls a run lacks for its saved tickets (e.g. on a GPU box); tickets are not retrained."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    config.prune.controls = list(dict.fromkeys([*config.prune.controls, *controls]))
    if accelerator is not None:
        config.train.accelerator = accelerator
    if devices is not None:
        config.train.devices = devices
    if loggers is not None:
        config.train.loggers = loggers
    for key, value in (execution or {}).items():
        setattr(config.execution, key, value)
    config_mod.validate(config)
    run = LotteryRun(config, run_dir.parent, registry, quiet=quiet, saved_tickets_only=True)
    return run.run()


class LotteryRun:
    """Runs (or resumes) iterative magnitude pruning with controls for every seed of a config.

    The run is a graph of network jobs (see :mod:`tickets.jobs`): per seed, round r's mask
    needs round r-1's trained ticket; round r's ticket and its controls need only that mask;
    seeds are independent. This driver computes each mask as soon as its ticket is trained,
    hands ready jobs to an executor (tickets first: they are the critical path), and alone
    writes results.csv and run.json.
    """

    def __init__(self, config: RunConfig, out_root: str | Path, registry: Registry, *, verb: str = "prune",
                 progress: Progress | None = None, quiet: bool = False, saved_tickets_only: bool = False):
        self.config = config
        self.verb = verb
        # compare mode: train only the controls of tickets that are already trained
        self.saved_tickets_only = saved_tickets_only
        name = config.name or config_mod.default_name(config, verb)
        self.context = RunContext.create(config, registry, RunStore(Path(out_root), name))
        check_environment(config)
        self.store = open_run(config, Path(out_root), verb)
        self.schedule = self.context.schedule
        per_seed = 1 + config.prune.rounds * (1 + len(config.prune.controls))
        self.progress = progress or Progress(per_seed * len(config.seeds), quiet=quiet)
        self.plan = ExecutionPlan.for_run(config, max_parallel=imp_parallelism(config))

    # the whole run -----------------------------------------------------------
    def run(self) -> RunStore:
        store, config, sched = self.store, self.config, self.schedule
        for seed in config.seeds:
            check_inputs(store, seed)
        executor = make_executor(self.plan, self.progress, self._label)  # fails before anything is written
        with store.running(config_mod.dump(config), verb=self.verb, components=self.context.provenance,
                           iterations=sched.total, rewind_iteration=sched.rewind,
                           iterations_per_epoch=sched.per_epoch, expected_networks=self.progress.total,
                           execution=self.plan.describe()), self.progress:
            remember_context(self.context)
            for seed in config.seeds:
                self._prepare_seed(seed)
            with executor:
                self._drive(executor)
        return store

    def _drive(self, executor) -> None:
        """Keep the executor busy with ready jobs until the graph is done."""
        ready: list = []
        for seed in self.config.seeds:
            if not self.saved_tickets_only or self.store.is_done(seed, 0, "ticket"):
                self._push(ready, self._job(seed, 0, "ticket"))
        while ready or executor.pending:
            self._submit_ready(ready, executor)
            for job, row in executor.wait():
                self._record(job, row)
                self._submit_ready(ready, executor)  # keep workers busy while the next mask is computed
                for following in self._after(job, row):
                    self._push(ready, following)

    def _submit_ready(self, ready: list, executor) -> None:
        while ready and executor.pending < executor.capacity:
            job = heapq.heappop(ready)[1]
            self.progress.start(self._label(job), self.schedule.total)
            executor.submit(job)

    def _push(self, ready: list, job: NetworkJob) -> None:
        """Queue a job, or take a finished network at once (and queue what follows it).

        A finished network whose files are damaged or missing is trained again, with a warning.
        """
        if self.store.is_done(*job.key):
            problems = self.store.damaged_files(*job.key)
            if not problems:
                self.progress.skip(self._label(job))
                for following in self._after(job, self.store.done_row(*job.key)):
                    self._push(ready, following)
                return
            self.progress.warn(f"{self._label(job)}: {', '.join(problems)}; training it again")
        heapq.heappush(ready, ((job.variant != "ticket", job.round, job.seed, job.variant), job))

    def _after(self, job: NetworkJob, row: dict) -> list[NetworkJob]:
        """The jobs a finished network unblocks: a ticket's next round (its mask computed here).

        A diverged ticket ends its seed's chain: no mask comes from non-finite weights.
        """
        seed, next_round, rounds = job.seed, job.round + 1, self.config.prune.rounds
        if job.variant != "ticket" or next_round > rounds:
            return []
        if row.get("status") == DIVERGED:
            self.progress.drop((rounds - job.round) * (1 + len(self.config.prune.controls)))
            return []
        if self.saved_tickets_only and not self.store.is_done(seed, next_round, "ticket"):
            return []
        self._mask_for_round(seed, next_round)
        return [self._job(seed, next_round, v) for v in ("ticket", *self.config.prune.controls)]

    def _record(self, job: NetworkJob, row: dict) -> None:
        self.store.rebuild_results()
        label = self._label(job)
        self.progress.finish(label, row)
        if row.get("status") == DIVERGED:
            start = 0 if job.round == 0 else self.schedule.rewind
            self.progress.warn(diverged_warning(label, start + int(row["iterations"]), job.variant == "ticket"))

    def _job(self, seed: int, round_: int, variant: str) -> NetworkJob:
        return NetworkJob(str(self.store.dir.resolve()), seed, round_, variant)

    def _label(self, job: NetworkJob) -> str:
        return job.label(self.config.prune.rounds)

    # the driver's own files: theta_0 and the masks -----------------------------
    def _prepare_seed(self, seed: int) -> None:
        """theta_0 (seeded) and the dense mask of round 0."""
        self.context.initial_state(seed)
        if not (self.store.round_dir(seed, 0) / "mask.pt").exists():
            Mask.ones_for(self.context.new_model()).save(self.store.round_dir(seed, 0) / "mask.pt")

    def _mask_for_round(self, seed: int, round_: int) -> Mask:
        """Round r's mask: the criterion scores round r-1's trained ticket; prunes what remains."""
        store, prune = self.store, self.config.prune
        path = store.round_dir(seed, round_) / "mask.pt"
        if path.exists():
            return Mask(store.load(path))
        model = self.context.new_model()
        names = prunable_names(model)
        final = store.load(store.network_dir(seed, round_ - 1, "ticket") / "final.pt")
        theta0 = store.load(store.seed_dir(seed) / "init.pt")
        rewind_state = store.load(store.seed_dir(seed) / "rewind.pt")
        previous_mask = Mask(store.load(store.round_dir(seed, round_ - 1) / "mask.pt"))
        model.load_state_dict(final)
        ctx = CriterionContext(
            init=prunable_state(theta0, names), rewind=prunable_state(rewind_state, names),
            final=prunable_state(final, names), mask=previous_mask, model=model,
            batches=partial(self._training_batches, seed),
            generator=torch.Generator().manual_seed(stable_seed(seed, round_, "criterion")),
            fraction=prune.fraction, layer_fractions=dict(prune.layer_fractions), scope=prune.scope,
            criterion_batches=prune.criterion_batches,
        )
        scores = self.context.components.criterion(ctx)
        mask = previous_mask.prune(scores, prune.fraction, prune.layer_fractions, prune.scope, ctx.generator)
        mask.save(path)
        return mask

    def _training_batches(self, seed: int, n: int) -> list:
        splits = self.context.splits
        return list(BatchStream(splits.train_x, splits.train_y, self.config.train.batch_size, seed, 0, n))


def check_inputs(store: RunStore, seed: int) -> None:
    """A TicketsError (one line: the file and the fix) when a shared file of ``seed`` differs from its record."""
    problems = store.damaged_inputs(seed)
    if problems:
        name, problem = problems[0]
        more = f" ({len(problems) - 1} more: see `tickets check {store.dir}`)" if len(problems) > 1 else ""
        raise TicketsError(store.damage_message(name, problem) + more)


def diverged_warning(label: str, iteration: int, ends_chain: bool) -> str:
    """The warning line for a network whose training loss became non-finite."""
    then = "; its seed's later rounds are not trained" if ends_chain else ""
    return (f"{label} diverged: the training loss was not finite at iteration {iteration}, so training stopped "
            f"(status diverged in results.csv){then}; a lower --lr may help")

