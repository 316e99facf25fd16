"""Build a config's model (surgery included) without training and print its parameter counts.

Reads no dataset file. With --json, prints one JSON object: params_total,
params_shared, params_task (task -> count), size_mb (float32 parameters in MiB),
layers (the shared layers, in order), layer_params, branched (the layers made
task-specific), params_added and before (the same counts before surgery).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from recon.build import build_unbranched_model
from recon.config import load_config
from recon.conflict.layers import shared_layers
from recon.models import MultiTaskModel
from recon.surgery import apply_branch_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment config (YAML)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. model.branch.top_k=25")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")


def count_parameters(model: MultiTaskModel) -> dict[str, Any]:
    """Return the model's parameter counts and its size as float32 parameters in MiB."""
    total = sum(param.numel() for param in model.parameters())
    return {
        "params_total": total,
        "params_shared": sum(param.numel() for param in model.shared_parameters()),
        "params_task": {task: sum(param.numel() for param in params)
                        for task, params in model.task_parameters().items()},
        "size_mb": total * 4 / 2**20,
    }


def describe_model(config: dict) -> dict[str, Any]:
    """Build the config's model, apply surgery and return the report that ``--json`` prints."""
    model = build_unbranched_model(config)
    before = count_parameters(model)
    before["layers"] = len(shared_layers(model))

    branched = apply_branch_config(model, config["model"].get("branch") or {})
    layers = shared_layers(model)
    report = {"model": config["model"]["name"], "data": config["data"]["name"], "tasks": list(model.tasks)}
    report.update(count_parameters(model))
    report["layers"] = [layer.name for layer in layers]
    report["layer_params"] = {layer.name: layer.params for layer in layers}
    report["branched"] = branched
    report["params_added"] = report["params_total"] - before["params_total"]
    report["before"] = before
    return report


def _format_summary(report: dict[str, Any]) -> str:
    before = report["before"]
    task_counts = ", ".join(f"{task} {count:,}" for task, count in report["params_task"].items())
    lines = [
        f"{report['model']} for {report['data']}, tasks: {', '.join(report['tasks'])}",
        f"parameters: {report['params_total']:,} ({report['size_mb']:.2f} MB as float32)",
        f"  shared: {report['params_shared']:,} in {len(report['layers'])} layers",
        f"  task-specific: {task_counts}",
        f"before surgery: {before['params_total']:,} ({before['size_mb']:.2f} MB), "
        f"shared {before['params_shared']:,} in {before['layers']} layers",
    ]
    if report["branched"]:
        lines.append(f"branched {len(report['branched'])} layers (+{report['params_added']:,} parameters): "
                     f"{', '.join(report['branched'])}")
    else:
        lines.append("no layer branched")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    report = describe_model(config)
    print(json.dumps(report) if args.json else _format_summary(report))
    return 0
