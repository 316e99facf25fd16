"""One training step: forward, per-task gradients, the method, and the shared parameters' .grad."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from recon.methods.base import Method, NonFiniteGradientError
from recon.models.base import MultiTaskModel
from recon.tasks import Task


class NonFiniteLossError(ValueError):
    """A task loss that is NaN or infinite; the message names the task and the step."""


class GradientStep:
    """Compute the update of one batch and leave it in the parameters' ``.grad``.

    A method that needs per-task gradients, or an attached recorder, gets the
    Jacobian ``J`` (T × P) of the task losses with respect to the shared
    parameters. It is built with one backward pass per task, into a buffer
    allocated once. The graph is kept only until the last task's backward pass. Columns
    follow ``model.shared_parameters()``, each parameter flattened. Each
    task-specific parameter gets its own task's gradient. The method's direction
    is then installed as the shared parameters' ``.grad`` as views into it, so no
    further copy is made. Joint training without a recorder runs a single
    backward pass of the summed loss instead.

    A shared parameter that no task reaches keeps ``.grad`` at None; its column of
    ``J`` is zero.

    NOTE: joint training without a recorder checks only the losses for NaN or
    infinity, not the gradients, because it builds no Jacobian to check.
    """

    def __init__(self, model: MultiTaskModel, tasks: dict[str, Task], method: Method, recorder=None) -> None:
        self.model = model
        self.tasks = tasks
        self.task_names = tuple(tasks)
        self.method = method
        self.recorder = recorder
        self.shared = model.shared_parameters()
        task_parameters = model.task_parameters()
        self.task_parameters = {task: task_parameters.get(task, []) for task in self.task_names}
        self.numels = [p.numel() for p in self.shared]
        self.offsets = [0]
        for numel in self.numels:
            self.offsets.append(self.offsets[-1] + numel)
        self.J: torch.Tensor | None = None
        self.step = 0
        # The method's finiteness flags are read with the losses, in the step's one transfer.
        self.method.check_finite = False

    @property
    def needs_jacobian(self) -> bool:
        return self.method.needs_jacobian or self.recorder is not None

    def forward_losses(self, images: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """Return the task losses (T,) of one batch, with their graph."""
        outputs = self.model(images)
        return torch.stack([self.tasks[t].loss(outputs[t], targets[t]) for t in self.task_names])

    def _buffer(self) -> torch.Tensor:
        if self.J is None:
            reference = self.shared[0]
            self.J = torch.empty(len(self.task_names), self.offsets[-1], device=reference.device,
                                 dtype=reference.dtype)
        return self.J

    def jacobian(self, losses: torch.Tensor) -> tuple[torch.Tensor, list[bool]]:
        """Fill ``J`` with each task's gradient; return it and which shared parameters any task reached."""
        J = self._buffer()
        reached = [False] * len(self.shared)
        last = len(self.task_names) - 1
        for t, task in enumerate(self.task_names):
            own = self.task_parameters[task]
            grads = torch.autograd.grad(losses[t], self.shared + own, retain_graph=t < last, allow_unused=True)
            shared_grads, own_grads = grads[:len(self.shared)], grads[len(self.shared):]

            # Write each shared gradient into its columns of row t; unreached columns get zeros.
            for i, grad in enumerate(shared_grads):
                column = J[t, self.offsets[i]:self.offsets[i + 1]]
                if grad is None:
                    column.zero_()
                else:
                    column.copy_(grad.reshape(-1))
                    reached[i] = True

            # A task's own parameters take its gradient as it is.
            for parameter, grad in zip(own, own_grads):
                parameter.grad = grad
        return J, reached

    def install(self, direction: torch.Tensor, reached: Sequence[bool]) -> None:
        """Set each reached shared parameter's ``.grad`` to its slice of ``direction`` (a view)."""
        for i, parameter in enumerate(self.shared):
            if reached[i]:
                parameter.grad = direction[self.offsets[i]:self.offsets[i + 1]].view_as(parameter)
            else:
                parameter.grad = None

    def check_losses(self, values: Sequence[float]) -> None:
        """Raise ``NonFiniteLossError`` naming the first task whose loss is NaN or infinite."""
        for task, value in zip(self.task_names, values):
            if value != value or value in (float("inf"), float("-inf")):
                raise NonFiniteLossError(
                    f"the loss of task '{task}' is {value} at step {self.step}; the run stopped before "
                    "applying this update. Lower train.lr, or check the data of this batch"
                )

    def check_gradients(self, finite: Sequence[float]) -> None:
        """Raise ``NonFiniteGradientError`` naming the first task whose gradient has NaN or infinite entries."""
        for index, flag in enumerate(finite):
            if not flag:
                raise NonFiniteGradientError(
                    f"the gradient of task '{self.task_names[index]}' contains NaN or infinite entries at step "
                    f"{self.step}; the run stopped before applying this update. Lower train.lr, or check the "
                    "data of this batch", task_index=index)

    def __call__(self, images: torch.Tensor, targets: dict[str, torch.Tensor]) -> list[float]:
        """Compute one batch's update into ``.grad``; return the task losses as floats.

        Reading the losses back to the host is this step's one synchronisation: it
        serves both the non-finite check and the progress display.
        """
        self.model.zero_grad(set_to_none=True)
        losses = self.forward_losses(images, targets)
        flags = None
        if self.needs_jacobian:
            J, reached = self.jacobian(losses)
            if self.recorder is not None:
                self.recorder.record(J, self.step)
            direction = self.method(J, losses.detach())
            self.install(direction, reached)
            flags = self.method.task_finite
        else:
            losses.sum().backward()

        # One transfer to the host: the losses, then the method's per-task finiteness flags.
        host = losses.detach().float()
        if flags is not None:
            host = torch.cat([host, flags.float()])
        read = host.tolist()
        values = read[:len(self.task_names)]
        self.check_losses(values)
        self.check_gradients(read[len(self.task_names):])
        self.step += 1
        return values

