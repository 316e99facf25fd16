"""S-conflict scores and the layer permutation (Recon, step 2).

Shi et al., "Recon: Reducing Conflicting Gradients from the Root for Multi-Task
Learning", ICLR 2023, arXiv 2302.11289, Section 4: a layer's S-conflict score is the
number of (step, task pair) entries whose gradient cosine on that layer is below
S (−1 < S ≤ 0), summed over the recorded steps. Layers sorted by score, most
conflicting first, form the layer permutation, saved as a JSON object
``{layer name: score}`` in the format of the permutation files published with the
paper.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from recon.conflict.recorder import COSINES_FILE


@dataclass
class CosineRecord:
    """The cosines of a search run, as ``ConflictRecorder.save`` writes them."""

    cos: torch.Tensor  # steps × layers × pairs
    layers: list[str]
    pairs: list[tuple[str, str]]
    params: list[int]
    steps: list[int]
    settings: dict[str, Any]


def _check_record(data: Any, path: Path) -> CosineRecord:
    """Return ``data`` as a CosineRecord, raising ValueError naming ``path`` when it is malformed."""
    expected = "a dict with cos (steps × layers × pairs tensor), layers, pairs, params and steps"
    if not isinstance(data, dict) or not {"cos", "layers", "pairs", "params"} <= set(data):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"malformed cosines file {path}: expected {expected}; found {found}")

    cos = data["cos"]
    layers = list(data["layers"])
    pairs = [tuple(pair) for pair in data["pairs"]]
    params = [int(count) for count in data["params"]]
    if not isinstance(cos, torch.Tensor) or cos.dim() != 3 or not cos.is_floating_point():
        raise ValueError(f"malformed cosines file {path}: 'cos' must be a float tensor of shape "
                         "steps × layers × pairs")
    if cos.shape[1:] != (len(layers), len(pairs)) or len(params) != len(layers):
        raise ValueError(f"malformed cosines file {path}: 'cos' has shape {tuple(cos.shape)} but the file "
                         f"names {len(layers)} layers, {len(params)} layer sizes and {len(pairs)} task pairs")
    if not bool(torch.isfinite(cos).all()):
        raise ValueError(f"malformed cosines file {path}: 'cos' contains NaN or infinite values")

    steps = data.get("steps")
    steps = list(range(cos.shape[0])) if steps is None else [int(step) for step in steps]
    if len(steps) != cos.shape[0]:
        raise ValueError(f"malformed cosines file {path}: {len(steps)} step numbers for {cos.shape[0]} rows")
    return CosineRecord(cos.float(), layers, pairs, params, steps, dict(data.get("settings") or {}))


def load_cosines(run_dir: str | Path) -> CosineRecord:
    """Read ``run_dir/conflict/cosines.pt``; FileNotFoundError or ValueError names the file."""
    path = Path(run_dir) / COSINES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no recorded cosines at {path}; run a search run (recon.record=true) "
                                "with this run directory first")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types (pickle, zip, runtime) for a corrupt file
        raise ValueError(f"malformed cosines file {path}: torch.load failed: {error}") from None
    return _check_record(data, path)


def check_threshold(S: float) -> float:
    """Return S (with −0.0 written as 0.0) if −1 < S ≤ 0, else raise ValueError."""
    if not math.isfinite(S) or not -1.0 < S <= 0.0:
        raise ValueError(f"S must satisfy -1 < S <= 0 (a cosine threshold); found S = {S}")
    return S + 0.0


def parse_window(text: str) -> tuple[float, float]:
    """Parse ``A:B`` (fractions of the recorded steps, 0 ≤ A < B ≤ 1)."""
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start, stop = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError(f"window must have the form A:B with numbers 0 <= A < B <= 1, e.g. 0:0.25; "
                         f"found '{text}'") from None
    return check_window((start, stop))


def check_window(window: tuple[float, float]) -> tuple[float, float]:
    """Return ``window`` if 0 ≤ A < B ≤ 1, else raise ValueError."""
    start, stop = window
    if not (0.0 <= start < stop <= 1.0):
        raise ValueError(f"window A:B must satisfy 0 <= A < B <= 1; found {start:g}:{stop:g}")
    return start, stop


def window_indices(num_steps: int, window: tuple[float, float]) -> range:
    """Return the indices i of the recorded steps in the window: those with A ≤ i/n < B.

    n is the number of recorded steps, so the window 0:1 selects them all, 0:0.25 the
    first quarter (rounded up: i < ⌈n/4⌉) and 0.25:1 the rest. A and B are read as the
    decimals they print as, so 0.1 means exactly 1/10.
    """
    start, stop = check_window(window)
    first = math.ceil(Fraction(repr(start)) * num_steps)
    end = math.ceil(Fraction(repr(stop)) * num_steps)
    if first >= end:
        raise ValueError(f"window {start:g}:{stop:g} selects none of the {num_steps} recorded steps; widen it")
    return range(first, end)


def conflict_scores(cos: torch.Tensor, layers: list[str], S: float,
                    window: tuple[float, float] = (0.0, 1.0)) -> dict[str, int]:
    """Return each layer's S-conflict score, most conflicting first (the layer permutation).

    ``cos`` has shape steps × layers × pairs. A layer's score is the number of entries
    of its steps in ``window`` and its pairs whose cosine is strictly below S. Ties keep
    the order of ``layers`` (the model's layer order).
    """
    S = check_threshold(S)
    if cos.dim() != 3 or cos.shape[1] != len(layers):
        raise ValueError(f"cos must have shape steps × {len(layers)} layers × pairs; found {tuple(cos.shape)}")

    # Count per layer over the window's steps and all pairs.
    indices = window_indices(cos.shape[0], window)
    selected = cos[indices.start:indices.stop]
    counts = (selected < S).sum(dim=(0, 2)).tolist()

    # Python's sort is stable, so equal scores stay in layer order.
    order = sorted(range(len(layers)), key=lambda index: -counts[index])
    return {layers[index]: int(counts[index]) for index in order}


def permutation_file_name(S: float, window: tuple[float, float] = (0.0, 1.0)) -> str:
    """Return the file name of the permutation for S and window, e.g. ``permutation_S-0.1_window0-0.25.json``.

    Different settings give different names, so a run's earlier permutations are kept.
    """
    return f"permutation{settings_suffix(S, window)}.json"


def settings_suffix(S: float, window: tuple[float, float] = (0.0, 1.0)) -> str:
    """Return ``_S<S>`` plus ``_window<A>-<B>`` unless the window is all steps."""
    S = check_threshold(S)
    start, stop = check_window(window)
    suffix = f"_S{S!r}"
    if (start, stop) != (0.0, 1.0):
        suffix += f"_window{start:g}-{stop:g}"
    return suffix


def write_permutation(scores: dict[str, int], path: str | Path) -> None:
    """Write a layer permutation as one JSON object (layer name -> score), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w") as file:
        json.dump(scores, file)
    os.replace(partial, path)


def find_permutation(path: str | Path) -> Path:
    """Return the permutation file ``path``; a relative path not found here is looked up in the repository.

    Configs name the shipped permutations as ``logs/<file>.json``, relative to the
    repository's root, so that they work from any working folder.
    """
    path = Path(path)
    if path.is_file():
        return path
    looked = [str(path.resolve())]
    if not path.is_absolute():
        in_repository = Path(__file__).resolve().parents[2] / path
        if in_repository.is_file():
            return in_repository
        looked.append(str(in_repository))
    raise FileNotFoundError(f"layer permutation file not found: {path} (looked at {' and '.join(looked)}); "
                            "model.branch.file takes a JSON file that `recon conflict` wrote or one in logs/")


def read_permutation(path: str | Path) -> dict[str, float]:
    """Read a layer permutation: a JSON object mapping layer names to scores, most conflicting first.

    Raises FileNotFoundError for a missing file and ValueError for a file that is not
    a JSON object of name -> number.
    """
    path = find_permutation(path)
    expected = 'a JSON object mapping layer names to scores, e.g. {"bn1": 4427, "conv1": 1944}'
    try:
        with open(path) as file:
            data = json.load(file)
    except json.JSONDecodeError as error:
        raise ValueError(f"layer permutation file {path} is not valid JSON ({error}); expected {expected}") from None

    if not isinstance(data, dict):
        raise ValueError(f"layer permutation file {path} contains a {type(data).__name__}; expected {expected}")
    for name, score in data.items():
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise ValueError(f"layer permutation file {path}: the score of layer '{name}' is {score!r}; "
                             f"expected {expected}")
    return data
