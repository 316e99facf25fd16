"""Multi-digit datasets: canvas layout, pairing, sources, published pickles, cache and sizes."""

from __future__ import annotations

import logging
import os
import pickle
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from recon.data import multi_digit
from recon.data.idx import IDXFormatError
from recon.data.multi_digit import (
    PAIRINGS_PER_SPLIT, DatasetNotFoundError, build_multi_digit, compose_images, draw_pairing,
    load_published_pickle,
)
from recon.tasks import ClassificationTask

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def make_config(name: str = "multi_fashion", **overrides) -> dict:
    config = {"name": name, "root": None, "cache_dir": None, "train_size": None, "test_size": None,
              "build_seed": 0}
    config.update(overrides)
    return config


def expected_canvas(top_left: np.ndarray, bottom_right: np.ndarray) -> np.ndarray:
    """The canvas computed pixel by pixel, independently of compose_images."""
    canvas = np.zeros((36, 36), dtype=np.int64)
    for row in range(36):
        for col in range(36):
            values = [0]
            if row < 28 and col < 28:
                values.append(int(top_left[row, col]))
            if row >= 8 and col >= 8:
                values.append(int(bottom_right[row - 8, col - 8]))
            canvas[row, col] = max(values)
    return canvas


@pytest.fixture
def fashion_root(tmp_path, write_source, random_items) -> Path:
    """A data root with 10 training and 10 test Fashion-MNIST-like items under fashion-mnist/."""
    root = tmp_path / "data"
    write_source(root / "fashion-mnist", random_items(1), random_items(2))
    return root


@pytest.fixture
def build(tmp_path, fashion_root):
    """Build a dataset from ``fashion_root`` with a cache in tmp_path, without system folders or download."""

    def run(name: str = "multi_fashion", **overrides):
        config = make_config(name, root=str(fashion_root), cache_dir=str(tmp_path / "cache"))
        config.update(overrides)
        return build_multi_digit(config, system_dirs=(), download=False)

    return run


# ---------------------------------------------------------------- canvas and pairing


def test_canvas_regions_and_overlap():
    top_left = np.full((1, 28, 28), 160, dtype=np.uint8)
    bottom_right = np.full((1, 28, 28), 90, dtype=np.uint8)

    canvas = compose_images(top_left, bottom_right)[0]

    assert canvas.shape == (36, 36)
    assert canvas[0, 0] == 160
    assert canvas[7, 27] == 160
    assert canvas[35, 35] == 90
    assert canvas[28, 8] == 90
    # Corners covered by neither item stay black.
    assert canvas[0, 35] == 0
    assert canvas[35, 0] == 0
    assert canvas[7, 28] == 0
    # Overlap rows and columns 8..27: the brighter pixel wins.
    assert canvas[8, 8] == 160
    assert canvas[27, 27] == 160


def test_canvas_overlap_is_pixelwise_max():
    rng = np.random.default_rng(0)
    top_left = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    bottom_right = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)

    canvases = compose_images(top_left, bottom_right)

    assert canvases.dtype == np.uint8
    for index in range(3):
        np.testing.assert_array_equal(canvases[index], expected_canvas(top_left[index], bottom_right[index]))
    assert canvases[1, 20, 10] == max(top_left[1, 20, 10], bottom_right[1, 12, 2])


def test_canvas_rejects_wrong_item_size():
    with pytest.raises(ValueError, match=r"items must both have shape N×28×28; got \(2, 20, 20\)"):
        compose_images(np.zeros((2, 20, 20), np.uint8), np.zeros((2, 20, 20), np.uint8))


def test_pairing_uses_each_item_equally():
    top_left, bottom_right = draw_pairing(np.random.default_rng(3), 50)

    assert top_left.shape == (50 * PAIRINGS_PER_SPLIT,)
    assert np.bincount(top_left, minlength=50).tolist() == [PAIRINGS_PER_SPLIT] * 50
    assert np.bincount(bottom_right, minlength=50).tolist() == [PAIRINGS_PER_SPLIT] * 50
    assert not np.array_equal(top_left, bottom_right)


def test_pairing_follows_seed():
    first = draw_pairing(np.random.default_rng(3), 50)
    again = draw_pairing(np.random.default_rng(3), 50)
    other = draw_pairing(np.random.default_rng(4), 50)

    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


# ---------------------------------------------------------------- build from IDX files


def test_build_bundle_layout(build):
    bundle = build()

    assert bundle.name == "multi_fashion"
    assert bundle.in_channels == 1
    assert bundle.tasks == {"T1": ClassificationTask("T1", 10), "T2": ClassificationTask("T2", 10)}
    assert len(bundle.train) == 20
    assert len(bundle.test) == 20
    assert bundle.train.images.shape == (20, 1, 36, 36)
    assert bundle.train.images.dtype == torch.float32
    assert bundle.train.targets["T1"].dtype == torch.int64
    assert bundle.train.targets["T2"].shape == (20,)


def test_build_composes_labelled_items(build, random_items):
    train_items, test_items = random_items(1), random_items(2)

    bundle = build()

    for split, (images, labels) in ((bundle.train, train_items), (bundle.test, test_items)):
        # Labels are distinct within a source, so each target identifies its item.
        item_of_label = {int(label): index for index, label in enumerate(labels)}
        for index in range(len(split)):
            first = images[item_of_label[int(split.targets["T1"][index])]]
            second = images[item_of_label[int(split.targets["T2"][index])]]
            expected = expected_canvas(first, second) / 255.0
            np.testing.assert_allclose(split.images[index, 0].numpy(), expected, rtol=0, atol=1e-7)


def test_build_uses_each_item_twice(build):
    bundle = build()

    for target in ("T1", "T2"):
        counts = np.bincount(bundle.train.targets[target].numpy(), minlength=10)
        assert counts.tolist() == [PAIRINGS_PER_SPLIT] * 10


def test_build_range_is_unit_interval(tmp_path, write_source):
    root = tmp_path / "data"
    images = np.zeros((10, 28, 28), dtype=np.uint8)
    images[:, 0, 0] = 255
    labels = np.arange(10, dtype=np.uint8)
    write_source(root / "fashion-mnist", (images, labels), (images, labels))

    bundle = build_multi_digit(make_config(root=str(root), cache_dir=str(tmp_path / "cache")), system_dirs=(),
                               download=False)

    assert bundle.train.images.max().item() == 1.0
    assert bundle.train.images.min().item() == 0.0
    assert bundle.train.images[:, 0, 0, 0].tolist() == [1.0] * 20
    assert bundle.train.images[:, 0, 8, 8].tolist() == [1.0] * 20


def test_fashion_mnist_takes_two_sources(tmp_path, write_source, random_items):
    root = tmp_path / "data"
    mnist_train, mnist_test = random_items(11), random_items(12)
    fashion_train, fashion_test = random_items(21), random_items(22)
    write_source(root / "mnist", mnist_train, mnist_test)
    write_source(root / "fashion-mnist", fashion_train, fashion_test, compress=True)

    bundle = build_multi_digit(make_config("multi_fashion_mnist", root=str(root), cache_dir=str(tmp_path / "c")),
                               system_dirs=(), download=False)

    mnist_item = {int(label): index for index, label in enumerate(mnist_test[1])}
    fashion_item = {int(label): index for index, label in enumerate(fashion_test[1])}
    for index in range(len(bundle.test)):
        digit = mnist_test[0][mnist_item[int(bundle.test.targets["T1"][index])]]
        article = fashion_test[0][fashion_item[int(bundle.test.targets["T2"][index])]]
        expected = expected_canvas(digit, article) / 255.0
        np.testing.assert_allclose(bundle.test.images[index, 0].numpy(), expected, rtol=0, atol=1e-7)


def test_multi_mnist_reads_mnist_folder(tmp_path, write_source, random_items):
    root = tmp_path / "data"
    train, test = random_items(31), random_items(32)
    write_source(root / "mnist", train, test)
    write_source(root / "fashion-mnist", random_items(41), random_items(42))

    bundle = build_multi_digit(make_config("multi_mnist", root=str(root), cache_dir=str(tmp_path / "c")),
                               system_dirs=(), download=False)

    first = int(bundle.train.targets["T1"][0])
    item = train[0][list(train[1]).index(first)]
    np.testing.assert_allclose(bundle.train.images[0, 0, :8, :8].numpy(), item[:8, :8] / 255.0, atol=1e-7)


def test_build_reproducible_from_seed(tmp_path, fashion_root):
    def build_with(seed: int, cache: str):
        config = make_config(root=str(fashion_root), cache_dir=str(tmp_path / cache), build_seed=seed)
        return build_multi_digit(config, system_dirs=(), download=False)

    first, again, other = build_with(5, "first"), build_with(5, "again"), build_with(6, "other")

    assert torch.equal(first.train.images, again.train.images)
    assert torch.equal(first.test.targets["T2"], again.test.targets["T2"])
    assert not torch.equal(first.train.images, other.train.images)
    assert not torch.equal(first.train.targets["T1"], other.train.targets["T1"])


def test_idx_count_mismatch(tmp_path, write_idx, write_source, random_items):
    root = tmp_path / "data"
    folder = write_source(root / "fashion-mnist", random_items(1), random_items(2))
    write_idx(folder / "train-labels-idx1-ubyte", np.arange(9, dtype=np.uint8), 0x801)

    expected = (re.escape(str(folder / "train-images-idx3-ubyte")) + " has 10 images but "
                + re.escape(str(folder / "train-labels-idx1-ubyte")) + " has 9 labels")
    with pytest.raises(IDXFormatError, match=expected):
        build_multi_digit(make_config(root=str(root), cache_dir=str(tmp_path / "c")), system_dirs=(),
                          download=False)


def test_idx_wrong_item_size(tmp_path, write_source):
    root = tmp_path / "data"
    small = np.zeros((10, 20, 20), dtype=np.uint8), np.arange(10, dtype=np.uint8)
    folder = write_source(root / "fashion-mnist", small, small)

    expected = re.escape(str(folder / "train-images-idx3-ubyte")) + r": images are 20×20 pixels; expected 28×28"
    with pytest.raises(IDXFormatError, match=expected):
        build_multi_digit(make_config(root=str(root), cache_dir=str(tmp_path / "c")), system_dirs=(),
                          download=False)


def test_idx_label_out_of_range(tmp_path, write_source, random_items):
    root = tmp_path / "data"
    images, labels = random_items(1)
    labels = labels.copy()
    labels[3] = 12
    folder = write_source(root / "fashion-mnist", (images, labels), random_items(2))

    expected = re.escape(str(folder / "train-labels-idx1-ubyte")) + r": labels go up to 12"
    with pytest.raises(IDXFormatError, match=expected):
        build_multi_digit(make_config(root=str(root), cache_dir=str(tmp_path / "c")), system_dirs=(),
                          download=False)


def test_truncated_source_names_file(tmp_path, fashion_root):
    path = fashion_root / "fashion-mnist" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])

    with pytest.raises(IDXFormatError, match=re.escape(str(path)) + ": file is truncated"):
        build_multi_digit(make_config(root=str(fashion_root), cache_dir=str(tmp_path / "c")), system_dirs=(),
                          download=False)


# ---------------------------------------------------------------- where the files are searched


def test_recon_data_variable(tmp_path, monkeypatch, fashion_root):
    monkeypatch.setenv("RECON_DATA", str(fashion_root))

    bundle = build_multi_digit(make_config(cache_dir=str(tmp_path / "c")), system_dirs=(), download=False)

    assert len(bundle.train) == 20


def test_system_folder(tmp_path, fashion_root):
    bundle = build_multi_digit(make_config(cache_dir=str(tmp_path / "c")), system_dirs=(fashion_root,),
                               download=False)

    assert len(bundle.test) == 20


def test_nothing_found_lists_locations(tmp_path, monkeypatch):
    root, env_root, system = tmp_path / "root", tmp_path / "env", tmp_path / "system"
    monkeypatch.setenv("RECON_DATA", str(env_root))
    cache = tmp_path / "cache"

    with pytest.raises(DatasetNotFoundError) as caught:
        build_multi_digit(make_config("multi_fashion_mnist", root=str(root), cache_dir=str(cache)),
                          system_dirs=(system,), download=False)

    message = str(caught.value)
    assert "multi_fashion_mnist: dataset files not found" in message
    assert f"{root / 'multi_fashion_and_mnist.pickle'} (data.root): not found" in message
    assert f"{root / 'multi_fashion_mnist' / 'multi_fashion_and_mnist.pickle'} (data.root): not found" in message
    assert f"{env_root / 'multi_fashion_and_mnist.pickle'} ($RECON_DATA): not found" in message
    for source, torchvision_name in (("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")):
        assert f"{root / source} (data.root): not found" in message
        assert f"{env_root / source} ($RECON_DATA): not found" in message
        assert f"{system / source} (system data folder): not found" in message
        assert f"{cache / 'torchvision' / torchvision_name / 'raw'} (earlier torchvision download)" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "yann.lecun.com/exdb/mnist" in message
    assert "github.com/Xi-L/ParetoMTL" in message
    assert "not attempted (download disabled)" in message


def test_no_data_folders_named(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="nowhere, because data.root and \\$RECON_DATA are both unset"):
        build_multi_digit(make_config(cache_dir=str(tmp_path / "c")), system_dirs=(), download=False)


def test_incomplete_folder_named(tmp_path, fashion_root):
    (fashion_root / "fashion-mnist" / "t10k-labels-idx1-ubyte").unlink()

    with pytest.raises(DatasetNotFoundError, match="incomplete, missing t10k-labels-idx1-ubyte"):
        build_multi_digit(make_config(root=str(fashion_root), cache_dir=str(tmp_path / "c")), system_dirs=(),
                          download=False)


def test_download_fills_torchvision_folder(tmp_path, monkeypatch, write_source, random_items):
    calls = []

    def fake_download(source, root):
        calls.append((source.torchvision_class, root))
        write_source(root / source.torchvision_class / "raw", random_items(1), random_items(2))
        return None

    monkeypatch.setattr(multi_digit, "_download_with_torchvision", fake_download)
    cache = tmp_path / "cache"

    bundle = build_multi_digit(make_config(cache_dir=str(cache)), system_dirs=())

    assert calls == [("FashionMNIST", cache / "torchvision")]
    assert len(bundle.train) == 20


def test_failed_download_in_message(tmp_path, monkeypatch):
    monkeypatch.setattr(multi_digit, "_download_with_torchvision",
                        lambda source, root: "URLError: <urlopen error [Errno -3] name resolution failed>")

    with pytest.raises(DatasetNotFoundError, match=r"torchvision download of Fashion-MNIST into .*: failed "
                                                   r"\(URLError: <urlopen error"):
        build_multi_digit(make_config(cache_dir=str(tmp_path / "cache")), system_dirs=())


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match=r"data.name 'cityscapes' is not a multi-digit dataset; expected one of"):
        build_multi_digit(make_config("cityscapes"), system_dirs=(), download=False)


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_invalid_build_seed(build, seed):
    with pytest.raises(ValueError, match=re.escape(f"data.build_seed must be a non-negative integer; got {seed!r}")):
        build(build_seed=seed)


# ---------------------------------------------------------------- cache


def test_cache_hit_skips_build(tmp_path, monkeypatch, build):
    first = build()
    cached = list((tmp_path / "cache").glob("multi_fashion-seed0-*.npz"))
    assert len(cached) == 1
    written_at = cached[0].stat().st_mtime_ns

    def no_build(*args):
        raise AssertionError("the dataset was built again despite its cache file")

    monkeypatch.setattr(multi_digit, "_build", no_build)
    second = build()

    assert torch.equal(first.train.images, second.train.images)
    assert torch.equal(first.test.targets["T1"], second.test.targets["T1"])
    assert cached[0].stat().st_mtime_ns == written_at


def test_cache_keyed_by_seed(tmp_path, build):
    build(build_seed=0)
    build(build_seed=1)

    names = sorted(path.name for path in (tmp_path / "cache").glob("*.npz"))
    assert len(names) == 2
    assert names[0].startswith("multi_fashion-seed0-")
    assert names[1].startswith("multi_fashion-seed1-")


def test_cache_keyed_by_source_files(tmp_path, fashion_root, build, write_source, random_items):
    first = build()
    # New content with another mtime: the old cache entry must not be used.
    write_source(fashion_root / "fashion-mnist", random_items(7), random_items(8))
    later = time.time() + 10
    for path in (fashion_root / "fashion-mnist").iterdir():
        os.utime(path, (later, later))

    second = build()

    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2
    assert not torch.equal(first.train.images, second.train.images)


def test_corrupt_cache_rebuilt(tmp_path, build, caplog):
    first = build()
    cache_file = next((tmp_path / "cache").glob("*.npz"))
    cache_file.write_bytes(b"not a zip file")

    with caplog.at_level(logging.WARNING, logger="recon.data.multi_digit"):
        second = build()

    assert f"cached dataset {cache_file} is unreadable" in caplog.text
    assert torch.equal(first.train.images, second.train.images)
    with np.load(cache_file) as stored:
        assert stored["train_images"].shape == (20, 36, 36)


def test_cache_writes_one_readable_file(tmp_path, build):
    build()

    files = list((tmp_path / "cache").iterdir())
    assert [path.suffix for path in files] == [".npz"]
    assert files[0].stat().st_mode & 0o777 == 0o644


def test_unwritable_repository_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(multi_digit, "_is_writable_dir", lambda folder: False)

    assert multi_digit._cache_dir(make_config()) == tmp_path / "home" / ".cache" / "recon"


# ---------------------------------------------------------------- published pickles


def published_arrays(train_count: int = 6, test_count: int = 4, scale: float = 255.0, dtype=np.float64):
    """Arrays in the published layout: images N×1296, labels N×2."""
    rng = np.random.default_rng(9)
    train_x = (rng.integers(0, 256, size=(train_count, 1296)) / 255.0 * scale).astype(dtype)
    test_x = (rng.integers(0, 256, size=(test_count, 1296)) / 255.0 * scale).astype(dtype)
    train_y = rng.integers(0, 10, size=(train_count, 2))
    test_y = rng.integers(0, 10, size=(test_count, 2))
    return train_x, train_y, test_x, test_y


def write_pickle(path: Path, content, protocol: int = 2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(content, protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickle_scaled_from_255(tmp_path, protocol):
    train_x, train_y, test_x, test_y = published_arrays()
    root = tmp_path / "data"
    write_pickle(root / "multi_fashion.pickle", (train_x, train_y, test_x, test_y), protocol)

    bundle = build_multi_digit(make_config(root=str(root), cache_dir=str(tmp_path / "c")), system_dirs=(),
                               download=False)

    assert bundle.train.images.shape == (6, 1, 36, 36)
    assert bundle.test.images.shape == (4, 1, 36, 36)
    np.testing.assert_allclose(bundle.train.images.numpy().reshape(6, 1296), train_x / 255.0, atol=1e-6)
    assert bundle.train.targets["T1"].tolist() == train_y[:, 0].tolist()
    assert bundle.test.targets["T2"].tolist() == test_y[:, 1].tolist()
    assert not (tmp_path / "c").exists()


def test_pickle_unit_range_kept(tmp_path):
    train_x, train_y, test_x, test_y = published_arrays(scale=1.0, dtype=np.float32)
    path = write_pickle(tmp_path / "multi_mnist.pickle", [train_x.reshape(6, 1, 36, 36), train_y,
                                                          test_x.reshape(4, 36, 36), test_y])

    arrays = load_published_pickle(path)

    np.testing.assert_array_equal(arrays.train_images.reshape(6, 1296), train_x)
    np.testing.assert_array_equal(arrays.test_images.reshape(4, 1296), test_x)
    assert arrays.train_labels.dtype == np.int64


def test_pickle_uint8_images(tmp_path):
    train_x, train_y, test_x, test_y = published_arrays(dtype=np.uint8)
    path = write_pickle(tmp_path / "multi_mnist.pickle", (train_x, train_y, test_x, test_y))

    arrays = load_published_pickle(path)

    assert arrays.train_images.dtype == np.float32
    assert arrays.train_images.max() <= 1.0
    np.testing.assert_allclose(arrays.train_images[0, 35, 35], train_x[0, 1295] / 255.0, rtol=1e-6)


def test_pickle_before_idx_files(tmp_path, fashion_root):
    arrays = published_arrays()
    write_pickle(fashion_root / "multi_fashion.pickle", arrays)

    bundle = build_multi_digit(make_config(root=str(fashion_root), cache_dir=str(tmp_path / "c")),
                               system_dirs=(), download=False)

    assert len(bundle.train) == 6
    assert bundle.train.targets["T1"].tolist() == arrays[1][:, 0].tolist()


def test_pickle_from_recon_data(tmp_path, monkeypatch):
    arrays = published_arrays()
    write_pickle(tmp_path / "env" / "multi_fashion_mnist" / "multi_fashion_and_mnist.pickle", arrays)
    monkeypatch.setenv("RECON_DATA", str(tmp_path / "env"))

    bundle = build_multi_digit(make_config("multi_fashion_mnist"), system_dirs=(), download=False)

    assert len(bundle.test) == 4
    assert bundle.test.targets["T1"].tolist() == arrays[3][:, 0].tolist()


def test_python2_pickle(tmp_path):
    # Written by hand as Python 2 with NumPy 1 writes it: module numpy.core, raw bytes as a str.
    def short_string(data: bytes) -> bytes:
        return b"U" + bytes([len(data)]) + data

    pixels = bytes(range(0, 256, 2))[:36] * 36
    train_x = (b"cnumpy.core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\nq\x01K\x00\x85" + short_string(b"b")
               + b"\x87R(K\x01K\x01M\x10\x05\x86cnumpy\ndtype\n" + short_string(b"u1")
               + b"K\x00K\x01\x87R(K\x03" + short_string(b"|")
               + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T\x10\x05\x00\x00" + pixels + b"tb")
    labels = (b"cnumpy.core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\nq\x01K\x00\x85" + short_string(b"b")
              + b"\x87R(K\x01K\x01K\x02\x86cnumpy\ndtype\n" + short_string(b"u1")
              + b"K\x00K\x01\x87R(K\x03" + short_string(b"|")
              + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89" + short_string(b"\x03\x07") + b"tb")
    path = tmp_path / "multi_mnist.pickle"
    path.write_bytes(b"\x80\x02(" + train_x + labels + train_x + labels + b"t.")

    arrays = load_published_pickle(path)

    assert arrays.train_images.shape == (1, 36, 36)
    assert arrays.train_images[0, 0, 1] == pytest.approx(2 / 255)
    assert arrays.train_images[0, 5, 35] == pytest.approx(70 / 255)
    assert arrays.test_labels.tolist() == [[3, 7]]


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo unpickled",))


@pytest.mark.parametrize("content, expected", [
    ({"trainX": 1}, r"invalid pickle: found a dict; expected a pickled tuple \(trainX, trainLabel, testX, testLabel\)"),
    ((np.zeros((2, 1296)),) * 3, r"invalid pickle: found a tuple of 3 items"),
    ((np.zeros((2, 1000)), np.zeros((2, 2), int), np.zeros((1, 1296)), np.zeros((1, 2), int)),
     r"trainX is an array of shape \(2, 1000\) and dtype float64; expected 1296 pixels per image"),
    ((np.zeros((2, 1296)), np.zeros((2, 3), int), np.zeros((1, 1296)), np.zeros((1, 2), int)),
     r"trainLabel is an array of shape \(2, 3\) and dtype int64; expected shape \(2, 2\)"),
    ((np.zeros((2, 1296)), np.zeros((2, 2), int), np.zeros((1, 1296)), np.zeros((3, 2), int)),
     r"testLabel is an array of shape \(3, 2\) and dtype int64; expected shape \(1, 2\)"),
    ((np.full((2, 1296), 300.0), np.zeros((2, 2), int), np.zeros((1, 1296)), np.zeros((1, 2), int)),
     r"trainX has pixel values from 300.0 to 300.0; expected values in \[0, 255\]"),
    ((np.zeros((2, 1296)), np.full((2, 2), 10), np.zeros((1, 1296)), np.zeros((1, 2), int)),
     r"trainLabel has classes from 10 to 10; expected 0 to 9"),
    ((np.zeros((2, 1296)), np.full((2, 2), 0.5), np.zeros((1, 1296)), np.zeros((1, 2), int)),
     r"trainLabel has dtype float64 with non-integer values"),
    ((np.zeros((2, 1296), bool), np.zeros((2, 2), int), np.zeros((1, 1296)), np.zeros((1, 2), int)),
     r"trainX has dtype bool; expected an integer or floating-point dtype"),
    (RunsCode(), r"global '\w+\.system' is not allowed in a dataset pickle"),
])
def test_malformed_pickle(tmp_path, content, expected):
    path = write_pickle(tmp_path / "multi_mnist.pickle", content)

    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + expected):
        load_published_pickle(path)


def test_truncated_pickle(tmp_path):
    path = write_pickle(tmp_path / "multi_mnist.pickle", published_arrays())
    path.write_bytes(path.read_bytes()[:500])

    with pytest.raises(ValueError, match=re.escape(str(path)) + r": cannot read the pickle"):
        load_published_pickle(path)


# ---------------------------------------------------------------- train_size and test_size


def test_sizes_take_first_images(build):
    full = build()
    part = build(train_size=5, test_size=3)

    assert len(part.train) == 5
    assert len(part.test) == 3
    assert torch.equal(part.train.images, full.train.images[:5])
    assert torch.equal(part.test.targets["T2"], full.test.targets["T2"][:3])


@pytest.mark.parametrize("key, value, expected", [
    ("train_size", 0, "data.train_size must be between 1 and 20 (the size of the training split); got 0"),
    ("train_size", 21, "data.train_size must be between 1 and 20 (the size of the training split); got 21"),
    ("test_size", 25, "data.test_size must be between 1 and 20 (the size of the test split); got 25"),
    ("test_size", True, "data.test_size must be an integer or null; got True"),
])
def test_invalid_sizes(build, key, value, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        build(**{key: value})


# ---------------------------------------------------------------- the installed Fashion-MNIST


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist(tmp_path):
    config = make_config(cache_dir=str(tmp_path / "cache"))

    bundle = build_multi_digit(config, system_dirs=(DEBIAN_FASHION_MNIST.parent,), download=False)

    assert len(bundle.train) == 120_000
    assert len(bundle.test) == 20_000
    assert bundle.train.images.shape == (120_000, 1, 36, 36)
    assert bundle.test.images.dtype == torch.float32
    assert bundle.train.images.min().item() == 0.0
    assert bundle.train.images.max().item() == 1.0
    for split in (bundle.train, bundle.test):
        for target in ("T1", "T2"):
            assert split.targets[target].min().item() == 0
            assert split.targets[target].max().item() == 9
    # Fashion-MNIST has 6,000 training items per class, each drawn twice at each position.
    assert torch.bincount(bundle.train.targets["T1"]).tolist() == [12_000] * 10
