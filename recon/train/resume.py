"""Continue a stopped run from its last checkpoint, in the same run directory and wandb run."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from recon.config import load_config
from recon.train.checkpoint import (
    CheckpointError, check_resumable, checkpoint_path, config_differences, load_checkpoint,
)
from recon.train.rundir import provenance
from recon.train.trainer import Trainer

logger = logging.getLogger(__name__)


class RunFinishedError(ValueError):
    """A run that wrote its ``summary.json`` and so has nothing left to train."""


def resume_trainer(run_dir: str | Path, overrides: list[str] | None = None) -> Trainer:
    """Return a trainer restored from ``RUN_DIR/checkpoints/last.pt``; its ``fit`` continues the run.

    The config is ``RUN_DIR/config.yaml`` with ``overrides`` applied; only the
    keys in ``recon.train.checkpoint.RESUMABLE_KEYS`` (paths, logging, device)
    may differ from the config the checkpoint was written with. Lines of
    ``metrics.jsonl`` logged after the checkpoint's step are dropped, because the
    resumed run logs them again. Nothing in the run directory changes unless
    every check passes. Raises ``FileNotFoundError`` for a missing run directory,
    config or checkpoint, ``RunFinishedError`` for a finished run, and
    ``CheckpointError`` for a checkpoint that is unreadable or does not match.

    NOTE: wandb keeps what the stopped process logged after the checkpoint, and
    an online run ignores the resumed run's new values for those steps, because
    wandb accepts only increasing steps. metrics.jsonl has the values of the
    resumed run. In offline mode each process writes its own offline-run folder
    with the same run id. How `wandb sync` merges the two folders is unverified.
    """
    run_dir = Path(run_dir)
    config_file = _check_run_dir(run_dir)
    path = checkpoint_path(run_dir)
    state = load_checkpoint(path)
    check_resumable(state, path)

    # Compare configs before building the trainer, which loads the data.
    config = load_config(config_file, overrides)
    differences = config_differences(state["config"], config)
    if differences:
        raise CheckpointError(f"checkpoint {path} was written with a different config than {config_file} "
                              f"with the overrides given; differing keys: " + "; ".join(differences))

    trainer = Trainer(config, run_dir)
    trainer.restore(state, path)
    dropped = truncate_metrics(run_dir / "metrics.jsonl", state["step"])
    _record_resume(run_dir, trainer, overrides or [], dropped)
    logger.info("resuming %s from step %d; dropped %d lines of metrics.jsonl logged after it",
                run_dir, state["step"], dropped)
    return trainer


def _check_run_dir(run_dir: Path) -> Path:
    """Return the run's config file after checking that the run exists, is unfinished and has a checkpoint."""
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory: {config_file.name} is missing; "
                                "pass the folder that `recon train` printed")
    summary = run_dir / "summary.json"
    if summary.exists():
        raise RunFinishedError(f"run {run_dir} is already finished ({summary} exists), so there is nothing to "
                               "resume; start a new run to train longer")
    path = checkpoint_path(run_dir)
    if not path.is_file():
        raise FileNotFoundError(f"run {run_dir} has no checkpoint {path}: it stopped before its first checkpoint, "
                                f"so start it again with `recon train {config_file}`")
    return config_file


def truncate_metrics(path: Path, step: int) -> int:
    """Keep the lines of ``metrics.jsonl`` up to ``step``; return how many lines were dropped.

    Lines logged after the checkpoint, and a last line cut short by a killed
    process, are dropped. The file is rewritten atomically.
    """
    if not path.is_file():
        return 0
    kept_lines, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1
            continue
        if isinstance(record, dict) and record.get("step", 0) <= step:
            kept_lines.append(line)
        else:
            dropped += 1
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text("".join(line + "\n" for line in kept_lines))
    os.replace(temporary, path)
    return dropped


def _record_resume(run_dir: Path, trainer: Trainer, overrides: list[str], dropped: int) -> None:
    """Append to ``resumed.jsonl`` what continued the run and from where, next to the first start's provenance."""
    record = {"step": trainer.global_step, "epoch": trainer.epoch, "epoch_step": trainer.epoch_step,
              "overrides": overrides, "metrics_lines_dropped": dropped, **provenance(trainer.device)}
    with open(run_dir / "resumed.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
