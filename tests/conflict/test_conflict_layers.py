"""Layer partition of the shared parameters: names, column ranges and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from recon.conflict.layers import shared_layers
from recon.models.base import MultiTaskModel
from recon.models.resnet import MultiTaskResNet18
from recon.surgery import branch_layers

PUBLISHED = Path(__file__).resolve().parents[2] / "logs" / "multi_fashion_mnist_resnet18_S-0.1.json"


class TwoLayerNet(MultiTaskModel):
    """A trunk of a convolution and a BatchNorm, and one linear head per task."""

    def __init__(self, tasks: tuple[str, ...] = ("a", "b")) -> None:
        super().__init__()
        self.tasks = tasks
        self.trunk = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU())
        self.heads = nn.ModuleDict({task: nn.Linear(3, 2) for task in tasks})

    def shared_root(self) -> nn.Module:
        return self.trunk

    def own_task_modules(self) -> dict[str, list[nn.Module]]:
        return {task: [head] for task, head in self.heads.items()}

    def forward(self, x, tasks=None):
        features = self.trunk(x).mean((2, 3))
        return {task: self.heads[task](features) for task in (tasks or self.tasks)}


def test_resnet18_layer_names_match_published_file():
    model = MultiTaskResNet18({"T1": 10, "T2": 10})
    names = [layer.name for layer in shared_layers(model)]
    published = list(json.loads(PUBLISHED.read_text()))

    assert len(names) == 41
    assert sorted(names) == sorted(published)
    assert names[:4] == ["conv1", "bn1", "layer1.0.conv1", "layer1.0.bn1"]
    assert names[-1] == "fc"
    assert "layer2.0.downsample.1" in names


def test_resnet18_column_ranges_cover_jacobian():
    model = MultiTaskResNet18({"T1": 10, "T2": 10})
    layers = shared_layers(model)
    total = sum(param.numel() for param in model.shared_parameters())

    assert layers[0].start == 0
    assert layers[-1].stop == total
    for previous, layer in zip(layers, layers[1:]):
        assert layer.start == previous.stop
    sizes = {layer.name: layer.params for layer in layers}
    assert sizes["conv1"] == 64 * 1 * 7 * 7
    assert sizes["bn1"] == 2 * 64
    assert sizes["layer2.0.downsample.0"] == 128 * 64
    assert sizes["fc"] == 512 * 100 + 100


def test_layer_columns_follow_shared_parameters():
    model = TwoLayerNet()
    layers = shared_layers(model)
    conv, bn = model.trunk[0], model.trunk[1]

    assert [(layer.name, layer.start, layer.stop) for layer in layers] == [
        ("0", 0, conv.weight.numel() + 3),
        ("1", conv.weight.numel() + 3, conv.weight.numel() + 3 + 6),
    ]


def test_branched_layers_leave_partition():
    model = TwoLayerNet()
    branch_layers(model, ["1"])
    layers = shared_layers(model)

    assert [layer.name for layer in layers] == ["0"]
    assert layers[0].stop == sum(param.numel() for param in model.shared_parameters())


def test_partition_ignores_gradients():
    model = TwoLayerNet()
    model.trunk[1].weight.requires_grad_(False)

    assert [layer.params for layer in shared_layers(model)] == [30, 6]


class InterleavedNet(TwoLayerNet):
    """Lists the shared parameters with the convolution's bias after the BatchNorm's weight."""

    def shared_parameters(self):
        conv, bn = self.trunk[0], self.trunk[1]
        return [conv.weight, bn.weight, conv.bias, bn.bias]


def test_non_contiguous_layer_rejected():
    with pytest.raises(ValueError, match="parameters of layer '0' are not contiguous"):
        shared_layers(InterleavedNet())


class OutsideRootNet(TwoLayerNet):
    """Has a shared scale outside the shared root."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Linear(1, 1)


def test_shared_parameter_outside_root_rejected():
    with pytest.raises(ValueError, match=r"shared parameters outside the shared root: scale.weight, scale.bias"):
        shared_layers(OutsideRootNet())


class MixedNet(TwoLayerNet):
    """The convolution's bias is also head a's bias, so it belongs to task a."""

    def __init__(self) -> None:
        super().__init__()
        self.heads["a"].bias = nn.Parameter(torch.zeros(3))
        self.trunk[0].bias = self.heads["a"].bias


def test_mixed_shared_and_task_parameters_rejected():
    with pytest.raises(ValueError, match="module '0' mixes shared and task-specific parameters"):
        shared_layers(MixedNet())


class TiedNet(TwoLayerNet):
    """Two BatchNorm layers with one weight."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk.append(nn.BatchNorm2d(3))
        self.trunk[3].weight = self.trunk[1].weight


def test_tied_parameter_rejected():
    with pytest.raises(ValueError, match="held by both layer '1' and layer '3'"):
        shared_layers(TiedNet())


class RootParameterNet(TwoLayerNet):
    """Holds a shared parameter on the model itself, which is also the shared root."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = nn.Parameter(torch.zeros(1))

    def shared_root(self) -> nn.Module:
        return self


def test_parameter_on_root_rejected():
    with pytest.raises(ValueError, match="shared root module has parameters of its own"):
        shared_layers(RootParameterNet())
