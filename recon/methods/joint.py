"""Joint training: the gradient of the sum of the task losses."""

from __future__ import annotations

import torch

from recon.methods.base import Method


class Joint(Method):
    """Joint training (equal weights): the update is ``J.sum(0)``.

    The trainer does not build ``J`` for this method unless it records cosines.
    It runs a single backward pass of the summed loss instead, which gives the
    same direction at the cost of one backward pass.
    """

    needs_jacobian = False

    def direction(self, J: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        return J.sum(0)
