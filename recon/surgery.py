"""Generic model surgery: turn shared layers into task-specific copies, by layer name."""

from __future__ import annotations

from torch import nn


class BranchedLayer(nn.Module):
    """One copy of a layer per task; ``active`` selects the copy that ``forward`` runs."""

    def __init__(self, copies: dict[str, nn.Module]) -> None:
        super().__init__()
        self.copies = nn.ModuleDict(copies)
        self.active: str | None = None

    def forward(self, *args, **kwargs):
        if self.active is None:
            raise RuntimeError(
                "BranchedLayer called with no active task; run the model through its "
                "forward so that each task's pass selects its own copy"
            )
        return self.copies[self.active](*args, **kwargs)


def branched_copies(model: nn.Module) -> dict[str, list[nn.Module]]:
    """Return, per task, the copies of branched layers that the model holds."""
    copies: dict[str, list[nn.Module]] = {}
    for module in model.modules():
        if isinstance(module, BranchedLayer):
            for task, copy in module.copies.items():
                copies.setdefault(task, []).append(copy)
    return copies
