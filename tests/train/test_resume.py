"""A run stopped and resumed ends exactly as the same run left alone (bitwise, on the CPU)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from recon.train.step import GradientStep
from recon.train.trainer import Trainer

#: GradDrop draws from its generator at every step, and recording cosines fills the
#: recorder's buffer, so both states must survive the checkpoint for the runs to agree.
RUN_SETTINGS = {"method.name": "graddrop", "recon.record": "true"}


class SimulatedKill(BaseException):
    """Stands for SIGKILL: nothing of the trainer runs after it, not even `except Exception`."""


def only_run_dir(output_dir: Path) -> Path:
    (run_dir,) = [path for path in output_dir.iterdir() if path.is_dir()]
    return run_dir


def metrics_lines(run_dir: Path) -> list[dict]:
    """The lines of metrics.jsonl without the throughput, which depends on the machine's load."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        line.pop("train/steps_per_second", None)
    return lines


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_run(resumed: Path, reference: Path) -> None:
    """Check summary metrics, parameters, optimizer state, logged metrics and recorded cosines for equality."""
    summary, expected = (json.loads((d / "summary.json").read_text()) for d in (resumed, reference))
    for task, values in expected["test"].items():
        for metric, value in values.items():
            assert summary["test"][task][metric] == value, f"test/{task}/{metric}"
    assert summary == expected

    state, expected_state = (load(d / "checkpoints" / "last.pt") for d in (resumed, reference))
    for name, tensor in expected_state["model"].items():
        assert torch.equal(state["model"][name], tensor), name
    for index, buffers in expected_state["optimizer"]["state"].items():
        assert torch.equal(state["optimizer"]["state"][index]["momentum_buffer"], buffers["momentum_buffer"])
    assert state["scheduler"] == expected_state["scheduler"]

    assert metrics_lines(resumed) == metrics_lines(reference)

    cosines, expected_cosines = (load(d / "conflict" / "cosines.pt") for d in (resumed, reference))
    assert torch.equal(cosines["cos"], expected_cosines["cos"])
    assert torch.equal(cosines["steps"], expected_cosines["steps"])


@pytest.fixture(scope="module")
def reference_run(tiny_model, fashion_root, tmp_path_factory, run_recon, tiny_overrides, joint_config) -> Path:
    """The run left alone: 3 epochs of 4 steps."""
    output = tmp_path_factory.mktemp("reference")
    result = run_recon("train", joint_config, *tiny_overrides(fashion_root, output, **RUN_SETTINGS))
    assert result.code == 0, result.stderr
    return Path(result.last_line)


def test_resume_after_kill_matches_uninterrupted(reference_run, fashion_root, tmp_path, monkeypatch, run_recon,
                                                 tiny_overrides, joint_config):
    original = GradientStep.__call__

    # Die inside step 6 (epoch 2), after the epoch-1 checkpoint and the metrics lines of step 5.
    def step_then_die(self, images, targets):
        if self.step == 5:
            raise SimulatedKill
        return original(self, images, targets)

    monkeypatch.setattr(GradientStep, "__call__", step_then_die)
    with pytest.raises(SimulatedKill):
        run_recon("train", joint_config, *tiny_overrides(fashion_root, tmp_path, **RUN_SETTINGS))
    monkeypatch.setattr(GradientStep, "__call__", original)

    run_dir = only_run_dir(tmp_path)
    assert load(run_dir / "checkpoints" / "last.pt")["step"] == 4
    assert max(line["step"] for line in metrics_lines(run_dir)) == 5
    # A line cut short by the kill.
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "epo')

    result = run_recon("train", "--resume", run_dir)
    assert result.code == 0, result.stderr
    assert Path(result.last_line) == run_dir
    assert_same_run(run_dir, reference_run)


@pytest.mark.parametrize(("signal_number", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_resume_after_signal_mid_epoch(reference_run, fashion_root, tmp_path, monkeypatch, signal_number,
                                       exit_code, run_recon, tiny_overrides, joint_config):
    original = GradientStep.__call__

    # The signal arrives during step 6, the second step of epoch 2.
    def step_with_signal(self, images, targets):
        losses = original(self, images, targets)
        if self.step == 6:
            os.kill(os.getpid(), signal_number)
        return losses

    monkeypatch.setattr(GradientStep, "__call__", step_with_signal)
    handler_before = signal.getsignal(signal_number)
    stopped = run_recon("train", joint_config, *tiny_overrides(fashion_root, tmp_path, **RUN_SETTINGS))
    monkeypatch.setattr(GradientStep, "__call__", original)

    run_dir = only_run_dir(tmp_path)
    assert stopped.code == exit_code
    assert f"recon train --resume {run_dir}" in stopped.stderr
    assert signal.getsignal(signal_number) == handler_before
    assert not (run_dir / "summary.json").exists()
    state = load(run_dir / "checkpoints" / "last.pt")
    assert (state["epoch"], state["epoch_step"], state["step"]) == (1, 2, 6)

    result = run_recon("train", "--resume", run_dir)
    assert result.code == 0, result.stderr
    assert_same_run(run_dir, reference_run)

    resumes = [json.loads(line) for line in (run_dir / "resumed.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["epoch_step"], r["step"]) for r in resumes] == [(1, 2, 6)]


def test_signal_during_evaluation(reference_run, fashion_root, tmp_path, monkeypatch, run_recon, tiny_overrides,
                                   joint_config):
    original = Trainer.evaluate_test

    # The signal arrives while epoch 2 is evaluated: the checkpoint is at the epoch boundary.
    def evaluate_with_signal(self):
        if self.epoch == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self)

    monkeypatch.setattr(Trainer, "evaluate_test", evaluate_with_signal)
    stopped = run_recon("train", joint_config, *tiny_overrides(fashion_root, tmp_path, **RUN_SETTINGS))
    monkeypatch.setattr(Trainer, "evaluate_test", original)

    run_dir = only_run_dir(tmp_path)
    assert stopped.code == 130
    state = load(run_dir / "checkpoints" / "last.pt")
    assert (state["epoch"], state["epoch_step"], state["step"]) == (2, 0, 8)
    assert run_recon("train", "--resume", run_dir).code == 0
    assert_same_run(run_dir, reference_run)


def test_signal_after_last_epoch_finishes(reference_run, fashion_root, tmp_path, monkeypatch, run_recon,
                                          tiny_overrides, joint_config):
    original = Trainer.evaluate_test

    def evaluate_with_signal(self):
        if self.epoch == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self)

    monkeypatch.setattr(Trainer, "evaluate_test", evaluate_with_signal)
    result = run_recon("train", joint_config, *tiny_overrides(fashion_root, tmp_path, **RUN_SETTINGS))
    assert result.code == 0, result.stderr
    assert_same_run(only_run_dir(tmp_path), reference_run)


def test_resume_accepts_logging_overrides(reference_run, fashion_root, tmp_path, monkeypatch, run_recon,
                                          tiny_overrides, joint_config):
    original = GradientStep.__call__

    def step_with_signal(self, images, targets):
        losses = original(self, images, targets)
        if self.step == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return losses

    monkeypatch.setattr(GradientStep, "__call__", step_with_signal)
    assert run_recon("train", joint_config, *tiny_overrides(fashion_root, tmp_path, **RUN_SETTINGS)).code == 130
    monkeypatch.setattr(GradientStep, "__call__", original)

    # Paths, logging intervals and the device may change; the results may not.
    run_dir = only_run_dir(tmp_path)
    result = run_recon("train", "--resume", run_dir, "train.log_every=4", "train.eval_every=3",
                       f"data.root={fashion_root}/.")
    assert result.code == 0, result.stderr
    summary, expected = (json.loads((d / "summary.json").read_text()) for d in (run_dir, reference_run))
    assert summary == expected
    logged_steps = [line["step"] for line in metrics_lines(run_dir) if "train/T1/loss" in line]
    assert logged_steps == [1, 2, 3, 4, 8, 12]
