"""What a run is made of, derived from its config alone: components, data, training length.

Everything here is a pure function of the config (and the plugin registry), so any process
that reads a run's config.yaml, the driver or a worker on another machine, rebuilds the same
pieces: :class:`RunContext` bundles them for the jobs of one run.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import partial

import torch

from tickets import config as config_mod
from tickets.augment import configured_transforms
from tickets.config import RunConfig
from tickets.data import Splits, iterations_per_epoch, make_splits
from tickets.errors import TicketsError
from tickets.registry import Registry
from tickets.schedules import LrFactor, lr_factor
from tickets.store import RunStore, atomic_torch_save
from tickets.ticket import clone_state, initialize_


def stable_seed(*parts) -> int:
    """A seed derived from names and numbers, the same on every machine and Python run."""
    return zlib.crc32("/".join(str(p) for p in parts).encode())


@dataclass
class Schedule:
    """How long each network trains, and where the rewind point is (in iterations)."""

    total: int
    rewind: int
    per_epoch: int
    retrain: int = 0  # fine-tuning's iterations (prune.retrain_iterations; default total - rewind)


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
    retrain = config.prune.retrain_iterations
    retrain = total - rewind if retrain is None else config_mod.to_iterations(retrain, per_epoch,
                                                                              "prune.retrain_iterations")
    return Schedule(total, rewind, per_epoch, retrain)


@dataclass
class Components:
    """The registered objects a run uses, looked up once."""

    load_dataset: object
    make_model: object
    init: object
    make_optimizer: object
    criterion: object
    controls: dict
    schedule: object
    augmentations: dict
    retrain: object = None  # the strategy that trains each round's ticket; None: rewinding (see prune.retrain)


def resolve_components(config: RunConfig, registry: Registry) -> tuple[Components, dict]:
    """Look up every component by name; return them and their provenance for run.json."""
    wanted = {"dataset": ("datasets", config.data.dataset), "model": ("models", config.model.name),
              "initializer": ("initializers", config.model.init), "optimizer": ("optimizers", config.train.optimizer),
              "criterion": ("criteria", config.prune.criterion), "schedule": ("schedules", config.train.schedule)}
    wanted.update({f"control:{c}": ("controls", c) for c in config.prune.controls})
    wanted.update({f"augmentation:{a}": ("augmentations", a) for a in config.data.augment})
    if config.prune.retrain != "rewind":
        wanted["retrain"] = ("controls", config.prune.retrain)
    entries = {role: registry.entry(kind, name) for role, (kind, name) in wanted.items()}
    provenance = {role: {"name": e.name, "plugin": e.provider.plugin, "distribution": e.provider.distribution,
                         "version": e.provider.version} for role, e in entries.items()}
    components = Components(
        load_dataset=entries["dataset"].obj, make_model=entries["model"].obj, init=entries["initializer"].obj,
        make_optimizer=entries["optimizer"].obj, criterion=entries["criterion"].obj,
        controls={c: entries[f"control:{c}"].obj for c in config.prune.controls},
        schedule=entries["schedule"].obj,
        augmentations={a: entries[f"augmentation:{a}"].obj for a in config.data.augment},
        retrain=entries["retrain"].obj if "retrain" in entries else None,
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


@dataclass
class RunContext:
    """The config of a run and everything derived from it that its networks need."""

    config: RunConfig
    store: RunStore
    components: Components
    provenance: dict
    splits: Splits
    schedule: Schedule
    make_optimizer: object
    lr_factor: LrFactor  # the multiplier of train.lr at each iteration (schedule x warmup)
    augment: list  # the training-batch transforms, in order

    @classmethod
    def create(cls, config: RunConfig, registry: Registry, store: RunStore) -> "RunContext":
        """Resolve, load and check everything; fails (TicketsError) before anything is written."""
        config_mod.check_names(config, registry)
        components, provenance = resolve_components(config, registry)
        splits = load_splits(config, components.load_dataset)
        schedule = make_schedule(config, splits.train_x.shape[0])
        factor = lr_factor(config, components.schedule, schedule.total, schedule.per_epoch)
        augment = configured_transforms(config, components.augmentations, splits.input_shape)
        make_optimizer = optimizer_factory(config, components.make_optimizer)
        build_model(config, components.make_model, splits)  # bad model options fail here
        return cls(config, store, components, provenance, splits, schedule, make_optimizer, factor, augment)

    def new_model(self):
        return build_model(self.config, self.components.make_model, self.splits)

    def initial_state(self, seed: int):
        """theta_0 of ``seed``: the run's init.pt, drawn (seeded) and saved first if it does not exist yet."""
        path = self.store.seed_dir(seed) / "init.pt"
        if not path.exists():
            model = self.new_model()
            initialize_(model, self.components.init, torch.Generator().manual_seed(seed),
                        norm_init=self.config.model.norm_init)
            atomic_torch_save(clone_state(model), path)
        return self.store.load(path)


def fresh_state(context: RunContext, generator: torch.Generator):
    """Weights drawn anew from the run's initializer (what a control such as reinit starts from)."""
    fresh = context.new_model()
    initialize_(fresh, context.components.init, generator, norm_init=context.config.model.norm_init)
    return clone_state(fresh)
