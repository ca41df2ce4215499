"""Time one training epoch of the main job's network: tickets (Lightning) vs a plain PyTorch loop.

Both train LeNet-300-100 with Adam on the embedded digits, over the same tensors, the same
batches and the same 80%-dense mask (gradients masked, weights re-masked after each step),
and both evaluate validation and test once at the end. Reported: the median over repeats of
the whole ``train_network`` call (Trainer construction included, what every network pays)
and of the epoch alone (time between the first and the last training step callback), each
as a ratio to the plain loop measured in the same process. Two more rows evaluate every
``--eval-every`` iterations (the default config's 20), without a logger and with Lightning's
TensorBoardLogger receiving every evaluation: their ratio is what TensorBoard costs.

    python benchmarks/bench_epoch.py [--epochs 1] [--repeats 7] [--batch-size 60] [--eval-every 20]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import TensorBoardLogger  # after tickets, which undoes one of Lightning's settings

from tickets.builtin.optimizers import adam
from tickets.components import load_splits
from tickets.config import build_config
from tickets.masks import Mask
from tickets.plugins import registry
from tickets.ticket import Ticket, clone_state, initialize_
from tickets.training import BatchStream, MaskedTraining, iterations_per_epoch, train_network


def plain_loop(model, mask, state, splits, iterations, batch_size):
    """The reference: the same masked training written as a bare PyTorch loop."""
    model.load_state_dict(state)
    opt = torch.optim.Adam(model.parameters(), lr=1.2e-3, fused=True)  # the kernel tickets' adam uses
    params = dict(model.named_parameters())
    masked = [(params[n], m.float()) for n, m in mask.tensors.items()]
    started = time.perf_counter()
    for x, y in BatchStream(splits.train_x, splits.train_y, batch_size, 0, 0, iterations):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for p, m in masked:
            p.grad.mul_(m)
        opt.step()
        with torch.no_grad():
            for p, m in masked:
                p.mul_(m)
    with torch.no_grad():
        model.eval()
        for x, y in ((splits.val_x, splits.val_y), (splits.test_x, splits.test_y)):
            (model(x).argmax(1) == y).float().mean().item()
        model.train()
    return time.perf_counter() - started


class EpochTimer:
    """Wraps MaskedTraining's step to time the epoch without Trainer setup and teardown."""

    def __init__(self):
        self.first = self.last = None
        original = MaskedTraining.training_step

        def timed(module, batch, batch_idx):
            if self.first is None:
                self.first = time.perf_counter()
            out = original(module, batch, batch_idx)
            self.last = time.perf_counter()
            return out

        self.original, MaskedTraining.training_step = original, timed

    def restore(self):
        MaskedTraining.training_step = self.original


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=60)
    parser.add_argument("--eval-every", type=int, default=20)
    args = parser.parse_args()

    config = build_config(None, {})
    reg = registry()
    splits = load_splits(config, reg.get("datasets", "digits"))
    model = reg.get("models", "lenet_300_100")(10, (1, 28, 28))
    initialize_(model, reg.get("initializers", "kaiming_normal"), torch.Generator().manual_seed(0))
    state = clone_state(model)
    mask = Mask.ones_for(model).prune({n: state[n].abs() for n in Mask.ones_for(model).names()}, 0.2)
    iterations = args.epochs * iterations_per_epoch(splits.train_x.shape[0], args.batch_size)
    make_opt = lambda params: adam(params, lr=1.2e-3)  # noqa: E731 - the built-in optimizer

    def timed_call(eval_every, loggers=None):
        started = time.perf_counter()
        train_network(model, Ticket(mask, state, 0), make_opt, splits, end_iteration=iterations,
                      eval_every=eval_every, batch_size=args.batch_size, data_seed=0, loggers=loggers)
        return time.perf_counter() - started

    plain, whole, epoch, evaluating, tensorboard = [], [], [], [], []
    with tempfile.TemporaryDirectory() as logs:
        for repeat in range(args.repeats):
            plain.append(plain_loop(model, mask, state, splits, iterations, args.batch_size))
            timer = EpochTimer()
            whole.append(timed_call(iterations))
            epoch.append(timer.last - timer.first)
            timer.restore()
            evaluating.append(timed_call(args.eval_every))
            # the logger is made per network, as a run makes it, so its setup is part of the cost
            started = time.perf_counter()
            logger = TensorBoardLogger(logs, name="", version=f"network_{repeat}", default_hp_metric=False)
            timed_call(args.eval_every, [logger])
            tensorboard.append(time.perf_counter() - started)

    base = statistics.median(plain)
    print(f"LeNet-300-100, embedded digits, {splits.train_x.shape[0]} train examples, batch {args.batch_size}, "
          f"{iterations} iterations ({args.epochs} epoch), torch threads {torch.get_num_threads()}, "
          f"median of {args.repeats}")
    print(f"{'what':<44} {'seconds':>9} {'ms/iter':>8} {'vs plain':>9}")
    for label, times in (("plain PyTorch loop (masked, same tensors)", plain),
                         ("tickets train_network, whole call", whole),
                         ("tickets, training steps only", epoch),
                         (f"tickets, eval every {args.eval_every}, whole call", evaluating),
                         ("  the same with TensorBoardLogger", tensorboard)):
        t = statistics.median(times)
        print(f"{label:<44} {t:9.4f} {1000 * t / iterations:8.3f} {t / base:8.2f}x")
    print(f"TensorBoard logger overhead: {statistics.median(tensorboard) / statistics.median(evaluating) - 1:+.1%}")


if __name__ == "__main__":
    main()
