"""Slow, independent reference implementations that the method tests compare against.

They use NumPy in float64 and SciPy (NNLS for MGDA, SLSQP for CAGrad), follow each paper's algorithm
literally (loops, explicit divisions), and share no code with ``recon.methods``.
"""

from __future__ import annotations

import numpy as np
import scipy.optimize


def minimise_on_simplex(objective, T: int) -> np.ndarray:
    """Return the best of several SLSQP runs (centre and every vertex as start) of ``objective`` on the simplex."""
    constraint = {"type": "eq", "fun": lambda w: w.sum() - 1, "jac": lambda w: np.ones_like(w)}
    starts = [np.full(T, 1.0 / T)] + [np.eye(T)[i] * 0.9 + 0.1 / T for i in range(T)]
    best = None
    for start in starts:
        result = scipy.optimize.minimize(objective, start, method="SLSQP", bounds=[(0, 1)] * T,
                                         constraints=[constraint], options={"ftol": 1e-15, "maxiter": 1000})
        if best is None or result.fun < best.fun:
            best = result
    return best.x


def mgda_direction(J: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (T · min-norm point of the hull of the rows of J, its weights).

    Solved as non-negative least squares (SciPy's Lawson–Hanson active-set
    NNLS, exact up to rounding): min ‖Jᵀ w‖² + M² (Σw - 1)² over w ≥ 0, with J
    scaled to a largest row norm of 1 and M = 1e5. The penalty moves Σw away
    from 1 by about ‖Jᵀw‖² / M² ≤ 1e-10, and the weights are then renormalised.
    """
    T = len(J)
    scaled = J / np.linalg.norm(J, axis=1).max()
    penalty = 1e5
    A = np.vstack([scaled.T, penalty * np.ones((1, T))])
    target = np.concatenate([np.zeros(J.shape[1]), [penalty]])
    weights, _ = scipy.optimize.nnls(A, target, maxiter=100 * T)
    weights = weights / weights.sum()
    return T * (weights @ J), weights


def cagrad_direction(J: np.ndarray, alpha: float, rescale: int) -> np.ndarray:
    """Return CAGrad's summed-scale update: the dual over the simplex as the authors' code states it."""
    T = len(J)
    g0 = J.mean(axis=0)
    c = alpha * np.linalg.norm(g0)
    weights = minimise_on_simplex(lambda w: (w @ J) @ g0 + c * np.linalg.norm(w @ J), T)
    gw = weights @ J
    d = g0 + c / np.linalg.norm(gw) * gw
    divisor = {0: 1.0, 1: 1 + alpha**2, 2: 1 + alpha}[rescale]
    return T * d / divisor


def pcgrad_direction(J: np.ndarray, orders: np.ndarray) -> tuple[np.ndarray, int]:
    """Return PCGrad's sum of projected gradients for the given visiting orders, and the projection count."""
    total = np.zeros(J.shape[1])
    projections = 0
    for i in range(len(J)):
        projected = J[i].copy()
        for j in orders[i]:
            inner = projected @ J[j]
            if inner < 0:
                projected = projected - inner / (J[j] @ J[j]) * J[j]
                projections += 1
        total += projected
    return total, projections


def graddrop_direction(J: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, float]:
    """Return GradDrop's sum of kept entries for given thresholds, and the fraction of columns with a drop."""
    T, P = J.shape
    result = np.zeros(P)
    dropped = 0
    for k in range(P):
        column = J[:, k]
        total_abs = np.abs(column).sum()
        purity = 0.5 if total_abs == 0 else 0.5 * (1 + column.sum() / total_abs)
        keep = column > 0 if purity > thresholds[k] else column < 0
        result[k] = column[keep].sum()
        dropped += bool(np.any((column != 0) & ~keep))
    return result, dropped / P
