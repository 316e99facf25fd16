"""Datasets by name: each builder returns a ``DataBundle`` with its splits and tasks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from recon.data.split import Batch, Split, TensorSplit
from recon.tasks import Task

__all__ = ["Batch", "DataBundle", "Split", "TensorSplit", "build_data", "DATASETS"]


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


def build_data(config: dict) -> DataBundle:
    """Build the dataset that the ``data`` section of a resolved config names."""
    return DATASETS[config["name"]](config)
