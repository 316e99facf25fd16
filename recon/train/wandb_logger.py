"""wandb for a run: offline by default, so it works without a network."""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


class WandbLogger:
    """Logs the resolved config and every metric to wandb.

    The mode comes from ``wandb.mode`` unless the ``WANDB_MODE`` environment
    variable is set, which wins (tests set it to ``disabled``).
    """

    def __init__(self, config: dict, run_dir: Path, run_id: str | None = None) -> None:
        section = config["wandb"]
        self.mode = os.environ.get("WANDB_MODE") or section["mode"]
        self.run = None
        if self.mode == "disabled":
            return
        import wandb

        self.run = wandb.init(
            project=section["project"], entity=section["entity"], group=section["group"],
            tags=section["tags"] or None, name=run_dir.name, config=config, dir=str(run_dir),
            mode=self.mode, id=run_id, resume="allow" if run_id else None,
        )
        logger.info("wandb run %s (%s mode) under %s", self.run.id, self.mode, run_dir)

    @property
    def run_id(self) -> str | None:
        return self.run.id if self.run is not None else None

    def log(self, metrics: dict, step: int) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)

    def summary(self, metrics: dict) -> None:
        if self.run is not None:
            self.run.summary.update(metrics)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
