"""Lightning loggers for the training curves: ``--logger tensorboard|csv|mlflow|wandb`` (config ``train.loggers``).

Each network logs to a run of its own, named ``<run>/seed_<s>/round_<r>/<variant>``, with the
run's config (and the seed, round and variant) as hyperparameters; its curves are the rows of
its metrics.csv (``train/loss``, ``val/loss``, ``val/acc``, ``test/loss``, ``test/acc``, and any
other column, e.g. ``lr``). Every logger works offline:

- ``tensorboard``: event files in ``<run dir>/logs/tensorboard/seed_<s>/round_<r>/<variant>/``
  (``tensorboard --logdir <run dir>/logs/tensorboard``);
- ``csv``: Lightning's CSVLogger in ``<run dir>/logs/csv/seed_<s>/round_<r>/<variant>/``;
- ``mlflow``: experiment ``<run>``; a file store in ``<run dir>/logs/mlflow`` unless
  ``MLFLOW_TRACKING_URI`` is set (``mlflow ui --backend-store-uri <run dir>/logs/mlflow``);
- ``wandb``: project ``tickets`` (or ``WANDB_PROJECT``), group ``<run>``, files in
  ``<run dir>/logs/wandb``; offline unless ``WANDB_MODE`` or ``WANDB_API_KEY`` is set
  (upload later with ``wandb sync``).

A network trained again (after an interruption or damage) replaces its TensorBoard and CSV
logs; MLflow and W&B keep the earlier attempt as a run of its own.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
from pathlib import Path

from tickets.errors import TicketsError

# "Experiment ... not found. Creating it."
logging.getLogger("pytorch_lightning.loggers.mlflow").setLevel(logging.ERROR)

# logger name -> (a module it needs, how to install it)
LOGGERS = {
    "tensorboard": ("tensorboard", "pip install tensorboard"),
    "csv": (None, None),
    "mlflow": ("mlflow", "pip install 'tickets[mlflow]'"),
    "wandb": ("wandb", "pip install 'tickets[wandb]'"),
}


def check_loggers(names: list[str]) -> None:
    """A TicketsError for an unknown logger name, or for one whose package is not installed (with the install line)."""
    for name in names:
        if name not in LOGGERS:
            raise TicketsError(f"unknown logger {name!r}; use one of {', '.join(LOGGERS)}")
        module, install = LOGGERS[name]
        if module is None:
            continue
        try:
            importlib.import_module(module)
        except ImportError:
            raise TicketsError(f"logger {name!r} needs the {module} package, which is not installed: "
                               f"{install}") from None


def network_loggers(names: list[str], run_dir: Path, run_name: str, seed: int, round_: int, variant: str,
                    hparams: dict) -> list:
    """Lightning loggers for one network (see the module docstring); ``close_loggers`` them after training.

    A logger that cannot start (e.g. an unreachable MLFLOW_TRACKING_URI) is a TicketsError naming it.
    """
    version = f"seed_{seed}/round_{round_}/{variant}"
    params = {"run": run_name, "seed": seed, "round": round_, "variant": variant,
              **{k: v if isinstance(v, (bool, int, float, str)) else json.dumps(v) for k, v in hparams.items()}}
    made = []
    for name in names:
        try:
            logger = _make_logger(name, Path(run_dir) / "logs" / name, run_name, version, params)
            logger.log_hyperparams(params)
        except Exception as error:
            close_loggers(made)
            first = " ".join(str(error).split())[:200]
            raise TicketsError(f"logger {name!r} could not start ({first}); fix its settings or leave it out") from None
        made.append(logger)
    return made


def _make_logger(name: str, folder: Path, run_name: str, version: str, params: dict):
    from pytorch_lightning import loggers as pl_loggers

    if name in ("tensorboard", "csv"):
        shutil.rmtree(folder / version, ignore_errors=True)  # an earlier, unfinished attempt
    if name == "tensorboard":
        return pl_loggers.TensorBoardLogger(folder, name="", version=version, default_hp_metric=False)
    if name == "csv":
        return pl_loggers.CSVLogger(folder, name="", version=version)
    tags = {k: params[k] for k in ("run", "seed", "round", "variant")}
    if name == "mlflow":
        tracking_uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not tracking_uri:  # MLflow 3 asks for this opt-in before it uses a local file store
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        return pl_loggers.MLFlowLogger(experiment_name=run_name, run_name=version, tracking_uri=tracking_uri,
                                       save_dir=str(folder), tags=tags)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_SILENT", "true")  # its per-run chatter would break the progress display
    offline = not (os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY"))
    return pl_loggers.WandbLogger(name=f"{run_name}/{version}", save_dir=str(folder), offline=offline, group=run_name,
                                  project=os.environ.get("WANDB_PROJECT", "tickets"), job_type=tags["variant"])


def close_loggers(loggers: list) -> None:
    """Flush and close one network's loggers (W&B needs its run finished before the next network starts one)."""
    for logger in loggers:
        logger.save()
        if type(logger).__name__ == "WandbLogger":
            logger.experiment.finish()
