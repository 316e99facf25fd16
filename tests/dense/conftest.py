"""Tiny CityScapes and NYUv2 folders in the MTAN authors' layout, written per test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recon.data.dense import DENSE_DATASETS

SIZE = (16, 32)


@pytest.fixture(autouse=True)
def one_thread():
    """Run torch on one thread: the models' many small operations slow down when threads contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_split(folder: Path, name: str, count: int, dtype=np.float32, size=SIZE, seed: int = 0) -> dict:
    """Write ``count`` random images and targets under ``folder``; return the arrays by folder name."""
    spec = DENSE_DATASETS[name]
    rng = np.random.default_rng(seed)
    height, width = size
    arrays: dict[str, list[np.ndarray]] = {}
    for index in range(count):
        depth = rng.uniform(0.5, 10.0, (height, width, 1))
        depth[0, :4] = 0.0
        normal = rng.normal(size=(height, width, 3))
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
        normal[1, :3] = 0.0
        label = rng.integers(-1, spec.classes, (height, width)).astype(np.float64)
        files = {"image": rng.uniform(0, 1, (height, width, 3)), spec.folders["segmentation"]: label,
                 "depth": depth}
        if "normal" in spec.folders:
            files["normal"] = normal
        for folder_name, array in files.items():
            (folder / folder_name).mkdir(parents=True, exist_ok=True)
            np.save(folder / folder_name / f"{index}.npy", array.astype(dtype))
            arrays.setdefault(folder_name, []).append(array.astype(dtype))
    return arrays


@pytest.fixture
def dense_root(tmp_path):
    """Return a function writing a dataset root with 3 training and 2 validation images."""

    def make(name: str = "nyuv2", dtype=np.float32, train: int = 3, val: int = 2, size=SIZE) -> Path:
        root = tmp_path / name
        write_split(root / "train", name, train, dtype, size, seed=1)
        write_split(root / "val", name, val, dtype, size, seed=2)
        return root

    return make


@pytest.fixture
def data_config():
    """Return a function building a resolved ``data`` section, as the config loader fills it in."""

    def make(name: str, root: Path | None, **extra) -> dict:
        config = {"name": name, "root": None if root is None else str(root), "cache_dir": None,
                  "train_size": None, "test_size": None, "build_seed": 0, "augment": False, "num_workers": 0}
        config.update(extra)
        return config

    return make
