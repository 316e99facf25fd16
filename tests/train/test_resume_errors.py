"""`recon train --resume` on bad run directories and checkpoints: a clear error, and no file changed."""

from __future__ import annotations

import os
import re
import shutil
import signal
from pathlib import Path

import pytest
import torch
import yaml

from recon.train.checkpoint import CheckpointError
from recon.train.resume import RunFinishedError, resume_trainer
from recon.train.step import GradientStep


@pytest.fixture(scope="module")
def stopped_run(tiny_model, fashion_root, tmp_path_factory, run_recon, tiny_overrides, joint_config) -> Path:
    """A run stopped by SIGINT in epoch 2, with its checkpoint and no summary."""
    output = tmp_path_factory.mktemp("stopped")
    original = GradientStep.__call__

    def step_with_signal(self, images, targets):
        losses = original(self, images, targets)
        if self.step == 6:
            os.kill(os.getpid(), signal.SIGINT)
        return losses

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(GradientStep, "__call__", step_with_signal)
        result = run_recon("train", joint_config, *tiny_overrides(fashion_root, output))
    assert result.code == 130, result.stderr
    (run_dir,) = output.iterdir()
    return run_dir


@pytest.fixture
def run_dir(stopped_run, tmp_path) -> Path:
    """A copy of the stopped run that a test may damage."""
    return Path(shutil.copytree(stopped_run, tmp_path / stopped_run.name))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def edit_checkpoint(run_dir: Path, edit) -> Path:
    path = run_dir / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)
    return path


def test_truncated_checkpoint_rejected(run_dir, run_recon):
    path = run_dir / "checkpoints" / "last.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    before = snapshot(run_dir)

    result = run_recon("train", "--resume", run_dir)
    assert result.code == 2
    assert f"checkpoint {path} is truncated or corrupt" in result.stderr
    assert snapshot(run_dir) == before


def test_corrupt_checkpoint_rejected(run_dir):
    path = run_dir / "checkpoints" / "last.pt"
    path.write_bytes(b"\x00" * 1000)
    before = snapshot(run_dir)
    with pytest.raises(CheckpointError, match=re.escape(f"checkpoint {path} is truncated or corrupt")):
        resume_trainer(run_dir)
    assert snapshot(run_dir) == before


def test_edited_config_lists_keys(run_dir):
    config_file = run_dir / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["train"]["lr"] = 0.5
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    before = snapshot(run_dir)

    path = run_dir / "checkpoints" / "last.pt"
    message = (f"checkpoint {path} was written with a different config than {config_file} with the overrides "
               "given; differing keys: train.lr: 0.05 in the checkpoint, 0.5 now")
    with pytest.raises(CheckpointError, match=re.escape(message)):
        resume_trainer(run_dir)
    assert snapshot(run_dir) == before


def test_overrides_changing_training_rejected(run_dir):
    before = snapshot(run_dir)
    with pytest.raises(CheckpointError) as error:
        resume_trainer(run_dir, ["train.epochs=5", "method.name=pcgrad", "train.log_every=3"])
    message = str(error.value)
    assert str(run_dir / "checkpoints" / "last.pt") in message
    assert "method.name: 'joint' in the checkpoint, 'pcgrad' now" in message
    assert "train.epochs: 3 in the checkpoint, 5 now" in message
    assert "log_every" not in message
    assert snapshot(run_dir) == before


def test_different_model_rejected(run_dir):
    def rename_and_resize(state):
        state["model_shapes"]["trunk.5.weight"] = [16, 32]
        state["model_shapes"]["trunk.9.weight"] = state["model_shapes"].pop("trunk.0.weight")

    path = edit_checkpoint(run_dir, rename_and_resize)
    before = snapshot(run_dir)
    with pytest.raises(CheckpointError) as error:
        resume_trainer(run_dir)
    message = str(error.value)
    assert f"checkpoint {path} contains a different model than the config builds; differences (3): " in message
    assert "trunk.9.weight: missing from the model" in message
    assert "trunk.0.weight: not in the checkpoint" in message
    assert "trunk.5.weight: shape [16, 32] in the checkpoint, [16, 64] in the model" in message
    assert snapshot(run_dir) == before


def test_other_device_type_rejected(run_dir):
    path = edit_checkpoint(run_dir, lambda state: state.update(device_type="cuda"))
    with pytest.raises(CheckpointError, match=re.escape(f"checkpoint {path} was written on cuda but this run "
                                                        "would continue on cpu")):
        resume_trainer(run_dir)


def test_other_format_rejected(run_dir):
    path = edit_checkpoint(run_dir, lambda state: state.update(format=99))
    with pytest.raises(CheckpointError, match=re.escape(f"checkpoint {path} has format 99")):
        resume_trainer(run_dir)


def test_checkpoint_lacking_state_rejected(run_dir):
    path = edit_checkpoint(run_dir, lambda state: (state.pop("optimizer"), state.pop("random")))
    with pytest.raises(CheckpointError, match=re.escape(f"checkpoint {path} cannot be resumed: it lacks "
                                                        "optimizer, random")):
        resume_trainer(run_dir)


def test_missing_checkpoint_rejected(run_dir, run_recon):
    path = run_dir / "checkpoints" / "last.pt"
    path.unlink()
    result = run_recon("train", "--resume", run_dir)
    assert result.code == 2
    assert f"run {run_dir} has no checkpoint {path}" in result.stderr
    assert f"recon train {run_dir / 'config.yaml'}" in result.stderr


def test_finished_run_rejected(run_dir):
    (run_dir / "summary.json").write_text('{"test": {}}\n')
    before = snapshot(run_dir)
    with pytest.raises(RunFinishedError, match=re.escape(f"run {run_dir} is already finished "
                                                         f"({run_dir / 'summary.json'} exists)")):
        resume_trainer(run_dir)
    assert snapshot(run_dir) == before


def test_folder_without_config_rejected(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path} is not a run directory: config.yaml")):
        resume_trainer(tmp_path)


def test_missing_run_dir_rejected(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"run directory not found: {tmp_path / 'absent'}")):
        resume_trainer(tmp_path / "absent")


def test_config_argument_with_resume_rejected(run_dir, run_recon, joint_config):
    result = run_recon("train", joint_config, "--resume", run_dir)
    assert result.code == 2
    assert "no CONFIG may be given" in result.stderr
