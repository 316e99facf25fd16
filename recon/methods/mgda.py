"""MGDA: the minimum-norm point of the convex hull of the task gradients."""

from __future__ import annotations

import torch

from recon.methods.base import Method
from recon.methods.gram import combine, gram_matrix
from recon.methods.simplex import (
    EXACT_MAX_TASKS,
    active_set_qp,
    best_candidate,
    iterations_for,
    polishing_masks,
    quadratic_forms,
    solve_on_supports,
    support_masks,
    to_simplex_points,
)


class MGDA(Method):
    """Multiple-gradient descent with the min-norm solver over the shared parameters.

    Sener and Koltun, "Multi-Task Learning as Multi-Objective Optimization",
    NeurIPS 2018, arXiv 1810.04650: the update of Algorithm 2 on the shared
    parameters' gradients. MGDA-UB, the bound on the shared representation,
    is not used, and the paper's Frank–Wolfe solver is replaced by the exact
    solvers of ``min_norm_weights``. The weights solve problem (3),

        min_w ‖Σ_t w_t g_t‖²  over  w ≥ 0, Σ_t w_t = 1,

    and the direction is T · Σ_t w_t g_t: the min-norm point is on the scale of
    the mean gradient, and T brings it to the summed-loss scale. Where the
    gradients' hull contains 0 (for example two opposite gradients) the
    direction is 0, which is MGDA's Pareto-stationary answer.

    ``diagnostics["weights"]`` stores w (T,).
    """

    def direction(self, J: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        T = J.shape[0]
        weights = min_norm_weights(gram_matrix(J))
        self.diagnostics = {"weights": weights}
        return combine(T * weights, J)


def min_norm_weights(G: torch.Tensor) -> torch.Tensor:
    """Return the simplex weights w (T,) minimising wᵀ G w, from the Gram matrix G.

    Solvers by number of tasks, all on G's device without host reads:

    - T = 1: w = 1.
    - T = 2: the closed form of equation (4), Algorithm 1 (exact).
    - T ≤ ``EXACT_MAX_TASKS``: active-set enumeration. On a support S the
      optimum satisfies G_SS w_S = μ·1, so w_S ∝ G_SS⁻¹ 1. The candidate of every
      support is computed and the feasible one of lowest norm is kept. This is
      exact up to float64 rounding and the 1e-12 relative ridge of
      ``solve_on_supports``.
    - larger T: a primal active-set method (``active_set_qp``, 3T steps), then
      the KKT step on its support and on each vertex, keeping the best. The
      active-set method reaches the exact optimum once its support is the
      optimum's, and each step adds or removes one task. 3T steps leave room
      for T additions and 2T removals. That sufficed on every problem tested
      (T = 12 to 40, low-rank and badly scaled gradients included), but no
      bound on the step count is proven for degenerate problems.
    """
    T = G.shape[0]
    if T == 1:
        return torch.ones(1, dtype=G.dtype, device=G.device)
    if T == 2:
        return two_task_weights(G)

    candidates = []
    if T <= EXACT_MAX_TASKS:
        masks = support_masks(T, G.device)
    else:
        iterate = _active_set(G)
        masks = polishing_masks(iterate)
        candidates.append(iterate.unsqueeze(0))

    candidates.insert(0, _support_candidates(G, masks))
    candidates = torch.cat(candidates)
    return best_candidate(candidates, quadratic_forms(candidates, G))


def two_task_weights(G: torch.Tensor) -> torch.Tensor:
    """Return (γ, 1 - γ), γ = clamp((G₂₂ - G₁₂) / ‖g₁ - g₂‖², 0, 1): the min-norm point of a segment.

    Identical gradients (‖g₁ - g₂‖ = 0) make every γ optimal, and γ = ½ is returned.
    """
    difference = G[0, 0] + G[1, 1] - 2 * G[0, 1]
    safe = torch.where(difference > 0, difference, torch.ones_like(difference))
    gamma = torch.where(difference > 0, ((G[1, 1] - G[0, 1]) / safe).clamp(0, 1), torch.full_like(difference, 0.5))
    return torch.stack([gamma, 1 - gamma])


def _support_candidates(G: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Return each support's KKT point G_SS⁻¹ 1 / (1ᵀ G_SS⁻¹ 1), pushed onto the simplex (K, T)."""
    ones = torch.ones(G.shape[0], 1, dtype=G.dtype, device=G.device)
    solutions = solve_on_supports(G, masks, ones).squeeze(-1)
    return to_simplex_points(solutions)


def _active_set(G: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros(G.shape[0], dtype=G.dtype, device=G.device)
    return active_set_qp(G, lambda w: zero, iterations_for(G.shape[0]))
