"""The public Python API: every command of the CLI as a function, and :class:`Run` for what a run holds.

The CLI is a thin shell over these functions. Keyword arguments take the flags' names
(underscores for dashes) with Python values (lists for seeds and controls); ``config=`` takes a
shipped config's name or a path, and ``set={"train.eval_every": 50}`` any other config key.
Bad input raises :class:`~tickets.errors.TicketsError` with the one-line message the CLI
prints, before anything is written::

    import tickets
    run = tickets.prune(rounds=2, epochs=1, seeds=[0, 1], controls=["reinit"], name="demo", workers=1)
    run.results                          # results.csv as a pandas DataFrame
    run.mask(seed=0, round=2)            # parameter name -> bool tensor
    run.network(seed=0, round=2)         # the trained torch module, pruned weights zero
    run.report()                         # writes report/ and returns report.md's path

Heavy modules (torch, Lightning) are imported only when a function needs them, so that local
workers can start while the driver imports them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tickets import config as config_mod
from tickets.errors import TicketsError

# Each flag's config key. Every verb takes the ones it uses (VERB_FLAGS) and `config`, `set`, `out`, `quiet`.
FLAG_KEYS = {
    "rounds": "prune.rounds", "epochs": "train.epochs", "prune_fraction": "prune.fraction",
    "criterion": "prune.criterion", "scope": "prune.scope", "rewind": "prune.rewind", "controls": "prune.controls",
    "retrain": "prune.retrain", "retrain_iterations": "prune.retrain_iterations", "structure": "prune.structure",
    "seeds": "seeds", "optimizer": "train.optimizer", "lr": "train.lr", "schedule": "train.schedule",
    "warmup": "train.warmup", "batch_size": "train.batch_size", "dataset": "data.dataset", "model": "model.name",
    "data_dir": "data.data_dir", "name": "name", "accelerator": "train.accelerator", "devices": "train.devices",
    "loggers": "train.loggers", "init": "model.init", "method": "supermask.method", "density": "supermask.density",
    "workers": "execution.workers", "workers_per_gpu": "execution.workers_per_gpu",
    "executor": "execution.executor", "address": "execution.address",
    "cpus_per_network": "execution.cpus_per_network", "gpus_per_network": "execution.gpus_per_network",
}
EXECUTION_FLAGS = ("workers", "workers_per_gpu", "executor", "address", "cpus_per_network", "gpus_per_network")
TRAINING_FLAGS = ("epochs", "seeds", "optimizer", "lr", "schedule", "warmup", "batch_size", "dataset", "model",
                  "data_dir", "name", "accelerator", "devices")
PRUNING_FLAGS = ("rounds", "prune_fraction", "criterion", "scope", "rewind", "controls", "retrain",
                 "retrain_iterations", "structure")
VERB_FLAGS = {
    "prune": (*PRUNING_FLAGS, *TRAINING_FLAGS, "loggers", *EXECUTION_FLAGS),
    "train": ("rewind", *TRAINING_FLAGS, "loggers", *EXECUTION_FLAGS),
    "supermask": (*TRAINING_FLAGS, "loggers", "method", "density", "init", *EXECUTION_FLAGS),
    "stability": (*TRAINING_FLAGS, *EXECUTION_FLAGS),
    "sparse-train": (*TRAINING_FLAGS, "loggers", *EXECUTION_FLAGS),
}


def build_config(verb: str, config: str | None = None, set: dict | None = None, **flags) -> config_mod.RunConfig:
    """The validated config of a command: defaults, the command's own, ``config``, ``flags``, then ``set``."""
    allowed = VERB_FLAGS[verb]
    unknown = [k for k in flags if k not in allowed]
    if unknown:
        names = ", ".join(f"--{k.replace('_', '-')}" for k in unknown)
        raise TicketsError(f"tickets {verb} does not take {names}; its settings are "
                           f"{', '.join(allowed)} (or set= any config key)")
    values = dict(flags)
    if values.get("controls") is not None:
        values["controls"] = [] if values["controls"] in ("none", ["none"]) else list(values["controls"])
    overrides = {FLAG_KEYS[k]: v for k, v in values.items() if v is not None}
    defaults = dict(config_mod.config_defaults(verb))
    if verb == "supermask":
        from tickets.experiments.supermask.weights import method_defaults

        chosen = config_mod.build_config(config, overrides, _sets(set)).supermask.method
        defaults.update(method_defaults(chosen))
    return config_mod.build_config(config, overrides, _sets(set), defaults=defaults)


def _sets(set: dict | None) -> dict:
    """``set=``: a dict of dotted config keys."""
    if set is None:
        return {}
    if not isinstance(set, dict):
        raise TicketsError(f"set= takes a dict of config keys, e.g. set={{'train.eval_every': 50}}; got {set!r}")
    return set


def _registry():
    from tickets.plugins import registry

    return registry()


# --- the commands ------------------------------------------------------------------------------

def prune(*, config: str | None = None, set: dict | None = None, out: str | Path = "outputs", quiet: bool = False,
          **flags) -> "Run":
    """Iterative magnitude pruning with rewinding and controls (resumable): ``tickets prune``."""
    from tickets.executors import start_workers_early

    run_config = build_config("prune", config, set, **flags)
    start_workers_early(run_config, config_mod.imp_parallelism(run_config))
    from tickets.experiments.imp import run_imp

    return Run(run_imp(run_config, out, _registry(), quiet=quiet).dir)


def train(*, config: str | None = None, set: dict | None = None, out: str | Path = "outputs", quiet: bool = False,
          **flags) -> "Run":
    """One dense network per seed (round 0 only, no controls): ``tickets train``."""
    from tickets.experiments.imp import run_imp

    run_config = build_config("train", config, set, **flags)
    run_config.prune.rounds, run_config.prune.controls = 0, []
    return Run(run_imp(run_config, out, _registry(), verb="train", quiet=quiet).dir)


def compare(run: "str | Path | Run", controls: list[str], *, accelerator: str | None = None, devices=None,
            loggers: list[str] | None = None, quiet: bool = False, **execution) -> "Run":
    """Train the controls ``run`` lacks for its saved tickets: ``tickets compare``."""
    from tickets.experiments.imp import compare_run

    unknown = [k for k in execution if k not in EXECUTION_FLAGS]
    if unknown:
        raise TicketsError(f"tickets compare does not take {', '.join(unknown)}; give controls and execution settings")
    if not controls:
        raise TicketsError("controls names no control; give e.g. controls=['reinit', 'random_prune']")
    execution = {k: v for k, v in execution.items() if v is not None}
    return Run(compare_run(_path(run), list(controls), _registry(), accelerator=accelerator, devices=devices,
                           loggers=loggers or None, quiet=quiet, execution=execution).dir)


def transfer(run: "str | Path | Run", *, dataset: str | None = None, optimizer: str | None = None,
             lr: float | None = None, set: dict | None = None, controls: list[str] | None = None,
             name: str | None = None, out: str | Path | None = None, quiet: bool = False, **execution) -> "Run":
    """Train ``run``'s tickets (its masks over its theta_0, or theta_k) on other settings: ``tickets transfer``.

    ``dataset``, ``optimizer``, ``lr`` and ``set`` (any key that keeps the architecture) say what
    changes; ``controls`` (default reinit and random_prune) are trained on the target too. The new
    run goes under ``out`` (default: beside ``run``), named after ``run`` and the changes unless
    ``name`` is given.
    """
    from tickets.experiments.imp.transfer import run_transfer, transfer_config

    unknown = [k for k in execution if k not in EXECUTION_FLAGS]
    if unknown:
        raise TicketsError(f"tickets transfer does not take {', '.join(unknown)}; give dataset, optimizer, lr, "
                           "set, controls, name, out or execution settings")
    source = _path(run)
    changes = {key: value for key, value in (("data.dataset", dataset), ("train.optimizer", optimizer),
                                             ("train.lr", lr)) if value is not None}
    changes.update(_sets(set))
    changes.update({FLAG_KEYS[k]: v for k, v in execution.items() if v is not None})
    if controls is not None:
        controls = [] if controls in ("none", ["none"]) else list(controls)
    target = transfer_config(source, changes, controls, name)
    out = source.parent if out is None else Path(out)
    return Run(run_transfer(source, target, out, _registry(), quiet=quiet).dir)


def supermask(*, config: str | None = None, set: dict | None = None, out: str | Path = "outputs", quiet: bool = False,
              **flags) -> "Run":
    """Learn a mask over frozen random weights for every seed (resumable): ``tickets supermask``."""
    from tickets.experiments.supermask import run_supermask

    return Run(run_supermask(build_config("supermask", config, set, **flags), out, _registry(), quiet=quiet).dir)


def sparse_train(like: "str | Path | Run | None" = None, *, method: "str | list[str] | None" = None,
                 density: float | None = None, distribution: str | None = None, update_every: int | None = None,
                 drop_fraction: float | None = None, rounds: list[int] | None = None, config: str | None = None,
                 set: dict | None = None, out: str | Path = "outputs", quiet: bool = False, **flags) -> "Run":
    """Sparse networks trained from theta_0 at a fixed density (resumable): ``tickets sparse-train``.

    ``method``: static, set, rigl or a plugin's mask update, or a list of them (default rigl);
    ``density`` (default 0.1) or ``like`` (a prune run: its rounds' densities, seeds and settings);
    ``distribution``: uniform, erk, or like (``like``'s per-layer counts); ``rounds``: which of
    ``like``'s rounds (default all).
    """
    from tickets.experiments.sparse import like_config, run_sparse

    methods = [m.strip() for m in method.split(",") if m.strip()] if isinstance(method, str) else method
    sparse = {key: value for key, value in (("methods", methods), ("density", density), ("distribution", distribution),
                                            ("update_every", update_every), ("drop_fraction", drop_fraction),
                                            ("rounds", rounds))
              if value is not None}
    if like is None:
        run_config = build_config("sparse-train", config, {**{f"sparse.{k}": v for k, v in sparse.items()},
                                                            **_sets(set)}, **flags)
        if run_config.sparse.like is not None:
            raise TicketsError("sparse.like is set by like=RUN (--like RUN), which also takes RUN's settings")
        return Run(run_sparse(run_config, out, _registry(), quiet=quiet).dir)
    fixed = [k for k, v in flags.items() if v is not None and k not in ("name", *EXECUTION_FLAGS)]
    fixed += ["config"] if config else []
    fixed += ["density"] if density is not None else []
    fixed += [k for k in _sets(set) if not k.startswith("sparse.")]
    if fixed:
        raise TicketsError(f"--like RUN trains at RUN's densities with RUN's settings; drop "
                           f"{', '.join('--' + k.replace('_', '-') for k in fixed)}")
    sparse.update({k.split(".", 1)[1]: v for k, v in _sets(set).items()})
    execution = {k: v for k, v in flags.items() if k in EXECUTION_FLAGS and v is not None}
    run_config = like_config(_path(like), sparse, execution, flags.get("name"))
    return Run(run_sparse(run_config, out, _registry(), quiet=quiet).dir)


def stability(run: "str | Path | Run | None" = None, *, at: str, points: int | None = None, reset_bn: bool = False,
              seeds: list[int] | None = None, rounds: list[int] | None = None, controls: list[str] | None = None,
              config: str | None = None, set: dict | None = None, out: str | Path = "outputs", quiet: bool = False,
              **flags) -> "Run":
    """Instability analysis of a config's dense network, or (``run``) of a run's rounds: ``tickets stability``."""
    from tickets.experiments.stability import DEFAULT_POINTS, analyse_config, analyse_run

    points = DEFAULT_POINTS if points is None else points
    registry = _registry()
    if run is None:
        if rounds is not None or controls is not None:
            raise TicketsError("rounds and controls choose among a run's networks; give the run, or leave them out")
        run_config = build_config("stability", config, set, seeds=seeds, **flags)
        return Run(analyse_config(run_config, out, registry, at=at, points=points, reset_bn=reset_bn, quiet=quiet).dir)
    fixed = [k for k, v in flags.items() if v is not None and k not in ("accelerator", "devices", *EXECUTION_FLAGS)]
    fixed += ["config"] if config else []
    fixed += ["set"] if set else []
    if fixed:
        raise TicketsError(f"RUN's settings are fixed; drop {', '.join('--' + k.replace('_', '-') for k in fixed)} "
                           "(without RUN, the flags describe a new dense network to analyse)")
    train_settings = {k: flags[k] for k in ("accelerator", "devices") if flags.get(k) is not None}
    execution = {k: flags[k] for k in EXECUTION_FLAGS if flags.get(k) is not None}
    return Run(analyse_run(_path(run), registry, at=at, points=points, reset_bn=reset_bn, rounds=rounds,
                           controls=controls, seeds=seeds, train=train_settings, execution=execution,
                           quiet=quiet).dir)


def connect(net_a: "str | Path", net_b: "str | Path", *, curve: str = "bezier", points: int | None = None,
            epochs: float | None = None, seed: int = 0, set: dict | None = None, accelerator: str | None = None,
            devices=None, out: str | Path = "outputs", name: str | None = None, quiet: bool = False,
            **execution) -> "Run":
    """A curve (Garipov et al. 2018) between two trained networks of the same architecture: ``tickets connect``.

    ``net_a`` and ``net_b`` are network directories (final.pt and done.json); the bend trains with
    NET_A's run config (``epochs`` and ``set``'s ``train.*`` keys may change its training).
    """
    from tickets.experiments.connect import DEFAULT_POINTS, run_connect

    unknown = [k for k in execution if k not in EXECUTION_FLAGS]
    if unknown:
        raise TicketsError(f"tickets connect does not take {', '.join(unknown)}; give curve, points, epochs, seed, "
                           "set, accelerator, devices, out, name or execution settings")
    sets = dict(_sets(set))
    sets.update({f"train.{k}": v for k, v in (("accelerator", accelerator), ("devices", devices)) if v is not None})
    return Run(run_connect(net_a, net_b, _registry(), curve=curve, points=DEFAULT_POINTS if points is None else points,
                           epochs=epochs, seed=seed, sets=sets, out=out, name=name, quiet=quiet,
                           execution={k: v for k, v in execution.items() if v is not None}).dir)


def report(*runs: "str | Path | Run", out: str | Path | None = None,
           max_weights_remaining: float | None = None) -> Path:
    """Summary, comparison and study CSVs, plots and report.md for one or more runs; returns report.md's path."""
    from tickets.report.sections import write_run_report

    options = {} if max_weights_remaining is None else {"max_weights_remaining": max_weights_remaining}
    return write_run_report([_path(r) for r in runs], Path(out) if out else None, **options)


def check(run: "str | Path | Run"):
    """Verify every file of a run against its checksums: a :class:`~tickets.engine.check.CheckReport`."""
    from tickets.engine.check import check_run

    return check_run(_path(run))


def load_run(path: str | Path) -> "Run":
    """The :class:`Run` of an existing run directory."""
    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise TicketsError(f"{path} is not a tickets run (no config.yaml); give a folder made by `tickets prune`")
    return Run(path)


def export(run: "str | Path | Run", *, seed: int, round: int, variant: str = "ticket", format: str,
           out: str | Path, sparse_threshold: float | None = None):
    """Write one trained network of ``run`` as a file other code loads: ``tickets export``.

    ``format``: ``dense`` (a structured ticket as a smaller network), ``sparse`` (CSR Linear
    layers), ``torch-prune`` (torch.nn.utils.prune masks registered, to train on) or ``onnx``.
    The export's logits on the run's test examples are checked against the masked network's
    before ``out`` is written (atomically). Returns a :class:`tickets.exporters.Exported`
    (``path``, ``format``, ``description``, ``bytes``, ``max_difference``).
    """
    from tickets.components import load_splits
    from tickets.exporters import check_format, export_ticket
    from tickets.exporters.common import locate, model_reference

    check_format(format)
    run = load_run(_path(run))
    locate(run.path, seed, round, variant)
    network, mask, config = run.network(seed, round, variant), run.mask(seed, round, variant), run.config
    splits = load_splits(config, _registry().get("datasets", config.data.dataset))
    reference = model_reference(config.model.name, config.model.options, splits.num_classes, splits.input_shape)
    return export_ticket(network, mask, format=format, out=out, reference=reference, inputs=splits.test_x,
                         source={"run": run.name, "seed": seed, "round": round, "variant": variant},
                         sparse_threshold=sparse_threshold)


def load_exported(path: str | Path):
    """The network a file of :func:`export` holds, as a torch module in eval mode (see tickets.exporters)."""
    from tickets.exporters import load_exported as load

    return load(path)


def _path(run: "str | Path | Run") -> Path:
    return run.path if isinstance(run, Run) else Path(run)


class Run:
    """A run directory and what it holds: results, masks, trained networks, report."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> config_mod.RunConfig:
        """The config the run was made with."""
        from tickets.engine.lifecycle import load_run_config

        return load_run_config(self.path)

    @property
    def results(self):
        """results.csv as a pandas DataFrame (empty when no network has finished)."""
        import pandas as pd

        path = self.path / "results.csv"
        return pd.read_csv(path) if path.is_file() and path.stat().st_size else pd.DataFrame()

    @property
    def stability(self):
        """stability/stability.csv as a DataFrame (empty when the run has no instability analysis)."""
        import pandas as pd

        path = self.path / "stability" / "stability.csv"
        return pd.read_csv(path) if path.is_file() else pd.DataFrame()

    def _file(self, *parts: str) -> Path:
        path = self.path.joinpath(*parts)
        if not path.is_file():
            raise TicketsError(f"{path} does not exist; choose a seed, round and variant the run has trained")
        return path

    def mask(self, seed: int, round: int, variant: str = "ticket") -> dict[str, Any]:
        """The mask a network trained under: parameter name -> bool tensor."""
        from tickets.store import torch_load

        own = self.path / f"seed_{seed}" / f"round_{round}" / variant / "mask.pt"
        return torch_load(own if own.is_file() else self._file(f"seed_{seed}", f"round_{round}", "mask.pt"))

    def network(self, seed: int, round: int, variant: str = "ticket"):
        """The trained network (in eval mode) of (seed, round, variant), its pruned weights zero."""
        from tickets.components import build_model, load_splits
        from tickets.store import torch_load

        config = self.config
        registry = _registry()
        state = torch_load(self._file(f"seed_{seed}", f"round_{round}", variant, "final.pt"))
        splits = load_splits(config, registry.get("datasets", config.data.dataset))
        model = build_model(config, registry.get("models", config.model.name), splits)
        model.load_state_dict(state)
        return model.eval()

    def report(self, out: str | Path | None = None, max_weights_remaining: float | None = None) -> Path:
        """Write the run's report (report/ by default); returns report.md's path."""
        return report(self, out=out, max_weights_remaining=max_weights_remaining)

    def check(self):
        """:func:`check` of this run."""
        return check(self)
