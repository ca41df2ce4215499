"""Bad input: one line naming the problem and the fix, exit code 2, no traceback, outputs untouched."""
import subprocess
import sys

import pytest
from conftest import TINY, prune_tiny, run_cli, snapshot


@pytest.fixture(scope="module")
def existing(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    prune_tiny(out, "keep", "--rounds", "1", "--controls", "none")
    return out


BAD = [
    (["--rounds", "-1"], "rounds must be 0 or more"),
    (["--prune-fraction", "1.5"], "prune fraction must be in (0, 1)"),
    (["--prune-fraction", "0"], "prune fraction must be in (0, 1)"),
    (["--criterion", "magnitud"], "unknown criterion 'magnitud' (did you mean 'magnitude'?); known criteria:"),
    (["--model", "lenet"], "unknown model 'lenet'"),
    (["--optimizer", "sgdd"], "unknown optimizer 'sgdd'"),
    (["--controls", "reinit,nope"], "unknown control 'nope'"),
    (["--set", "train.learning_rate=0.1"], "unknown config key train.learning_rate; known keys of train:"),
    (["--set", "train.batch_size=many"], "config key train.batch_size must be int, got 'many'"),
    (["--set", "nonsense"], "expected section.key=value"),
    (["--rewind", "500ep"], "is not before the end of training"),
    (["--rewind", "later"], "rewind 'later' is not understood"),
    (["--config", "missing.yaml"], "config file 'missing.yaml' not found"),
    (["--scope", "everywhere"], "unknown scope 'everywhere'"),
    (["--seeds", "a,b"], "expected comma-separated integers"),
    (["--dataset", "mnist"], "needs --data-dir"),
    (["--set", "model.options={depth: 3}"], "rejected model.options"),
    (["--set", "train.optimizer_options={momentumm: 0.9}"], "rejected its options"),
    (["--lr", "fast"], "'fast' is not a valid float"),
    (["--schedule", "cosin"],
     "unknown schedule 'cosin' (did you mean 'cosine'?); known schedules: constant, cosine, linear, multistep"),
    (["--schedule", "multistep", "--set", "train.schedule_options={milestones: [5it, 900ep]}"],
     "milestone '900ep' (iteration 52200) is not before the end of training"),
    (["--schedule", "multistep", "--set", "train.schedule_options={milestones: [300it], gama: 0.5}"],
     "schedule 'multistep' rejected train.schedule_options"),
    (["--warmup", "900ep"], "warmup '900ep' (52200 iterations) is beyond the end of training (17 iterations"),
    (["--warmup", "soon"], "train.warmup 'soon' is not understood"),
    (["--set", "train.checkpoint_every=0"], "train.checkpoint_every must be at least 1"),
    (["--set", "data.augment=[rotate]"], "unknown augmentation 'rotate'; known augmentations: crop, flip"),
    (["--set", "data.augment=[crop]", "--set", "data.augment_options={crop: {padding: -1}}"],
     "augmentation 'crop' rejected its options {'padding': -1}"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(existing, args, message):
    before = snapshot(existing)
    result = run_cli("prune", "--out", existing, "--name", "keep", *TINY, *args, expect=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.output
    assert snapshot(existing) == before


def test_changing_settings_of_a_named_run_is_refused(existing):
    before = snapshot(existing)
    result = run_cli("prune", "--out", existing, "--name", "keep", *TINY, "--lr", "0.1", expect=2)
    assert "was made with other settings (train.lr: 0.0012 -> 0.1)" in result.stderr
    assert snapshot(existing) == before


def test_real_process_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tickets.cli", "prune", "--rounds", "-3", "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "Error: rounds must be 0 or more, got -3"
    assert not any(tmp_path.iterdir())


def test_report_of_a_folder_without_results(tmp_path):
    result = run_cli("report", tmp_path, expect=2)
    assert "run `tickets prune` first" in result.stderr


no_gpu = pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")


@no_gpu
@pytest.mark.parametrize("verb", ["prune", "train", "supermask"])
def test_an_unavailable_accelerator_is_one_line_and_writes_nothing(tmp_path, verb):
    result = run_cli(verb, "--out", tmp_path, *TINY, "--accelerator", "gpu", expect=2)
    assert result.stderr.startswith("Error: accelerator='gpu' devices=1 precision='32-true' cannot be used here")
    assert "this machine has CPU only: no CUDA GPU, no Apple MPS" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not any(tmp_path.iterdir())  # no empty run directory left behind


@no_gpu
def test_compare_on_an_unavailable_accelerator_touches_nothing(existing):
    before = snapshot(existing)
    result = run_cli("compare", existing / "keep", "--controls", "reinit", "--accelerator", "gpu", expect=2)
    assert "this machine has CPU only" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert snapshot(existing) == before


@pytest.mark.parametrize("args,message", [
    (["--devices", "2", "--accelerator", "gpu"], "--devices 2 asks for 2 GPUs, but"),
    (["--set", "train.precision=bogus"], "precision='bogus' cannot be used here (Precision 'bogus' is invalid."),
])
def test_device_count_and_precision_errors_are_one_line(tmp_path, args, message):
    result = run_cli("prune", "--out", tmp_path, *TINY, *args, expect=2)
    assert result.stderr.startswith("Error: ") and message in result.stderr and "this machine has" in result.stderr
    assert not any(tmp_path.iterdir())
