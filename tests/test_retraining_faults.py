"""Retraining chains and transfers under faults and executors: kill -9 in the middle of a network,
then a rerun, gives the uninterrupted run's results; Ray gives the serial results; `tickets check`
verifies what was written.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY, load, masked_accuracy, prune_tiny, read_results, run_cli

ROOT = Path(__file__).resolve().parents[1]
# Fine-tuning IMP with every retraining strategy as a control, over a step schedule whose final
# learning rate differs from the rest: 9 networks, each one's start depends on the one before it.
CHAIN = ["--rounds", "2", "--rewind", "3it", "--retrain", "finetune", "--controls", "finetune,lr_rewind,scratch",
         "--schedule", "multistep", "--set", "train.schedule_options={milestones: [10it], gamma: 0.1}"]
HAVE_RAY = __import__("importlib").util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY and not os.environ.get("CI"),
                               reason='Ray is an optional extra (pip install "tickets[ray]"); CI installs it')


def without_timing(rows):
    return [{k: v for k, v in r.items() if k not in ("run", "train_seconds")} for r in rows]


def kill_9_mid_network(args: list, run_dir: Path, after_done: int) -> None:
    """Run `tickets ARGS` in a process (networks train in it: one worker) and kill -9 it while a
    network is training, once ``after_done`` networks have finished."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "tickets.cli", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    while proc.poll() is None:
        done = len(list(run_dir.glob("seed_*/round_*/*/done.json")))
        if done >= after_done and any(run_dir.glob("seed_*/round_*/*/.running.json")):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    return prune_tiny(tmp_path_factory.mktemp("chain"), "c", *CHAIN)


def test_a_fine_tuning_sources_transfer_fine_tunes_its_own_tickets_on_the_target(chain, tmp_path):
    """Round r's transferred ticket and its finetune control start from the transfer's round r-1 ticket
    (trained on the target) under the source's round-r mask; reinit needs nothing trained."""
    run_cli("transfer", chain, "--lr", "0.002", "--controls", "finetune,reinit", "--name", "t", "--out", tmp_path,
            "--workers", "2", "--quiet")
    run = tmp_path / "t"
    rows = {(int(r["round"]), r["variant"]): r for r in read_results(run)}
    for round_ in (1, 2):
        previous = load(run / "seed_0" / f"round_{round_ - 1}" / "ticket" / "final.pt")
        mask = load(chain / "seed_0" / f"round_{round_}" / "mask.pt")
        for variant in ("ticket", "finetune"):
            assert float(rows[round_, variant]["acc_at_init"]) == pytest.approx(
                masked_accuracy(run, previous, mask), abs=1e-6)
    assert run_cli("check", run).exit_code == 0


def test_a_fine_tuning_chain_killed_mid_network_resumes_to_the_uninterrupted_results(chain, tmp_path):
    killed = tmp_path / "c"
    kill_9_mid_network(["prune", "--out", tmp_path, "--name", "c", *TINY, *CHAIN], killed, after_done=4)
    assert len(read_results(killed)) < len(read_results(chain))
    run_cli("prune", "--out", tmp_path, "--name", "c", *TINY, *CHAIN)
    assert without_timing(read_results(killed)) == without_timing(read_results(chain))
    assert run_cli("check", killed).exit_code == 0


def test_a_transfer_killed_mid_network_resumes_to_the_uninterrupted_results(chain, tmp_path):
    args = ["transfer", chain, "--optimizer", "sgd", "--lr", "0.05", "--name", "t", "--workers", "1", "--quiet"]
    run_cli(*args, "--out", tmp_path / "whole")
    kill_9_mid_network([*args, "--out", tmp_path / "killed"], tmp_path / "killed" / "t", after_done=2)
    run_cli(*args, "--out", tmp_path / "killed")
    assert without_timing(read_results(tmp_path / "killed" / "t")) == \
        without_timing(read_results(tmp_path / "whole" / "t"))
    assert run_cli("check", tmp_path / "killed" / "t").exit_code == 0


def tickets_in_a_process(*args) -> None:
    """Ray runs in a process of its own (as a user starts it), not inside the test's."""
    done = subprocess.run([sys.executable, "-m", "tickets.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr


@needs_ray
def test_a_fine_tuning_chain_and_its_transfer_give_the_serial_results_on_ray(chain, tmp_path):
    tiny_on_ray = [a if a != "execution.workers=1" else "execution.executor=ray" for a in TINY]
    tickets_in_a_process("prune", "--out", tmp_path, "--name", "c", *tiny_on_ray, *CHAIN)
    assert without_timing(read_results(tmp_path / "c")) == without_timing(read_results(chain))
    transfer = ["transfer", chain, "--lr", "0.002", "--controls", "reinit", "--name", "t", "--quiet"]
    run_cli(*transfer, "--out", tmp_path / "serial", "--workers", "1")
    tickets_in_a_process(*transfer, "--out", tmp_path / "ray", "--executor", "ray")
    assert without_timing(read_results(tmp_path / "ray" / "t")) == \
        without_timing(read_results(tmp_path / "serial" / "t"))
