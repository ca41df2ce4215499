"""Executors: serial, local worker processes and Ray give identical results; dead workers are retried."""
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import read_results, run_cli

# Two seeds, one round, one control: 6 networks, up to 4 of them ready at once.
SMALL = ["--rounds", "1", "--epochs", "0.5", "--seeds", "0,1", "--controls", "reinit",
         "--set", "train.eval_every=10", "--quiet"]


def without_timing(rows):
    return [{k: v for k, v in r.items() if k not in ("run", "train_seconds")} for r in rows]


def tickets_cli(*args, env=None):
    """Start `tickets ARGS` in its own process (so it can be watched and its workers killed)."""
    return subprocess.Popen([sys.executable, "-m", "tickets.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def kill_first_running_network(run_dir: Path, proc, timeout=120) -> dict:
    """Wait until some network is training, then kill -9 the process training it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for marker in run_dir.glob("seed_*/round_*/*/.running.json"):
            try:
                holder = json.loads(marker.read_text())
            except (OSError, ValueError):
                continue
            if holder["pid"] != proc.pid:
                os.kill(holder["pid"], signal.SIGKILL)
                return {"network": marker.parent, "pid": holder["pid"]}
        time.sleep(0.05)
    raise AssertionError("no network started training in a worker")


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    run_cli("prune", "--out", out, "--name", "s", "--workers", "1", *SMALL)
    return out / "s"


def test_two_workers_give_the_serial_results(serial_run, tmp_path):
    run_cli("prune", "--out", tmp_path, "--name", "w", "--workers", "2", *SMALL)
    assert without_timing(read_results(tmp_path / "w")) == without_timing(read_results(serial_run))
    run = json.loads((tmp_path / "w" / "run.json").read_text())
    assert run["execution"]["executor"] == "local" and run["execution"]["workers"] == 2
    serial_report = (serial_run / "report" / "comparison.csv").read_text()
    assert (tmp_path / "w" / "report" / "comparison.csv").read_text() == serial_report


def test_a_killed_worker_is_reported_and_its_network_retried(serial_run, tmp_path):
    proc = tickets_cli("prune", "--out", tmp_path, "--name", "k", "--workers", "2", *SMALL[:-1])
    killed = kill_first_running_network(tmp_path / "k", proc)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert f"died (killed by signal {signal.SIGKILL})" in stderr and "retrying it" in stderr
    rows = read_results(tmp_path / "k")
    assert len(rows) == len({(r["seed"], r["round"], r["variant"]) for r in rows}) == 6
    assert without_timing(rows) == without_timing(read_results(serial_run))
    assert (killed["network"] / "done.json").exists()


def test_a_run_begun_serially_resumes_with_workers(serial_run, tmp_path):
    run_cli("prune", "--out", tmp_path, "--name", "r", "--workers", "1", *SMALL, "--rounds", "0")  # dense only
    run_cli("prune", "--out", tmp_path, "--name", "r", "--workers", "2", *SMALL)
    assert without_timing(read_results(tmp_path / "r")) == without_timing(read_results(serial_run))


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "workers must be a count of at least 1 or auto"),
    (["--workers", "two"], "--workers 'two': give a count"),
    (["--devices", "2", "--workers", "2"], "use one of them"),
    (["--gpus-per-network", "0.5", "--executor", "ray"], "this machine has none"),
    (["--executor", "dask"], "unknown executor 'dask'"),
])
def test_bad_execution_settings_fail_before_anything_is_written(tmp_path, args, message):
    result = run_cli("prune", "--out", tmp_path, "--name", "bad", *SMALL, *args, expect=2)
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "bad").exists()


def test_ray_executor_without_ray_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    result = run_cli("prune", "--out", tmp_path, "--name", "bad", *SMALL, "--executor", "ray", expect=2)
    assert 'pip install "tickets[ray]"' in result.stderr
    assert not (tmp_path / "bad").exists()


HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY and not os.environ.get("CI"),
                               reason='Ray is an optional extra (pip install "tickets[ray]"); CI installs it')


@needs_ray
def test_ray_executor_gives_the_serial_results(serial_run, tmp_path):
    proc = tickets_cli("prune", "--out", tmp_path, "--name", "ray", "--executor", "ray", *SMALL)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert without_timing(read_results(tmp_path / "ray")) == without_timing(read_results(serial_run))


@needs_ray
def test_a_killed_ray_worker_is_retried_without_missing_or_duplicate_rows(serial_run, tmp_path):
    proc = tickets_cli("prune", "--out", tmp_path, "--name", "rk", "--executor", "ray", *SMALL)
    kill_first_running_network(tmp_path / "rk", proc)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    rows = read_results(tmp_path / "rk")
    assert len(rows) == len({(r["seed"], r["round"], r["variant"]) for r in rows}) == 6
    assert without_timing(rows) == without_timing(read_results(serial_run))


@needs_ray
def test_unreachable_ray_address_is_one_line(tmp_path):
    proc = tickets_cli("prune", "--out", tmp_path, "--name", "bad", *SMALL, "--executor", "ray",
                       "--address", "127.0.0.1:9")
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stderr
    assert "cannot connect to Ray" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "bad").exists()


def test_one_network_on_two_cpu_processes_matches_one_device(tmp_path):
    """--devices 2 (DDP over gloo): each process takes half of every batch; same training as one device."""
    import torch

    common = ["--out", tmp_path, "--epochs", "0.5", "--seeds", "0", "--set", "train.eval_every=10", "--quiet"]
    run_cli("train", "--name", "one", *common)
    run_cli("train", "--name", "two", "--devices", "2", *common)
    one = torch.load(tmp_path / "one/seed_0/round_0/ticket/final.pt", weights_only=True)
    two = torch.load(tmp_path / "two/seed_0/round_0/ticket/final.pt", weights_only=True)
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5)
    [row_one], [row_two] = read_results(tmp_path / "one"), read_results(tmp_path / "two")
    for column in ("best_val_loss", "final_test_loss"):
        assert float(row_two[column]) == pytest.approx(float(row_one[column]), abs=1e-4)
    assert row_two["early_stop_iter"] == row_one["early_stop_iter"]


def test_ctrl_c_stops_every_worker_and_the_run_resumes(serial_run, tmp_path):
    proc = tickets_cli("prune", "--out", tmp_path, "--name", "c", "--workers", "2", *SMALL)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "c").glob("seed_*/round_*/*/.running.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = {json.loads(m.read_text())["pid"] for m in (tmp_path / "c").glob("seed_*/round_*/*/.running.json")}
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "run the same command again to resume" in stderr
    time.sleep(0.5)
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert json.loads((tmp_path / "c" / "run.json").read_text())["status"] == "interrupted"
    run_cli("prune", "--out", tmp_path, "--name", "c", "--workers", "2", *SMALL)
    assert without_timing(read_results(tmp_path / "c")) == without_timing(read_results(serial_run))


def test_workers_started_early_are_the_ones_the_run_uses():
    from tickets.executors import ExecutionPlan, local

    plan = ExecutionPlan("local", 1, 1, 0, 1, None, 1.0, None)
    local.start_early(plan)
    early = [w.process for w in local._early[1]]
    with local.LocalExecutor(plan, on_eval=lambda job, row: None, warn=print) as executor:
        assert [w.process for w in executor._workers] == early and early[0].is_alive()
    assert not early[0].is_alive()  # stopped with the executor
    local.start_early(plan)
    unused = local._early[1][0].process
    other = ExecutionPlan("local", 1, 2, 0, 1, None, 1.0, None)  # another thread count: not adopted
    with local.LocalExecutor(other, on_eval=lambda job, row: None, warn=print) as executor:
        assert executor._workers[0].process is not unused and not unused.is_alive()


class EnvironmentJob:
    """A job that reports one environment variable of the process it runs in."""

    key = ("env",)

    def describe(self) -> str:
        return "environment job"

    def run(self, on_eval=None) -> dict:
        return {"value": os.environ.get("TICKETS_TEST_SETTING")}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server is used on Linux")
def test_forked_workers_see_the_drivers_environment_not_the_fork_servers(monkeypatch):
    # The fork server starts once per driver process; a run started later in the same process
    # (a notebook, a sweep script) must see the environment of that moment, as a spawned worker would.
    from tickets.executors import ExecutionPlan, local

    plan = ExecutionPlan("local", 1, 1, 0, 1, None, 1.0, None)
    monkeypatch.setenv("TICKETS_TEST_SETTING", "when the server started")
    local.warm_up(plan)
    monkeypatch.setenv("TICKETS_TEST_SETTING", "now")
    with local.LocalExecutor(plan, on_eval=lambda job, row: None, warn=print) as executor:
        assert local._forks(plan)
        executor.submit(EnvironmentJob())
        [(_, row)] = executor.wait()
    assert row == {"value": "now"}


def _child_pids(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    return [int(c) for task in tasks.iterdir() for c in (task / "children").read_text().split()]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="watches child processes through /proc")
def test_ctrl_c_while_workers_start_is_one_message(tmp_path):
    """Ctrl-C in the first seconds, while the workers' fork server is still importing: no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "tickets.cli", "prune", "--out", str(tmp_path), "--name", "c",
                             "--workers", "2", *SMALL], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while len(_child_pids(proc.pid)) < 2 and time.monotonic() < deadline:  # the fork server and its tracker
        time.sleep(0.02)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does: the whole process group
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "run the same command again to resume" in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("user_setting", [None, "1"])
def test_lightnings_nvml_cuda_check_is_undone_unless_the_user_set_it(user_setting):
    # With PYTORCH_NVML_BASED_CUDA_CHECK=1 (set by Lightning's import) every Adam step on a CPU
    # loads NVML again; tickets never forks after a CUDA check, so it removes Lightning's setting.
    env = {k: v for k, v in os.environ.items() if k != "PYTORCH_NVML_BASED_CUDA_CHECK"}
    if user_setting is not None:
        env["PYTORCH_NVML_BASED_CUDA_CHECK"] = user_setting
    code = "import os, tickets.training; print(os.environ.get('PYTORCH_NVML_BASED_CUDA_CHECK'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(user_setting)
