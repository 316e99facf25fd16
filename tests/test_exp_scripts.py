"""The table scripts of exp/: the runs they start, with a stand-in `recon` that logs its calls."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Stands for `recon`: logs its arguments, prints a new run directory after `train`,
#: a permutation line after `conflict`, and nothing else.
FAKE_RECON = """#!/usr/bin/env bash
printf '%s|' "$@" >> "$CALLS"
printf '\\n' >> "$CALLS"
case "$1" in
  train)
    n=$(wc -l < "$CALLS")
    mkdir -p "$RUNS/run-$n"
    printf 'test metrics:\\n%s\\n' "$RUNS/run-$n" ;;
  conflict)
    printf 'rank score\\npermutation: %s\\n' "$2/conflict/permutation.json" ;;
esac
"""


@pytest.fixture
def fake_recon(tmp_path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "recon").write_text(FAKE_RECON)
    (bin_dir / "recon").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("SEEDS", "RUN_DIRS", "METHODS", "OUT", "PERMUTATION")}
    # The scripts ask Python for the dataset's tasks: use this interpreter.
    env["PATH"] = f"{bin_dir}:{Path(sys.executable).parent}:{env['PATH']}"
    env.update(CALLS=str(tmp_path / "calls"), RUNS=str(tmp_path / "runs"), OUT=str(tmp_path / "out"))
    return env


def run(script: str, env: dict[str, str], *args: str) -> list[list[str]]:
    result = subprocess.run(["bash", str(REPO / script), *args], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return [line.rstrip("|").split("|") for line in Path(env["CALLS"]).read_text().splitlines()]


def config_of(call: list[str]) -> str:
    return str(Path(call[1]).resolve().relative_to(REPO))


def test_cityscapes_table_runs_every_row(fake_recon):
    fake_recon["SEEDS"] = "0 1"
    calls = run("exp/cityscapes/table.sh", fake_recon, "data.root=/data/city")
    out = fake_recon["OUT"]

    search, conflict = calls[0], calls[1]
    assert config_of(search) == "configs/cityscapes/search.yaml"
    assert search[2:] == [f"output_dir={out}/search", "data.root=/data/city"]
    search_dir = f"{fake_recon['RUNS']}/run-1"
    assert conflict == ["conflict", search_dir, "--S", "0.0"]

    trains = calls[2:-1]
    # 2 single-task runs and 5 methods × (plain, Recon), each for 2 seeds.
    assert len(trains) == (2 + 10) * 2
    single = [c for c in trains if config_of(c) == "configs/cityscapes/single_task.yaml"]
    # run_seeds passes seed= and output_dir= first, then the script's own overrides.
    assert sorted((c[4], c[2]) for c in single) == [
        ("tasks=[depth]", "seed=0"), ("tasks=[depth]", "seed=1"),
        ("tasks=[segmentation]", "seed=0"), ("tasks=[segmentation]", "seed=1")]
    recon_runs = [c for c in trains if config_of(c).endswith("_recon.yaml")]
    assert len(recon_runs) == 10
    assert all(c[4] == f"model.branch.file={search_dir}/conflict/permutation.json" for c in recon_runs)
    assert {config_of(c) for c in trains} == {f"configs/cityscapes/{name}.yaml" for name in (
        "single_task", "joint", "joint_recon", "mgda", "mgda_recon", "pcgrad", "pcgrad_recon",
        "graddrop", "graddrop_recon", "cagrad", "cagrad_recon")}
    assert all(f"output_dir={out}" in c and "data.root=/data/city" in c for c in trains)

    report = calls[-1]
    assert report[0] == "report"
    assert report[1:] == [f"{fake_recon['RUNS']}/run-{n}" for n in range(3, 3 + len(trains))]


def test_nyuv2_table_threshold_and_tasks(fake_recon):
    fake_recon["SEEDS"] = "0"
    fake_recon["METHODS"] = "cagrad"
    calls = run("exp/nyuv2/table.sh", fake_recon)
    assert calls[1][2:] == ["--S", "-0.02"]
    tasks = [c[4] for c in calls if c[0] == "train" and config_of(c).endswith("single_task.yaml")]
    assert tasks == ["tasks=[segmentation]", "tasks=[depth]", "tasks=[normal]"]
    assert [config_of(c) for c in calls[5:-1]] == ["configs/nyuv2/cagrad.yaml", "configs/nyuv2/cagrad_recon.yaml"]


def test_multi_fashion_mnist_table_uses_published_permutation(fake_recon):
    fake_recon["SEEDS"] = "0"
    fake_recon["METHODS"] = "joint"
    calls = run("exp/multi_fashion_mnist/table.sh", fake_recon)
    assert not any(c[0] == "conflict" for c in calls)
    assert not any(config_of(c).endswith("search.yaml") for c in calls if c[0] == "train")
    recon_call = next(c for c in calls if c[0] == "train" and config_of(c).endswith("joint_recon.yaml"))
    published = Path(recon_call[4].split("=", 1)[1]).resolve()
    assert published == REPO / "logs" / "multi_fashion_mnist_resnet18_S-0.1.json"


def test_quickstart_pipeline(fake_recon):
    fake_recon["METHODS"] = "joint cagrad"
    calls = run("exp/quickstart.sh", fake_recon, "train.device=cpu")
    out = fake_recon["OUT"]
    quick = ["data.train_size=7168", "data.test_size=2000", "train.epochs=2", "train.eval_every=1",
             f"output_dir={out}", "train.device=cpu"]
    assert config_of(calls[0]) == "configs/multi_fashion/search.yaml"
    assert calls[0][2:] == quick
    assert calls[1] == ["conflict", f"{fake_recon['RUNS']}/run-1", "--S", "-0.1"]
    permutation = f"model.branch.file={fake_recon['RUNS']}/run-1/conflict/permutation.json"
    assert [(config_of(c), c[2:]) for c in calls[2:6]] == [
        ("configs/multi_fashion/joint.yaml", quick),
        ("configs/multi_fashion/joint_recon.yaml", quick + [permutation]),
        ("configs/multi_fashion/cagrad.yaml", quick),
        ("configs/multi_fashion/cagrad_recon.yaml", quick + [permutation]),
    ]
    assert calls[6] == ["report", out]
