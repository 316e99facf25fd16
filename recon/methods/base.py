"""The method contract: a Jacobian and the task losses in, an update direction out."""

from __future__ import annotations

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


class Method:
    """Turns the per-task Jacobian ``J`` (T × P) and losses (T,) into a direction (P,).

    The direction is on the scale of the gradient of the sum of the task losses.
    ``diagnostics`` holds the last call's values worth logging (floats or tensors
    on J's device; the trainer converts them only at the logging interval).
    """

    #: Whether the method needs per-task gradients; joint training does not.
    needs_jacobian: bool = True

    def __init__(self) -> None:
        self.diagnostics: dict[str, Any] = {}

    def __call__(self, J: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Return the state to checkpoint (for example a random generator's state)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
