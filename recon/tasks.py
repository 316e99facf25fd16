"""Tasks: each one's loss and the metrics it is evaluated with."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


class TaskMetric:
    """Accumulates a task's metrics over an evaluation set, batch by batch.

    Sums stay on the device; ``compute`` transfers them once. Results must not
    depend on how the evaluation set is split into batches.
    """

    #: For each metric name, whether a higher value is better (used by delta_m).
    higher_is_better: dict[str, bool] = {}

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError


@dataclass(frozen=True)
class Task:
    """A task: its name, loss and metrics. ``output_channels`` sizes the model's head."""

    name: str
    output_channels: int

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def new_metric(self) -> TaskMetric:
        raise NotImplementedError


class ClassificationMetric(TaskMetric):
    """Accuracy in percent and mean cross-entropy over the evaluation set."""

    higher_is_better = {"acc": True, "loss": False}

    def __init__(self) -> None:
        self.correct: torch.Tensor | None = None
        self.loss_sum: torch.Tensor | None = None
        self.count = 0

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        correct = (output.argmax(1) == target).sum()
        loss_sum = F.cross_entropy(output.float(), target, reduction="sum")
        self.correct = correct if self.correct is None else self.correct + correct
        self.loss_sum = loss_sum if self.loss_sum is None else self.loss_sum + loss_sum
        self.count += target.shape[0]

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            raise ValueError("no evaluation samples were seen")
        return {"acc": 100.0 * self.correct.item() / self.count, "loss": self.loss_sum.item() / self.count}


@dataclass(frozen=True)
class ClassificationTask(Task):
    """Single-label classification with cross-entropy."""

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target)

    def new_metric(self) -> TaskMetric:
        return ClassificationMetric()
