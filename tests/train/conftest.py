"""Fixtures of the trainer tests: a tiny Multi-Fashion built from IDX files, and a `recon` runner."""

from __future__ import annotations

import contextlib
import io
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import recon.build
from recon.cli import main
from recon.data.idx import IMAGES_MAGIC, LABELS_MAGIC
from recon.models.base import MultiTaskModel

REPO = Path(__file__).resolve().parents[2]
JOINT_CONFIG = REPO / "configs" / "multi_fashion" / "joint.yaml"

#: Fashion-MNIST-like items written as IDX files; Multi-Fashion pairs each item twice,
#: so the runs see 64 training and 32 test images.
TRAIN_ITEMS = 32
TEST_ITEMS = 16


def _write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = struct.pack(f">{1 + array.ndim}I", magic, *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="session")
def fashion_root(tmp_path_factory) -> Path:
    """A data root holding fashion-mnist/ with random 28×28 items and labels 0-9."""
    root = tmp_path_factory.mktemp("data")
    folder = root / "fashion-mnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, count in (("train", TRAIN_ITEMS), ("t10k", TEST_ITEMS)):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (count, 28, 28)), IMAGES_MAGIC)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, count), LABELS_MAGIC)
    return root


class TinyMultiTaskModel(MultiTaskModel):
    """A small convolutional trunk with BatchNorm (so buffers are checkpointed too) and one head per task."""

    def __init__(self, tasks: tuple[str, ...]) -> None:
        super().__init__()
        self.tasks = tasks
        self.trunk = nn.Sequential(
            nn.Conv2d(1, 4, kernel_size=3, stride=2), nn.BatchNorm2d(4), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(64, 16),
        )
        self.heads = nn.ModuleDict({task: nn.Sequential(nn.ReLU(), nn.Linear(16, 10)) for task in tasks})

    def shared_root(self) -> nn.Module:
        return self.trunk

    def own_task_modules(self) -> dict[str, list[nn.Module]]:
        return {task: [head] for task, head in self.heads.items()}

    def forward(self, x: torch.Tensor, tasks=None) -> dict[str, torch.Tensor]:
        features = self.trunk(x)
        return {task: self.heads[task](features) for task in (tasks or self.tasks)}


def build_tiny_model(config: dict) -> tuple[MultiTaskModel, list[str]]:
    """Stand-in for ``recon.build.build_model_from_config``: the tiny model for the config's tasks."""
    return TinyMultiTaskModel(tuple(config["tasks"] or ("T1", "T2"))), []


@pytest.fixture(scope="module")
def tiny_model():
    """Build the tiny model wherever the trainer and `recon eval` build a model from a config.

    ResNet-18 steps take seconds on a busy 2-core machine; the logic under test
    (checkpoints, resume, evaluation) does not depend on the network's size.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(recon.build, "build_model_from_config", build_tiny_model)
        yield


def _tiny_overrides(fashion_root: Path, output_dir: Path, **extra) -> list[str]:
    """Overrides that make configs/multi_fashion/joint.yaml a run of a few seconds on the CPU.

    Three epochs of 4 steps, the learning rate divided at epoch 2, a checkpoint
    every epoch and a metrics line every step. ``extra`` adds or replaces keys.
    """
    settings = {
        "data.root": str(fashion_root), "data.cache_dir": str(fashion_root / "cache"),
        "output_dir": str(output_dir), "train.epochs": 3, "train.batch_size": 16, "train.lr": 0.05,
        "train.milestones": "[2]", "train.eval_batch_size": 64, "train.log_every": 1,
        "train.checkpoint_every": 1, "train.eval_every": 1, "train.device": "cpu", "wandb.mode": "disabled",
    }
    settings.update(extra)
    return [f"{key}={value}" for key, value in settings.items()]


@dataclass
class Result:
    """Exit status and output of one `recon` command run in this process."""

    code: int
    stdout: str
    stderr: str

    @property
    def last_line(self) -> str:
        return self.stdout.strip().splitlines()[-1]


def _run_recon(*args: str) -> Result:
    """Run `recon ARGS` in this process and return its exit status and output."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([str(arg) for arg in args])
    return Result(code, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(scope="session")
def tiny_overrides():
    """``tiny_overrides(fashion_root, output_dir, **extra)``: overrides for a run of a few seconds."""
    return _tiny_overrides


@pytest.fixture(scope="session")
def run_recon():
    """``run_recon(*args)``: run `recon ARGS` in this process; returns a ``Result``."""
    return _run_recon


@pytest.fixture(scope="session")
def joint_config() -> Path:
    return JOINT_CONFIG
