"""`recon conflict RUN_DIR --S S [--window A:B] [--top N]` on a run directory with known cosines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from recon.cli import main
from recon.conflict.recorder import COSINES_FILE

LAYERS = ["conv1", "bn1", "layer1.0.conv1", "fc"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run whose 8 recorded steps give, at S = -0.1, scores bn1 3, fc 2, conv1 1, layer1.0.conv1 0.

    Steps 0-3: bn1 below S on both pairs, fc on one pair. Steps 4-7: conv1 below S on
    one pair at step 4, bn1 on one pair at step 5, fc on one pair at step 6.
    """
    cos = torch.full((8, 4, 2), 0.3)
    cos[0, 1] = -0.5
    cos[0, 3, 0] = -0.9
    cos[4, 0, 1] = -0.2
    cos[5, 1, 0] = -0.11
    cos[6, 3, 1] = -0.4
    cos[7, 2, 0] = -0.1  # not below S
    path = tmp_path / COSINES_FILE
    path.parent.mkdir(parents=True)
    torch.save({"cos": cos, "layers": LAYERS, "pairs": [("T1", "T2"), ("T1", "T3")],
                "params": [3136, 128, 36864, 51300], "steps": torch.arange(100, 108),
                "settings": {"method": "joint"}}, path)
    return tmp_path


def test_conflict_writes_permutation_and_charts(run_dir, capsys):
    assert main(["conflict", str(run_dir), "--S", "-0.1", "--top", "3"]) == 0
    out_dir = run_dir / "conflict"
    permutation = json.loads((out_dir / "permutation_S-0.1.json").read_text())
    lines = capsys.readouterr().out.splitlines()

    assert list(permutation.items()) == [("bn1", 3), ("fc", 2), ("conv1", 1), ("layer1.0.conv1", 0)]
    assert (out_dir / "scores_S-0.1.png").read_bytes()[:8] == PNG_SIGNATURE
    assert (out_dir / "cosines_S-0.1.png").read_bytes()[:8] == PNG_SIGNATURE
    assert "recorded steps 0 to 7 of 8 (training steps 100 to 107), task pairs: 2" in lines[0]
    assert lines[1].split() == ["rank", "score", "params", "layer"]
    assert [line.split() for line in lines[2:5]] == [["1", "3", "128", "bn1"], ["2", "2", "51,300", "fc"],
                                                    ["3", "1", "3,136", "conv1"]]
    assert lines[5] == f"permutation: {out_dir / 'permutation_S-0.1.json'}"


def test_conflict_window_keeps_earlier_file(run_dir, capsys):
    main(["conflict", str(run_dir), "--S", "-0.1"])
    assert main(["conflict", str(run_dir), "--S", "-0.1", "--window", "0:0.5"]) == 0
    out_dir = run_dir / "conflict"
    windowed = json.loads((out_dir / "permutation_S-0.1_window0-0.5.json").read_text())
    full = json.loads((out_dir / "permutation_S-0.1.json").read_text())

    assert list(windowed.items()) == [("bn1", 2), ("fc", 1), ("conv1", 0), ("layer1.0.conv1", 0)]
    assert full["bn1"] == 3
    assert "recorded steps 0 to 3 of 8" in capsys.readouterr().out


@pytest.mark.parametrize("arguments, message", [
    (["--S", "0.2"], "S must satisfy -1 < S <= 0 (a cosine threshold); found S = 0.2"),
    (["--S", "-0.1", "--window", "0.5:0.25"], "window A:B must satisfy 0 <= A < B <= 1; found 0.5:0.25"),
    (["--S", "-0.1", "--top", "0"], "--top must be a positive number of layers; found 0"),
])
def test_conflict_bad_arguments(run_dir, capsys, arguments, message):
    assert main(["conflict", str(run_dir), *arguments]) == 2
    assert message in capsys.readouterr().err


def test_conflict_without_cosines(tmp_path, capsys):
    assert main(["conflict", str(tmp_path), "--S", "-0.1"]) == 2
    assert f"no recorded cosines at {tmp_path / 'conflict' / 'cosines.pt'}" in capsys.readouterr().err
