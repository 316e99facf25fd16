"""ResNet-18 with a shared trunk and one classification head per task (multi-digit benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models import resnet18

from recon.models.base import MultiTaskModel


def resnet18_trunk(in_channels: int, out_features: int = 100) -> nn.Module:
    """Return torchvision's ResNet-18 with an ``in_channels`` stem and a 512→``out_features`` fc.

    The stem is a 7×7 stride-2 convolution without bias, followed by max-pooling.
    Convolutions get Kaiming normal (fan-out) weights and BatchNorm weight 1,
    bias 0, as torchvision initialises them.
    """
    trunk = resnet18(num_classes=out_features)
    trunk.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(trunk.conv1.weight, mode="fan_out", nonlinearity="relu")
    return trunk


class MultiTaskResNet18(MultiTaskModel):
    """The Recon paper's network for Multi-MNIST, Multi-Fashion and Multi-Fashion+MNIST.

    A ResNet-18 trunk (output 100) shared by the tasks, and per task a head of
    ReLU then a 100→``classes`` linear layer. Layer names are relative to the
    trunk: ``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``fc`` (41 layers).
    """

    def __init__(self, tasks: dict[str, int], in_channels: int = 1, trunk_features: int = 100) -> None:
        super().__init__()
        self.tasks = tuple(tasks)
        self.trunk = resnet18_trunk(in_channels, trunk_features)
        self.heads = nn.ModuleDict({
            task: nn.Sequential(nn.ReLU(), nn.Linear(trunk_features, classes)) for task, classes in tasks.items()
        })

    def shared_root(self) -> nn.Module:
        return self.trunk

    def own_task_modules(self) -> dict[str, list[nn.Module]]:
        return {task: [head] for task, head in self.heads.items()}

    def init_layer(self, module: nn.Module) -> None:
        """Re-initialise a branched copy as torchvision initialises ResNet-18's layers."""
        module.reset_parameters()  # BatchNorm: weight 1, bias 0, statistics reset; fc: PyTorch's default
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor, tasks: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        features = self.trunk(x)
        return {task: self.heads[task](features) for task in (tasks or self.tasks)}
