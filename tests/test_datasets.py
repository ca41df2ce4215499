"""The built-in datasets: the embedded digits, uci_digits, and clear errors for the torchvision ones."""
import gzip
import hashlib
import pickle
import struct
import sys
from fractions import Fraction

import numpy as np
import pytest
import torch
from conftest import TINY, read_results, run_cli

from tickets.builtin.datasets import register_datasets
from tickets.data import TensorData
from tickets.errors import TicketsError


def registered():
    found = {}
    register_datasets(lambda name, obj, description=None: found.__setitem__(name, obj))
    return found


DATASETS = registered()


def test_registered_names():
    assert set(DATASETS) == {"digits", "uci_digits", "mnist", "fashion_mnist", "cifar10"}


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


@pytest.fixture(scope="module")
def uci():
    return DATASETS["uci_digits"](None, False)


def sklearn_digits():
    """The 1,797 8x8 images (float64, 0..16) and labels, straight from scikit-learn."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return torch.from_numpy(bunch.images), torch.from_numpy(bunch.target)


def resized(image8: torch.Tensor) -> torch.Tensor:
    """One 8x8 sklearn image as the documented 28x28 in 0..255 (float64, not rounded), with plain torch."""
    x = image8.double().view(1, 1, 8, 8) * (255.0 / 16.0)
    return torch.nn.functional.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)[0]


def test_uci_digits_shapes_and_split(uci):
    assert isinstance(uci, TensorData)
    assert uci.train_x.shape == (1437, 1, 28, 28) and uci.test_x.shape == (360, 1, 28, 28)
    assert uci.train_x.dtype == torch.uint8 and uci.test_x.dtype == torch.uint8
    assert uci.train_y.dtype == torch.int64 and uci.test_y.dtype == torch.int64
    assert uci.num_classes == 10 and uci.input_shape == (1, 28, 28)
    # stratified: 36 test images per class, the rest of each class's 174..183 images for training
    assert torch.bincount(uci.test_y, minlength=10).tolist() == [36] * 10
    _, labels = sklearn_digits()
    assert (torch.bincount(uci.train_y, minlength=10) + 36).tolist() == torch.bincount(labels).tolist()
    # train and test are disjoint (the 1,797 sklearn images are all distinct, and so are their resizes)
    train = {bytes(x.numpy()) for x in uci.train_x}
    assert len(train) == 1437 and not any(bytes(x.numpy()) in train for x in uci.test_x)
    # both splits are shuffled, not grouped by class
    assert (uci.train_y[1:] != uci.train_y[:-1]).sum() > 1000 and (uci.test_y[1:] != uci.test_y[:-1]).sum() > 250


def test_uci_digits_are_the_sklearn_images_resized(uci):
    images, labels = sklearn_digits()
    # every pixel is a nearest integer of the bilinear 28x28 value computed here with F.interpolate
    expected = torch.cat([resized(image) for image in images])  # 1797 x 28 x 28
    loaded = torch.cat([uci.train_x, uci.test_x])[:, 0].double()
    loaded_y = torch.cat([uci.train_y, uci.test_y])
    # find each loaded image's sklearn source (its nearest bilinear resize)
    source = torch.cdist(loaded.flatten(1), expected.flatten(1)).argmin(1)
    assert sorted(source.tolist()) == list(range(1797))  # train and test partition all 1,797 images
    assert torch.equal(loaded_y, labels[source])
    assert (loaded - expected[source]).abs().max() <= 0.5 + 1e-9
    assert (loaded == expected[source].round()).double().mean() > 0.99  # differences only at exact halves
    # all images by hand, in exact integers: bilinear samples row r at max((r + 1/2) * 8/28 - 1/2, 0)
    by_hand = bilinear_by_hand(images.round().long())[source]
    assert torch.equal(loaded.long(), by_hand)
    assert not torch.equal(loaded.long(), by_hand.transpose(1, 2))  # the orientation is sklearn's


def bilinear_by_hand(images8: torch.Tensor) -> torch.Tensor:
    """The documented 28x28 of N integer 8x8 images (0..16), exact: bilinear, align_corners=False, x 255/16,
    halves rounded up."""
    weights = torch.zeros(28, 8, dtype=torch.long)  # row r of the output = weights[r] @ input rows, in 1/14 units
    for r in range(28):
        s = max((r + Fraction(1, 2)) * Fraction(8, 28) - Fraction(1, 2), Fraction(0))
        low = int(s)
        frac = (s - low) * 14
        assert frac.denominator == 1
        weights[r, low] += 14 - int(frac)
        weights[r, min(low + 1, 7)] += int(frac)
    assert weights.sum(1).eq(14).all()
    grid = weights @ images8 @ weights.t()  # N x 28 x 28, in units of 1/196 of a 0..16 pixel
    return (grid * 255 * 2 + 16 * 196) // (2 * 16 * 196)  # floor(255 * grid / 3136 + 1/2)


def test_uci_digits_stats_and_pinned_bits(uci):
    scaled = uci.train_x.double() / 255.0
    assert uci.mean == (round(scaled.mean().item(), 4),) == (0.3045,)
    assert uci.std == (round(scaled.std().item(), 4),) == (0.3244,)
    assert uci.train_x.max() == 255 and uci.train_x[:, :, :, 0].float().mean() < uci.train_x.float().mean()
    # the split and the pixels are part of the dataset's definition: the same bits on every machine
    digest = {k: hashlib.sha256(getattr(uci, k).numpy().tobytes()).hexdigest()[:16]
              for k in ("train_x", "train_y", "test_x", "test_y")}
    assert digest == {"train_x": "ce247ab96cc85486", "train_y": "98f4b6809eeb2c3f",
                      "test_x": "d3653d19fd77786f", "test_y": "b707b28d2911f221"}


def test_uci_digits_deterministic(uci):
    b = DATASETS["uci_digits"]("ignored", True)
    assert torch.equal(uci.train_x, b.train_x) and torch.equal(uci.train_y, b.train_y)
    assert torch.equal(uci.test_x, b.test_x) and torch.equal(uci.test_y, b.test_y)
    assert uci.mean == b.mean and uci.std == b.std


def test_uci_digits_without_sklearn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes the import fail
    with pytest.raises(TicketsError) as info:
        DATASETS["uci_digits"](None, False)
    message = str(info.value)
    assert "scikit-learn" in message and "pip install scikit-learn" in message and "\n" not in message


def test_uci_digits_conv_models_take_the_images(uci):
    from tickets.data import normalize
    from tickets.plugins import registry

    x = normalize(uci.test_x[:4], uci.mean, uci.std)
    for name in ("conv2", "lenet_300_100"):
        model = registry().get("models", name)(uci.num_classes, uci.input_shape)
        assert model(x).shape == (4, 10)


def test_uci_digits_prune_run(tmp_path):
    run_cli("prune", "--out", tmp_path, "--name", "uci", *TINY, "--rounds", "1", "--controls", "none",
            "--dataset", "uci_digits", "--model", "lenet_300_100")
    rows = read_results(tmp_path / "uci")
    assert [(r["round"], r["variant"], r["status"]) for r in rows] == [("0", "ticket", "ok"), ("1", "ticket", "ok")]
    # 360 test images: accuracies are multiples of 1/360, and 4 iterations already beat chance
    for r in rows:
        assert abs(float(r["final_test_acc"]) * 360 - round(float(r["final_test_acc"]) * 360)) < 0.01
    assert float(rows[0]["final_test_acc"]) > 0.2
    assert "dataset: uci_digits" in (tmp_path / "uci" / "config.yaml").read_text()


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
