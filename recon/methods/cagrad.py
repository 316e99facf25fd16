"""CAGrad: the best worst-task improvement within a ball around the mean gradient."""

from __future__ import annotations

import logging
import math

import torch

from recon.methods.base import Method
from recon.methods.gram import combine, gram_matrix
from recon.methods.simplex import (
    EXACT_MAX_TASKS,
    active_set_qp,
    best_candidate,
    iterations_for,
    nonnegative_sqrt,
    polishing_masks,
    quadratic_forms,
    solve_on_supports,
    support_masks,
    to_simplex_points,
)

logger = logging.getLogger(__name__)

#: Smallest ρ used to turn the CAGrad objective into its quadratic form. A smaller ρ acts as 0.
_MIN_RHO = 1e-12

#: Smallest ‖g_w‖, relative to the largest task gradient norm, that the Gram matrix resolves. Its
#: float64 entries carry an absolute error near 1e-16, so a ‖g_w‖ below about 1e-7 is rounding.
_MIN_RELATIVE_NORM = 1e-7


class CAGrad(Method):
    """Conflict-averse gradient descent.

    Liu, Liu, Jin, Stone and Liu, "Conflict-Averse Gradient Descent for
    Multi-task Learning", NeurIPS 2021, arXiv 2110.14048, Algorithm 1. With
    g₀ the mean gradient and c = ``alpha``, the update maximises the worst
    task's first-order improvement within the ball ‖d - g₀‖ ≤ c‖g₀‖. Its dual,
    as the authors' code solves it, is

        min_w  g_wᵀ g₀ + c‖g₀‖ ‖g_w‖  over  w ≥ 0, Σ_t w_t = 1,   g_w = Σ_t w_t g_t,

    and the update is d = g₀ + λ g_w with λ = c‖g₀‖ / ‖g_w‖. ``rescale`` then
    divides d by 1 (0), by 1 + c² (1, the authors' default) or by 1 + c (2), and
    the result is multiplied by T to reach the summed-loss scale.

    ``diagnostics`` stores ``weights`` (w, (T,)) and ``lambda`` (λ, reported as 0
    where ‖g_w‖ is below the floor τ described next).

    Cases where the formula needs a convention:

    - ``alpha = 0`` gives d = g₀, so the direction is J.sum(0) (joint training).
    - When the optimal g_w is 0 (0 lies in the hull of the gradients, which
      takes linearly dependent gradients), the dual is not differentiable
      there and λ g_w is taken as 0, so d = g₀ as in the authors' code. The
      primal maximiser is then any d in the ball with g_tᵀ d ≥ 0 for every t,
      which g₀ need not be: there d may still conflict with a task.
    - In general, ‖g_w‖ enters λ as max(‖g_w‖, τ), with τ the larger of 1e-7
      and twice the machine epsilon of J's dtype, times the largest task
      gradient norm. Below τ, g_w is rounding noise of J or of the Gram matrix,
      and the term λ g_w shrinks to 0 continuously instead of pointing in a
      noise direction.
    - One task gives w = 1, λ = c, d = (1 + c) g / divisor.
    """

    def __init__(self, alpha: float = 0.5, rescale: int = 1) -> None:
        super().__init__()
        self.alpha = _check_alpha(alpha)
        self.rescale = _check_rescale(rescale)
        self.divisor = {0: 1.0, 1: 1.0 + self.alpha**2, 2: 1.0 + self.alpha}[self.rescale]

    def direction(self, J: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        T = J.shape[0]
        G = gram_matrix(J)

        # b_t = g_tᵀ g₀ and ‖g₀‖ come from G: g₀ = J.mean(0).
        b = G.mean(dim=1)
        rho = self.alpha * nonnegative_sqrt(G.mean())
        weights = cagrad_weights(G, b, rho)

        # λ = c‖g₀‖ / ‖g_w‖, with ‖g_w‖ floored where it is rounding noise (see the class docstring).
        norm = nonnegative_sqrt(weights @ G @ weights)
        floor = max(_MIN_RELATIVE_NORM, 2 * torch.finfo(J.dtype).eps)
        lam = rho / norm.clamp(min=floor)
        self.diagnostics = {"weights": weights, "lambda": torch.where(norm >= floor, lam, torch.zeros_like(lam))}

        # T · (g₀ + λ g_w) / divisor = Σ_t (1 + T λ w_t) g_t / divisor.
        return combine((1 + T * lam * weights) / self.divisor, J)


def cagrad_weights(G: torch.Tensor, b: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """Return the simplex weights w (T,) minimising bᵀ w + ρ sqrt(wᵀ G w).

    Solvers by number of tasks, all on G's device without host reads:

    - T ≤ ``EXACT_MAX_TASKS``: active-set enumeration. Where ‖g_w‖ > 0 the
      optimum on a support S satisfies b_S + ρ G_SS w_S / ‖g_w‖ = μ·1. With
      u = ρ w / ‖g_w‖ this is G_SS u = μ·1 - b_S and uᵀ G u = ρ², so
      u = μ G_SS⁻¹ 1 - G_SS⁻¹ b_S with μ a root of a quadratic. Only the
      larger root gives Σu > 0, which w = u / Σu needs. That point, and the
      min-norm point of S (where g_w = 0 if S's hull contains 0, and the
      objective is not differentiable), are the candidates of every support.
      Exact up to float64 rounding and the 1e-12 relative ridge of
      ``solve_on_supports``.
    - larger T: the active-set method of ``active_set_qp`` (3T steps) on the
      quadratic ½‖g_w‖² + (‖g_y‖/ρ) bᵀ w, whose minimiser is the CAGrad optimum
      when y is (the two objectives' gradients are then parallel). Its
      linear term is updated from the current iterate y at every step. The
      exact KKT candidates of the final support and of each vertex are then
      compared with it and the best is kept, which is exact whenever that
      support is the optimum's. No bound on the step count is proven; it
      sufficed on every problem tested (T = 12 to 40).
    """
    T = G.shape[0]
    if T == 1:
        return torch.ones(1, dtype=G.dtype, device=G.device)

    candidates = []
    if T <= EXACT_MAX_TASKS:
        masks = support_masks(T, G.device)
    else:
        iterate = _active_set(G, b, rho)
        masks = polishing_masks(iterate)
        candidates.append(iterate.unsqueeze(0))

    candidates.insert(0, _support_candidates(G, b, rho, masks))
    candidates = torch.cat(candidates)
    objective = candidates @ b + rho * nonnegative_sqrt(quadratic_forms(candidates, G))
    return best_candidate(candidates, objective)


def _support_candidates(G: torch.Tensor, b: torch.Tensor, rho: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Return the KKT candidates of every support (2K, T): the larger root of μ and the min-norm point."""
    rhs = torch.stack([torch.ones_like(b), b], dim=1)
    solutions = solve_on_supports(G, masks, rhs)
    p, q = solutions[..., 0], solutions[..., 1]

    # uᵀ G u = ρ² with u = μ p - q: A μ² - 2 B μ + C = 0. Up to the ridge, A = Σp and B = Σq, so
    # Σu = μ Σp - Σq is positive only for the larger root (and then equals the square root).
    A = quadratic_forms(p, G)
    B = quadratic_forms(p, G, q)
    C = quadratic_forms(q, G) - rho**2
    mu = (B + nonnegative_sqrt(B * B - A * C)) / A
    u = mu.unsqueeze(-1) * p - q

    # p / Σp is the support's min-norm point, the candidate where g_w = 0.
    return to_simplex_points(torch.cat([u, p]))


def _active_set(G: torch.Tensor, b: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    safe_rho = rho.clamp(min=_MIN_RHO)

    def linear(w: torch.Tensor) -> torch.Tensor:
        return (nonnegative_sqrt(w @ G @ w) / safe_rho) * b

    return active_set_qp(G, linear, iterations_for(G.shape[0]))


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"CAGrad option 'alpha' must be a finite number ≥ 0; found alpha = {alpha!r}")
    if alpha >= 1:
        logger.warning("CAGrad alpha = %s: the paper's convergence guarantee assumes 0 ≤ alpha < 1", alpha)
    return float(alpha)


def _check_rescale(rescale: int) -> int:
    if isinstance(rescale, bool) or rescale not in (0, 1, 2):
        raise ValueError(f"CAGrad option 'rescale' must be 0 (none), 1 (divide by 1 + alpha²) or "
                         f"2 (divide by 1 + alpha); found rescale = {rescale!r}")
    return int(rescale)
