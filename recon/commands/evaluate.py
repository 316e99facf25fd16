"""Evaluate a saved model on the test set (or the training set) with its run's config.

CHECKPOINT_OR_RUN_DIR is a checkpoint file or a run directory, whose
checkpoints/last.pt is used. The config is the run's config.yaml with any
key=value overrides applied (for example data.root=FOLDER or train.device=cpu).
Training augmentation is turned off. The metrics are printed and written to
RUN_DIR/eval/<split>-<date>-<time>.json; an existing file is never overwritten.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from recon.commands.train import format_metrics
from recon.config import load_config
from recon.data import build_data
from recon.train.checkpoint import checkpoint_path, load_checkpoint, load_model_weights
from recon.train.trainer import evaluate, resolve_device

logger = logging.getLogger(__name__)

SPLITS = ("test", "train")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="CHECKPOINT_OR_RUN_DIR",
                        help="a checkpoint file, or a run directory (its checkpoints/last.pt is evaluated)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="overrides of the run's config, e.g. data.root=/data train.device=cpu")
    parser.add_argument("--split", choices=SPLITS, default="test", help="split to evaluate on (default: test)")


def locate(target: Path) -> tuple[Path, Path]:
    """Return the run directory and the checkpoint that ``target`` names."""
    if target.is_dir():
        return target, checkpoint_path(target)
    if not target.is_file():
        raise FileNotFoundError(f"checkpoint or run directory not found: {target}")

    # A checkpoint normally sits in RUN_DIR/checkpoints/; accept one placed in RUN_DIR itself too.
    for folder in (target.parent, target.parent.parent):
        if (folder / "config.yaml").is_file():
            return folder, target
    raise FileNotFoundError(f"no config.yaml found for checkpoint {target} in {target.parent} or "
                            f"{target.parent.parent}; keep the checkpoint inside its run directory")


def evaluate_checkpoint(run_dir: Path, checkpoint: Path, overrides: list[str], split: str) -> dict:
    """Evaluate ``checkpoint`` on ``split``; return a record of the metrics and where they come from."""
    from recon.build import build_model_from_config

    config = load_config(run_dir / "config.yaml", overrides)
    config["data"]["augment"] = False
    state = load_checkpoint(checkpoint)
    device = resolve_device(config["train"]["device"])

    model, _ = build_model_from_config(config)
    load_model_weights(model, state, checkpoint)
    model.to(device)
    data = build_data(config["data"])
    tasks = {task: data.tasks[task] for task in model.tasks}
    samples = data.test if split == "test" else data.train
    metrics = evaluate(model, samples, tasks, config["train"]["eval_batch_size"], device)
    return {
        "split": split,
        "checkpoint": str(checkpoint),
        "epoch": state.get("epoch"),
        "epoch_step": state.get("epoch_step"),
        "step": state.get("step"),
        "samples": len(samples),
        "overrides": overrides,
        "device": str(device),
        "evaluated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "metrics": metrics,
    }


def write_new_json(folder: Path, stem: str, record: dict) -> Path:
    """Write ``record`` to ``folder/<stem>.json``, adding -1, -2, ... to the name if it is taken."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(10_000):
        path = folder / (f"{stem}.json" if index == 0 else f"{stem}-{index}.json")
        try:
            # Mode "x" creates the file only if it does not exist, so nothing is overwritten.
            with open(path, "x") as f:
                json.dump(record, f, indent=2)
                f.write("\n")
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free file name for '{stem}.json' in {folder}")


def run(args: argparse.Namespace) -> int:
    run_dir, checkpoint = locate(Path(args.target))
    record = evaluate_checkpoint(run_dir, checkpoint, list(args.overrides), args.split)
    path = write_new_json(run_dir / "eval", f"{args.split}-{time.strftime('%Y%m%d-%H%M%S')}", record)
    position = f"{record['epoch']} completed epochs, step {record['step']}"
    if record.get("epoch_step"):
        position += f"; saved {record['epoch_step']} steps into epoch {record['epoch'] + 1}, an unfinished run"
    print(f"{args.split} metrics of {checkpoint} ({position}):")
    print(format_metrics(record["metrics"]))
    print(path)
    return 0
