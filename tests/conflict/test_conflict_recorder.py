"""ConflictRecorder: per-layer cosines of task-gradient pairs, checked against a direct computation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from recon.conflict.layers import Layer, shared_layers
from recon.conflict.recorder import COSINES_FILE, ConflictRecorder
from recon.models.base import MultiTaskModel

TASKS = ("a", "b", "c")


class SmallNet(MultiTaskModel):
    """Conv, BatchNorm, conv (no bias) and linear layers shared by three linear heads."""

    def __init__(self) -> None:
        super().__init__()
        self.tasks = TASKS
        self.trunk = nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 5, 3, bias=False),
            nn.Flatten(), nn.Linear(5 * 2 * 2, 6),
        )
        self.heads = nn.ModuleDict({task: nn.Linear(6, 3) for task in TASKS})

    def shared_root(self) -> nn.Module:
        return self.trunk

    def own_task_modules(self) -> dict[str, list[nn.Module]]:
        return {task: [head] for task, head in self.heads.items()}

    def forward(self, x, tasks=None):
        features = self.trunk(x)
        return {task: self.heads[task](features) for task in (tasks or self.tasks)}


def task_jacobian(model: SmallNet, seed: int) -> torch.Tensor:
    """Return J (tasks × shared parameters): each task's loss gradient, flattened."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 1, 6, 6, generator=generator)
    targets = torch.randint(0, 3, (8,), generator=generator)
    outputs = model(x)
    params = model.shared_parameters()
    rows = []
    for task in TASKS:
        loss = nn.functional.cross_entropy(outputs[task], targets)
        grads = torch.autograd.grad(loss, params, retain_graph=True)
        rows.append(torch.cat([grad.reshape(-1) for grad in grads]))
    return torch.stack(rows)


def direct_cosines(J: torch.Tensor, layers: list[Layer]) -> np.ndarray:
    """Per-layer cosines in float64 with a loop over layers and pairs (0 for a zero gradient)."""
    J = J.double().numpy()
    result = np.zeros((len(layers), 3))
    for index, layer in enumerate(layers):
        for pair, (i, j) in enumerate(itertools.combinations(range(J.shape[0]), 2)):
            gi, gj = J[i, layer.start:layer.stop], J[j, layer.start:layer.stop]
            norms = np.linalg.norm(gi) * np.linalg.norm(gj)
            result[index, pair] = gi @ gj / norms if norms > 0 else 0.0
    return result


@pytest.fixture
def model() -> SmallNet:
    torch.manual_seed(0)
    return SmallNet()


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 100_000])
def test_recorded_cosines_match_direct(model, chunk_size):
    layers = shared_layers(model)
    recorder = ConflictRecorder(layers, TASKS, capacity=3, chunk_size=chunk_size)
    jacobians = [task_jacobian(model, seed) for seed in range(3)]
    for step, J in enumerate(jacobians):
        recorder.record(J, step=10 + step)

    recorded = recorder.cosines()
    assert recorded.shape == (3, 4, 3)
    assert recorded.dtype == torch.float32
    for step, J in enumerate(jacobians):
        np.testing.assert_allclose(recorded[step].numpy(), direct_cosines(J, layers), atol=1e-6)


def test_recorded_cosines_of_random_jacobian(model):
    # Correlated rows give cosines away from 0, so a wrong pair or layer would show.
    layers = shared_layers(model)
    generator = torch.Generator().manual_seed(1)
    base = torch.randn(layers[-1].stop, generator=generator)
    J = torch.stack([base + 0.5 * torch.randn(base.shape, generator=generator) for _ in TASKS])
    J[2] = -J[2]
    recorder = ConflictRecorder(layers, TASKS, capacity=1, chunk_size=16)
    recorder.record(J, step=0)

    expected = direct_cosines(J, layers)
    np.testing.assert_allclose(recorder.cosines()[0].numpy(), expected, atol=1e-6)
    assert (expected[:, 0] > 0.5).all()
    assert (expected[:, 1] < -0.5).all()


def test_zero_gradient_gives_zero_cosine(model):
    layers = shared_layers(model)
    J = torch.randn(3, layers[-1].stop)
    J[0, layers[1].start:layers[1].stop] = 0.0
    J[:, layers[2].start:layers[2].stop] = 0.0
    recorder = ConflictRecorder(layers, TASKS, capacity=1, chunk_size=8)
    recorder.record(J, step=0)
    cos = recorder.cosines()[0]

    assert torch.isfinite(cos).all()
    assert cos[1, 0] == 0.0  # pair (a, b): a's gradient is zero on layer 1
    assert cos[1, 1] == 0.0  # pair (a, c)
    assert cos[1, 2] != 0.0  # pair (b, c) is defined
    assert torch.equal(cos[2], torch.zeros(3))


def test_half_precision_jacobian_accepted(model):
    layers = shared_layers(model)
    J = task_jacobian(model, 0)
    recorder = ConflictRecorder(layers, TASKS, capacity=1)
    recorder.record(J.half(), step=0)

    np.testing.assert_allclose(recorder.cosines()[0].numpy(), direct_cosines(J.half().float(), layers), atol=1e-5)


def test_wrong_shape_rejected(model):
    recorder = ConflictRecorder.for_model(model, capacity=2)
    with pytest.raises(ValueError, match=r"J must have shape \(3, 354\) .*; found \(2, 354\)"):
        recorder.record(torch.zeros(2, 354), step=0)


def test_full_recorder_rejected(model):
    recorder = ConflictRecorder.for_model(model, capacity=1)
    recorder.record(torch.randn(3, 354), step=0)
    with pytest.raises(ValueError, match="the recorder is full: its capacity is 1 steps"):
        recorder.record(torch.randn(3, 354), step=1)


def test_single_task_rejected(model):
    with pytest.raises(ValueError, match="at least two tasks"):
        ConflictRecorder(shared_layers(model), ["a"], capacity=1)


def test_bad_capacity_rejected(model):
    with pytest.raises(ValueError, match="capacity must be the number of training steps"):
        ConflictRecorder(shared_layers(model), TASKS, capacity=0)


def test_state_dict_round_trip(model):
    first = ConflictRecorder.for_model(model, capacity=4)
    for step in range(2):
        first.record(task_jacobian(model, step), step=step * 5)
    second = ConflictRecorder.for_model(model, capacity=4)
    second.load_state_dict(first.state_dict())
    second.record(task_jacobian(model, 2), step=10)

    assert second.count == 3
    assert torch.equal(second.cosines()[:2], first.cosines())
    assert second.state_dict()["steps"] == [0, 5, 10]


def test_state_dict_of_other_layers_rejected(model):
    state = ConflictRecorder.for_model(model, capacity=2).state_dict()
    state["layers"] = ["0", "1", "3", "6"]
    with pytest.raises(ValueError, match="recorded layers differ from the model's shared layers"):
        ConflictRecorder.for_model(model, capacity=2).load_state_dict(state)


def test_save_writes_cosines_file(model, tmp_path):
    recorder = ConflictRecorder.for_model(model, capacity=5)
    recorder.record(task_jacobian(model, 0), step=3)
    recorder.record(task_jacobian(model, 1), step=4)
    path = recorder.save(tmp_path, {"method": "joint", "data": {"name": "toy"}})
    data = torch.load(path, weights_only=True)

    assert path == tmp_path / COSINES_FILE
    assert set(data) == {"cos", "layers", "pairs", "params", "steps", "settings"}
    assert data["cos"].shape == (2, 4, 3)
    assert torch.equal(data["cos"], recorder.cosines())
    assert data["layers"] == ["0", "1", "3", "5"]
    assert data["pairs"] == [("a", "b"), ("a", "c"), ("b", "c")]
    assert data["params"] == [4 * 9 + 4, 8, 5 * 4 * 9, 20 * 6 + 6]
    assert data["steps"].tolist() == [3, 4]
    assert data["settings"] == {"method": "joint", "data": {"name": "toy"}}
    assert not list(path.parent.glob("*.partial"))


def test_save_rejects_unserialisable_settings(model, tmp_path):
    recorder = ConflictRecorder.for_model(model, capacity=1)
    with pytest.raises(ValueError, match="settings must be JSON-serialisable"):
        recorder.save(tmp_path, {"path": tmp_path})


@pytest.mark.parametrize("chunk_size", [1, 2, 4, 64])
def test_unordered_layers_with_gap(chunk_size):
    # Columns 3 and 4 belong to no layer; the layers are listed out of column order.
    layers = [Layer("late", 5, 10), Layer("early", 0, 3)]
    J = torch.randn(3, 10, generator=torch.Generator().manual_seed(3))
    recorder = ConflictRecorder(layers, TASKS, capacity=1, chunk_size=chunk_size)
    recorder.record(J, step=0)

    np.testing.assert_allclose(recorder.cosines()[0].numpy(), direct_cosines(J, layers), atol=1e-6)


def test_overlapping_layers_rejected():
    with pytest.raises(ValueError, match="layer 'second' overlaps another layer's columns"):
        ConflictRecorder([Layer("first", 0, 4), Layer("second", 3, 6)], TASKS, capacity=1)
