"""The method contract: a Jacobian and the task losses in, an update direction out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Option:
    """One option of a method: its default, its type and what it sets."""

    default: Any
    type: type
    help: str


@dataclass(frozen=True)
class MethodSpec:
    """A registry entry: how to build a method and how to describe it."""

    name: str
    cls: type["Method"]
    paper: str
    summary: str
    aliases: tuple[str, ...] = ()
    options: dict[str, Option] = field(default_factory=dict)
    random: bool = False


class NonFiniteGradientError(ValueError):
    """A task whose gradient (a row of J) or loss contains NaN or infinity.

    ``task_index`` is the task's row in ``J``; the trainer adds the task's name
    and the step to the message.
    """

    def __init__(self, message: str, task_index: int) -> None:
        super().__init__(message)
        self.task_index = task_index


class Method:
    """Turns the per-task Jacobian ``J`` (T × P) and losses (T,) into a direction (P,).

    The direction is on the scale of the gradient of the sum of the task losses.
    ``diagnostics`` stores the last call's values worth logging, as floats or
    tensors on J's device. The trainer converts them only at the logging interval.

    Subclasses implement ``direction``. Calling the method checks the shapes,
    computes the direction, then checks that every task's gradient and loss are
    finite. That check reads one flag per task back to the host, the only
    synchronisation of a call. It comes after the direction's work has been
    queued, so on a GPU that work overlaps the backward passes still running.
    A caller that already synchronises once per step can set ``check_finite``
    to False and read ``task_finite`` together with its own values.
    ``task_finite`` is a bool tensor (T,) on J's device, True where the task's
    gradient and loss are finite. ``raise_if_nonfinite`` turns it into the error,
    and ``GradientStep`` raises its own error, which names the task and step.
    """

    #: Whether the method needs per-task gradients; joint training does not.
    needs_jacobian: bool = True

    def __init__(self) -> None:
        self.diagnostics: dict[str, Any] = {}
        self.check_finite = True
        self.task_finite: torch.Tensor | None = None

    def __call__(self, J: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        check_inputs(J, losses)
        direction = self.direction(J, losses)

        self.task_finite = finite_tasks(J, losses)
        if self.check_finite:
            raise_if_nonfinite(self.task_finite.tolist(), J, losses)
        return direction

    def direction(self, J: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        """Compute the update direction (P,) in J's dtype and set ``diagnostics``."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Return the state to checkpoint (for example a random generator's state)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""


def check_inputs(J: torch.Tensor, losses: torch.Tensor) -> None:
    """Raise ValueError unless ``J`` is a floating (T, P) matrix and ``losses`` a (T,) vector on its device."""
    if J.dim() != 2 or J.shape[0] == 0:
        raise ValueError(f"J must be a matrix of shape (tasks, parameters) with at least one task; "
                         f"found shape {tuple(J.shape)}")
    if not J.is_floating_point():
        raise ValueError(f"J must have a floating dtype; found {J.dtype}")
    if losses.shape != (J.shape[0],):
        raise ValueError(f"losses must have shape ({J.shape[0]},), one per row of J; found {tuple(losses.shape)}")
    if losses.device != J.device:
        raise ValueError(f"losses and J must be on the same device; found {losses.device} and {J.device}")


def finite_tasks(J: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
    """Return a bool tensor (T,) on J's device: True where the task's gradient and loss are finite.

    A row's max and min are both finite exactly when it contains no NaN (which
    both propagate) and no infinity. Two row reductions make no (T, P)
    temporary and cannot overflow, unlike a sum. On a 2-core CPU with torch
    2.14 they took a quarter of the time of ``vector_norm(ord=inf)``.
    """
    return torch.isfinite(J.amax(dim=1)) & torch.isfinite(J.amin(dim=1)) & torch.isfinite(losses)


def raise_if_nonfinite(task_finite: Sequence[bool], J: torch.Tensor | None = None,
                       losses: torch.Tensor | None = None) -> None:
    """Raise ``NonFiniteGradientError`` for the first task whose flag is False.

    ``task_finite`` contains host values (for example ``method.task_finite.tolist()``).
    Given ``J`` and ``losses``, the message states which of the two is not finite.
    """
    for index, finite in enumerate(task_finite):
        if not finite:
            raise NonFiniteGradientError(_nonfinite_message(index, J, losses), task_index=index)


def _nonfinite_message(index: int, J: torch.Tensor | None, losses: torch.Tensor | None) -> str:
    if losses is not None and not torch.isfinite(losses[index]):
        return f"the loss of task {index} is {losses[index].item()}, so no update direction can be computed"
    if J is not None:
        row = J[index]
        nan, inf = int(torch.isnan(row).sum()), int(torch.isinf(row).sum())
        return (f"the gradient of task {index} (row {index} of J) contains {nan} NaN and {inf} infinite "
                f"entries, so no update direction can be computed")
    return f"the gradient or the loss of task {index} is not finite, so no update direction can be computed"
