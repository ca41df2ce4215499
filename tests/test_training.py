"""tickets.training: one real masked network trained for a few dozen iterations, checked against plain torch;
the batch order's documented rule; the Lightning import kept out of the driver's modules."""
import subprocess
import sys
import textwrap

import pytest
import torch

from tickets.components import load_splits
from tickets.config import build_config
from tickets.masks import Mask, prunable_names
from tickets.plugins import registry
from tickets.ticket import Ticket
from tickets.training import BatchStream, train_network

LR, END, EVAL_EVERY, FROZEN_FROM = 0.05, 30, 10, 20


def lr_factor(iteration: int) -> float:
    """A step schedule that stops learning at FROZEN_FROM: 1 for 0-9, 0.5 for 10-19, 0 from 20 on."""
    return 1.0 if iteration < 10 else 0.5 if iteration < FROZEN_FROM else 0.0


def lenet():
    return registry().get("models", "lenet_300_100")(10, (1, 28, 28))


@pytest.fixture(scope="module")
def trained():
    """LeNet-300-100 on the digits under a random half mask: momentum SGD with weight decay, 30 iterations."""
    splits = load_splits(build_config(None, {}), registry().get("datasets", "digits"))
    torch.manual_seed(0)
    model = lenet()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(3)
    mask = {n: torch.rand(state[n].shape, generator=g) < 0.5 for n in prunable_names(model)}
    make_opt = lambda params: torch.optim.SGD(params, lr=LR, momentum=0.9, weight_decay=0.01)  # noqa: E731
    outcome = train_network(model, Ticket(Mask(mask), state, 0), make_opt, splits, end_iteration=END,
                            eval_every=EVAL_EVERY, batch_size=60, data_seed=0, lr_factor=lr_factor,
                            capture_at=(FROZEN_FROM,))
    return outcome, state, mask, splits


def test_pruned_weights_stay_exactly_zero_under_momentum_and_weight_decay(trained):
    outcome, state, mask, _ = trained
    assert set(mask) == {"fc1.weight", "fc2.weight", "output.weight"}
    for name, keep in mask.items():
        final = outcome.final_state[name]
        assert (final[~keep] == 0).all(), name
        assert (final[keep] != state[name][keep]).float().mean() > 0.5, name  # the kept weights did train
    assert not torch.equal(outcome.final_state["fc1.bias"], state["fc1.bias"])  # biases train, unmasked


def test_test_accuracy_at_iteration_0_is_that_of_the_untrained_masked_weights(trained):
    outcome, state, mask, splits = trained
    model = lenet()
    model.load_state_dict({k: v * mask[k] if k in mask else v for k, v in state.items()})
    model.eval()
    with torch.no_grad():
        predicted = model(splits.test_x).argmax(1)
    accuracy = (predicted == splits.test_y).sum().item() / splits.test_y.shape[0]
    first = outcome.metrics[0]
    assert first["iteration"] == 0
    assert first["test_acc"] == pytest.approx(accuracy, abs=1e-6)
    assert outcome.fields["acc_at_init"] == pytest.approx(accuracy, abs=1e-6)
    assert outcome.metrics[-1]["test_acc"] > accuracy + 0.2  # and training then learned something


def test_metrics_rows_and_the_learning_rate_column_follow_lr_times_lr_factor(trained):
    outcome = trained[0]
    assert [r["iteration"] for r in outcome.metrics] == [0, 10, 20, 30]
    assert [r["lr"] for r in outcome.metrics] == pytest.approx([LR, LR / 2, 0.0, 0.0])
    assert outcome.iterations == END and outcome.status == "ok"


def test_the_learning_rate_in_force_is_applied_to_the_steps(trained):
    """lr_factor is 0 from iteration 20 on: the weights at 30 are those captured at 20, bit for bit."""
    outcome = trained[0]
    at_20 = outcome.captured[FROZEN_FROM]
    assert all(torch.equal(outcome.final_state[k], at_20[k]) for k in at_20)
    assert not torch.equal(at_20["fc1.bias"], trained[1]["fc1.bias"])


def test_training_is_masked_sgd_on_the_documented_batches_at_lr_times_lr_factor(trained):
    """The same 30 steps written out in plain torch: the batch of iteration t (randperm seeded by
    data_seed * 1_000_003 + epoch), learning rate LR * lr_factor(t), gradients masked, weights re-masked."""
    outcome, state, mask, splits = trained
    model = lenet()
    model.load_state_dict({k: v * mask[k] if k in mask else v for k, v in state.items()})
    model.train()
    params = dict(model.named_parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=0.01)
    n = splits.train_x.shape[0]
    per_epoch = n // 60
    for t in range(END):
        epoch, position = divmod(t, per_epoch)
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(0 * 1_000_003 + epoch))[position * 60:][:60]
        for group in optimizer.param_groups:
            group["lr"] = LR * lr_factor(t)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(splits.train_x[idx]), splits.train_y[idx]).backward()
        for name, keep in mask.items():
            params[name].grad.mul_(keep)
        optimizer.step()
        with torch.no_grad():
            for name, keep in mask.items():
                params[name].mul_(keep)
    reference = model.state_dict()
    for k, v in reference.items():
        torch.testing.assert_close(outcome.final_state[k], v, rtol=0, atol=1e-6, msg=k)


# BatchStream ------------------------------------------------------------------------------------------
N, BATCH, SEED = 50, 7, 4  # 7 full batches an epoch (one sample left out each epoch)
X = torch.arange(N, dtype=torch.float32).unsqueeze(1) * 3  # sample i is the row [3 i], label i
Y = torch.arange(N)


def documented_batches(start: int, end: int) -> list[list[int]]:
    """The labels of iterations [start, end): epoch e's order is torch.randperm seeded by seed * 1_000_003 + e."""
    per_epoch = N // BATCH
    out = []
    for i in range(start, end):
        epoch, position = divmod(i, per_epoch)
        perm = torch.randperm(N, generator=torch.Generator().manual_seed(SEED * 1_000_003 + epoch))
        out.append(perm[position * BATCH:(position + 1) * BATCH].tolist())
    return out


def stream_batches(stream) -> list[list[int]]:
    out = []
    for x, y in stream:
        assert torch.equal(x.squeeze(1), y.float() * 3)  # inputs stay with their labels
        out.append(y.tolist())
    return out


def test_batch_stream_follows_the_documented_seed_rule():
    stream = BatchStream(X, Y, BATCH, seed=SEED, start=0, end=23)  # three epochs and two batches
    assert len(stream) == 23
    assert stream_batches(stream) == documented_batches(0, 23)


@pytest.mark.parametrize("start", [5, 7, 12, 21])
def test_batch_stream_resumes_mid_epoch_with_the_same_batches(start):
    full = stream_batches(BatchStream(X, Y, BATCH, seed=SEED, start=0, end=23))
    resumed = stream_batches(BatchStream(X, Y, BATCH, seed=SEED, start=start, end=23))
    assert resumed == full[start:] == documented_batches(start, 23)


# Lightning stays out of the driver -----------------------------------------------------------------------
def test_the_drivers_modules_do_not_import_lightning():
    script = textwrap.dedent("""
        import sys
        import tickets.api, tickets.experiments.imp.graph, tickets.engine.lifecycle, tickets.executors.run
        print("after driver imports:", "pytorch_lightning" in sys.modules)
        import tickets.training
        tickets.training.check_trainer_settings("cpu", 1, "32-true")
        print("after check_trainer_settings:", "pytorch_lightning" in sys.modules)
        from tickets.training import train
        print("after importing train:", "pytorch_lightning" in sys.modules, callable(train))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["after driver imports: False", "after check_trainer_settings: False",
                                        "after importing train: True True"]
