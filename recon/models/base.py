"""The model contract that the trainer, the conflict recorder and surgery rely on."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from recon.surgery import Branching, branched_copies, forward_per_task


class MultiTaskModel(nn.Module):
    """A network with shared parameters and task-specific parameters.

    Subclasses set ``self.tasks`` (task names, in order), implement ``forward`` and
    ``own_task_modules``, and name the module that contains the shared layers with
    ``shared_root``. Layer names are module paths relative to that module.

    ``forward(x, tasks=None)`` returns a dict from task name to output. When
    ``tasks`` is given, only those tasks' outputs need to be computed, which lets a
    branched model run one pass per task without computing every head each time.

    After surgery (``recon.surgery.branch_layers``), calling the model runs one pass
    of ``forward`` per task with that task's copies of the branched layers active
    (``recon.surgery.forward_per_task``); ``model(x)`` still returns {task: output}.
    """

    tasks: tuple[str, ...]

    #: Set by surgery; None while no layer is branched.
    _branching: Branching | None = None

    def __call__(self, x: torch.Tensor, tasks: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        # A branched model runs one pass of forward per task (see forward_per_task).
        if self._branching is None:
            return super().__call__(x, tasks)
        return forward_per_task(self, x, tasks, super().__call__)

    def forward(self, x: torch.Tensor, tasks: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def shared_root(self) -> nn.Module:
        """Return the module whose ``named_modules()`` paths are the layer names."""
        return self

    def own_task_modules(self) -> dict[str, list[nn.Module]]:
        """Return the modules that belong to one task by construction (heads, attention)."""
        raise NotImplementedError

    def init_layer(self, module: nn.Module) -> None:
        """Re-initialise one task's copy of a branched layer (``model.branch.init: independent``).

        The default calls ``module.reset_parameters()``, PyTorch's initialisation of
        the layer class. A model whose constructor initialises layers differently
        should override it. torchvision's ResNet, for example, draws convolution
        weights from a Kaiming normal distribution (fan-out mode).
        """
        if not callable(getattr(module, "reset_parameters", None)):
            raise ValueError(f"cannot re-initialise a {type(module).__name__} layer: it has no "
                             "reset_parameters(); use model.branch.init: copy or override init_layer")
        module.reset_parameters()

    def task_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Return each task's parameters: its own modules plus its copies of branched layers."""
        params: dict[str, list[nn.Parameter]] = {task: [] for task in self.tasks}
        for task, modules in self.own_task_modules().items():
            for module in modules:
                params[task].extend(module.parameters())
        for task, modules in branched_copies(self).items():
            for module in modules:
                params[task].extend(module.parameters())
        return params

    def shared_parameters(self) -> list[nn.Parameter]:
        """Return the parameters no task owns, in registration order."""
        owned = {id(p) for params in self.task_parameters().values() for p in params}
        return [p for p in self.parameters() if id(p) not in owned]
