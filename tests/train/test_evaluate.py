"""`recon eval`: a saved model evaluated again with its run's config, results saved without overwriting."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def finished_run(tiny_model, fashion_root, tmp_path_factory, run_recon, tiny_overrides, joint_config) -> Path:
    output = tmp_path_factory.mktemp("finished")
    result = run_recon("train", joint_config, *tiny_overrides(fashion_root, output, **{"train.epochs": 2}))
    assert result.code == 0, result.stderr
    return Path(result.last_line)


@pytest.fixture
def run_dir(finished_run, tmp_path) -> Path:
    return Path(shutil.copytree(finished_run, tmp_path / finished_run.name))


def eval_files(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "eval").glob("*.json"))


def test_eval_matches_final_test_metrics(run_dir, run_recon):
    result = run_recon("eval", run_dir)
    assert result.code == 0, result.stderr

    (path,) = eval_files(run_dir)
    assert Path(result.last_line) == path
    assert path.name.startswith("test-")
    record = json.loads(path.read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    # The last checkpoint contains the final model, evaluated with the same batch size as in training.
    assert record["metrics"] == summary["test"]
    assert (record["split"], record["samples"], record["epoch"], record["step"]) == ("test", 32, 2, 8)
    assert f"{record['metrics']['T1']['acc']:.4f}" in result.stdout


def test_eval_never_overwrites(run_dir, run_recon):
    assert run_recon("eval", run_dir).code == 0
    (first,) = eval_files(run_dir)
    content = first.read_bytes()

    assert run_recon("eval", run_dir).code == 0
    files = eval_files(run_dir)
    assert len(files) == 2
    assert first.read_bytes() == content


def test_eval_checkpoint_file_with_overrides(run_dir, run_recon):
    result = run_recon("eval", run_dir / "checkpoints" / "last.pt", "train.eval_batch_size=5", "train.device=cpu")
    assert result.code == 0, result.stderr
    record = json.loads(eval_files(run_dir)[0].read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    for task in ("T1", "T2"):
        # Accuracy counts do not depend on the batch size; the summed loss only up to rounding.
        assert record["metrics"][task]["acc"] == summary["test"][task]["acc"]
        assert record["metrics"][task]["loss"] == pytest.approx(summary["test"][task]["loss"], rel=1e-5)
    assert record["overrides"] == ["train.eval_batch_size=5", "train.device=cpu"]


def test_eval_training_split(run_dir, run_recon):
    result = run_recon("eval", run_dir, "--split", "train")
    assert result.code == 0, result.stderr
    (path,) = eval_files(run_dir)
    record = json.loads(path.read_text())
    assert path.name.startswith("train-")
    assert record["samples"] == 64
    for task in ("T1", "T2"):
        correct = record["metrics"][task]["acc"] * 64 / 100
        assert correct == pytest.approx(round(correct), abs=1e-9)


def test_eval_missing_target(tmp_path, run_recon):
    result = run_recon("eval", tmp_path / "absent")
    assert result.code == 2
    assert f"checkpoint or run directory not found: {tmp_path / 'absent'}" in result.stderr


def test_eval_checkpoint_outside_run_dir(run_dir, tmp_path, run_recon):
    lonely = tmp_path / "lonely" / "deeper" / "last.pt"
    lonely.parent.mkdir(parents=True)
    shutil.copy(run_dir / "checkpoints" / "last.pt", lonely)
    result = run_recon("eval", lonely)
    assert result.code == 2
    assert f"no config.yaml found for checkpoint {lonely}" in result.stderr


def test_eval_rejects_other_model(run_dir, run_recon):
    path = run_dir / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    state["model_shapes"]["heads.T1.1.weight"] = [3, 16]
    torch.save(state, path)

    result = run_recon("eval", run_dir)
    assert result.code == 2
    assert (f"checkpoint {path} contains a different model than the config builds; differences (1): "
            "heads.T1.1.weight: shape [3, 16] in the checkpoint, [10, 16] in the model") in result.stderr
    assert not (run_dir / "eval").exists()


def test_report_reads_trainer_summary(finished_run, run_recon):
    # `recon report` on a run the trainer wrote: the row is that run's final test metrics.
    result = run_recon("report", finished_run, "--format", "csv")
    assert result.code == 0, result.stderr
    header, row = result.stdout.splitlines()
    values = dict(zip(header.split(","), row.split(",")))
    summary = json.loads((finished_run / "summary.json").read_text())
    assert float(values["T1/acc mean"]) == summary["test"]["T1"]["acc"]
    assert float(values["size_mb"]) == summary["size_mb"]
    assert (values["method"], values["K"], values["seed values"]) == ("joint", "0", "0")
