"""Lightning loggers: every network's curves, offline, under the run directory; no logger, no logs."""
import csv
import math
import sys

import pytest
import yaml
from conftest import TINY, prune_tiny, run_cli, snapshot

NETWORKS = ("seed_0/round_0/ticket", "seed_0/round_1/ticket", "seed_0/round_1/reinit")
CURVES = {"train_loss": "train/loss", "val_loss": "val/loss", "val_acc": "val/acc", "test_loss": "test/loss",
          "test_acc": "test/acc"}


def metrics(net_dir):
    with (net_dir / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


def expected_curve(rows, column):
    """(iteration, value) of a metrics.csv column, where the value is a number (train loss is none at iteration 0)."""
    return [(int(r["iteration"]), pytest.approx(float(r[column]), rel=1e-6)) for r in rows
            if math.isfinite(float(r[column]))]


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return prune_tiny(out, "logged", "--rounds", "1", "--controls", "reinit", "--logger", "tensorboard",
                      "--logger", "csv")


def test_tensorboard_holds_every_networks_curves(logged):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for net in NETWORKS:
        events = EventAccumulator(str(logged / "logs/tensorboard" / net))
        events.Reload()
        rows = metrics(logged / net)
        assert set(CURVES.values()) <= set(events.Tags()["scalars"])
        for column, tag in CURVES.items():
            assert [(e.step, e.value) for e in events.Scalars(tag)] == expected_curve(rows, column)
        hparams = yaml.safe_load((logged / "logs/tensorboard" / net / "hparams.yaml").read_text())
        seed, round_, variant = net.split("/")
        assert (hparams["run"], hparams["seed"], hparams["round"], hparams["variant"]) == (
            "logged", 0, int(round_.split("_")[1]), variant)
        assert hparams["train.lr"] == 0.0012 and hparams["prune.rounds"] == 1


def test_csv_logger_holds_every_networks_curves(logged):
    for net in NETWORKS:
        with (logged / "logs/csv" / net / "metrics.csv").open() as handle:
            logged_rows = list(csv.DictReader(handle))
        rows = metrics(logged / net)
        for column, name in CURVES.items():
            curve = [(int(r["step"]), float(r[name])) for r in logged_rows if r[name]]
            assert curve == expected_curve(rows, column)


def test_no_logger_writes_no_logs_and_loggers_do_not_change_the_run(tmp_path):
    run_cli("train", "--out", tmp_path, *TINY)
    (run_dir,) = tmp_path.iterdir()
    assert not (run_dir / "logs").exists()
    result = run_cli("train", "--out", tmp_path, *TINY[:-1], "--set", "train.loggers=[csv]")  # the same run
    assert [p.name for p in tmp_path.iterdir()] == [run_dir.name] and "already done" in result.stderr


@pytest.mark.parametrize("logger,extra", [("mlflow", "tickets[mlflow]"), ("wandb", "tickets[wandb]")])
def test_a_logger_that_is_not_installed_is_one_line_with_the_install_command(tmp_path, monkeypatch, logger, extra):
    monkeypatch.setitem(sys.modules, logger, None)  # makes `import <logger>` fail, as on a machine without it
    result = run_cli("prune", "--out", tmp_path, *TINY, "--logger", logger, expect=2)
    assert result.stderr.strip() == (f"Error: logger {logger!r} needs the {logger} package, which is not installed: "
                                     f"pip install '{extra}'")
    assert not any(tmp_path.iterdir())


def test_an_unknown_logger_is_one_line(tmp_path):
    result = run_cli("prune", "--out", tmp_path, *TINY, "--logger", "tensorbored", expect=2)
    assert result.stderr.strip() == "Error: unknown logger 'tensorbored'; use one of tensorboard, csv, mlflow, wandb"


def test_mlflow_logs_offline_under_the_run_or_where_its_tracking_uri_says(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_dir = tmp_path / "here"
    run_cli("train", "--out", tmp_path, "--name", "here", *TINY, "--logger", "mlflow")
    client = MlflowClient(f"file:{run_dir / 'logs/mlflow'}")
    (run,) = client.search_runs([client.get_experiment_by_name("here").experiment_id])
    assert run.info.run_name == "seed_0/round_0/ticket" and run.info.status == "FINISHED"
    assert (run.data.tags["seed"], run.data.tags["round"], run.data.tags["variant"]) == ("0", "0", "ticket")
    assert run.data.params["train.optimizer"] == "adam"
    rows = metrics(run_dir / "seed_0/round_0/ticket")
    history = client.get_metric_history(run.info.run_id, "val/acc")
    assert [(m.step, m.value) for m in history] == expected_curve(rows, "val_acc")

    elsewhere = tmp_path / "tracking"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file:{elsewhere}")
    run_cli("train", "--out", tmp_path, "--name", "there", *TINY, "--logger", "mlflow")
    assert not (tmp_path / "there" / "logs").exists()
    client = MlflowClient(f"file:{elsewhere}")
    assert len(client.search_runs([client.get_experiment_by_name("there").experiment_id])) == 1


def test_wandb_logs_offline_under_the_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for variable in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(variable, raising=False)
    run_cli("train", "--out", tmp_path, "--name", "wb", *TINY, "--logger", "wandb")
    (offline_run,) = (tmp_path / "wb/logs/wandb/wandb").glob("offline-run-*")
    assert list(offline_run.glob("run-*.wandb"))
    before = snapshot(tmp_path / "wb" / "seed_0")
    run_cli("train", "--out", tmp_path, "--name", "wb", *TINY, "--logger", "wandb")  # finished: nothing to log
    assert snapshot(tmp_path / "wb" / "seed_0") == before
