"""Train a multi-task model from a YAML config.

Any config key can be overridden as key.sub=VALUE (the value is read as YAML).
The last line printed is the run directory.
"""

from __future__ import annotations

import argparse

from recon.config import load_config
from recon.train.rundir import create_run_dir
from recon.train.step import NonFiniteLossError
from recon.train.trainer import Trainer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment config, e.g. configs/multi_fashion/joint.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.epochs=1")


def format_metrics(metrics: dict[str, dict[str, float]]) -> str:
    """Return a small table of the final test metrics, one row per task."""
    names = sorted({name for values in metrics.values() for name in values})
    width = max(len(task) for task in metrics)
    lines = ["  ".join([" " * width] + [f"{name:>10}" for name in names])]
    for task, values in metrics.items():
        cells = [f"{values[name]:>10.4f}" if name in values else " " * 10 for name in names]
        lines.append("  ".join([f"{task:<{width}}"] + cells))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    run_dir = create_run_dir(config)
    try:
        summary = Trainer(config, run_dir).fit()
    except NonFiniteLossError as error:
        raise ValueError(f"{error} (run directory {run_dir})") from None
    print("test metrics:")
    print(format_metrics(summary["test"]))
    print(run_dir)
    return 0
