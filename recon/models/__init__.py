"""Networks by name, built for a dataset's tasks."""

from __future__ import annotations

from recon.models.base import MultiTaskModel
from recon.tasks import Task

__all__ = ["MultiTaskModel", "build_model", "MODELS"]

MODELS = ("resnet18", "segnet", "mtan")


def build_model(name: str, tasks: dict[str, Task], in_channels: int) -> MultiTaskModel:
    """Build the network ``name`` with one output per task (surgery is applied separately)."""
    channels = {task_name: task.output_channels for task_name, task in tasks.items()}
    if name == "resnet18":
        from recon.models.resnet import MultiTaskResNet18

        return MultiTaskResNet18(channels, in_channels=in_channels)
    if name == "segnet":
        from recon.models.segnet import SegNet

        return SegNet(tasks)
    if name == "mtan":
        from recon.models.mtan import MTAN

        return MTAN(tasks)
    raise ValueError(f"unknown model '{name}'; models: {', '.join(MODELS)}")
