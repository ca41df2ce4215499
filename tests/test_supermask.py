"""`tickets supermask`: rows, the saved masks and states, straight-through gradients, determinism, resume,
method defaults, errors."""
import pytest
import torch
import torch.nn.functional as F
from conftest import load, read_results, run_cli

from tickets.builtin.models import lenet_300_100
from tickets.components import load_splits
from tickets.config import build_config
from tickets.errors import TicketsError
from tickets.experiments.supermask import SupermaskWeight, keep_count, method_defaults
from tickets.plugins import registry
from tickets.store import RESULT_COLUMNS, read_csv_rows, read_json

LAYERS = {"fc1.weight": 784 * 300, "fc2.weight": 300 * 100, "output.weight": 100 * 10}
TINY = ["--epochs", "2", "--set", "train.eval_every=20", "--quiet"]  # about a second per network


def supermask(out, name, *extra, expect=0):
    return run_cli("supermask", "--out", out, "--name", name, *TINY, *extra, expect=expect)


def evaluate(model, state):
    """(test accuracy, test loss) on the digits of ``model`` loaded with ``state``, in evaluation mode."""
    splits = load_splits(build_config(), registry().get("datasets", "digits"))
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        logits = model(splits.test_x)
    return (logits.argmax(1) == splits.test_y).float().mean().item(), F.cross_entropy(logits, splits.test_y).item()


def accuracy(model, state):
    return evaluate(model, state)[0]


def masked_accuracy(run_dir, variant, mask_file="mask.pt"):
    """Test accuracy of init.pt masked by ``mask_file`` in a plain LeNet."""
    state, mask = load(run_dir / "seed_0/init.pt"), load(run_dir / f"seed_0/round_0/{variant}/{mask_file}")
    return accuracy(lenet_300_100(10, (1, 28, 28)), {k: v * mask[k] if k in mask else v for k, v in state.items()})



@pytest.fixture(scope="module")
def edge_popup(tmp_path_factory):
    out = tmp_path_factory.mktemp("sm")
    supermask(out, "ep", "--method", "edge_popup", "--density", "0.3", "--init", "signed_constant",
              "--optimizer", "sgd", "--lr", "0.1", "--set", "train.optimizer_options={momentum: 0.9}")
    return out / "ep"


# At this learning rate the mask reaches its best validation loss before the end (iteration 180 of 290).
BERNOULLI = ["--method", "bernoulli", "--density", "0.5", "--init", "kaiming_normal", "--lr", "0.1", "--epochs", "5"]


@pytest.fixture(scope="module")
def bernoulli(tmp_path_factory):
    out = tmp_path_factory.mktemp("sm")
    supermask(out, "bern", *BERNOULLI)
    return out, out / "bern"


def test_edge_popup_writes_one_row_and_an_exact_per_layer_mask(edge_popup):
    (row,) = read_results(edge_popup)
    assert list(row) == RESULT_COLUMNS
    assert (row["round"], row["variant"], row["criterion"]) == ("0", "supermask_edge_popup", "edge_popup")
    mask = load(edge_popup / "seed_0/round_0/supermask_edge_popup/mask.pt")
    assert set(mask) == set(LAYERS) and all(m.dtype == torch.bool for m in mask.values())
    for name, n in LAYERS.items():
        assert int(mask[name].sum()) == keep_count(n, 0.3) == round(0.3 * n)
    kept = sum(int(m.sum()) for m in mask.values())
    assert int(row["params_remaining"]) == kept
    assert float(row["weights_remaining"]) == pytest.approx(kept / sum(LAYERS.values()), abs=1e-6)
    for name in ("metrics.csv", "done.json", "scores.pt", "early_stop.pt", "final_mask.pt", "final.pt"):
        assert (edge_popup / "seed_0/round_0/supermask_edge_popup" / name).exists()


def test_weights_stay_frozen_and_the_saved_mask_gives_the_reported_accuracy(edge_popup):
    init = load(edge_popup / "seed_0/init.pt")
    assert torch.allclose(init["fc1.weight"].abs(), torch.full((300, 784), (2 / 784) ** 0.5))  # signed constant
    (row,) = read_results(edge_popup)
    variant = "supermask_edge_popup"
    assert masked_accuracy(edge_popup, variant) == pytest.approx(float(row["test_acc_at_early_stop"]), abs=1e-6)
    assert (masked_accuracy(edge_popup, variant, "final_mask.pt")
            == pytest.approx(float(row["final_test_acc"]), abs=1e-6))
    assert float(row["final_test_acc"]) > 0.8 and float(row["acc_at_init"]) < 0.25  # learned a mask, from chance


def test_bernoulli_reports_the_learned_density_of_the_saved_mask(bernoulli):
    _, run_dir = bernoulli
    (row,) = read_results(run_dir)
    mask = load(run_dir / "seed_0/round_0/supermask_bernoulli/mask.pt")
    kept = sum(int(m.sum()) for m in mask.values())
    assert row["variant"] == "supermask_bernoulli" and int(row["params_remaining"]) == kept
    assert 0.3 < float(row["weights_remaining"]) < 0.7
    assert float(row["test_acc_at_early_stop"]) > 0.8 and float(row["acc_at_init"]) < 0.25


def test_the_headline_accuracy_and_its_mask_come_from_the_early_stop_iteration(bernoulli):
    _, run_dir = bernoulli
    (row,) = read_results(run_dir)
    net = run_dir / "seed_0/round_0/supermask_bernoulli"
    early, final = load(net / "mask.pt"), load(net / "final_mask.pt")
    # The premise: training went on past the early stop, and the sampled masks kept changing.
    assert int(row["early_stop_iter"]) < int(row["iterations"])
    assert not all(torch.equal(early[n], final[n]) for n in LAYERS)
    assert float(row["test_acc_at_early_stop"]) != float(row["final_test_acc"])
    assert masked_accuracy(run_dir, "supermask_bernoulli") == pytest.approx(float(row["test_acc_at_early_stop"]),
                                                                            abs=1e-6)
    assert masked_accuracy(run_dir, "supermask_bernoulli", "final_mask.pt") == pytest.approx(
        float(row["final_test_acc"]), abs=1e-6)
    kept = sum(int(m.sum()) for m in early.values())
    assert int(row["params_remaining"]) == kept
    assert float(row["weights_remaining"]) == pytest.approx(kept / sum(LAYERS.values()), abs=1e-6)
    assert accuracy(lenet_300_100(10, (1, 28, 28)), load(net / "early_stop.pt")) == pytest.approx(
        float(row["test_acc_at_early_stop"]), abs=1e-6)


def test_a_fixed_seed_gives_the_same_mask_and_rerunning_trains_nothing(bernoulli, tmp_path):
    out, run_dir = bernoulli
    supermask(tmp_path, "again", *BERNOULLI)
    first = load(run_dir / "seed_0/round_0/supermask_bernoulli/mask.pt")
    second = load(tmp_path / "again/seed_0/round_0/supermask_bernoulli/mask.pt")
    assert all(torch.equal(first[n], second[n]) for n in LAYERS)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("run", "train_seconds")} for r in rows]  # noqa: E731
    assert strip(read_results(run_dir)) == strip(read_results(tmp_path / "again"))
    path = run_dir / "seed_0/round_0/supermask_bernoulli/mask.pt"
    stamp = path.stat().st_mtime_ns
    result = run_cli("supermask", "--out", out, "--name", "bern", *TINY[:-1], *BERNOULLI)
    assert "already done" in result.stderr and path.stat().st_mtime_ns == stamp


def test_straight_through_gradients():
    w = torch.tensor([[1.0, -2.0, 3.0, -4.0]])
    grad = torch.tensor([[0.5, 0.25, -1.0, 2.0]])
    scores = torch.tensor([[0.1, -0.4, 0.3, -0.2]])
    popup = SupermaskWeight(scores, "edge_popup", 0.5)
    out = popup(w)
    assert out.tolist() == [[0.0, -2.0, 3.0, 0.0]]  # top 2 of |score|
    out.backward(grad)
    assert torch.allclose(popup.scores.grad, grad * w * torch.sign(scores))  # d/ds through |s|, mask passed through
    bern = SupermaskWeight(scores, "bernoulli", 0.5)
    bern.eval()
    assert bern(w).tolist() == [[1.0, 0.0, 3.0, 0.0]]  # evaluation: sigmoid(score) > 0.5
    bern.train()
    bern(w).backward(grad)
    p = torch.sigmoid(scores)
    assert torch.allclose(bern.scores.grad, grad * w * p * (1 - p))


@pytest.mark.parametrize("args, message", [
    (["--method", "nope"], "unknown supermask method 'nope'"),
    (["--density", "0"], "density must be in (0, 1]"),
    (["--density", "1.5"], "density must be in (0, 1]"),
    (["--set", "train.checkpoint_every=10"], "tickets supermask does not checkpoint mid-network"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    result = supermask(tmp_path, "bad", *args, expect=2)
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_batchnorm_results_are_reproduced_from_the_saved_files(tmp_path):
    """resnet20's BatchNorm running statistics change in training though no weight does: they are saved."""
    supermask(tmp_path, "bn", "--method", "edge_popup", "--model", "resnet20", "--set", "model.options={width: 0.25}",
              "--set", "train.iterations=12", "--set", "train.eval_every=4")
    run = tmp_path / "bn"
    (row,) = read_results(run)
    net = run / "seed_0/round_0/supermask_edge_popup"
    init, mask, early = load(run / "seed_0/init.pt"), load(net / "mask.pt"), load(net / "early_stop.pt")
    model = registry().get("models", "resnet20")(10, (1, 28, 28), width=0.25)
    assert set(early) == set(model.state_dict())
    statistics = [k for k in init if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    for name, value in init.items():  # the weights are init.pt's, masked by mask.pt; nothing else trained
        if name in mask:
            assert torch.equal(early[name], value * mask[name])
        elif name not in statistics:
            assert torch.equal(early[name], value)
    # Accuracy and (more sensitive) test loss at the early stop and at the end, as reported.
    (at_stop,) = [m for m in read_csv_rows(net / "metrics.csv") if m["iteration"] == row["early_stop_iter"]]
    acc, loss = evaluate(model, early)
    assert acc == pytest.approx(float(row["test_acc_at_early_stop"]), abs=1e-6)
    assert loss == pytest.approx(float(at_stop["test_loss"]), rel=1e-5)
    acc, loss = evaluate(model, load(net / "final.pt"))
    assert acc == pytest.approx(float(row["final_test_acc"]), abs=1e-6)
    assert loss == pytest.approx(float(row["final_test_loss"]), rel=1e-5)
    # Without the learned statistics, the same weights and mask give another network.
    _, stale_loss = evaluate(model, {**early, **{k: init[k] for k in statistics}})
    assert stale_loss != pytest.approx(float(at_stop["test_loss"]), rel=1e-2)


@pytest.mark.parametrize("method", ["bernoulli", "edge_popup"])
def test_each_method_reaches_85_percent_with_no_other_flags(tmp_path, method):
    run_cli("supermask", "--out", tmp_path, "--name", method, "--method", method, "--quiet")
    (row,) = read_results(tmp_path / method)
    assert float(row["test_acc_at_early_stop"]) >= 0.85


def test_method_defaults_sit_beneath_config_files_and_flags(tmp_path):
    bernoulli = method_defaults("bernoulli")
    assert build_config(defaults=bernoulli).train.lr == bernoulli["train.lr"] != build_config().train.lr
    assert build_config(overrides={"train.lr": 0.05}, defaults=bernoulli).train.lr == 0.05
    assert build_config(sets=["train.epochs=3"], defaults=bernoulli).train.epochs == 3
    config = tmp_path / "mine.yaml"
    config.write_text("train:\n  lr: 0.02\n")
    assert build_config(str(config), defaults=bernoulli).train.lr == 0.02
    with pytest.raises(TicketsError, match="unknown supermask method 'nope'"):
        method_defaults("nope")


def lr_column(run_dir, variant):
    rows = read_csv_rows(run_dir / f"seed_0/round_0/{variant}/metrics.csv")
    return {int(r["iteration"]): float(r["lr"]) for r in rows}


def test_scores_train_with_the_schedule_and_on_augmented_batches(tmp_path):
    # lr 0.3 (bernoulli's default), warmup over 10 iterations, x0.1 from iteration 40: the lr column is exact
    supermask(tmp_path, "sched", "--method", "bernoulli", "--warmup", "10it", "--schedule", "multistep",
                        "--set", "train.schedule_options={milestones: [40it], gamma: 0.1}",
                        "--set", "data.augment=[crop]")
    run_dir = tmp_path / "sched"
    lr = lr_column(run_dir, "supermask_bernoulli")
    assert lr[0] == 0 and lr[20] == pytest.approx(0.3, rel=1e-12) and lr[60] == pytest.approx(0.03, rel=1e-12)
    components = read_json(run_dir / "run.json")["components"]
    assert components["schedule"]["name"] == "multistep" and components["augmentation:crop"]["name"] == "crop"
    # the same schedule without augmentation learns another mask: the augmented batches reached the scores
    supermask(tmp_path, "plain", "--method", "bernoulli", "--warmup", "10it", "--schedule", "multistep",
                      "--set", "train.schedule_options={milestones: [40it], gamma: 0.1}")
    masks = [load(tmp_path / name / "seed_0/round_0/supermask_bernoulli/final_mask.pt") for name in ("sched", "plain")]
    assert any(not torch.equal(masks[0][k], masks[1][k]) for k in masks[0])
