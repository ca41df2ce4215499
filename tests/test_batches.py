"""BatchStream: the training batches of iterations [start, end), the same for every network of a seed."""
import torch

from tickets.training import BatchStream, iterations_per_epoch

X = torch.arange(10, dtype=torch.float32).unsqueeze(1) * 10  # sample i is the row [10 i], label i
Y = torch.arange(10)


def labels(stream) -> list[list[int]]:
    out = []
    for x, y in stream:
        assert torch.equal(x.squeeze(1), y.float() * 10)  # inputs and labels stay paired
        out.append(y.tolist())
    return out


def test_iterations_per_epoch_drops_the_last_partial_batch():
    assert iterations_per_epoch(10, 3) == 3
    assert iterations_per_epoch(9, 3) == 3
    assert iterations_per_epoch(2, 3) == 1  # never zero


def test_each_epoch_is_a_fresh_permutation_in_full_batches():
    batches = labels(BatchStream(X, Y, 3, seed=0, start=0, end=9))  # three epochs of three batches
    assert len(batches) == 9 and all(len(b) == 3 for b in batches)
    epochs = [sum(batches[e * 3:(e + 1) * 3], []) for e in range(3)]
    for seen in epochs:
        assert len(set(seen)) == 9  # no sample twice within an epoch (one of 10 left out)
    assert epochs[0] != epochs[1] != epochs[2]


def test_a_stream_from_k_continues_the_full_stream_exactly():
    full = labels(BatchStream(X, Y, 3, seed=4, start=0, end=8))
    for k in range(8):
        stream = BatchStream(X, Y, 3, seed=4, start=k, end=8)
        assert len(stream) == 8 - k
        assert labels(stream) == full[k:], k


def test_the_seed_fixes_the_order():
    assert labels(BatchStream(X, Y, 3, seed=1, start=0, end=6)) == labels(BatchStream(X, Y, 3, seed=1, start=0, end=6))
    assert labels(BatchStream(X, Y, 3, seed=1, start=0, end=6)) != labels(BatchStream(X, Y, 3, seed=2, start=0, end=6))
