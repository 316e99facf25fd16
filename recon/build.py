"""Build the model that a resolved config describes, surgery included, without reading dataset files."""

from __future__ import annotations

from recon.data import dataset_tasks
from recon.models import MultiTaskModel, build_model
from recon.surgery import apply_branch_config
from recon.tasks import Task


def select_tasks(config: dict) -> dict[str, Task]:
    """Return the dataset's tasks, restricted to ``config["tasks"]`` (in that order) when it is set."""
    dataset = config["data"]["name"]
    tasks, _ = dataset_tasks(dataset)
    selected = config.get("tasks")
    if selected is None:
        return tasks

    if not isinstance(selected, list) or not selected:
        raise ValueError(f"key 'tasks' must be a non-empty list of task names of {dataset} "
                         f"({', '.join(tasks)}); found {selected!r}")
    unknown = [task for task in selected if task not in tasks]
    if unknown:
        raise ValueError(f"key 'tasks' names {', '.join(map(repr, unknown))}, not a task of {dataset}; "
                         f"its tasks: {', '.join(tasks)}")
    duplicates = sorted({task for task in selected if selected.count(task) > 1})
    if duplicates:
        raise ValueError(f"key 'tasks' lists {', '.join(duplicates)} more than once")
    return {task: tasks[task] for task in selected}


def build_unbranched_model(config: dict) -> MultiTaskModel:
    """Build ``model.name`` for the config's dataset and tasks, before surgery."""
    _, in_channels = dataset_tasks(config["data"]["name"])
    return build_model(config["model"]["name"], select_tasks(config), in_channels)


def build_model_from_config(config: dict) -> tuple[MultiTaskModel, list[str]]:
    """Build the model of a resolved config and apply ``model.branch``; return it and the branched layers.

    Surgery happens here, before any optimizer is created, so that the optimizer
    receives the parameters of the task-specific copies. The branched layer names are in selection order (the
    permutation's order for ``model.branch.file``).
    """
    model = build_unbranched_model(config)
    branched = apply_branch_config(model, config["model"].get("branch") or {})
    return model, branched
