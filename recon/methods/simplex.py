"""Minimisation over the probability simplex {w ≥ 0, Σw = 1} from a T × T Gram matrix.

MGDA and CAGrad both pick task weights ``w`` on the simplex by minimising a
convex function of ``w`` that depends on the gradients only through ``G = J Jᵀ``.
This module contains what the two solvers share. Every function works on device
tensors with a fixed number of operations, so no value is read back to the host
and no Python branch depends on a tensor's value.

The exact route (T ≤ ``EXACT_MAX_TASKS``) is active-set enumeration. If the
optimum has support S, the optimality (KKT) conditions restricted to S are
linear in a few unknowns, and solving them on every non-empty S gives a list of
candidate points that contains the optimum. Each candidate is pushed onto the
simplex (negative entries cut to 0, then renormalised), so every candidate is a
feasible point. The candidate with the lowest objective is therefore the
minimum. For larger T, a primal active-set method with a fixed step count finds
the support, and the same KKT step on that support polishes the result.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

#: Largest number of tasks solved by enumerating all 2**T - 1 supports (1023 small systems).
EXACT_MAX_TASKS = 10

#: Ridge added to G on a support, relative to G's largest diagonal entry (1 after ``gram_matrix``).
#: It keeps the KKT systems solvable when gradients are linearly dependent.
RIDGE = 1e-12


@functools.lru_cache(maxsize=32)
def support_masks(T: int, device: torch.device) -> torch.Tensor:
    """Return every non-empty subset of the T tasks as a bool matrix (2**T - 1, T)."""
    codes = torch.arange(1, 2**T, device=device)
    bits = 2 ** torch.arange(T, device=device)
    return (codes.unsqueeze(1) & bits) > 0


def singleton_masks(T: int, device: torch.device) -> torch.Tensor:
    """Return the T one-task supports as a bool matrix (T, T)."""
    return torch.eye(T, dtype=torch.bool, device=device)


def solve_on_supports(G: torch.Tensor, masks: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """Solve (G_SS + ridge·I) x_S = rhs_S for every support S; entries outside S are 0.

    ``masks`` is (K, T) bool and ``rhs`` is (T, R); the result is (K, T, R). Rows
    and columns outside S are replaced by the identity with a zero right-hand
    side, so one batched solve handles every support. The ridge makes the
    matrix positive definite. ``solve_ex`` does not check for singularity, so
    nothing is read back to the host.
    """
    inside = masks.to(G.dtype)
    pair = inside.unsqueeze(2) * inside.unsqueeze(1)
    diagonal = torch.diag_embed(RIDGE * inside + (1 - inside))
    A = G.unsqueeze(0) * pair + diagonal
    b = rhs.unsqueeze(0) * inside.unsqueeze(2)
    return torch.linalg.solve_ex(A, b).result


def to_simplex_points(W: torch.Tensor) -> torch.Tensor:
    """Cut negative entries of each candidate row to 0 and renormalise it to sum to 1.

    A row without a positive entry, or with a non-finite one, becomes NaN, so its
    objective is NaN and ``best_candidate`` skips it.
    """
    W = W.clamp(min=0)
    total = W.sum(dim=-1, keepdim=True)
    usable = (total > 0) & torch.isfinite(total)
    return torch.where(usable, W / torch.where(usable, total, torch.ones_like(total)), torch.nan)


def best_candidate(W: torch.Tensor, objective: torch.Tensor) -> torch.Tensor:
    """Return the row of ``W`` (K, T) with the lowest finite ``objective`` (K,)."""
    objective = torch.where(torch.isfinite(objective), objective, torch.inf)
    # index_select with a one-element index tensor: indexing with a 0-dim tensor could read it on the host.
    return W.index_select(0, objective.argmin().reshape(1)).squeeze(0)


def active_set_qp(A: torch.Tensor, linear: Callable[[torch.Tensor], torch.Tensor], iterations: int) -> torch.Tensor:
    """Minimise ½ wᵀ A w + cᵀ w over the simplex by a primal active-set method with a fixed step count.

    The textbook primal active-set method for convex quadratic programs,
    specialised to the simplex constraints. It keeps a working support S
    and a feasible w. Each step solves the problem on the affine hull of S (a
    ridge-regularised linear system). If that solution x is feasible, w ← x,
    and the task with the most negative reduced gradient (A x + c)_i - μ joins S.
    Otherwise w moves towards x until a weight reaches 0, and that task leaves S.
    Every choice is a ``torch.where``, so the step count is fixed.
    Once the optimum is reached, further steps leave it unchanged.

    ``linear(w)`` returns c. It may depend on w, which CAGrad uses to update
    its quadratic model at every step. It starts at the vertex of lowest
    objective.
    """
    T = A.shape[0]
    ones = torch.ones(T, dtype=A.dtype, device=A.device)
    c = linear(ones / T)
    support = _indicator(T, (0.5 * A.diagonal() + c).argmin())
    w = support.to(A.dtype)

    for _ in range(iterations):
        c = linear(w)
        x = _affine_minimiser(A, c, support)
        w, support = _active_set_step(A, c, w, x, support)
    return w


def _affine_minimiser(A: torch.Tensor, c: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """Return argmin ½ xᵀ A x + cᵀ x over {x_S free, Σ x = 1, x = 0 outside S} (ridge-regularised)."""
    solutions = solve_on_supports(A, support.unsqueeze(0), torch.stack([torch.ones_like(c), c], dim=1))[0]
    p, q = solutions[:, 0], solutions[:, 1]
    mu = (1 + q.sum()) / p.sum()
    return mu * p - q


def _active_set_step(A: torch.Tensor, c: torch.Tensor, w: torch.Tensor, x: torch.Tensor,
                     support: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the next (w, support) of ``active_set_qp`` from the affine minimiser x."""
    feasible = (x >= 0).all()

    # Feasible x: accept it, and add the task whose reduced gradient is most negative, if any.
    gradient = A @ x + c
    multiplier = (x * gradient).sum()
    reduced = torch.where(support, torch.inf, gradient - multiplier)
    tolerance = 1e-13 * (A.abs().amax() + c.abs().amax())
    grown = support | (_indicator(A.shape[0], reduced.argmin()) & (reduced.amin() < -tolerance))

    # Infeasible x: step from w towards x until the first weight of S reaches 0, and that task leaves S.
    shrinking = support & (x < 0)
    ratios = torch.where(shrinking, w / torch.where(shrinking, w - x, torch.ones_like(w)), torch.inf)
    leaving = _indicator(A.shape[0], ratios.argmin())
    step = ratios.amin().clamp(0, 1)
    moved = (w + step * (x - w)).clamp(min=0)
    moved = torch.where(leaving, torch.zeros_like(moved), moved)
    moved = moved / moved.sum()
    shrunk = support & (moved > 0)

    return torch.where(feasible, x, moved), torch.where(feasible, grown, shrunk)


def _indicator(T: int, index: torch.Tensor) -> torch.Tensor:
    """Return the bool vector (T,) that is True at the 0-dim device tensor ``index`` only, without a host read."""
    return torch.arange(T, device=index.device) == index


def polishing_masks(w: torch.Tensor) -> torch.Tensor:
    """Return the supports to polish an iterate on: the T vertices and the iterate's own support (T + 1, T)."""
    T = w.shape[0]
    return torch.cat([singleton_masks(T, w.device), (w > 0).unsqueeze(0)])


def quadratic_forms(W: torch.Tensor, G: torch.Tensor, V: torch.Tensor | None = None) -> torch.Tensor:
    """Return wᵀ G v for each row pair of ``W`` and ``V`` (K, T); ``V`` defaults to ``W``."""
    V = W if V is None else V
    return ((W @ G) * V).sum(dim=-1)


def iterations_for(T: int) -> int:
    """Return the step count of ``active_set_qp`` for T tasks: 3T, room for T additions and 2T removals."""
    return 3 * T


def nonnegative_sqrt(x: torch.Tensor) -> torch.Tensor:
    """Return sqrt(max(x, 0)), so rounding below zero gives 0 rather than NaN."""
    return torch.sqrt(x.clamp(min=0))


__all__ = [
    "EXACT_MAX_TASKS", "RIDGE", "active_set_qp", "best_candidate", "iterations_for", "nonnegative_sqrt",
    "polishing_masks", "quadratic_forms", "singleton_masks", "solve_on_supports", "support_masks",
    "to_simplex_points",
]
