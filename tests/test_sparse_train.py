"""`tickets sparse-train`: exact densities (uniform, ERK, a run's own), static/SET/RigL masks, RigL's growth by the
dense gradient, kill -9 and resume, workers, `tickets check`, --like RUN, the plugin hook, fingerprints."""
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import load, read_results, run_cli

import tickets
from tickets import config as config_mod
from tickets.api import build_config
from tickets.builtin.mask_updates import rigl_update
from tickets.builtin.models import lenet_300_100
from tickets.components import load_splits
from tickets.experiments.sparse import MaskUpdates, Schedule, layer_counts, random_mask, target_count
from tickets.plugins import registry
from tickets.store import read_csv_rows, torch_load
from tickets.ticket import Ticket
from tickets.training import BatchStream, train_network

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"fc1.weight": (300, 784), "fc2.weight": (100, 300), "output.weight": (10, 100)}
N = sum(math.prod(s) for s in LAYERS.values())
# 29 iterations (0.5 epochs of 58), an update every 5: RigL's T_end = floor(0.75 * 29 + 0.5) = 22
SMALL = ["--epochs", "0.5", "--update-every", "5", "--set", "train.eval_every=10", "--seeds", "0", "--quiet"]
T, T_END = 29, 22


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """This file's networks train on one thread: on 2 shared cores a second one mostly spins (results do not
    depend on it: MKL's strict reproducibility, see tickets/_startup.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def sparse(out, name, *extra, expect=0):
    return run_cli("sparse-train", "--out", out, "--name", name, *SMALL, *extra, expect=expect)


def strip(rows):
    return [{k: v for k, v in r.items() if k not in ("run", "train_seconds")} for r in rows]


def same_files(a: Path, b: Path, names=("metrics.csv", "mask_updates.csv", "mask.pt", "mask_init.pt")):
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    fa, fb = load(a / "final.pt"), load(b / "final.pt")
    assert fa.keys() == fb.keys() and all(torch.equal(fa[k], fb[k]) for k in fa)


@pytest.fixture(scope="module")
def trio(tmp_path_factory):
    out = tmp_path_factory.mktemp("sparse")
    sparse(out, "u", "--method", "static,set,rigl", "--density", "0.1", "--workers", "1")
    return out / "u"


# --- independent formulas -----------------------------------------------------------------------------
def largest_remainder(real: dict, total: int) -> dict:
    counts = {k: math.floor(v) for k, v in real.items()}
    for k in sorted(real, key=lambda k: -(real[k] - math.floor(real[k])))[: total - sum(counts.values())]:
        counts[k] += 1
    return counts


def erk_by_bisection(shapes: dict, total: int) -> dict:
    """ERK's densities as the one eps with sum_l min(1, eps * sum(dims)/prod(dims)) n_l = total."""
    raw = {k: sum(s) / math.prod(s) for k, s in shapes.items()}
    kept = lambda eps: sum(min(1.0, eps * raw[k]) * math.prod(s) for k, s in shapes.items())  # noqa: E731
    lo, hi = 0.0, 1e9
    for _ in range(200):
        lo, hi = ((lo + hi) / 2, hi) if kept((lo + hi) / 2) < total else (lo, (lo + hi) / 2)
    return {k: min(1.0, hi * raw[k]) for k in shapes}


def expected_fraction(method: str, t: int) -> float:
    return 0.3 if method == "set" else 0.15 * (1 + math.cos(math.pi * t / T_END))


# --- densities --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("density", [0.1, 0.0371, 0.5])
def test_erk_counts_follow_the_formula_with_an_exact_total(density):
    conv = {"conv1.weight": (64, 3, 3, 3), "conv2.weight": (64, 64, 3, 3), "fc.weight": (256, 4096),
            "output.weight": (10, 256)}
    for shapes in (LAYERS, conv):
        n = sum(math.prod(s) for s in shapes.values())
        total = math.floor(density * n + 0.5)
        counts = layer_counts("erk", shapes, total)
        real = {k: d * math.prod(shapes[k]) for k, d in erk_by_bisection(shapes, total).items()}
        assert counts == largest_remainder(real, total) and sum(counts.values()) == total
    assert layer_counts("erk", LAYERS, target_count(N, 0.1))["output.weight"] == 1000  # ERK makes it dense


def test_uniform_counts_are_the_density_of_every_layer_output_included():
    counts = layer_counts("uniform", LAYERS, target_count(N, 0.0371))
    real = {k: target_count(N, 0.0371) * math.prod(s) / N for k, s in LAYERS.items()}
    assert counts == largest_remainder(real, target_count(N, 0.0371)) and sum(counts.values()) == round(0.0371 * N)


# --- static, SET, RigL end to end ---------------------------------------------------------------------------
def test_rows_files_and_masks(trio):
    rows = read_results(trio)
    assert [(r["round"], r["variant"], r["criterion"]) for r in rows] == [
        ("0", "rigl", "uniform"), ("0", "set", "uniform"), ("0", "static", "uniform")]
    start = load(trio / "seed_0/round_0/mask.pt")
    for row in rows:
        d = trio / "seed_0/round_0" / row["variant"]
        assert int(row["params_remaining"]) == 26620 and float(row["weights_remaining"]) == 0.1
        init, final, state = load(d / "mask_init.pt"), load(d / "mask.pt"), load(d / "final.pt")
        assert all(torch.equal(init[k], start[k]) for k in start)  # every method starts from the round's mask
        assert all(not state[k][~final[k]].any() for k in final)  # inactive weights exactly 0
        assert all(int(final[k].sum()) == round(0.1 * math.prod(LAYERS[k])) for k in LAYERS)
        changed = any(not torch.equal(init[k], final[k]) for k in init)
        assert changed == (row["variant"] != "static")
    assert read_csv_rows(trio / "seed_0/round_0/static/mask_updates.csv") == []


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_every_update_keeps_each_layers_count_and_swaps_the_formulas_number(trio, method):
    log = read_csv_rows(trio / "seed_0/round_0" / method / "mask_updates.csv")
    end = T_END if method == "rigl" else T
    assert sorted({int(r["iteration"]) for r in log}) == list(range(5, end, 5))
    for r in log:
        size, active, t = int(r["size"]), int(r["active"]), int(r["iteration"])
        f = expected_fraction(method, t)
        assert size == math.prod(LAYERS[r["layer"]]) and active == round(0.1 * size)
        assert float(r["fraction"]) == pytest.approx(f, abs=1e-6)
        assert int(r["dropped"]) == int(r["grown"]) == min(math.floor(active * f + 0.5), size - active)


def test_rigl_grows_the_inactive_connections_of_largest_dense_gradient_at_zero():
    splits = load_splits(build_config("train"), registry().get("datasets", "digits"))
    torch.manual_seed(0)
    model = lenet_300_100(10, (1, 28, 28))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    counts = layer_counts("uniform", LAYERS, target_count(N, 0.1))
    mask = random_mask(LAYERS, counts, torch.Generator().manual_seed(3))
    seen = []

    def recording(ctx):
        new = rigl_update(ctx)
        seen.append((ctx, new))
        return new

    updates = MaskUpdates("rigl", recording, Schedule(5, 0.3, "cosine", 8), (0, 0, "rigl"), mask.tensors)
    outcome = train_network(model, Ticket(mask, state, 0), lambda p: torch.optim.Adam(p, lr=1.2e-3), splits,
                            end_iteration=7, eval_every=7, batch_size=60, data_seed=0, capture_at=(4, 5),
                            mask_updates=updates)
    ((ctx, new),) = seen
    assert ctx.iteration == 5 and all(torch.equal(ctx.masks[k], mask.tensors[k]) for k in LAYERS)
    probe = lenet_300_100(10, (1, 28, 28))  # the gradient of step 4 -> 5, computed here with plain torch
    probe.load_state_dict(outcome.captured[4])
    ((x, y),) = list(BatchStream(splits.train_x, splits.train_y, 60, 0, 4, 5))
    F.cross_entropy(probe(x), y).backward()
    grads = dict(probe.named_parameters())
    f = 0.15 * (1 + math.cos(math.pi * 5 / 8))
    for k in LAYERS:
        old, g, w = mask.tensors[k], grads[k].grad.abs(), ctx.weights[k]
        assert torch.allclose(ctx.grads[k], grads[k].grad, rtol=1e-5, atol=1e-7)
        assert (g[~old] > 0).any()  # dense: inactive connections have gradients
        grown, dropped, stays = new[k] & ~old, old & ~new[k], old & new[k]
        n = math.floor(int(old.sum()) * f + 0.5)
        assert int(grown.sum()) == int(dropped.sum()) == ctx.counts[k] == n
        assert g[grown].min() >= g[~old & ~grown].max()  # the largest |grad| among the inactive ones
        assert w[dropped].abs().max() <= w[stays].abs().min()  # the smallest |w| among the active ones
        assert not outcome.captured[5][k][grown].any() and not outcome.captured[5][k][~new[k]].any()
        assert outcome.final_state[k][grown].abs().sum() > 0  # and they train from there


def test_a_rule_that_changes_a_count_is_refused():
    mask = random_mask(LAYERS, layer_counts("uniform", LAYERS, 1000), torch.Generator().manual_seed(0))
    bad = MaskUpdates("bad", lambda ctx: {k: torch.ones_like(m) for k, m in ctx.masks.items()},
                      Schedule(1, 0.3, "constant", 10), (0,), mask.tensors)
    zeros = {k: torch.zeros(s) for k, s in LAYERS.items()}
    with pytest.raises(Exception, match="'bad' returned for fc1.weight"):
        bad.update(1, zeros, zeros, mask.tensors)


# --- resume, workers, check ---------------------------------------------------------------------------------
KILL = ["--method", "rigl", "--distribution", "erk", "--density", "0.05", "--set", "train.iterations=80",
        "--update-every", "5", "--set", "train.eval_every=10", "--set", "train.checkpoint_every=10", "--seeds", "0",
        "--workers", "1", "--name", "k"]


def api_kill_run(out):
    """KILL's run through the API (no report)."""
    return tickets.sparse_train(method="rigl", distribution="erk", density=0.05, update_every=5, seeds=[0], workers=1,
                                name="k", out=out, quiet=True,
                                set={"train.iterations": 80, "train.eval_every": 10, "train.checkpoint_every": 10})


def test_kill_9_mid_network_resumes_to_identical_results_and_erk_counts(tmp_path, capfd):
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    killed.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT), TICKETS_STRICT_PLUGINS="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "tickets.cli", "sparse-train", *KILL, "--quiet", "--out",
                             str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    net = killed / "k/seed_0/round_0/rigl"
    while proc.poll() is None and not (net / "checkpoint.pt").exists():
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the network finished before its first checkpoint was seen"
    saved = torch_load(net / "checkpoint.pt")
    assert saved["iteration"] >= 10 and "masks" in saved and saved["mask_updates"]["rows"]
    api_kill_run(killed)
    assert f"resuming from its checkpoint at iteration {saved['iteration']}" in capfd.readouterr().err
    api_kill_run(reference)
    assert strip(read_results(killed / "k")) == strip(read_results(reference / "k"))
    same_files(net, reference / "k/seed_0/round_0/rigl")
    counts = {k: int(m.sum()) for k, m in load(net / "mask.pt").items()}
    total = math.floor(0.05 * N + 0.5)
    real = {k: d * math.prod(LAYERS[k]) for k, d in erk_by_bisection(LAYERS, total).items()}
    assert counts == largest_remainder(real, total)


def test_two_workers_give_the_serial_results(trio, tmp_path):
    tickets.sparse_train(method=["set", "rigl"], density=0.1, update_every=5, epochs=0.5, seeds=[0], workers=2,
                         name="u", out=tmp_path, quiet=True, set={"train.eval_every": 10})
    assert strip(read_results(tmp_path / "u")) == strip(read_results(trio)[:2])
    for method in ("set", "rigl"):
        same_files(tmp_path / "u/seed_0/round_0" / method, trio / "seed_0/round_0" / method)


def test_check_verifies_the_masks_and_the_log(trio, tmp_path):
    copy = tmp_path / "u"
    shutil.copytree(trio, copy)
    assert "no problems found" in run_cli("check", copy).stdout
    for damaged in ("seed_0/round_0/rigl/mask.pt", "seed_0/round_0/set/mask_updates.csv", "seed_0/round_0/mask.pt"):
        path = copy / damaged
        path.write_bytes(path.read_bytes() + b"x")
    out = run_cli("check", copy, expect=4).stdout
    assert "rigl: mask.pt does not match" in out and "set: mask_updates.csv does not match" in out
    assert "seed_0/round_0/mask.pt does not match" in out


# --- --like RUN ----------------------------------------------------------------------------------------------
def test_like_trains_at_the_runs_densities_with_its_seeds_and_settings(tmp_path):
    run = tickets.prune(rounds=2, controls=[], epochs=0.3, seeds=[0], workers=1, set={"train.eval_every": 5},
                        out=tmp_path, name="imp", quiet=True).path
    sparse_dir = tmp_path / "sp"
    run_cli("sparse-train", "--like", run, "--method", "rigl", "--distribution", "like", "--update-every",
            "5", "--out", tmp_path, "--name", "sp", "--quiet")
    imp_rows = {r["round"]: r for r in read_results(run) if r["variant"] == "ticket"}
    rows = read_results(sparse_dir)
    assert [(r["round"], r["variant"]) for r in rows] == [("1", "rigl"), ("2", "rigl")]
    for r in rows:
        imp = imp_rows[r["round"]]
        assert (r["weights_remaining"], r["params_remaining"], r["seed"]) == (
            imp["weights_remaining"], imp["params_remaining"], imp["seed"])
        imp_mask, own = load(run / f"seed_0/round_{r['round']}/mask.pt"), load(
            sparse_dir / f"seed_0/round_{r['round']}/{r['variant']}/mask.pt")
        assert {k: int(m.sum()) for k, m in own.items()} == {k: int(m.sum()) for k, m in imp_mask.items()}
    assert (sparse_dir / "seed_0/init.pt").read_bytes() == (run / "seed_0/init.pt").read_bytes()
    imp_config, own_config = (config_mod.from_dict(config_mod.load_yaml(d / "config.yaml")) for d in (run, sparse_dir))
    assert own_config.train == imp_config.train and own_config.seeds == imp_config.seeds
    report = Path(run_cli("report", run, sparse_dir).stdout.split("report: ")[1].strip()).read_text()
    assert "## Sparse training vs IMP tickets (sp vs imp)" in report and "| round | weights remaining |" in report
    err = run_cli("sparse-train", "--like", run, "--epochs", "2", "--out", tmp_path, expect=2).stderr
    assert "drop --epochs" in err


# --- names, plugins, errors --------------------------------------------------------------------------------------
def test_the_sparse_section_at_its_defaults_keeps_existing_run_names():
    names = {(): "lenet_300_100-digits-magnitude-32a16928",  # the names before the section existed
             ("lenet_digits",): "lenet_300_100-digits-magnitude-4dde20e8",
             ("resnet20_digits",): "resnet20-digits-magnitude-3f32e65b"}
    for config, name in names.items():
        assert config_mod.default_name(build_config("prune", *config), "prune") == name
    base = build_config("sparse-train")
    other = build_config("sparse-train", set={"sparse.distribution": "erk"})
    more = build_config("sparse-train", set={"sparse.methods": ["static", "rigl"]})
    assert config_mod.fingerprint(other) != config_mod.fingerprint(base) == config_mod.fingerprint(more)


def test_rules_are_plugins_and_bad_input_is_one_line(tmp_path):
    listed = run_cli("plugins", "--kind", "mask_updates").stdout
    assert "rigl" in listed and "set" in listed
    err = sparse(tmp_path, "x", "--method", "rigel", expect=2).stderr
    assert "unknown sparse-training method 'rigel'" in err and "did you mean 'rigl'" in err
    assert "give --like RUN" in sparse(tmp_path, "x", "--distribution", "like", expect=2).stderr
    assert not (tmp_path / "x").exists()


def test_a_rule_written_from_the_docs_is_a_plugin_with_its_own_schedule(site):
    import re

    from tickets import plugins
    from tickets.config import SparseConfig
    from tickets.experiments.sparse.updates import method_schedule

    text = (ROOT / "docs" / "plugins.md").read_text()
    module = re.search(r"<!-- file: tickets_grow_gradient.py -->\s*```\w*\n(.*?)```", text, re.S).group(1)
    site.install("tickets-grow-gradient", "0.1.0", {"tickets_grow_gradient": module},
                 {"grow_gradient": "tickets_grow_gradient"})
    entry = plugins.load_plugins(strict=True).registry.entry("mask_updates", "grow_gradient")
    assert entry.provider.distribution == "tickets-grow-gradient"
    schedule = method_schedule("grow_gradient", entry.obj, SparseConfig(), 100)
    assert (schedule.shape, schedule.end) == ("constant", 75)  # its own attribute, and the default T_end
    mask = random_mask(LAYERS, layer_counts("uniform", LAYERS, 20000), torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    weights = {k: torch.randn(s, generator=g) * mask.tensors[k] for k, s in LAYERS.items()}
    grads = {k: torch.randn(s, generator=g) for k, s in LAYERS.items()}
    new = [MaskUpdates(m, rule, schedule, (0, 0, "x"), mask.tensors).update(10, weights, grads, mask.tensors)
           for m, rule in (("grow_gradient", entry.obj), ("rigl", rigl_update))]
    assert all(torch.equal(new[0][k], new[1][k]) for k in LAYERS)  # the same rule as the built-in rigl


def test_regrown_connections_start_with_zeroed_optimizer_state(tmp_path):
    """A connection dropped at one update and grown again at the next starts afresh (no stale Adam moments)."""
    from tickets.checkpoint import Checkpoint

    splits = load_splits(build_config("train"), registry().get("datasets", "digits"))
    torch.manual_seed(0)
    model = lenet_300_100(10, (1, 28, 28))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    mask = random_mask(LAYERS, layer_counts("uniform", LAYERS, target_count(N, 0.1)), torch.Generator().manual_seed(3))
    seen = []

    def recording(ctx):
        seen.append((ctx.masks, rigl_update(ctx)))
        return seen[-1][1]

    updates = MaskUpdates("rigl", recording, Schedule(2, 0.9, "constant", 5), (0, 0, "rigl"), mask.tensors)
    train_network(model, Ticket(mask, state, 0), lambda p: torch.optim.Adam(p, lr=1.2e-3), splits, end_iteration=5,
                  eval_every=5, batch_size=60, data_seed=0, checkpoint=Checkpoint(tmp_path, every=4),
                  mask_updates=updates)
    (before_1, after_1), (before_2, after_2) = seen
    adam = torch_load(tmp_path / "checkpoint.pt")["optimizer"]["state"]  # at iteration 4, after the 2nd update
    index = [name for name, _ in model.named_parameters()]
    regrown = 0
    for k in LAYERS:
        grown = after_2[k] & ~before_2[k]
        regrown += int((grown & before_1[k]).sum())  # active at first, dropped at iteration 2, grown at 4
        moments = adam[index.index(k)]
        assert not moments["exp_avg"][grown].any() and not moments["exp_avg_sq"][grown].any()
        assert moments["exp_avg_sq"][after_2[k] & ~grown].any()
    assert regrown > 0
