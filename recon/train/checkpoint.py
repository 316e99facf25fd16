"""Checkpoints written atomically: a temporary file, then a rename over the previous one."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` to ``path``; the previous file stays intact until the new one is complete."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
