"""Checkpoint files: atomic writes, safe loading, random states and the checks before resuming."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from recon.train import checkpoint as checkpoint_module
from recon.train.checkpoint import (
    CheckpointError, config_differences, load_checkpoint, model_differences, save_checkpoint,
)
from recon.train.random_state import capture_random_state, restore_random_state


def test_save_then_load_returns_state(tmp_path):
    path = tmp_path / "checkpoints" / "last.pt"
    state = {"model": {"w": torch.arange(3.0)}, "epoch": 2, "name": None}
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], torch.arange(3.0))
    assert loaded["epoch"] == 2
    assert loaded["name"] is None
    assert not path.with_name("last.pt.tmp").exists()


def test_failed_rename_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {}, "epoch": 1})

    def failing_replace(source, target):
        raise OSError("simulated failure of rename")

    monkeypatch.setattr(checkpoint_module.os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated failure of rename"):
        save_checkpoint(path, {"model": {}, "epoch": 2})
    monkeypatch.undo()

    assert load_checkpoint(path)["epoch"] == 1
    assert not path.with_name("last.pt.tmp").exists()


def test_write_cut_short_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {}, "epoch": 1})
    real_save = torch.save

    # The disk fills up halfway through the new checkpoint.
    def half_save(state, f):
        buffer = io.BytesIO()
        real_save(state, buffer)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", half_save)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, {"model": {"w": torch.zeros(1000)}, "epoch": 2})
    monkeypatch.undo()

    assert load_checkpoint(path)["epoch"] == 1
    assert not path.with_name("last.pt.tmp").exists()


def test_leftover_temporary_file_is_ignored(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {}, "epoch": 1})
    # What a process killed during a write leaves behind.
    path.with_name("last.pt.tmp").write_bytes(path.read_bytes()[:100])

    assert load_checkpoint(path)["epoch"] == 1
    save_checkpoint(path, {"model": {}, "epoch": 2})
    assert load_checkpoint(path)["epoch"] == 2


def test_truncated_checkpoint_names_file(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.zeros(100)}, "epoch": 1})
    path.write_bytes(path.read_bytes()[:-200])
    path.with_name("last.pt.tmp").write_bytes(b"partial")
    with pytest.raises(CheckpointError, match=f"checkpoint {path} is truncated or corrupt") as error:
        load_checkpoint(path)
    assert "last.pt.tmp next to it is a write that was interrupted" in str(error.value)


def test_random_bytes_are_rejected(tmp_path):
    path = tmp_path / "last.pt"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError, match=f"checkpoint {path} is truncated or corrupt"):
        load_checkpoint(path)


class NotATensor:
    """An object that a weights-only load must not construct."""


def test_pickled_object_is_rejected(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"model": {}, "extra": NotATensor()}, path)
    with pytest.raises(CheckpointError, match=f"checkpoint {path} is truncated or corrupt"):
        load_checkpoint(path)


def test_missing_checkpoint_names_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"checkpoint not found: {tmp_path / 'last.pt'}"):
        load_checkpoint(tmp_path / "last.pt")


def test_non_checkpoint_file_rejected(tmp_path):
    path = tmp_path / "last.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match=f"{path} is not a Recon checkpoint"):
        load_checkpoint(path)


def test_config_differences_lists_keys():
    saved = {"seed": 0, "train": {"lr": 0.1, "epochs": 3, "log_every": 50, "device": "cuda"},
             "data": {"root": "/a", "name": "multi_fashion"}, "wandb": {"mode": "offline"},
             "method": {"name": "cagrad", "alpha": 0.4}}
    current = {"seed": 0, "train": {"lr": 0.2, "epochs": 3, "log_every": 1, "device": "cpu"},
               "data": {"root": "/b", "name": "multi_fashion"}, "wandb": {"mode": "disabled"},
               "method": {"name": "cagrad"}}
    assert config_differences(saved, current) == [
        "method.alpha: 0.4 in the checkpoint, '<unset>' now",
        "train.lr: 0.1 in the checkpoint, 0.2 now",
    ]


def test_model_differences_lists_entries():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    saved = {"0.weight": [3, 4], "0.bias": [3], "1.weight": [3], "1.bias": [3], "1.running_mean": [3],
             "1.running_var": [3], "2.weight": [1]}
    assert model_differences(saved, model) == [
        "2.weight: missing from the model",
        "1.num_batches_tracked: not in the checkpoint",
        "0.weight: shape [3, 4] in the checkpoint, [3, 2] in the model",
    ]


def test_random_state_round_trip(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached Gaussian in Python's state
    np.random.standard_normal()  # and in NumPy's

    path = tmp_path / "random.pt"
    save_checkpoint(path, {"model": {}, "random": capture_random_state()})
    expected = (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(),
                np.random.standard_normal(), torch.rand(3))

    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    restore_random_state(load_checkpoint(path)["random"])
    drawn = (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(),
             np.random.standard_normal(), torch.rand(3))

    assert drawn[:4] == expected[:4]
    assert torch.equal(drawn[4], expected[4])


def test_save_syncs_the_folder(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def recording_fsync(descriptor):
        synced.append(Path(os.readlink(f"/proc/self/fd/{descriptor}")).name)
        real_fsync(descriptor)

    monkeypatch.setattr(checkpoint_module.os, "fsync", recording_fsync)
    save_checkpoint(tmp_path / "last.pt", {"model": {}})
    # First the temporary file's data, then the folder that contains the renamed file.
    assert synced == ["last.pt.tmp", tmp_path.name]
