"""The CityScapes and NYUv2 configs and scripts: settings, references and layout.

The expected values are those of the Recon paper (Shi et al., ICLR 2023, arXiv 2302.11289).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from recon.config import load_config
from recon.data.dense import dense_tasks
from recon.methods import UnknownMethodError, resolve

REPOSITORY = Path(__file__).resolve().parents[2]
DATASETS = ("cityscapes", "nyuv2")
METHODS = ("joint", "mgda", "pcgrad", "graddrop", "cagrad")

# Settings of the Recon paper: epochs, batch, learning rate, CAGrad c, K, permutation file.
PAPER = {
    "cityscapes": {"model": "segnet", "batch_size": 8, "lr": 5e-5, "alpha": 0.2, "top_k": 39,
                   "file": "logs/cityscapes_segnet_S0.0.json"},
    "nyuv2": {"model": "mtan", "batch_size": 2, "lr": 1e-4, "alpha": 0.4, "top_k": 22,
              "file": "logs/nyuv2_mtan_S-0.02.json"},
}

# The Recon paper's single-task rows.
SINGLE_TASK = {
    "cityscapes": {"segmentation": {"miou": 74.36, "pix_acc": 93.22}, "depth": {"abs_err": 0.0128, "rel_err": 29.98}},
    "nyuv2": {"segmentation": {"miou": 38.67, "pix_acc": 64.27}, "depth": {"abs_err": 0.6881, "rel_err": 0.2788},
              "normal": {"angle_mean": 24.87, "angle_median": 18.99, "within_11.25": 30.43,
                         "within_22.5": 57.81, "within_30": 69.70}},
}


def _load(dataset: str, experiment: str) -> dict:
    path = REPOSITORY / "configs" / dataset / f"{experiment}.yaml"
    return load_config(path)


def _experiments(dataset: str) -> list[str]:
    return sorted(path.stem for path in (REPOSITORY / "configs" / dataset).glob("*.yaml"))


def test_every_experiment_has_a_config():
    expected = {"base", "single_task", "search", *METHODS, *(f"{m}_recon" for m in METHODS)}
    for dataset in DATASETS:
        assert set(_experiments(dataset)) == expected, dataset


@pytest.mark.parametrize("dataset", DATASETS)
def test_base_settings(dataset):
    config = _load(dataset, "base")
    paper = PAPER[dataset]
    assert config["data"]["name"] == dataset
    assert config["model"]["name"] == paper["model"]
    assert config["train"]["epochs"] == 200
    assert config["train"]["batch_size"] == paper["batch_size"]
    assert config["train"]["optimizer"] == "adam"
    assert config["train"]["lr"] == paper["lr"]
    assert config["train"]["milestones"] == [100]
    assert config["train"]["gamma"] == 0.5
    assert config["data"]["augment"] is True


@pytest.mark.parametrize("dataset", DATASETS)
def test_reference_is_single_task_row(dataset):
    reference = _load(dataset, "base")["eval"]["reference"]
    assert reference == SINGLE_TASK[dataset]

    # Every task and metric of the reference is one that the tasks compute.
    tasks, _ = dense_tasks(dataset)
    assert set(reference) == set(tasks)
    for name, task in tasks.items():
        assert set(reference[name]) == set(task.new_metric().higher_is_better), name


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("method", METHODS)
def test_method_configs(dataset, method):
    plain = _load(dataset, method)
    branched = _load(dataset, f"{method}_recon")
    assert plain["method"]["name"] == method
    assert plain["model"]["branch"]["file"] is None
    assert branched["method"] == plain["method"]
    assert branched["model"]["branch"]["file"] == PAPER[dataset]["file"]
    assert branched["model"]["branch"]["top_k"] == PAPER[dataset]["top_k"]
    assert (REPOSITORY / branched["model"]["branch"]["file"]).is_file()
    if method == "cagrad":
        assert plain["method"]["alpha"] == PAPER[dataset]["alpha"]


@pytest.mark.parametrize("dataset", DATASETS)
def test_search_config(dataset):
    config = _load(dataset, "search")
    assert config["recon"]["record"] is True
    assert config["method"]["name"] == "joint"
    assert config["train"]["epochs"] == 40
    assert config["model"]["branch"]["file"] is None


@pytest.mark.parametrize("dataset", DATASETS)
def test_single_task_config(dataset):
    config = _load(dataset, "single_task")
    assert config["tasks"] == ["segmentation"]
    assert config["method"]["name"] == "joint"


@pytest.mark.parametrize("dataset", DATASETS)
def test_scripts(dataset):
    folder = REPOSITORY / "exp" / dataset
    scripts = sorted(folder.glob("*.sh"))
    experiments = set(_experiments(dataset)) - {"base"}
    assert {script.stem for script in scripts} == experiments | {"table"}
    for script in scripts:
        assert os.access(script, os.X_OK), script
        subprocess.run(["bash", "-n", str(script)], check=True)
        text = script.read_text()
        assert "set -euo pipefail" in text, script
        for config in re.findall(r"(?<!\$)configs/[\w/]+\.yaml", text):
            assert (REPOSITORY / config).is_file(), f"{script} names {config}"
        if script.stem != "table":
            assert f"configs/{dataset}/{script.stem}.yaml" in text
