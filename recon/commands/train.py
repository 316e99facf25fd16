"""Train a multi-task model from a YAML config, or continue a stopped run with --resume.

Any config key can be overridden as key.sub=VALUE (the value is read as YAML).
The last line printed is the run directory. SIGINT (Ctrl-C) or SIGTERM stops
training after the current step and writes a checkpoint. The exit status is
then 128 + the signal number (130 or 143), and `recon train --resume RUN_DIR`
continues the run in the same directory.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from recon.config import load_config
from recon.train.interrupt import TrainingInterrupted
from recon.methods.base import NonFiniteGradientError
from recon.train.rundir import create_run_dir
from recon.train.step import NonFiniteLossError
from recon.train.trainer import Trainer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="experiment config, e.g. configs/multi_fashion/joint.yaml "
                        "(omitted with --resume, which reads RUN_DIR/config.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.epochs=1")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue this run from its last checkpoint, in the same directory and wandb run; "
                             "overrides may change only paths, logging intervals and the device")


def format_metrics(metrics: dict[str, dict[str, float]]) -> str:
    """Return a small table of the final test metrics, one row per task."""
    names = sorted({name for values in metrics.values() for name in values})
    width = max(len(task) for task in metrics)
    lines = ["  ".join([" " * width] + [f"{name:>10}" for name in names])]
    for task, values in metrics.items():
        cells = [f"{values[name]:>10.4f}" if name in values else " " * 10 for name in names]
        lines.append("  ".join([f"{task:<{width}}"] + cells))
    return "\n".join(lines)


def _resume_overrides(args: argparse.Namespace) -> list[str]:
    """Return the overrides of a --resume call, where argparse has put the first one in ``config``."""
    positional = [args.config, *args.overrides] if args.config is not None else list(args.overrides)
    if positional and "=" not in positional[0]:
        raise ValueError(f"--resume reads the config from {args.resume}/config.yaml, so no CONFIG may be "
                         f"given; found '{positional[0]}'. Pass only key=value overrides")
    return positional


def _build_trainer(args: argparse.Namespace) -> Trainer:
    if args.resume is not None:
        from recon.train.resume import resume_trainer

        return resume_trainer(args.resume, _resume_overrides(args))
    if args.config is None:
        raise ValueError("a CONFIG file is required, e.g. `recon train configs/multi_fashion/joint.yaml`, "
                         "unless --resume RUN_DIR is given")
    config = load_config(args.config, args.overrides)
    run_dir = create_run_dir(config)
    try:
        return Trainer(config, run_dir)
    except BaseException:
        # Set-up failed, for example on a missing dataset file: remove the new directory, which is still empty.
        with contextlib.suppress(OSError):
            (run_dir / "checkpoints").rmdir()
            run_dir.rmdir()
        raise


def run(args: argparse.Namespace) -> int:
    trainer = _build_trainer(args)
    try:
        summary = trainer.fit()
    except (NonFiniteLossError, NonFiniteGradientError) as error:
        raise ValueError(f"{error} (run directory {trainer.run_dir})") from None
    except TrainingInterrupted as stop:
        print(f"recon train: {stop}", file=sys.stderr)
        return stop.exit_code
    print("test metrics:")
    print(format_metrics(summary["test"]))
    print(trainer.run_dir)
    return 0
