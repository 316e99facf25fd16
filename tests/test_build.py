"""build_model_from_config and `recon inspect`: the model of a config, surgery included, without data files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from recon.build import build_model_from_config
from recon.cli import main
from recon.config import load_config
from recon.models.resnet import MultiTaskResNet18
from recon.surgery import BranchedLayer

PUBLISHED = Path(__file__).resolve().parents[1] / "logs" / "multi_fashion_mnist_resnet18_S-0.1.json"
# ResNet-18 with a 1-channel 7×7 stem, a 512→100 fc and two 100→10 heads.
RESNET_PARAMS = 11_223_560
TOP25_ADDED = 160_192


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "joint.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"name": "multi_fashion", "root": str(tmp_path / "no-data-here")},
        "model": {"name": "resnet18"},
        "train": {"epochs": 1, "batch_size": 8, "lr": 0.1},
    }))
    return path


def test_build_without_branch(config_path):
    model, branched = build_model_from_config(load_config(config_path))

    assert isinstance(model, MultiTaskResNet18)
    assert model.tasks == ("T1", "T2")
    assert branched == []
    assert sum(param.numel() for param in model.parameters()) == RESNET_PARAMS


def test_build_with_top_k(config_path):
    config = load_config(config_path, [f"model.branch.file={PUBLISHED}", "model.branch.top_k=25"])
    model, branched = build_model_from_config(config)

    assert branched == list(json.loads(PUBLISHED.read_text()))[:25]
    assert isinstance(model.trunk.layer1[0].bn1, BranchedLayer)
    assert not isinstance(model.trunk.fc, BranchedLayer)
    assert sum(param.numel() for param in model.parameters()) == RESNET_PARAMS + TOP25_ADDED


def test_build_with_explicit_layers(config_path):
    config = load_config(config_path, ["model.branch.layers=[fc]", "model.branch.init=independent"])
    model, branched = build_model_from_config(config)

    assert branched == ["fc"]
    assert set(model.trunk.fc.copies) == {"T1", "T2"}
    assert sum(param.numel() for param in model.parameters()) == RESNET_PARAMS + 51_300


@pytest.mark.parametrize("tasks", [["T2"], ["T2", "T1"]])
def test_build_keeps_config_tasks_in_order(config_path, tasks):
    model, _ = build_model_from_config(load_config(config_path, [f"tasks={json.dumps(tasks)}"]))

    assert model.tasks == tuple(tasks)
    assert list(model.heads) == tasks


@pytest.mark.parametrize("tasks, message", [
    ('["T3"]', r"key 'tasks' names 'T3', not a task of multi_fashion; its tasks: T1, T2"),
    ('["T1", "T1"]', "key 'tasks' lists T1 more than once"),
    ("[]", "key 'tasks' must be a non-empty list of task names of multi_fashion"),
])
def test_build_rejects_bad_tasks(config_path, tasks, message):
    with pytest.raises(ValueError, match=message):
        build_model_from_config(load_config(config_path, [f"tasks={tasks}"]))


def test_build_rejects_top_k_beyond_file(config_path):
    config = load_config(config_path, [f"model.branch.file={PUBLISHED}", "model.branch.top_k=50"])
    with pytest.raises(ValueError, match="model.branch.top_k is 50 but .* lists 41 layers"):
        build_model_from_config(config)


def test_inspect_json(config_path, capsys):
    code = main(["inspect", str(config_path), f"model.branch.file={PUBLISHED}", "model.branch.top_k=25", "--json"])
    report = json.loads(capsys.readouterr().out)

    assert code == 0
    assert report["params_total"] == RESNET_PARAMS + TOP25_ADDED
    assert report["params_total"] == report["params_shared"] + sum(report["params_task"].values())
    assert report["params_task"] == {"T1": 1010 + TOP25_ADDED, "T2": 1010 + TOP25_ADDED}
    assert round(report["size_mb"], 2) == 43.43
    assert round(report["before"]["size_mb"], 2) == 42.81
    assert report["before"]["params_total"] == RESNET_PARAMS
    assert report["before"]["layers"] == 41
    assert report["params_added"] == TOP25_ADDED
    assert report["branched"] == list(json.loads(PUBLISHED.read_text()))[:25]
    assert len(report["layers"]) == 16
    assert set(report["layers"]).isdisjoint(report["branched"])
    assert report["layers"][-1] == "fc"
    assert sum(report["layer_params"].values()) == report["params_shared"]


def test_inspect_summary(config_path, capsys):
    assert main(["inspect", str(config_path)]) == 0
    out = capsys.readouterr().out

    assert "parameters: 11,223,560 (42.81 MB as float32)" in out
    assert "shared: 11,221,540 in 41 layers" in out
    assert "no layer branched" in out


def test_inspect_bad_override(config_path, capsys):
    assert main(["inspect", str(config_path), "model.branch.top_k=3"]) == 2
    assert "model.branch.top_k and model.branch.max_params need model.branch.file" in capsys.readouterr().err
