"""Checkpoints: written atomically, loaded safely, and checked against the run that resumes them.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only, so
that it loads with ``torch.load(..., weights_only=True)``, which cannot run
code from the file. Besides the training state, it stores the resolved config
and the model's parameter names and shapes, so that resuming it into a
different run fails with the list of what differs.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

#: Version of the checkpoint layout. A checkpoint of another version is not resumed.
CHECKPOINT_FORMAT = 1
#: The checkpoint that ``save_checkpoint`` replaces at each save, in ``RUN_DIR/checkpoints/``.
CHECKPOINT_NAME = "last.pt"

#: Config keys that a resumed run may set differently. They set where files are read, where and
#: how often results are logged, and the device, so none of them changes what is trained.
#: A section name covers every key in it.
RESUMABLE_KEYS = (
    "name", "output_dir", "data.root", "data.cache_dir", "data.num_workers", "train.device",
    "train.log_every", "train.eval_every", "train.eval_batch_size", "train.checkpoint_every", "eval", "wandb",
)

#: Entries that a checkpoint needs to resume training (``recon eval`` needs only ``model``).
RESUME_KEYS = ("format", "config", "model_shapes", "model", "optimizer", "scheduler", "epoch", "epoch_step",
               "epoch_losses", "step", "random", "method_generator", "method", "recorder", "test_metrics",
               "wandb_run_id", "device_type")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used because it is unreadable or was written by a different run.

    The message names the file.
    """


def checkpoint_path(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / CHECKPOINT_NAME


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` to ``path``, keeping the previous file intact until the new one is complete.

    The state goes to ``<path>.tmp``, which is flushed to disk before it is
    renamed over ``path``. The folder is then synced so that the rename itself
    survives a crash. If writing fails, the temporary file is removed and the
    error is raised, leaving the previous checkpoint in place.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint onto the CPU with ``weights_only=True``.

    Raises ``FileNotFoundError`` if ``path`` does not exist, and
    ``CheckpointError`` naming the file if it is truncated, corrupt, or contains
    something other than a checkpoint dict.
    """
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as error:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt and cannot be loaded "
                              f"({type(error).__name__}: {error}){_temporary_hint(path)}. To train again, start "
                              f"a new run from the run's config: recon train {path.parent.parent / 'config.yaml'}"
                              ) from error
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a Recon checkpoint: expected a dict with a 'model' entry; "
                              f"found {type(state).__name__}")
    return state


def _temporary_hint(path: Path) -> str:
    temporary = path.with_name(path.name + ".tmp")
    if temporary.exists():
        return (f". {temporary.name} next to it is a write that was interrupted; "
                "it is never used as a checkpoint")
    return ""


def check_resumable(state: dict, path: Path) -> None:
    """Raise ``CheckpointError`` unless ``state`` has everything a resumed run restores."""
    if state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {state.get('format')!r}; this version of Recon "
                              f"resumes format {CHECKPOINT_FORMAT} only")
    missing = [key for key in RESUME_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} cannot be resumed: it lacks {', '.join(missing)}")


def model_shapes(model: torch.nn.Module) -> dict[str, list[int]]:
    """Return the name and shape of every entry of the model's ``state_dict`` (parameters and buffers)."""
    return {name: list(tensor.shape) for name, tensor in model.state_dict().items()}


def model_differences(saved: Mapping[str, list[int]], model: torch.nn.Module) -> list[str]:
    """List how ``model`` differs from the shapes ``model_shapes`` saved: missing, extra and resized entries."""
    current = model_shapes(model)
    differences = [f"{name}: missing from the model" for name in saved if name not in current]
    differences += [f"{name}: not in the checkpoint" for name in current if name not in saved]
    differences += [f"{name}: shape {list(saved[name])} in the checkpoint, {current[name]} in the model"
                    for name in saved if name in current and list(saved[name]) != current[name]]
    return differences


def config_differences(saved: dict, current: dict) -> list[str]:
    """List the config keys whose values differ, leaving out ``RESUMABLE_KEYS``."""
    flat_saved, flat_current = _flatten(saved), _flatten(current)
    differences = []
    for key in sorted(set(flat_saved) | set(flat_current)):
        if _is_resumable(key):
            continue
        before, after = flat_saved.get(key, "<unset>"), flat_current.get(key, "<unset>")
        if before != after:
            differences.append(f"{key}: {before!r} in the checkpoint, {after!r} now")
    return differences


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _is_resumable(key: str) -> bool:
    return any(key == allowed or key.startswith(allowed + ".") for allowed in RESUMABLE_KEYS)


def load_model_weights(model: torch.nn.Module, state: dict, path: Path) -> None:
    """Load the checkpoint's model weights into ``model`` after checking names and shapes."""
    saved = state.get("model_shapes") or {name: list(t.shape) for name, t in state["model"].items()}
    differences = model_differences(saved, model)
    if differences:
        listed = "; ".join(differences[:10]) + ("; ..." if len(differences) > 10 else "")
        raise CheckpointError(f"checkpoint {path} contains a different model than the config builds; "
                              f"differences ({len(differences)}): {listed}")
    model.load_state_dict(state["model"])
