"""Fixtures of the dataset tests: IDX files written in tmp_path, and no system folders or network."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from recon.data import multi_digit
from recon.data.idx import IMAGES_MAGIC, LABELS_MAGIC


def encode_idx(array: np.ndarray, magic: int) -> bytes:
    """Encode a uint8 array as an IDX file: big-endian magic number and sizes, then the bytes."""
    header = struct.pack(f">{1 + array.ndim}I", magic, *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_file(path: Path, array: np.ndarray, magic: int) -> Path:
    """Write ``array`` to ``path`` as IDX, gzip-compressed when the name ends in .gz."""
    content = encode_idx(array, magic)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)
    return path


def write_source(folder: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                 compress: bool = False) -> Path:
    """Write the four IDX files of an MNIST-like source into ``folder``."""
    suffix = ".gz" if compress else ""
    write_idx_file(folder / f"train-images-idx3-ubyte{suffix}", train[0], IMAGES_MAGIC)
    write_idx_file(folder / f"train-labels-idx1-ubyte{suffix}", train[1], LABELS_MAGIC)
    write_idx_file(folder / f"t10k-images-idx3-ubyte{suffix}", test[0], IMAGES_MAGIC)
    write_idx_file(folder / f"t10k-labels-idx1-ubyte{suffix}", test[1], LABELS_MAGIC)
    return folder


def random_items(seed: int, count: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random 28×28 items with distinct labels, so that a label identifies its item."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    labels = rng.permutation(10)[:count].astype(np.uint8)
    return images, labels


@pytest.fixture
def write_idx() -> Callable[[Path, np.ndarray, int], Path]:
    return write_idx_file


@pytest.fixture(name="write_source")
def write_source_fixture() -> Callable[..., Path]:
    return write_source


@pytest.fixture(name="random_items")
def random_items_fixture() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    return random_items


@pytest.fixture(autouse=True)
def offline_data_search(monkeypatch):
    """Keep every test off $RECON_DATA, /usr/share/datasets and torchvision's download."""
    monkeypatch.delenv("RECON_DATA", raising=False)
    monkeypatch.setattr(multi_digit, "SYSTEM_DATA_DIRS", ())

    def reject_download(source, root):
        raise AssertionError(f"a test tried to download {source.title} into {root}")

    monkeypatch.setattr(multi_digit, "_download_with_torchvision", reject_download)
