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

import zlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from tickets import config as config_mod
from tickets.config import RunConfig
from tickets.data import Splits, make_splits
from tickets.errors import TicketsError
from tickets.loggers import check_loggers, close_loggers, network_loggers
from tickets.masks import Mask, prunable_names
from tickets.progress import Progress
from tickets.registry import Registry
from tickets.store import DIVERGED, RunStore, atomic_torch_save, write_csv_rows
from tickets.ticket import ControlContext, CriterionContext, State, Ticket, clone_state, initialize_, prunable_state
from tickets.training import (METRIC_COLUMNS, BatchStream, TrainOutcome, check_trainer_settings,
                              iterations_per_epoch, train_network)


def stable_seed(*parts) -> int:
    """A seed derived from names and numbers, the same on every machine and Python run."""
    return zlib.crc32("/".join(str(p) for p in parts).encode())


@dataclass
class Schedule:
    """How long each network trains, and where the rewind point is (in iterations)."""

    total: int
    rewind: int
    per_epoch: int


def make_schedule(config: RunConfig, n_train: int) -> Schedule:
    """Iterations of training and the rewind iteration; a rewind point past training is an error."""
    per_epoch = iterations_per_epoch(n_train, config.train.batch_size)
    total = config.train.iterations or max(1, round(config.train.epochs * per_epoch))
    amount, unit = config_mod.parse_rewind(config.prune.rewind)
    rewind = amount * per_epoch if unit == "ep" else amount
    if rewind >= total:
        raise TicketsError(
            f"rewind point {config.prune.rewind!r} (iteration {rewind}) is not before the end of training "
            f"(iteration {total}, {per_epoch} per epoch); use a smaller --rewind or train longer"
        )
    return Schedule(total, rewind, per_epoch)


@dataclass
class Components:
    """The registered objects a run uses, looked up once."""

    load_dataset: object
    make_model: object
    init: object
    make_optimizer: object
    criterion: object
    controls: dict


def resolve_components(config: RunConfig, registry: Registry) -> tuple[Components, dict]:
    """Look up every component by name; return them and their provenance for run.json."""
    wanted = {"dataset": ("datasets", config.data.dataset), "model": ("models", config.model.name),
              "initializer": ("initializers", config.model.init), "optimizer": ("optimizers", config.train.optimizer),
              "criterion": ("criteria", config.prune.criterion)}
    wanted.update({f"control:{c}": ("controls", c) for c in config.prune.controls})
    entries = {role: registry.entry(kind, name) for role, (kind, name) in wanted.items()}
    provenance = {role: {"name": e.name, "plugin": e.provider.plugin, "distribution": e.provider.distribution,
                         "version": e.provider.version} for role, e in entries.items()}
    components = Components(
        load_dataset=entries["dataset"].obj, make_model=entries["model"].obj, init=entries["initializer"].obj,
        make_optimizer=entries["optimizer"].obj, criterion=entries["criterion"].obj,
        controls={c: entries[f"control:{c}"].obj for c in config.prune.controls},
    )
    return components, provenance


def load_splits(config: RunConfig, load_dataset) -> Splits:
    data = load_dataset(config.data.data_dir, config.data.download)
    return make_splits(data, config.data.val_size)


def build_model(config: RunConfig, make_model, splits: Splits):
    try:
        return make_model(splits.num_classes, splits.input_shape, **config.model.options)
    except TypeError as error:
        raise TicketsError(f"model {config.model.name!r} rejected model.options {config.model.options!r} ({error}); "
                           "fix model.options") from None


def optimizer_factory(config: RunConfig, make_optimizer):
    """params -> optimizer; bad optimizer options fail early with the option named."""
    factory = partial(make_optimizer, lr=config.train.lr, **config.train.optimizer_options)
    try:
        factory([torch.nn.Parameter(torch.zeros(1))])
    except (TypeError, ValueError) as error:
        raise TicketsError(f"optimizer {config.train.optimizer!r} rejected its options "
                           f"{config.train.optimizer_options!r} ({error}); fix train.optimizer_options") from None
    return factory


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


def compare_run(run_dir: Path, controls: list[str], registry: Registry, *, accelerator: str | None = None,
                devices=None, loggers: list[str] | None = None, quiet: bool = False) -> RunStore:
    """Train the controls a run lacks for its saved tickets (e.g. on a GPU box); tickets are not retrained."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise TicketsError(f"{run_dir} is not a tickets run (no config.yaml); give a folder made by `tickets prune`")
    config = config_mod.from_dict(RunStore(run_dir.parent, run_dir.name).read_config())
    config.name = run_dir.name
    config.prune.controls = list(dict.fromkeys([*config.prune.controls, *controls]))
    if accelerator is not None:
        config.train.accelerator = accelerator
    if devices is not None:
        config.train.devices = devices
    if loggers is not None:
        config.train.loggers = loggers
    config_mod.validate(config)
    run = LotteryRun(config, run_dir.parent, registry, quiet=quiet, saved_tickets_only=True)
    return run.run()


class LotteryRun:
    """Runs (or resumes) iterative magnitude pruning with controls for every seed of a config."""

    def __init__(self, config: RunConfig, out_root: str | Path, registry: Registry, *, verb: str = "prune",
                 progress: Progress | None = None, quiet: bool = False, saved_tickets_only: bool = False):
        self.config = config
        self.verb = verb
        # compare mode: train only the controls of tickets that are already trained
        self.saved_tickets_only = saved_tickets_only
        config_mod.check_names(config, registry)
        self.components, self.provenance = resolve_components(config, registry)
        self.splits = load_splits(config, self.components.load_dataset)
        self.schedule = make_schedule(config, self.splits.train_x.shape[0])
        self.make_optimizer = optimizer_factory(config, self.components.make_optimizer)
        build_model(config, self.components.make_model, self.splits)  # fail on bad options before writing
        check_environment(config)
        self.store = open_run(config, Path(out_root), verb)
        per_seed = 1 + config.prune.rounds * (1 + len(config.prune.controls))
        self.progress = progress or Progress(per_seed * len(config.seeds), quiet=quiet)

    # the whole run -----------------------------------------------------------
    def run(self) -> RunStore:
        store, config, sched = self.store, self.config, self.schedule
        for seed in config.seeds:
            check_inputs(store, seed)
        with store.running(config_mod.dump(config), verb=self.verb, components=self.provenance,
                           iterations=sched.total, rewind_iteration=sched.rewind,
                           iterations_per_epoch=sched.per_epoch, expected_networks=self.progress.total), self.progress:
            for seed in config.seeds:
                self.run_seed(seed)
        return store

    # one seed ----------------------------------------------------------------
    def run_seed(self, seed: int) -> None:
        config, store, sched = self.config, self.store, self.schedule
        if self.saved_tickets_only and not store.is_done(seed, 0, "ticket"):
            return
        model = build_model(config, self.components.make_model, self.splits)
        names = prunable_names(model)
        theta0 = self._initial_state(seed, model)
        dense = Ticket(Mask.ones_for(model), theta0, 0)
        if not (store.round_dir(seed, 0) / "mask.pt").exists():
            dense.mask.save(store.round_dir(seed, 0) / "mask.pt")
        capture = sched.rewind if sched.rewind > 0 else None
        final = self._train_or_load(model, seed, 0, "ticket", dense, capture_at=capture)
        if final is None:  # the dense network diverged: there is nothing to prune
            self.progress.drop(config.prune.rounds * (1 + len(self.components.controls)))
            return
        rewind_state = store.load(store.seed_dir(seed) / "rewind.pt")

        previous_mask = dense.mask
        for round_ in range(1, config.prune.rounds + 1):
            if self.saved_tickets_only and not store.is_done(seed, round_, "ticket"):
                break
            mask = self._mask_for_round(seed, round_, model, names, theta0, rewind_state, final, previous_mask)
            ticket = Ticket(mask, rewind_state, sched.rewind)
            final = self._train_or_load(model, seed, round_, "ticket", ticket)
            for control_name, control in self.components.controls.items():
                if self._already_done(seed, round_, control_name):
                    continue
                ctx = ControlContext(
                    seed=seed, round=round_,
                    generator=torch.Generator().manual_seed(stable_seed(seed, round_, control_name)),
                    init=theta0, rewind=rewind_state, prunable=names,
                    initialize=partial(self._fresh_state, model),
                )
                self._train(model, seed, round_, control_name, control(ticket, ctx), round_mask=mask)
            if final is None:  # the ticket diverged: no next mask from non-finite weights
                self.progress.drop((config.prune.rounds - round_) * (1 + len(self.components.controls)))
                break
            previous_mask = mask

    def _initial_state(self, seed: int, model) -> State:
        path = self.store.seed_dir(seed) / "init.pt"
        if path.exists():
            return self.store.load(path)
        initialize_(model, self.components.init, torch.Generator().manual_seed(seed))
        state = clone_state(model)
        atomic_torch_save(state, path)
        return state

    def _fresh_state(self, model, generator: torch.Generator) -> State:
        """Weights drawn anew from the run's initializer (the model itself is left as it was)."""
        fresh = build_model(self.config, self.components.make_model, self.splits)
        initialize_(fresh, self.components.init, generator)
        return clone_state(fresh)

    def _mask_for_round(self, seed, round_, model, names, theta0, rewind_state, final, previous_mask) -> Mask:
        path = self.store.round_dir(seed, round_) / "mask.pt"
        if path.exists():
            return Mask(self.store.load(path))
        model.load_state_dict(final)
        prune = self.config.prune
        ctx = CriterionContext(
            init=prunable_state(theta0, names), rewind=prunable_state(rewind_state, names),
            final=prunable_state(final, names), mask=previous_mask, model=model,
            batches=partial(self._training_batches, seed),
            generator=torch.Generator().manual_seed(stable_seed(seed, round_, "criterion")),
            fraction=prune.fraction, layer_fractions=dict(prune.layer_fractions), scope=prune.scope,
            criterion_batches=prune.criterion_batches,
        )
        scores = self.components.criterion(ctx)
        mask = previous_mask.prune(scores, prune.fraction, prune.layer_fractions, prune.scope)
        mask.save(path)
        return mask

    def _training_batches(self, seed: int, n: int) -> list:
        stream = BatchStream(self.splits.train_x, self.splits.train_y, self.config.train.batch_size, seed, 0, n)
        return list(stream)

    # one network -------------------------------------------------------------
    def _label(self, seed: int, round_: int, variant: str) -> str:
        return f"seed {seed} | round {round_}/{self.config.prune.rounds} | {variant}"

    def _already_done(self, seed: int, round_: int, variant: str) -> bool:
        """True for a finished network whose files are intact; a damaged one is trained again, with a warning."""
        if not self.store.is_done(seed, round_, variant):
            return False
        label = self._label(seed, round_, variant)
        problems = self.store.damaged_files(seed, round_, variant)
        if problems:
            self.progress.warn(f"{label}: {', '.join(problems)}; training it again")
            return False
        self.progress.skip(label)
        return True

    def _train_or_load(self, model, seed: int, round_: int, variant: str, ticket: Ticket,
                       capture_at: int | None = None) -> State | None:
        """Train one network unless it is finished; return its final weights, or None if it diverged."""
        if not self._already_done(seed, round_, variant):
            return self._train(model, seed, round_, variant, ticket, capture_at=capture_at)
        if self.store.done_row(seed, round_, variant)["status"] == DIVERGED:
            return None
        return self.store.load(self.store.network_dir(seed, round_, variant) / "final.pt")

    def _train(self, model, seed: int, round_: int, variant: str, ticket: Ticket, capture_at: int | None = None,
               round_mask: Mask | None = None) -> State | None:
        """Train one network and record it; return its final weights, or None if it diverged.

        ``round_mask`` is the round's mask: a network trained under another mask keeps its own mask.pt.
        """
        store = self.store
        net_dir = store.network_dir(seed, round_, variant)
        label = self._label(seed, round_, variant)
        torch.manual_seed(stable_seed(seed, round_, variant))
        self.progress.start(label, self.schedule.total)
        t = self.config.train
        loggers = network_loggers(t.loggers, store.dir, store.name, seed, round_, variant,
                                  config_mod.flatten(self.config.to_dict())) if t.loggers else []
        try:
            outcome = train_network(
                model, ticket, self.make_optimizer, self.splits, end_iteration=self.schedule.total,
                eval_every=t.eval_every, batch_size=t.batch_size, data_seed=seed, accelerator=t.accelerator,
                devices=t.devices, precision=t.precision, capture_at=capture_at,
                on_eval=partial(self.progress.update, label), loggers=loggers,
            )
        finally:
            close_loggers(loggers)
        rewind_path = store.seed_dir(seed) / "rewind.pt"
        if round_ == 0 and variant == "ticket" and outcome.diverged_at is None and not rewind_path.exists():
            atomic_torch_save(outcome.captured_state or ticket.state, rewind_path)
        if round_mask is not None and ticket.mask != round_mask:
            ticket.mask.save(net_dir / "mask.pt")
        row = self._row(seed, round_, variant, ticket.mask, outcome)
        write_csv_rows(net_dir / "metrics.csv", METRIC_COLUMNS, outcome.metrics)
        atomic_torch_save(outcome.final_state, net_dir / "final.pt")
        inputs = [p for p in (store.seed_dir(seed) / "init.pt", rewind_path, store.round_dir(seed, round_) / "mask.pt")
                  if p.exists()]
        store.finish_network(seed, round_, variant, row, inputs)
        self.progress.finish(label, row)
        if outcome.diverged_at is not None:
            self.progress.warn(diverged_warning(label, outcome.diverged_at, variant == "ticket"))
            return None
        return outcome.final_state

    def _row(self, seed: int, round_: int, variant: str, mask: Mask, outcome: TrainOutcome) -> dict:
        return {
            "run": self.store.name, "seed": seed, "round": round_, "variant": variant,
            "criterion": self.config.prune.criterion, "weights_remaining": round(mask.density(), 6),
            "params_remaining": mask.count(), **{k: _rounded(v) for k, v in outcome.fields.items()},
            "iterations": outcome.iterations, "train_seconds": round(outcome.seconds, 3), "status": outcome.status,
        }


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


def _rounded(value):
    return round(value, 6) if isinstance(value, float) else value
