"""Learning-rate schedules: the lr column, warmup, rewinding continues the schedule, formulas."""
import csv
import math

import pytest
import torch
from conftest import load, prune_tiny, run_cli

from tickets.plugins import registry


def lr_column(path):
    with path.open() as handle:
        return {int(r["iteration"]): float(r["lr"]) for r in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def stepped(tmp_path_factory):
    """lr 0.1, warmup over 10 iterations, x0.5 at iterations 20 and 30, 40 iterations, rewind to 15."""
    return prune_tiny(tmp_path_factory.mktemp("lr"), "lr", "--rounds", "1", "--controls", "reinit",
                      "--optimizer", "sgd", "--lr", "0.1", "--warmup", "10it", "--schedule", "multistep",
                      "--set", "train.schedule_options={milestones: [20it, 30it], gamma: 0.5}",
                      "--set", "train.iterations=40", "--rewind", "15it")


def test_lr_column_is_exact_for_warmup_and_milestones(stepped):
    # lr(t) = 0.1 * min(1, t / 10) * 0.5 ** (milestones <= t)
    expected = {0: 0.0, 5: 0.05, 10: 0.1, 15: 0.1, 20: 0.05, 25: 0.05, 30: 0.025, 35: 0.025, 40: 0.025}
    dense = lr_column(stepped / "seed_0/round_0/ticket/metrics.csv")
    assert dense.keys() == expected.keys()
    assert all(dense[t] == pytest.approx(lr, rel=1e-12, abs=0) for t, lr in expected.items())


def test_a_rewound_network_continues_the_schedule_at_k(stepped):
    dense = lr_column(stepped / "seed_0/round_0/ticket/metrics.csv")
    for variant in ("ticket", "reinit"):
        rewound = lr_column(stepped / f"seed_0/round_1/{variant}/metrics.csv")
        assert min(rewound) == 15 and rewound[15] == dense[15] == pytest.approx(0.1)
        assert rewound == {t: lr for t, lr in dense.items() if t >= 15}


def test_the_learning_rate_is_the_one_training_uses(tmp_path):
    # with a warmup the step at iteration 0 has lr 0: plain SGD leaves theta_1 equal to theta_0
    run_dir = prune_tiny(tmp_path, "warm", "--rounds", "0", "--optimizer", "sgd", "--lr", "0.1",
                         "--warmup", "5it", "--rewind", "1it", "--set", "train.iterations=10")
    init, rewind = load(run_dir / "seed_0/init.pt"), load(run_dir / "seed_0/rewind.pt")
    assert all(torch.equal(init[k], rewind[k]) for k in init)
    no_warmup = prune_tiny(tmp_path, "cold", "--rounds", "0", "--optimizer", "sgd", "--lr", "0.1",
                           "--rewind", "1it", "--set", "train.iterations=10")
    assert not torch.equal(load(no_warmup / "seed_0/rewind.pt")["fc1.weight"], init["fc1.weight"])


def test_builtin_formulas():
    get = lambda name: registry().get("schedules", name)  # noqa: E731
    assert [get("constant")(100, 10)(t) for t in (0, 99)] == [1.0, 1.0]
    steps = get("multistep")(100, 10, milestones=["2ep", "50it"], gamma=0.1)
    assert [steps(t) for t in (0, 19, 20, 49, 50, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    cosine = get("cosine")(100, 10, min_factor=0.1)
    assert [cosine(0), cosine(50), cosine(100)] == pytest.approx([1.0, 0.55, 0.1])
    assert get("cosine")(100, 10)(25) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    assert [get("linear")(100, 10)(t) for t in (0, 50, 75)] == pytest.approx([1.0, 0.5, 0.25])


def test_plugins_lists_schedules_and_augmentations_with_formulas():
    listed = run_cli("plugins", "--kind", "schedules").stdout
    assert "multistep" in listed and "gamma^(number of milestones <= t)" in listed
    assert "cos(pi * t / T)" in listed and "(1 - t / T)" in listed
    import json
    data = json.loads(run_cli("plugins", "--json").stdout)
    provided = {k: [n["name"] for n in v] for p in data["plugins"] for k, v in p["provides"].items()}
    assert provided["schedules"] == ["constant", "multistep", "cosine", "linear"]
    assert provided["augmentations"] == ["flip", "crop"]
