"""Every config key, its type, default and meaning.

A key not listed here is rejected when a config is loaded. ``method`` is open:
its options are checked against the chosen method's registry entry instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REQUIRED = object()


@dataclass(frozen=True)
class Field:
    """One config key: accepted types, default (``REQUIRED`` if none), allowed values."""

    types: tuple[type, ...]
    default: Any = REQUIRED
    help: str = ""
    choices: tuple[Any, ...] | None = None
    nullable: bool = False


def _f(types, default=REQUIRED, help="", choices=None, nullable=False) -> Field:
    if not isinstance(types, tuple):
        types = (types,)
    return Field(types, default, help, choices, nullable)


SCHEMA: dict[str, Any] = {
    "name": _f(str, None, "run name; default: <dataset>-<method>[-recon]-seed<seed>", nullable=True),
    "seed": _f(int, 0, "seed of Python, NumPy, torch and the data order"),
    "output_dir": _f(str, "runs", "folder under which each run gets a new directory"),
    "tasks": _f(list, None, "task names to train; default: every task of the dataset", nullable=True),
    "data": {
        "name": _f(str, help="dataset", choices=(
            "multi_mnist", "multi_fashion", "multi_fashion_mnist", "cityscapes", "nyuv2",
        )),
        "root": _f(str, None, "folder holding the dataset files", nullable=True),
        "cache_dir": _f(str, None, "where built datasets are cached; default: datasets/cache", nullable=True),
        "train_size": _f(int, None, "use the first N training images; default: all", nullable=True),
        "test_size": _f(int, None, "use the first N test images; default: all", nullable=True),
        "build_seed": _f(int, 0, "seed of the pairing when a multi-digit dataset is built from IDX files"),
        "augment": _f(bool, True, "training augmentation of the dense datasets (scale crop, flip)"),
        "num_workers": _f(int, 2, "data-loading worker processes of the dense datasets"),
    },
    "model": {
        "name": _f(str, help="network", choices=("resnet18", "segnet", "mtan")),
        "branch": {
            "file": _f(str, None, "layer permutation JSON (layer name -> S-conflict score)", nullable=True),
            "top_k": _f(int, None, "branch the first K layers of the permutation file", nullable=True),
            "layers": _f(list, None, "explicit list of layer names to branch", nullable=True),
            "max_params": _f(int, None, "take permutation layers while added parameters stay within this",
                             nullable=True),
            "init": _f(str, "copy", "copy: every task copy starts from the same weights; "
                       "independent: each copy is re-initialised", choices=("copy", "independent")),
        },
    },
    "method": {
        "name": _f(str, "joint", "gradient-manipulation method; see `recon methods`"),
    },
    "train": {
        "epochs": _f(int, help="training epochs"),
        "batch_size": _f(int, help="training batch size"),
        "drop_last": _f(bool, False, "skip the last training batch of an epoch when it is smaller than batch_size"),
        "optimizer": _f(str, "sgd", "optimizer", choices=("sgd", "adam")),
        "lr": _f(float, help="learning rate"),
        "momentum": _f(float, 0.9, "SGD momentum"),
        "weight_decay": _f(float, 0.0, "L2 weight decay"),
        "milestones": _f(list, [], "epochs at which the learning rate is multiplied by gamma"),
        "gamma": _f(float, 0.1, "learning-rate factor at each milestone"),
        "eval_every": _f(int, 1, "epochs between evaluations on the test set (the last epoch always)"),
        "eval_batch_size": _f(int, 1024, "evaluation batch size (metrics do not depend on it)"),
        "checkpoint_every": _f(int, 1, "epochs between checkpoints (the last epoch always)"),
        "log_every": _f(int, 50, "training steps between log lines and logged metrics"),
        "device": _f(str, "auto", "auto (cuda when available), cpu, cuda or cuda:N"),
    },
    "recon": {
        "record": _f(bool, False, "record per-layer cosines of task-gradient pairs (a search run)"),
    },
    "eval": {
        "reference": _f(dict, None, "single-task metrics for delta_m: {task: {metric: value}}", nullable=True),
    },
    "wandb": {
        "mode": _f(str, "offline", "offline, online or disabled; the WANDB_MODE variable overrides it",
                   choices=("offline", "online", "disabled")),
        "project": _f(str, "recon", "wandb project"),
        "entity": _f(str, None, "wandb entity (user or team)", nullable=True),
        "group": _f(str, None, "wandb group", nullable=True),
        "tags": _f(list, [], "wandb tags"),
    },
}

#: Sections whose extra keys are validated elsewhere (method options by the registry).
OPEN_SECTIONS = ("method",)
