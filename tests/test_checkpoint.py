"""Mid-network checkpoints: killed networks resume exactly, without redoing checkpointed iterations."""
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import load, run_cli

from tickets.builtin.augmentations import crop
from tickets.checkpoint import DEFAULT_SECONDS, Checkpoint
from tickets.components import load_splits
from tickets.config import build_config
from tickets.masks import Mask
from tickets.plugins import registry
from tickets.store import torch_load
from tickets.ticket import Ticket
from tickets.training import train_network

ROOT = Path(__file__).resolve().parents[1]
# SGD with momentum and a schedule, crop augmentation, a rewind point: every piece of state matters
SETTINGS = ["--rounds", "1", "--controls", "none", "--optimizer", "sgd", "--lr", "0.05",
            "--set", "train.optimizer_options={momentum: 0.9}", "--schedule", "cosine", "--warmup", "10it",
            "--set", "data.augment=[crop]", "--rewind", "30it", "--set", "train.iterations=160",
            "--set", "train.eval_every=25", "--set", "train.checkpoint_every=20", "--name", "k",
            "--seeds", "0", "--set", "execution.workers=1"]  # trained in the process that is killed


def strip(rows):
    return [{k: v for k, v in r.items() if k != "train_seconds"} for r in rows]


def results(run_dir):
    with (run_dir / "results.csv").open() as handle:
        return list(csv.DictReader(handle))


def start(out):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TICKETS_STRICT_PLUGINS="1")
    log = open(out / f"stderr-{time.monotonic_ns()}.txt", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "tickets.cli", "prune", *SETTINGS, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=log, env=env)
    return proc, log


def test_kill_9_mid_network_repeatedly_then_rerun_gives_identical_results(tmp_path):
    killed_out, reference_out = tmp_path / "killed", tmp_path / "reference"
    killed_out.mkdir()
    run_dir = killed_out / "k"
    seen, resume_points, logs = set(), [], []
    for _ in range(3):
        proc, log = start(killed_out)
        logs.append(log)
        while proc.poll() is None:  # wait for a checkpoint this process wrote, then kill -9 at once
            fresh = [p for p in run_dir.rglob("checkpoint.pt") if (p, p.stat().st_mtime_ns) not in seen] \
                if run_dir.exists() else []
            if fresh:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the network finished before a checkpoint was seen"
        for path in run_dir.rglob("checkpoint.pt"):
            seen.add((path, path.stat().st_mtime_ns))
            resume_points.append((path.parent.relative_to(run_dir), torch_load(path)["iteration"]))
    proc, log = start(killed_out)
    logs.append(log)
    assert proc.wait() == 0
    assert len(resume_points) >= 2

    # every re-run resumed from the checkpoint the previous one was killed after, not from the start
    texts = []
    for log in logs:
        log.seek(0)
        texts.append(log.read())
    for (network, iteration), text in zip(resume_points, texts[1:]):
        seed, round_, variant = network.parts
        label = f"seed 0 | round {round_.split('_')[1]}/1 | {variant}"
        assert f"{label} | resuming from its checkpoint at iteration {iteration}" in text
    assert not list(run_dir.rglob("checkpoint.pt")) and not list(run_dir.rglob(".checkpoint.pt.*"))

    run_cli("prune", *SETTINGS, "--out", reference_out, "--quiet")
    reference = reference_out / "k"
    assert strip(results(run_dir)) == strip(results(reference))
    for network in ("round_0/ticket", "round_1/ticket"):
        a, b = run_dir / "seed_0" / network, reference / "seed_0" / network
        assert (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes()
        final_a, final_b = load(a / "final.pt"), load(b / "final.pt")
        assert final_a.keys() == final_b.keys() and all(torch.equal(final_a[k], final_b[k]) for k in final_a)
    rewind_a, rewind_b = load(run_dir / "seed_0/rewind.pt"), load(reference / "seed_0/rewind.pt")
    assert all(torch.equal(rewind_a[k], rewind_b[k]) for k in rewind_a)


def test_interrupted_in_process_network_resumes_exactly(tmp_path):
    config = build_config(None, {})
    splits = load_splits(config, registry().get("datasets", "digits"))
    model = registry().get("models", "lenet_300_100")(10, (1, 28, 28))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    make_opt = lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9)  # noqa: E731
    ticket = Ticket(Mask.ones_for(model), state, 0)
    kwargs = dict(end_iteration=40, eval_every=10, batch_size=60, data_seed=0, capture_at=(5, 30),
                  lr_factor=registry().get("schedules", "linear")(40, 58), augment=[crop])
    reference = train_network(model, ticket, make_opt, splits, **kwargs)

    class Stop(Exception):
        pass

    def stop_at_30(row):
        if row["iteration"] == 30:
            raise Stop

    checkpoint = Checkpoint(tmp_path, every=7)
    with pytest.raises(Stop):
        train_network(model, ticket, make_opt, splits, checkpoint=checkpoint, on_eval=stop_at_30, **kwargs)
    assert torch_load(checkpoint.path)["iteration"] == 28
    resumed = train_network(model, ticket, make_opt, splits, checkpoint=checkpoint, **kwargs)
    assert resumed.resumed_from == 28
    assert repr(resumed.metrics) == repr(reference.metrics)  # repr: nan == nan
    assert all(torch.equal(resumed.final_state[k], reference.final_state[k]) for k in state)
    assert resumed.captured.keys() == {5, 30}
    assert all(torch.equal(resumed.captured[5][k], reference.captured[5][k]) for k in state)
    # a checkpoint of other training (another end) is not used
    other = train_network(model, ticket, make_opt, splits, checkpoint=checkpoint, **{**kwargs, "end_iteration": 35})
    assert other.resumed_from is None


def test_by_default_a_checkpoint_every_five_minutes_of_training(tmp_path):
    now = [0.0]
    checkpoint = Checkpoint(tmp_path, clock=lambda: now[0])
    assert DEFAULT_SECONDS == 300
    now[0] = 299.0
    assert not checkpoint.due(1000)  # a network shorter than five minutes never writes one
    now[0] = 300.0
    assert checkpoint.due(1001)
    checkpoint.save({"iteration": 1001})
    now[0] = 500.0
    assert not checkpoint.due(1500)
    assert Checkpoint(tmp_path, every=50).due(100) and not Checkpoint(tmp_path, every=50).due(120)
