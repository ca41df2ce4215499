"""`tickets transfer` (Morcos et al. 2019): a run's tickets trained on other settings, with controls there."""
import hashlib
import json

import pytest
import torch
from conftest import load, masked_accuracy, prune_tiny, read_results, run_cli

# Two real datasets made from the embedded digits by a plugin: five classes (another output
# layer), and 14x14 images (another input shape).
DATASETS = '''
import torch.nn.functional as F

import tickets
from tickets.builtin.datasets import digits
from tickets.data import TensorData


def five_digits(data_dir=None, download=False):
    """The digits 0 to 4."""
    d = digits(data_dir, download)
    tr, te = d.train_y < 5, d.test_y < 5
    return TensorData(d.train_x[tr], d.train_y[tr], d.test_x[te], d.test_y[te], 5, d.mean, d.std)


def small_digits(data_dir=None, download=False):
    """The digits at 14x14."""
    d = digits(data_dir, download)
    shrink = lambda x: F.avg_pool2d(x.float(), 2).round().to(x.dtype)
    return TensorData(shrink(d.train_x), d.train_y, shrink(d.test_x), d.test_y, 10, d.mean, d.std)


@tickets.hookimpl
def register_datasets(register):
    register("five_digits", five_digits, description="digits 0-4")
    register("small_digits", small_digits, description="digits at 14x14")
'''


def without_timing(rows):
    return [{k: v for k, v in r.items() if k not in ("run", "train_seconds")} for r in rows]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return prune_tiny(tmp_path_factory.mktemp("source"), "src", "--rounds", "2", "--rewind", "3it")


def test_a_transfer_trains_the_sources_masks_over_its_theta_k_on_the_target(source, tmp_path):
    run_cli("transfer", source, "--optimizer", "sgd", "--lr", "0.05", "--out", tmp_path, "--workers", "1", "--quiet")
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert run.name.startswith("src-to-")
    rows = read_results(run)
    assert {(int(r["round"]), r["variant"]) for r in rows} == {
        (0, "ticket"), *((r, v) for r in (1, 2) for v in ("ticket", "reinit", "random_prune"))}
    theta_k = load(source / "seed_0" / "rewind.pt")
    for round_ in (1, 2):
        mask = load(source / "seed_0" / f"round_{round_}" / "mask.pt")
        copied = load(run / "seed_0" / f"round_{round_}" / "mask.pt")
        assert copied.keys() == mask.keys() and all(torch.equal(copied[k], mask[k]) for k in mask)
        ticket = next(r for r in rows if int(r["round"]) == round_ and r["variant"] == "ticket")
        assert float(ticket["acc_at_init"]) == pytest.approx(masked_accuracy(run, theta_k, mask), abs=1e-6)
        with (run / "seed_0" / f"round_{round_}" / "ticket" / "metrics.csv").open() as handle:
            lrs = {line.split(",")[-1].strip() for line in handle.readlines()[1:]}
        assert lrs == {"0.05"}  # trained with the target's optimizer settings (constant schedule)
    record = json.loads((run / "run.json").read_text())
    assert record["source"] == str(source.resolve())
    for name, digest in record["source_files"].items():
        assert digest == hashlib.sha256((source / name).read_bytes()).hexdigest()
    assert "seed_0/round_2/mask.pt" in record["source_files"]
    assert run_cli("check", run).exit_code == 0


def test_a_transfer_gives_the_same_results_on_two_workers(source, tmp_path):
    one = tmp_path / "one"
    two = tmp_path / "two"
    for out, workers in ((one, "1"), (two, "2")):
        run_cli("transfer", source, "--lr", "0.002", "--controls", "reinit", "--name", "t", "--out", out,
                "--workers", workers, "--quiet")
    assert without_timing(read_results(one / "t")) == without_timing(read_results(two / "t"))


def test_a_changed_source_stops_the_transfer_from_resuming(source, tmp_path):
    args = ("transfer", source, "--lr", "0.003", "--controls", "none", "--name", "t", "--out", tmp_path, "--quiet",
            "--workers", "1")
    run_cli(*args)
    copy = tmp_path / "source-mask-backup.pt"
    mask_path = source / "seed_0" / "round_2" / "mask.pt"
    copy.write_bytes(mask_path.read_bytes())
    try:
        mask = load(mask_path)
        name = next(iter(mask))
        mask[name].view(-1)[0] = ~mask[name].view(-1)[0]
        torch.save(mask, mask_path)
        result = run_cli(*args, expect=2)
        assert "seed_0/round_2/mask.pt changed since this transfer started" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    finally:
        mask_path.write_bytes(copy.read_bytes())


def test_another_number_of_classes_gets_a_fresh_dense_output_layer(source, tmp_path, site):
    site.install("tickets-more-digits", "0.1", {"more_digits": DATASETS}, {"more": "more_digits"})
    run_cli("transfer", source, "--dataset", "five_digits", "--controls", "none", "--name", "five", "--out", tmp_path,
            "--workers", "1", "--quiet")
    run = tmp_path / "five"
    source_init, init = load(source / "seed_0" / "init.pt"), load(run / "seed_0" / "init.pt")
    for key, value in source_init.items():
        if key.startswith("output"):
            assert init[key].shape[0] == 5
        else:
            assert torch.equal(init[key], value), key
    assert init["output.weight"].abs().sum() > 0  # drawn by the initializer, not zeros
    mask = load(run / "seed_0" / "round_2" / "mask.pt")
    assert bool(mask["output.weight"].all()) and mask["output.weight"].shape == (5, 100)
    source_mask = load(source / "seed_0" / "round_2" / "mask.pt")
    assert torch.equal(mask["fc1.weight"], source_mask["fc1.weight"])
    assert len(read_results(run)) == 3


def test_another_input_shape_is_one_line_naming_both(source, tmp_path, site):
    site.install("tickets-more-digits", "0.1", {"more_digits": DATASETS}, {"more": "more_digits"})
    out = tmp_path / "out"
    result = run_cli("transfer", source, "--dataset", "small_digits", "--out", out, "--quiet", expect=2)
    assert "1x28x28" in result.stderr and "1x14x14" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("args, words", [
    (["--set", "model.name=conv2"], "cannot change model.name"),
    ([], "a transfer needs a change of settings"),
    (["--dataset", "nope"], "nope"),
])
def test_bad_transfers_are_one_line_errors(source, tmp_path, args, words):
    result = run_cli("transfer", source, *args, "--out", tmp_path, "--quiet", expect=2)
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_the_python_api_transfers_too(source, tmp_path):
    import tickets

    run = tickets.transfer(source, optimizer="sgd", lr=0.05, controls=["reinit"], out=tmp_path, name="api",
                           workers=1, quiet=True)
    assert set(run.results["variant"]) == {"ticket", "reinit"}
    with pytest.raises(tickets.TicketsError, match="cannot change model.name"):
        tickets.transfer(source, set={"model.name": "conv2"}, out=tmp_path / "x")
