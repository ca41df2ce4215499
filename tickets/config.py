"""The run configuration: dataclasses, YAML loading, flag and ``--set`` overrides, validation.

A config is a YAML mapping with the sections of :class:`RunConfig`. Values are checked
against the dataclass field types; unknown keys and wrong types are errors naming the key.
Names of components (model, dataset, initializer, optimizer, criterion, controls, schedule,
augmentations) are
checked against the plugin registry by :func:`check_names`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tickets.errors import TicketsError

# Where a pruning fraction applies: to each layer, or to all prunable weights ranked together.
SCOPES = ("layerwise", "global")
RETRAIN_STRATEGIES = ("rewind", "finetune", "lr_rewind")
STRUCTURES = ("weights", "neurons", "channels")  # prune.structure  # how IMP trains each round's ticket (prune.retrain)
# How the scale (gamma) of normalization layers starts: default (the layer's own, 1) or uniform
# (U[0, 1), OpenLTH's batchnorm_init='uniform'); see tickets.ticket.initialize_.
NORM_INITS = ("default", "uniform")


@dataclass
class DataConfig:
    dataset: str = "digits"
    data_dir: typing.Optional[str] = None
    download: bool = True
    val_size: int = 500
    augment: list = field(default_factory=list)  # training-batch augmentations in order, e.g. [crop, flip]
    augment_options: dict = field(default_factory=dict)  # name -> options, e.g. {crop: {padding: 4}}


@dataclass
class ModelConfig:
    name: str = "lenet_300_100"
    init: str = "kaiming_normal"
    options: dict = field(default_factory=dict)
    norm_init: str = "default"  # normalization layers' scale: default (1) or uniform (U[0, 1), OpenLTH)


@dataclass
class TrainConfig:
    optimizer: str = "adam"
    lr: float = 1.2e-3
    optimizer_options: dict = field(default_factory=dict)
    batch_size: int = 60
    epochs: float = 5.0
    iterations: typing.Optional[int] = None  # when set, overrides epochs
    eval_every: int = 20
    accelerator: str = "cpu"
    devices: typing.Any = 1
    precision: str = "32-true"
    schedule: str = "constant"  # learning-rate schedule (a registered name)
    schedule_options: dict = field(default_factory=dict)
    warmup: str = "0"  # linear warmup length: 0, 500it or 2ep
    # iterations between mid-network checkpoints; null: one whenever 5 minutes of training passed
    checkpoint_every: typing.Optional[int] = None
    loggers: list = field(default_factory=list)  # Lightning loggers for the curves: tensorboard, csv, mlflow, wandb


@dataclass
class PruneConfig:
    rounds: int = 10
    fraction: float = 0.2
    criterion: str = "magnitude"
    scope: str = "layerwise"
    layer_fractions: dict = field(default_factory=lambda: {"output.*": 0.1})
    rewind: str = "0"
    controls: list = field(default_factory=lambda: ["reinit", "random_prune"])
    criterion_batches: int = 4
    # How each round's ticket is trained: rewind (weights to theta_k, train k to T), finetune (the
    # previous round's trained weights, retrain_iterations at the final learning rate) or
    # lr_rewind (the previous round's trained weights, learning rates replayed from k to T).
    # retrain_iterations: finetune's length ("500it", "2ep"); none: T - k, rewinding's budget.
    retrain: str = "rewind"
    retrain_iterations: typing.Any = None
    # What one unit of pruning is: single weights, or whole neurons (rows of Linear weights) or
    # channels (conv filters, and Linear neurons) with what reads them (see tickets.structure).
    structure: str = "weights"


@dataclass
class SupermaskConfig:
    # `tickets supermask`: the frozen weights are drawn by model.init (e.g. signed_constant);
    # method bernoulli or edge_popup; density: edge_popup's kept fraction per layer, bernoulli's
    # initial keep probability; score_init: the initializer that draws the scores.
    method: str = "edge_popup"
    density: float = 0.5
    score_init: str = "kaiming_uniform"


SPARSE_DISTRIBUTIONS = ("uniform", "erk", "like")  # sparse.distribution (like: --like RUN's per-layer counts)
DROP_SCHEDULES = ("cosine", "constant")  # sparse.drop_schedule


@dataclass
class SparseConfig:
    # `tickets sparse-train`: networks trained sparse from theta_0 at a fixed density. methods:
    # static (a random mask, never updated) or registered mask updates (set, rigl); density: the
    # fraction of prunable weights active, spread over the layers by distribution (uniform, erk,
    # or like: the per-layer counts of `like`'s rounds); every update_every iterations a rule
    # drops and regrows drop_fraction (alpha, zeta) of each layer's active weights, decayed by
    # drop_schedule, until update_end (a fraction of training); null: the rule's own (rigl:
    # cosine to 75%, set: constant to the end). like: a prune run whose rounds' densities, seeds
    # and settings are trained (tickets sparse-train --like RUN); rounds: which of them (null: all).
    methods: list = field(default_factory=lambda: ["rigl"])
    density: float = 0.1
    distribution: str = "uniform"
    update_every: int = 100
    drop_fraction: float = 0.3
    drop_schedule: typing.Optional[str] = None
    update_end: typing.Optional[float] = None
    like: typing.Optional[str] = None
    rounds: typing.Optional[list] = None


@dataclass
class ExecutionConfig:
    # How networks are run; never changes results (see RESUMABLE_KEYS). workers: "auto" (one per
    # CPU core, or per GPU times workers_per_gpu when training on GPUs) or a count (1: in this
    # process); executor: local (worker processes on this machine) or ray; address: the Ray
    # cluster (none: start a local Ray instance; auto; ray://host:port).
    workers: typing.Any = "auto"
    workers_per_gpu: int = 1
    executor: str = "local"
    address: typing.Optional[str] = None
    cpus_per_network: float = 1.0
    gpus_per_network: typing.Optional[float] = None


@dataclass
class ReportConfig:
    # The report only (never changes results, see RESUMABLE_KEYS): the study-level test of tickets
    # against each control pools the rounds with at most this fraction of weights remaining
    # (0.215: Frankle & Carbin's sparse regime, about 21% and fewer).
    max_weights_remaining: float = 0.215


@dataclass
class RunConfig:
    name: typing.Optional[str] = None
    seeds: list = field(default_factory=lambda: [0])
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    supermask: SupermaskConfig = field(default_factory=SupermaskConfig)
    sparse: SparseConfig = field(default_factory=SparseConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "prune": PruneConfig,
            "supermask": SupermaskConfig, "sparse": SparseConfig, "execution": ExecutionConfig,
            "report": ReportConfig}

# Settings that may change between invocations of the same run: changing them extends the
# run (more rounds, seeds or controls) or moves it to other hardware, never changes results.
RESUMABLE_KEYS = ("name", "seeds", "prune.rounds", "prune.controls", "sparse.methods", "sparse.rounds",
                  "train.accelerator", "train.devices", "train.checkpoint_every", "train.loggers",
                  "report.max_weights_remaining",
                  *(f"execution.{f.name}" for f in dataclasses.fields(ExecutionConfig)))

CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # a link to the repository's configs/ (shipped in the wheel)


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(key: str, value: Any, tp) -> Any:
    """Check ``value`` against the annotated type ``tp``; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if tp is typing.Any:
        return value
    if origin is typing.Union:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(key, value, inner)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:  # YAML 1.1 reads 1e-3 (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if tp in (int, float) and isinstance(value, bool) or not isinstance(value, tp):
        raise TicketsError(f"config key {key} must be {_type_name(tp)}, got {value!r}")
    return value


def _apply(config: RunConfig, data: dict, source: str) -> None:
    if not isinstance(data, dict):
        raise TicketsError(f"{source}: the config must be a YAML mapping of sections, got {type(data).__name__}")
    top = typing.get_type_hints(RunConfig)
    for key, value in data.items():
        if key not in top:
            raise TicketsError(f"{source}: unknown config key {key!r}; known keys: {', '.join(top)}")
        if key in SECTIONS:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise TicketsError(f"{source}: config section {key!r} must be a mapping, got {value!r}")
            section = getattr(config, key)
            fields = typing.get_type_hints(type(section))
            for sub, subvalue in value.items():
                if sub not in fields:
                    raise TicketsError(
                        f"{source}: unknown config key {key}.{sub}; known keys of {key}: {', '.join(fields)}"
                    )
                setattr(section, sub, _coerce(f"{key}.{sub}", subvalue, fields[sub]))
        else:
            setattr(config, key, _coerce(key, value, top[key]))


def resolve_config_path(path: str) -> Path:
    """A config path as given, or a name in the shipped configs/ folder (``lenet_paper``)."""
    candidates = [Path(path), CONFIG_DIR / path, CONFIG_DIR / f"{path}.yaml"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    shipped = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")) if CONFIG_DIR.is_dir() else []
    raise TicketsError(f"config file {path!r} not found; give a path to a YAML file"
                       + (f" or one of the shipped configs: {', '.join(shipped)}" if shipped else ""))


def load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        first = " ".join(str(error).split())
        raise TicketsError(f"{path}: not valid YAML ({first}); fix the file") from None
    return data or {}


def parse_set(assignment: str) -> tuple[str, Any]:
    """``section.key=value`` -> (dotted key, YAML-parsed value)."""
    if "=" not in assignment:
        raise TicketsError(f"--set {assignment!r}: expected section.key=value, e.g. --set train.eval_every=50")
    key, raw = assignment.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def nest(dotted: dict[str, Any]) -> dict:
    """{"train.lr": 0.1} -> {"train": {"lr": 0.1}}."""
    out: dict = {}
    for key, value in dotted.items():
        parts = key.split(".")
        if len(parts) > 2:
            raise TicketsError(f"config key {key!r} is too deep; use section.key=value")
        if len(parts) == 2:
            out.setdefault(parts[0], {})[parts[1]] = value
        else:
            out[parts[0]] = value
    return out


def apply_dotted(config: RunConfig, dotted: dict[str, Any], source: str = "--set") -> None:
    """Set dotted config keys (``{"train.lr": 0.1}``) on ``config``, typed as the dataclasses say."""
    _apply(config, nest(dotted), source)


# A newcomer's `tickets prune` runs 3 seeds, so that its report can test tickets against controls.
COMMAND_DEFAULTS = {"prune": {"seeds": [0, 1, 2]}}


def config_defaults(verb: str) -> dict:
    """A command's own defaults, applied over the dataclasses' before the config file."""
    return COMMAND_DEFAULTS.get(verb, {})


def build_config(config_path: str | None = None, overrides: dict[str, Any] | None = None,
                 sets: list[str] | dict[str, Any] = (), defaults: dict[str, Any] | None = None) -> RunConfig:
    """Defaults (the dataclasses', then ``defaults``: a command's own, dotted keys), the YAML file,
    flag overrides (dotted keys), then ``--set`` items (``key=value`` strings, or a dict of dotted keys)."""
    config = RunConfig()
    _apply(config, nest(defaults or {}), "defaults")
    if config_path:
        path = resolve_config_path(config_path)
        _apply(config, load_yaml(path), str(path))
    _apply(config, nest({k: v for k, v in (overrides or {}).items() if v is not None}), "flags")
    assignments = dict(sets) if isinstance(sets, dict) else dict(parse_set(s) for s in sets)
    _apply(config, nest(assignments), "--set")
    validate(config)
    return config


POINT_PATTERN = re.compile(r"^\s*(\d+)\s*(it|ep)?\s*$")


def parse_point(point, what: str = "point") -> tuple[int, str]:
    """A point of training, ``"0"``, ``"500it"``, ``"2ep"`` -> (amount, unit) with unit ``it`` or ``ep``.

    ``what`` names the setting in the error message (``rewind``, ``train.warmup``, ...).
    """
    match = POINT_PATTERN.match(str(point))
    if not match:
        raise TicketsError(f"{what} {point!r} is not understood; use 0, 500it (iterations) or 2ep (epochs)")
    return int(match.group(1)), match.group(2) or "it"


def parse_rewind(rewind: str) -> tuple[int, str]:
    """``"0"``, ``"500it"``, ``"2ep"`` -> (amount, unit) with unit ``it`` or ``ep``."""
    return parse_point(rewind, "rewind")


def to_iterations(point, iterations_per_epoch: int, what: str = "point") -> int:
    """A point of training (``"500it"``, ``"2ep"``, ``0``) in iterations."""
    amount, unit = parse_point(point, what)
    return amount * iterations_per_epoch if unit == "ep" else amount


def validate(config: RunConfig) -> None:
    """Check ranges and formats that types alone do not catch."""
    p, t, d = config.prune, config.train, config.data
    if p.rounds < 0:
        raise TicketsError(f"rounds must be 0 or more, got {p.rounds}")
    if not 0 < p.fraction < 1:
        raise TicketsError("prune fraction must be in (0, 1) (the share of remaining weights pruned per round), "
                           f"got {p.fraction}")
    for pattern, fraction in p.layer_fractions.items():
        if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 <= fraction < 1:
            raise TicketsError(f"prune.layer_fractions[{pattern!r}] must be in [0, 1), got {fraction!r}")
    if p.scope not in SCOPES:
        raise TicketsError(f"unknown scope {p.scope!r}; use one of {', '.join(SCOPES)}")
    parse_rewind(p.rewind)
    if p.structure not in STRUCTURES:
        raise TicketsError(f"unknown prune.structure {p.structure!r}; use one of {', '.join(STRUCTURES)}")
    if p.criterion == "bn_scale" and p.structure == "weights":
        raise TicketsError("criterion bn_scale scores whole channels by their BatchNorm scale; "
                           "use it with --structure channels")
    if p.retrain not in RETRAIN_STRATEGIES:
        raise TicketsError(f"unknown prune.retrain {p.retrain!r}; use one of {', '.join(RETRAIN_STRATEGIES)}")
    if p.retrain_iterations is not None:
        amount, _ = parse_point(p.retrain_iterations, "prune.retrain_iterations")
        if amount < 1:
            raise TicketsError(f"prune.retrain_iterations must be at least 1 iteration, got {p.retrain_iterations!r}")
    if p.criterion_batches < 1:
        raise TicketsError(f"prune.criterion_batches must be at least 1, got {p.criterion_batches}")
    if not all(isinstance(c, str) for c in p.controls):
        raise TicketsError(f"prune.controls must be a list of names, got {p.controls!r}")
    if len(set(p.controls)) != len(p.controls) or "ticket" in p.controls:
        raise TicketsError(f"prune.controls must name distinct controls (not 'ticket'), got {p.controls!r}")
    if not config.seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in config.seeds):
        raise TicketsError(f"seeds must be a non-empty list of non-negative integers, got {config.seeds!r}")
    if len(set(config.seeds)) != len(config.seeds):
        raise TicketsError(f"seeds must be distinct, got {config.seeds!r}")
    if t.lr <= 0:
        raise TicketsError(f"lr must be positive, got {t.lr}")
    if t.batch_size < 1:
        raise TicketsError(f"batch size must be at least 1, got {t.batch_size}")
    if t.epochs <= 0 and t.iterations is None:
        raise TicketsError(f"epochs must be positive, got {t.epochs}")
    if t.iterations is not None and t.iterations < 1:
        raise TicketsError(f"train.iterations must be at least 1, got {t.iterations}")
    if not all(isinstance(name, str) for name in t.loggers):
        raise TicketsError(f"train.loggers must be a list of logger names, got {t.loggers!r}")
    if t.eval_every < 1:
        raise TicketsError(f"train.eval_every must be at least 1, got {t.eval_every}")
    parse_point(t.warmup, "train.warmup")
    if t.checkpoint_every is not None and t.checkpoint_every < 1:
        raise TicketsError(f"train.checkpoint_every must be at least 1 (iterations), or null for every 5 minutes; "
                           f"got {t.checkpoint_every}")
    if not all(isinstance(a, str) for a in d.augment) or len(set(d.augment)) != len(d.augment):
        raise TicketsError(f"data.augment must be a list of distinct names, e.g. [crop, flip]; got {d.augment!r}")
    for name, options in d.augment_options.items():
        if name not in d.augment or not isinstance(options, dict):
            raise TicketsError(f"data.augment_options must map names listed in data.augment to options, "
                               f"e.g. {{crop: {{padding: 4}}}}; got {name!r}: {options!r}")
    if d.val_size < 1:
        raise TicketsError("data.val_size must be at least 1 (early stopping needs a validation split), "
                           f"got {d.val_size}")
    if config.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", config.name):
        raise TicketsError(f"run name {config.name!r} may use letters, digits, '.', '_' and '-' only")
    if config.model.norm_init not in NORM_INITS:
        raise TicketsError(f"unknown model.norm_init {config.model.norm_init!r}; use one of {', '.join(NORM_INITS)}")
    validate_execution(config)
    s = config.supermask
    if not 0 < s.density <= 1:
        raise TicketsError(f"supermask.density must be in (0, 1], got {s.density}")
    validate_sparse(config.sparse)
    r = config.report
    if not 0 < r.max_weights_remaining <= 1:
        raise TicketsError(f"report.max_weights_remaining must be a fraction of weights in (0, 1], got "
                           f"{r.max_weights_remaining}; e.g. --set report.max_weights_remaining=0.215")


def validate_sparse(s: SparseConfig) -> None:
    """Check the sparse section (``tickets sparse-train``); method names are checked against the registry there."""
    if not s.methods or not all(isinstance(m, str) for m in s.methods) or len(set(s.methods)) != len(s.methods):
        raise TicketsError(f"sparse.methods must be a list of distinct names (static, set, rigl, ...), "
                           f"got {s.methods!r}")
    if not 0 < s.density <= 1:
        raise TicketsError(f"sparse density must be in (0, 1] (the fraction of weights active), got {s.density}")
    if s.distribution not in SPARSE_DISTRIBUTIONS:
        raise TicketsError(f"unknown sparse distribution {s.distribution!r}; use one of "
                           f"{', '.join(SPARSE_DISTRIBUTIONS)}")
    if s.distribution == "like" and s.like is None:
        raise TicketsError("sparse distribution like takes the per-layer counts of a run's rounds; give --like RUN")
    if s.update_every < 1:
        raise TicketsError(f"sparse.update_every must be at least 1 (iterations), got {s.update_every}")
    if not 0 <= s.drop_fraction <= 1:
        raise TicketsError(f"sparse drop fraction must be in [0, 1], got {s.drop_fraction}")
    if s.drop_schedule is not None and s.drop_schedule not in DROP_SCHEDULES:
        raise TicketsError(f"unknown sparse.drop_schedule {s.drop_schedule!r}; use one of {', '.join(DROP_SCHEDULES)}")
    if s.rounds is not None and (s.like is None or not s.rounds or not all(
            isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in s.rounds)):
        raise TicketsError(f"sparse.rounds chooses among --like RUN's pruned rounds (1, 2, ...), got {s.rounds!r}")
    if s.update_end is not None and not 0 < s.update_end <= 1:
        raise TicketsError(f"sparse.update_end must be a fraction of training in (0, 1], got {s.update_end}")


EXECUTORS = ("local", "ray")


def validate_execution(config: RunConfig) -> None:
    """Check the execution section (how networks are run) and its combination with devices."""
    e = config.execution
    if e.workers != "auto" and not (isinstance(e.workers, int) and not isinstance(e.workers, bool) and e.workers >= 1):
        raise TicketsError(f"workers must be a count of at least 1 or auto, got {e.workers!r}; e.g. --workers 2")
    if e.workers_per_gpu < 1:
        raise TicketsError(f"workers_per_gpu must be at least 1, got {e.workers_per_gpu}")
    if e.executor not in EXECUTORS:
        raise TicketsError(f"unknown executor {e.executor!r}; use one of {', '.join(EXECUTORS)}")
    if e.cpus_per_network <= 0:
        raise TicketsError(f"cpus_per_network must be positive, got {e.cpus_per_network}")
    if e.gpus_per_network is not None and not 0 < e.gpus_per_network:
        raise TicketsError(f"gpus_per_network must be positive (fractions share a GPU), got {e.gpus_per_network}")
    devices = config.train.devices
    if isinstance(devices, int) and devices > 1 and config.train.batch_size % devices:
        raise TicketsError(f"batch size {config.train.batch_size} does not split evenly over {devices} devices; "
                           "choose a batch size that is a multiple of --devices")
    if isinstance(devices, int) and devices > 1 and isinstance(e.workers, int) and e.workers > 1:
        raise TicketsError(f"--devices {devices} trains one network on several devices and --workers {e.workers} "
                           "trains several networks at once; use one of them")


def imp_parallelism(config: RunConfig) -> int:
    """How many networks of an IMP run can train at once: every seed's ticket or one of its controls."""
    return len(config.seeds) * (1 + len(config.prune.controls))


def check_names(config: RunConfig, registry) -> None:
    """Every component name in the config must be registered (error lists the known names)."""
    registry.entry("datasets", config.data.dataset)
    registry.entry("models", config.model.name)
    registry.entry("initializers", config.model.init)
    registry.entry("optimizers", config.train.optimizer)
    registry.entry("criteria", config.prune.criterion)
    registry.entry("schedules", config.train.schedule)
    for augmentation in config.data.augment:
        registry.entry("augmentations", augmentation)
    for control in config.prune.controls:
        registry.entry("controls", control)


# Keys added after runs were already named by their fingerprint, with the value that gives the
# behaviour from before the key existed. A key at that value is left out of the fingerprint, so
# those runs keep their names (and resume); any other value changes the name, as it changes results.
LATER_KEYS = {"model.norm_init": "default", "prune.retrain": "rewind", "prune.retrain_iterations": None,
              "prune.structure": "weights",
              **{f"sparse.{f.name}": getattr(SparseConfig(), f.name) for f in dataclasses.fields(SparseConfig)}}


def fingerprint(config: RunConfig) -> str:
    """A short hash of everything that changes results (not rounds, seeds, controls, hardware)."""
    flat = flatten(config.to_dict())
    kept = {k: v for k, v in flat.items()
            if k not in RESUMABLE_KEYS and not (k in LATER_KEYS and v == LATER_KEYS[k])}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:8]


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> dotted keys (``layer_fractions`` and ``options`` dicts stay whole)."""
    out = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and not prefix:
            out.update(flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def default_name(config: RunConfig, verb: str = "prune") -> str:
    """A run name that the same settings always give, so re-running a command resumes it."""
    base = config.model.name if verb == "prune" else f"{verb}-{config.model.name}"
    return f"{base}-{config.data.dataset}-{config.prune.criterion}-{fingerprint(config)}" if verb == "prune" \
        else f"{base}-{config.data.dataset}-{fingerprint(config)}"


def dump(config: RunConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def from_dict(data: dict) -> RunConfig:
    config = RunConfig()
    _apply(config, data, "config.yaml")
    return config
