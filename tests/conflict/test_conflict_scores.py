"""S-conflict scores, windows, the permutation JSON and the cosines file checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from recon.conflict.recorder import COSINES_FILE
from recon.conflict.scores import (
    check_threshold,
    conflict_scores,
    load_cosines,
    parse_window,
    permutation_file_name,
    read_permutation,
    window_indices,
    write_permutation,
)

LOGS = Path(__file__).resolve().parents[2] / "logs"
LAYERS = ["conv1", "bn1", "layer1.0.conv1", "fc"]


def direct_scores(cos: np.ndarray, S: float, first: int, end: int) -> list[int]:
    """Count, with explicit loops, the entries below S per layer over steps first..end-1."""
    counts = [0] * cos.shape[1]
    for step in range(first, end):
        for layer in range(cos.shape[1]):
            for pair in range(cos.shape[2]):
                if cos[step, layer, pair] < S:
                    counts[layer] += 1
    return counts


@pytest.mark.parametrize("S", [0.0, -0.02, -0.1, -0.5])
@pytest.mark.parametrize("window, first, end", [((0.0, 1.0), 0, 40), ((0.0, 0.25), 0, 10), ((0.25, 1.0), 10, 40),
                                                ((0.1, 0.3), 4, 12)])
def test_scores_equal_direct_count(S, window, first, end):
    generator = torch.Generator().manual_seed(0)
    cos = torch.rand(40, len(LAYERS), 3, generator=generator) * 2 - 1
    scores = conflict_scores(cos, LAYERS, S, window)
    expected = direct_scores(cos.numpy(), S, first, end)

    assert {name: scores[name] for name in LAYERS} == dict(zip(LAYERS, expected))
    assert list(scores.values()) == sorted(scores.values(), reverse=True)
    assert all(type(value) is int for value in scores.values())


def test_threshold_is_strict():
    cos = torch.tensor([[[-0.1], [-0.1000001], [0.0], [-1.0]]])  # 1 step, 4 layers, 1 pair

    assert conflict_scores(cos, LAYERS, -0.1) == {"bn1": 1, "fc": 1, "conv1": 0, "layer1.0.conv1": 0}
    assert conflict_scores(cos, LAYERS, 0.0)["layer1.0.conv1"] == 0


def test_ties_keep_layer_order():
    cos = torch.tensor([[[0.5], [-0.5], [0.5], [-0.5]],
                        [[-0.5], [0.5], [0.5], [-0.5]]])

    assert list(conflict_scores(cos, LAYERS, -0.1)) == ["fc", "conv1", "bn1", "layer1.0.conv1"]


@pytest.mark.parametrize("num_steps, window, expected", [
    (10, (0.0, 0.25), range(0, 3)),    # i/10 < 0.25 -> i <= 2
    (8, (0.0, 0.25), range(0, 2)),
    (10, (0.25, 1.0), range(3, 10)),
    (10, (0.1, 0.3), range(1, 3)),     # 0.3 * 10 is 3.0000000000000004 in floating point
    (3, (0.0, 1.0), range(0, 3)),
    (1, (0.0, 0.01), range(0, 1)),
])
def test_window_indices(num_steps, window, expected):
    assert window_indices(num_steps, window) == expected


def test_empty_window_rejected():
    with pytest.raises(ValueError, match="window 0.5:0.6 selects none of the 3 recorded steps"):
        window_indices(3, (0.5, 0.6))


@pytest.mark.parametrize("text, expected", [("0:1", (0.0, 1.0)), ("0:0.25", (0.0, 0.25)), (" 0.5 : 1 ", (0.5, 1.0))])
def test_parse_window(text, expected):
    assert parse_window(text) == expected


@pytest.mark.parametrize("text, message", [
    ("0-1", "window must have the form A:B"),
    ("a:b", "window must have the form A:B"),
    ("0:0.5:1", "window must have the form A:B"),
    ("0.5:0.2", r"0 <= A < B <= 1; found 0.5:0.2"),
    ("0:1.5", r"0 <= A < B <= 1; found 0:1.5"),
    ("-0.1:0.5", r"0 <= A < B <= 1; found -0.1:0.5"),
    ("0.3:0.3", r"0 <= A < B <= 1; found 0.3:0.3"),
])
def test_bad_window_rejected(text, message):
    with pytest.raises(ValueError, match=message):
        parse_window(text)


@pytest.mark.parametrize("S", [0.1, -1.0, -1.5, float("nan")])
def test_bad_threshold_rejected(S):
    with pytest.raises(ValueError, match=r"S must satisfy -1 < S <= 0 .*; found S = "):
        check_threshold(S)


def test_negative_zero_threshold_named_zero():
    assert permutation_file_name(-0.0) == "permutation_S0.0.json"


@pytest.mark.parametrize("S, window, name", [
    (-0.1, (0.0, 1.0), "permutation_S-0.1.json"),
    (-0.02, (0.0, 1.0), "permutation_S-0.02.json"),
    (0.0, (0.0, 0.25), "permutation_S0.0_window0-0.25.json"),
    (-0.1, (0.25, 1.0), "permutation_S-0.1_window0.25-1.json"),
])
def test_permutation_file_name(S, window, name):
    assert permutation_file_name(S, window) == name


def test_permutation_json_round_trip(tmp_path):
    scores = {"fc": 9, "conv1": 4, "bn1": 4, "layer1.0.conv1": 0}
    path = tmp_path / "conflict" / "permutation_S-0.1.json"
    write_permutation(scores, path)

    assert path.read_text() == '{"fc": 9, "conv1": 4, "bn1": 4, "layer1.0.conv1": 0}'
    assert list(read_permutation(path).items()) == list(scores.items())


@pytest.mark.parametrize("name, layers", [
    ("multi_fashion_mnist_resnet18_S-0.1.json", 41),
    ("cityscapes_segnet_S0.0.json", None),
    ("nyuv2_mtan_S-0.02.json", None),
])
def test_published_permutations_load(name, layers):
    permutation = read_permutation(LOGS / name)
    raw = json.loads((LOGS / name).read_text())

    assert list(permutation) == list(raw)
    assert list(permutation.values()) == sorted(permutation.values(), reverse=True)
    if layers is not None:
        assert len(permutation) == layers
        assert list(permutation)[:3] == ["bn1", "layer1.0.bn1", "layer1.1.bn1"]
        assert permutation["bn1"] == 4427


def test_missing_permutation_rejected(tmp_path):
    with pytest.raises(FileNotFoundError, match="layer permutation file not found: .*absent.json"):
        read_permutation(tmp_path / "absent.json")


@pytest.mark.parametrize("text, message", [
    ('["bn1", "conv1"]', "contains a list; expected a JSON object mapping layer names to scores"),
    ('{"bn1": "high"}', "the score of layer 'bn1' is 'high'"),
    ('{"bn1": true}', "the score of layer 'bn1' is True"),
    ("{bn1: 3}", "is not valid JSON"),
])
def test_malformed_permutation_rejected(tmp_path, text, message):
    path = tmp_path / "permutation.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_permutation(path)


def write_cosines(run_dir: Path, data) -> None:
    path = run_dir / COSINES_FILE
    path.parent.mkdir(parents=True)
    torch.save(data, path)


def valid_cosines() -> dict:
    return {"cos": torch.zeros(5, 4, 1), "layers": LAYERS, "pairs": [("T1", "T2")], "params": [1, 2, 3, 4],
            "steps": torch.arange(5), "settings": {"method": "joint"}}


def test_load_cosines(tmp_path):
    write_cosines(tmp_path, valid_cosines())
    record = load_cosines(tmp_path)

    assert record.cos.shape == (5, 4, 1)
    assert record.layers == LAYERS
    assert record.pairs == [("T1", "T2")]
    assert record.steps == [0, 1, 2, 3, 4]
    assert record.settings == {"method": "joint"}


def test_missing_cosines_file_rejected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no recorded cosines at .*conflict/cosines.pt"):
        load_cosines(tmp_path)


@pytest.mark.parametrize("change, message", [
    ({"cos": torch.zeros(5, 3, 1)}, r"'cos' has shape \(5, 3, 1\) but the file names 4 layers"),
    ({"cos": torch.zeros(5, 4)}, "'cos' must be a float tensor of shape steps × layers × pairs"),
    ({"cos": torch.full((5, 4, 1), float("nan"))}, "'cos' contains NaN or infinite values"),
    ({"params": [1, 2]}, r"'cos' has shape \(5, 4, 1\) but the file names 4 layers, 2 layer sizes"),
    ({"steps": torch.arange(3)}, "3 step numbers for 5 rows"),
])
def test_malformed_cosines_rejected(tmp_path, change, message):
    write_cosines(tmp_path, {**valid_cosines(), **change})
    with pytest.raises(ValueError, match=f"malformed cosines file .*cosines.pt: {message}"):
        load_cosines(tmp_path)


def test_cosines_file_without_keys_rejected(tmp_path):
    write_cosines(tmp_path, {"cos": torch.zeros(5, 4, 1)})
    with pytest.raises(ValueError, match=r"malformed cosines file .*: expected a dict with cos .*; found \['cos'\]"):
        load_cosines(tmp_path)


def test_corrupt_cosines_file_rejected(tmp_path):
    (tmp_path / "conflict").mkdir()
    (tmp_path / COSINES_FILE).write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="malformed cosines file .*: torch.load failed"):
        load_cosines(tmp_path)


def test_shipped_permutation_found_from_any_folder(tmp_path, monkeypatch):
    from recon.conflict.scores import find_permutation, read_permutation

    monkeypatch.chdir(tmp_path)
    path = find_permutation("logs/multi_fashion_mnist_resnet18_S-0.1.json")
    assert path == Path(__file__).resolve().parents[2] / "logs" / "multi_fashion_mnist_resnet18_S-0.1.json"
    assert read_permutation("logs/multi_fashion_mnist_resnet18_S-0.1.json")["bn1"] == 4427


def test_missing_permutation_lists_both_places(tmp_path, monkeypatch):
    from recon.conflict.scores import find_permutation

    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"logs/none.json \(looked at .*/logs/none.json and .*/logs/none.json\)"):
        find_permutation("logs/none.json")
