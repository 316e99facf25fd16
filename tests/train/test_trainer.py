"""The trainer end to end: the real ResNet-18 on a tiny Multi-Fashion, run directories, Δm, bad losses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import recon.tasks
from recon.delta_m import delta_m
from recon.methods import REGISTRY


def read_metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def epoch_losses(run_dir, task: str) -> list[float]:
    """Mean training loss of ``task`` per epoch, from the per-step lines of metrics.jsonl."""
    by_epoch: dict[int, list[float]] = {}
    for record in read_metrics(run_dir):
        if f"train/{task}/loss" in record:
            by_epoch.setdefault(record["epoch"], []).append(record[f"train/{task}/loss"])
    return [sum(values) / len(values) for _, values in sorted(by_epoch.items())]


@pytest.fixture(scope="module")
def resnet_run(fashion_root, tmp_path_factory, run_recon, tiny_overrides, joint_config):
    """Eight epochs of the real ResNet-18 on 64 images: long enough to start memorising them."""
    output = tmp_path_factory.mktemp("runs")
    settings = {"train.epochs": 8, "train.milestones": "[]", "train.lr": 0.02}
    result = run_recon("train", joint_config, *tiny_overrides(fashion_root, output, **settings))
    assert result.code == 0, result.stderr
    return result


def test_training_loss_goes_down(resnet_run):
    run_dir = Path(resnet_run.last_line)
    for task in ("T1", "T2"):
        losses = epoch_losses(run_dir, task)
        assert len(losses) == 8
        # Measured here: from about 2.3 in the first epoch to about 0.8 in the last two.
        assert (losses[-1] + losses[-2]) / 2 < 0.6 * losses[0], (task, losses)


def test_run_directory_contents(resnet_run):
    run_dir = Path(resnet_run.last_line)
    for name in ("config.yaml", "provenance.json", "metrics.jsonl", "summary.json", "checkpoints/last.pt"):
        assert (run_dir / name).is_file(), name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["test"]) == {"T1", "T2"}
    assert set(summary["test"]["T1"]) == {"acc", "loss"}
    assert summary["params"] == 11_223_560
    assert summary["size_mb"] == pytest.approx(42.81, abs=0.005)
    assert summary["epochs"] == 8
    assert summary["steps"] == 8 * 4
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["versions"]["torch"] == torch.__version__


def test_summary_matches_last_test_line(resnet_run):
    run_dir = Path(resnet_run.last_line)
    summary = json.loads((run_dir / "summary.json").read_text())
    last_test = [r for r in read_metrics(run_dir) if "test/T1/acc" in r][-1]
    assert last_test["test/T1/acc"] == summary["test"]["T1"]["acc"]
    assert last_test["test/T2/loss"] == summary["test"]["T2"]["loss"]
    # 32 test images: an accuracy is a multiple of 100/32.
    assert summary["test"]["T1"]["acc"] * 32 / 100 == pytest.approx(round(summary["test"]["T1"]["acc"] * 0.32))


def test_printed_table_and_run_dir(resnet_run):
    lines = resnet_run.stdout.strip().splitlines()
    assert lines[0] == "test metrics:"
    assert lines[2].startswith("T1")
    assert lines[3].startswith("T2")


def test_same_config_twice_two_run_dirs(fashion_root, tmp_path, run_recon, tiny_overrides, joint_config, tiny_model):
    overrides = tiny_overrides(fashion_root, tmp_path, **{"train.epochs": 1, "name": "fixed"})
    first = run_recon("train", joint_config, *overrides)
    second = run_recon("train", joint_config, *overrides)
    assert first.code == second.code == 0
    assert first.last_line != second.last_line
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("fixed")) == ["fixed", "fixed-1"]
    first_summary = json.loads((tmp_path / "fixed" / "summary.json").read_text())
    second_summary = json.loads((tmp_path / "fixed-1" / "summary.json").read_text())
    assert first_summary["test"] == second_summary["test"]


def test_delta_m_in_summary(fashion_root, tmp_path, run_recon, tiny_overrides, joint_config, tiny_model):
    reference = {"T1": {"acc": 50.0}, "T2": {"acc": 40.0}}
    overrides = tiny_overrides(fashion_root, tmp_path, **{"train.epochs": 1, "eval.reference": json.dumps(reference)})
    result = run_recon("train", joint_config, *overrides)
    assert result.code == 0, result.stderr
    summary = json.loads((tmp_path.glob("*/summary.json").__next__()).read_text())
    t1, t2 = summary["test"]["T1"]["acc"], summary["test"]["T2"]["acc"]
    expected = ((t1 - 50.0) / 50.0 + (t2 - 40.0) / 40.0) / 2 * 100
    assert summary["delta_m"] == pytest.approx(expected)
    assert summary["delta_m"] == pytest.approx(delta_m(summary["test"], reference,
                                                       {"T1": {"acc": True}, "T2": {"acc": True}}))


def test_single_task_run(fashion_root, tmp_path, run_recon, tiny_overrides, joint_config, tiny_model):
    result = run_recon("train", joint_config, "tasks=[T2]", *tiny_overrides(fashion_root, tmp_path, **{"train.epochs": 1}))
    assert result.code == 0, result.stderr
    summary_path = next(tmp_path.glob("*/summary.json"))
    assert list(json.loads(summary_path.read_text())["test"]) == ["T2"]
    assert summary_path.parent.name.startswith("multi_fashion-single-T2-seed0-")


def test_drop_last_skips_partial_batch(fashion_root, tmp_path, run_recon, tiny_overrides, joint_config, tiny_model):
    # 64 training images in batches of 24: 3 steps, or 2 when the partial batch of 16 is dropped.
    overrides = tiny_overrides(fashion_root, tmp_path, **{"train.epochs": 1, "train.batch_size": 24})
    assert run_recon("train", joint_config, *overrides).code == 0
    assert run_recon("train", joint_config, *overrides, "train.drop_last=true").code == 0
    steps = sorted(json.loads(p.read_text())["steps"] for p in tmp_path.glob("*/summary.json"))
    assert steps == [2, 3]


def test_non_finite_loss_names_task_and_step(fashion_root, tmp_path, run_recon, tiny_overrides, joint_config,
                                             tiny_model, monkeypatch):
    calls = {"n": 0}
    original = recon.tasks.ClassificationTask.loss

    def loss_nan_on_third_call_of_t2(self, output, target):
        value = original(self, output, target)
        if self.name == "T2":
            calls["n"] += 1
            if calls["n"] == 3:
                return value * float("nan")
        return value

    monkeypatch.setattr(recon.tasks.ClassificationTask, "loss", loss_nan_on_third_call_of_t2)
    result = run_recon("train", joint_config, *tiny_overrides(fashion_root, tmp_path))
    assert result.code == 2
    assert "the loss of task 'T2' is nan at step 2" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*/summary.json"))


def test_bad_config_refused_without_traceback(tmp_path, run_recon, joint_config):
    result = run_recon("train", joint_config, "train.epoch=1", f"output_dir={tmp_path}")
    assert result.code == 2
    assert "unknown key 'train.epoch'" in result.stderr
    assert "did you mean 'train.epochs'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())


def test_missing_data_leaves_no_run_dir(tmp_path, run_recon, joint_config, monkeypatch):
    monkeypatch.setattr("recon.data.multi_digit.SYSTEM_DATA_DIRS", ())
    monkeypatch.setenv("RECON_DATA", str(tmp_path / "nothing"))
    result = run_recon("train", joint_config, f"output_dir={tmp_path / 'runs'}", f"data.root={tmp_path / 'empty'}",
                       f"data.cache_dir={tmp_path / 'cache'}")
    assert result.code == 2
    assert str(tmp_path / "empty") in result.stderr
    assert list((tmp_path / "runs").iterdir()) == []


def test_non_finite_gradient_names_task_and_step(fashion_root, tmp_path, run_recon, tiny_overrides, joint_config,
                                                 tiny_model, monkeypatch):
    from recon.train.step import GradientStep

    original = GradientStep.jacobian

    def jacobian_with_inf_in_t2(self, losses):
        J, reached = original(self, losses)
        if self.step == 1:
            J[1, 0] = float("inf")
        return J, reached

    monkeypatch.setattr(GradientStep, "jacobian", jacobian_with_inf_in_t2)
    result = run_recon("train", joint_config, "method.name=mgda", *tiny_overrides(fashion_root, tmp_path))
    assert result.code == 2
    assert "the gradient of task 'T2' contains NaN or infinite entries at step 1" in result.stderr


@pytest.mark.parametrize("method", sorted(REGISTRY))
def test_every_method_trains_reproducibly(method, fashion_root, tmp_path, run_recon, tiny_overrides, joint_config,
                                          tiny_model):
    overrides = tiny_overrides(fashion_root, tmp_path, **{"train.epochs": 2, "method.name": method})
    assert run_recon("train", joint_config, *overrides).code == 0
    assert run_recon("train", joint_config, *overrides).code == 0
    first, second = sorted(tmp_path.glob("*/summary.json"))
    assert json.loads(first.read_text())["test"] == json.loads(second.read_text())["test"]
    first_lines = [{k: v for k, v in r.items() if k != "train/steps_per_second"} for r in read_metrics(first.parent)]
    second_lines = [{k: v for k, v in r.items() if k != "train/steps_per_second"} for r in read_metrics(second.parent)]
    assert first_lines == second_lines
    # Every logged training loss is finite, and methods with diagnostics logged them.
    losses = [r["train/T1/loss"] for r in first_lines if "train/T1/loss" in r]
    assert len(losses) == 8 and all(value == value for value in losses)
    if method != "joint":
        assert any(key.startswith("method/") for key in first_lines[0])
