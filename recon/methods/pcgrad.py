"""PCGrad: project each task gradient off the gradients it conflicts with."""

from __future__ import annotations

from typing import Any

import torch

from recon.methods.base import Method
from recon.methods.gram import combine, gram_matrix
from recon.methods.randomness import MethodGenerators


class PCGrad(Method):
    """Projecting conflicting gradients ("gradient surgery").

    Yu, Kumar, Gupta, Levine, Hausman and Finn, "Gradient Surgery for
    Multi-Task Learning", NeurIPS 2020, arXiv 2001.06782, Algorithm 1. For each
    task i, start from g_i^PC = g_i and visit the other tasks j in a random
    order, drawn anew for every task at every step. Whenever g_i^PC · g_j < 0
    (g_j being the original gradient), replace g_i^PC by its projection onto
    the normal plane of g_j:

        g_i^PC ← g_i^PC - (g_i^PC · g_j / ‖g_j‖²) g_j.

    The direction is Σ_i g_i^PC, the summed-loss scale (T times the mean that
    the authors' code returns).

    Every g_i^PC stays a combination Σ_k C_ik g_k of the original gradients,
    so the projections run on T × T quantities: g_i^PC · g_j = (C G)_ij with
    G = J Jᵀ, and a projection subtracts from C_ij. The test "< 0" is a
    ``torch.where`` on the device. The direction is (Σ_i C_i·) J, one product
    with J. A task with a zero gradient is never projected onto (its inner
    products are 0).

    The orders are drawn on J's device (see ``MethodGenerators``), so no value
    crosses between host and device. ``diagnostics["projections"]`` stores the
    number of projections made in the last call.
    """

    def __init__(self, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.generators = MethodGenerators(generator)

    def direction(self, J: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        T = J.shape[0]
        G = gram_matrix(J)
        orders = random_task_orders(T, self.generators.on(J.device))

        coefficients, projections = project_conflicts(G, orders)
        self.diagnostics = {"projections": projections}
        return combine(coefficients.sum(dim=0), J)

    def state_dict(self) -> dict[str, Any]:
        return self.generators.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generators.load_state_dict(state)


def random_task_orders(T: int, generator: torch.Generator) -> torch.Tensor:
    """Return a (T, T - 1) index matrix whose row i is a uniformly random order of the tasks other than i.

    Sorting i.i.d. uniform float64 keys gives a uniform permutation (ties have
    probability about T² / 2⁵³). Positions k ≥ i are shifted by one to skip task i.
    """
    keys = torch.rand(T, T - 1, generator=generator, device=generator.device, dtype=torch.float64)
    positions = keys.argsort(dim=1)
    rows = torch.arange(T, device=generator.device).unsqueeze(1)
    return positions + (positions >= rows).long()


def project_conflicts(G: torch.Tensor, orders: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run PCGrad's projections on coefficients; return C (T, T) with g_i^PC = Σ_k C_ik g_k, and the count.

    ``orders`` (T, T - 1) gives each task's visiting order, on any device (it is
    moved to G's).
    """
    T = G.shape[0]
    orders = orders.to(G.device)
    coefficients = torch.eye(T, dtype=G.dtype, device=G.device)
    projections = torch.zeros((), dtype=torch.int64, device=G.device)

    # A zero gradient has zero inner products, so its conflict test is False; the safe norm only avoids 0 / 0.
    squared_norms = G.diagonal()
    safe_norms = torch.where(squared_norms > 0, squared_norms, torch.ones_like(squared_norms))

    for visit in range(T - 1):
        j = orders[:, visit]

        # (C G)_{i, j_i} = Σ_k C_ik G_{k, j_i}, and G_{k, j_i} = G[j_i, k] because G is symmetric.
        inner = (coefficients * G[j]).sum(dim=1)
        conflict = inner < 0
        shift = torch.where(conflict, inner / safe_norms[j], torch.zeros_like(inner))

        coefficients = coefficients.scatter_add(1, j.unsqueeze(1), -shift.unsqueeze(1))
        projections = projections + conflict.sum()
    return coefficients, projections
