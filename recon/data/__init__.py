"""Datasets by name: each builder returns a ``DataBundle`` with its splits and tasks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from recon.data.split import Batch, Split, TensorSplit
from recon.tasks import Task

__all__ = ["Batch", "DataBundle", "Split", "TensorSplit", "build_data", "dataset_tasks", "DATASETS"]


@dataclass
class DataBundle:
    """A dataset ready for training: its splits, its tasks (in order) and its input channels."""

    name: str
    train: Split
    test: Split
    tasks: dict[str, Task]
    in_channels: int


def _multi_digit(config: dict) -> DataBundle:
    from recon.data.multi_digit import build_multi_digit

    return build_multi_digit(config)


def _dense(config: dict) -> DataBundle:
    from recon.data.dense import build_dense

    return build_dense(config)


#: data.name -> builder taking the resolved ``data`` config section.
DATASETS: dict[str, Callable[[dict], DataBundle]] = {
    "multi_mnist": _multi_digit,
    "multi_fashion": _multi_digit,
    "multi_fashion_mnist": _multi_digit,
    "cityscapes": _dense,
    "nyuv2": _dense,
}


def dataset_tasks(name: str) -> tuple[dict[str, Task], int]:
    """Return a dataset's tasks and input channels without loading its files."""
    if name in ("multi_mnist", "multi_fashion", "multi_fashion_mnist"):
        from recon.tasks import ClassificationTask

        return {task: ClassificationTask(task, 10) for task in ("T1", "T2")}, 1
    from recon.data.dense import dense_tasks

    return dense_tasks(name)


def build_data(config: dict) -> DataBundle:
    """Build the dataset that the ``data`` section of a resolved config names."""
    return DATASETS[config["name"]](config)
