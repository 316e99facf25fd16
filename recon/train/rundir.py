"""Run directories: a new one per run, with the resolved config and provenance."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy
import torch
import torchvision

import recon
from recon.config import dump_config


def default_run_name(config: dict) -> str:
    """Return ``<dataset>-<method>[-recon|-search]-seed<seed>-<date>-<time>``."""
    parts = [config["data"]["name"], config["method"]["name"].lower()]
    if config["tasks"] is not None and len(config["tasks"]) == 1:
        parts[1] = f"single-{config['tasks'][0]}"
    branch = config["model"]["branch"]
    if branch["file"] or branch["layers"]:
        parts.append("recon")
    if config["recon"]["record"]:
        parts.append("search")
    parts.append(f"seed{config['seed']}")
    parts.append(time.strftime("%Y%m%d-%H%M%S"))
    return "-".join(parts)


def create_run_dir(config: dict) -> Path:
    """Create a new run directory under ``output_dir``; an existing one is never reused.

    When the name is taken, a numeric suffix is added; ``mkdir`` without
    ``exist_ok`` makes the choice safe against another run starting at once.
    """
    root = Path(config["output_dir"])
    root.mkdir(parents=True, exist_ok=True)
    name = config["name"] or default_run_name(config)
    for index in range(10_000):
        candidate = root / (name if index == 0 else f"{name}-{index}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        (candidate / "checkpoints").mkdir()
        return candidate
    raise FileExistsError(f"no free run directory name for '{name}' under {root}; choose another `name`")


def _git_commit() -> str | None:
    source = Path(recon.__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def provenance(device: torch.device) -> dict:
    """Return what produced a run: command line, code version, packages, hardware."""
    return {
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "git_commit": _git_commit(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "python": platform.python_version(),
        "versions": {"recon": recon.__version__, "torch": torch.__version__,
                     "torchvision": torchvision.__version__, "numpy": numpy.__version__},
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
    }


def write_run_files(run_dir: Path, config: dict, device: torch.device) -> None:
    """Write the resolved config and the provenance into a new run directory."""
    dump_config(config, run_dir / "config.yaml")
    write_json(run_dir / "provenance.json", provenance(device))


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as JSON atomically (a temporary file, then a rename)."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(temporary, path)
