"""The built-in datasets: the embedded digits, and clear errors for the torchvision ones."""
import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from tickets.builtin.datasets import register_datasets
from tickets.data import TensorData
from tickets.errors import TicketsError


def registered():
    found = {}
    register_datasets(lambda name, obj, description=None: found.__setitem__(name, obj))
    return found


DATASETS = registered()


def test_registered_names():
    assert set(DATASETS) == {"digits", "mnist", "fashion_mnist", "cifar10"}


def test_digits_shapes_and_split():
    data = DATASETS["digits"](None, False)
    assert isinstance(data, TensorData)
    assert data.train_x.shape == (4000, 1, 28, 28) and data.test_x.shape == (1000, 1, 28, 28)
    assert data.train_x.dtype == torch.uint8 and data.test_x.dtype == torch.uint8
    assert data.train_y.dtype == torch.int64 and data.test_y.dtype == torch.int64
    assert data.num_classes == 10 and data.input_shape == (1, 28, 28)
    assert torch.bincount(data.train_y).tolist() == [400] * 10
    assert torch.bincount(data.test_y).tolist() == [100] * 10
    # train and test are disjoint
    train = {bytes(x.numpy()) for x in data.train_x}
    assert not any(bytes(x.numpy()) in train for x in data.test_x)


def test_digits_are_real_mnist():
    data = DATASETS["digits"](None, False)
    # MNIST: about 13% mean intensity, std about 0.31, black borders, saturated strokes
    assert 0.12 < data.mean[0] < 0.14 and 0.29 < data.std[0] < 0.32
    assert data.train_x[:, :, 0, :].max() == 0
    assert data.train_x.max() == 255
    # class means differ: a "1" uses far less ink than a "0"
    ink = [data.train_x[data.train_y == c].float().mean().item() for c in range(10)]
    assert ink[1] < 0.6 * ink[0]


def test_digits_deterministic():
    a, b = DATASETS["digits"](None, False), DATASETS["digits"]("ignored", True)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.train_y, b.train_y)
    assert torch.equal(a.test_x, b.test_x) and torch.equal(a.test_y, b.test_y)
    assert a.mean == b.mean and a.std == b.std


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_needs_data_dir(name):
    with pytest.raises(TicketsError, match=f"dataset '{name}' needs --data-dir"):
        DATASETS[name](None, False)


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST/raw"), ("fashion_mnist", "FashionMNIST/raw"),
                                          ("cifar10", "cifar-10-batches-py")])
def test_missing_files_offline(tmp_path, name, folder):
    with pytest.raises(TicketsError) as info:
        DATASETS[name](str(tmp_path), False)
    message = str(info.value)
    assert str(tmp_path / folder) in message and "download is off" in message
    assert "\n" not in message


def write_idx(path, array, gz):
    """An idx file (the MNIST format) holding ``array`` (uint8)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_from_local_files(tmp_path, gz):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.RandomState(0)
    sizes = {"train": 6, "t10k": 4}
    for split, n in sizes.items():
        suffix = ".gz" if gz else ""
        write_idx(raw / f"{split}-images-idx3-ubyte{suffix}", rng.randint(0, 256, (n, 28, 28)).astype(np.uint8), gz)
        write_idx(raw / f"{split}-labels-idx1-ubyte{suffix}", (np.arange(n) % 10).astype(np.uint8), gz)
    data = DATASETS["mnist"](str(tmp_path), False)
    assert data.train_x.shape == (6, 1, 28, 28) and data.test_x.shape == (4, 1, 28, 28)
    assert data.train_x.dtype == torch.uint8 and data.train_y.dtype == torch.int64
    assert data.train_y.tolist() == [0, 1, 2, 3, 4, 5] and data.num_classes == 10
    assert data.mean == (0.1307,)


def test_cifar10_from_local_files(tmp_path, monkeypatch):
    import torchvision

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    images = np.arange(2 * 3 * 32 * 32, dtype=np.int64).reshape(2, 3 * 32 * 32) % 251
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": images.astype(np.uint8), "labels": [3, 7]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    # the files are not the real ones: skip torchvision's md5 checks
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: True)

    data = DATASETS["cifar10"](str(tmp_path), False)
    assert data.train_x.shape == (10, 3, 32, 32) and data.test_x.shape == (2, 3, 32, 32)
    assert data.train_x.dtype == torch.uint8 and data.train_y.dtype == torch.int64
    # channel-first layout matches CIFAR's row format (1024 red, 1024 green, 1024 blue values)
    assert torch.equal(data.test_x[0].flatten(), torch.from_numpy(images[0].astype(np.uint8)))
    assert data.train_y.tolist() == [3, 7] * 5 and data.num_classes == 10
    assert len(data.mean) == len(data.std) == 3
