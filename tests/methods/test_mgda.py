"""MGDA's min-norm solver against SciPy on the same quadratic program, and its optimality conditions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recon import methods
from recon.methods.gram import gram_matrix
from recon.methods.mgda import min_norm_weights, two_task_weights
from recon.methods.simplex import EXACT_MAX_TASKS

from methods_reference import mgda_direction


def _jacobian(T: int, P: int, seed: int, kind: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        return rng.standard_normal((T, P))
    if kind == "shared":
        return rng.standard_normal(P) + 0.5 * rng.standard_normal((T, P))
    if kind == "low_rank":
        return rng.standard_normal((T, 3)) @ rng.standard_normal((3, P)) + 1e-3 * rng.standard_normal((T, P))
    # Task gradient norms spread over about four decades.
    return rng.standard_normal((T, P)) * rng.lognormal(0, 2, (T, 1))


def _relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


@pytest.mark.parametrize("T", [2, 3, 4, 6])
@pytest.mark.parametrize("kind", ["gaussian", "shared", "low_rank", "spread"])
def test_mgda_matches_scipy(T, kind, device):
    J = _jacobian(T, 12, seed=T, kind=kind)
    method = methods.build("mgda")

    direction = method(torch.tensor(J, device=device), torch.ones(T, dtype=torch.float64, device=device))
    expected, _ = mgda_direction(J)

    assert _relative_error(direction.cpu().numpy(), expected) < 1e-3


@pytest.mark.parametrize("T", [12, 16])
@pytest.mark.parametrize("kind", ["gaussian", "low_rank", "spread"])
def test_mgda_many_tasks_matches_scipy(T, kind, device):
    # T > EXACT_MAX_TASKS: the active-set route.
    assert T > EXACT_MAX_TASKS
    J = _jacobian(T, 40, seed=T, kind=kind)

    direction = methods.build("mgda")(torch.tensor(J, device=device), torch.ones(T, dtype=torch.float64,
                                                                                  device=device))
    expected, _ = mgda_direction(J)

    assert _relative_error(direction.cpu().numpy(), expected) < 1e-3


@pytest.mark.parametrize("T", [3, 5, 12, 40])
@pytest.mark.parametrize("kind", ["gaussian", "low_rank", "spread"])
def test_mgda_weights_satisfy_kkt(T, kind, device):
    # Optimality on the simplex: w ≥ 0, Σw = 1, (G w)_i ≥ wᵀ G w for all i, with equality where w_i > 0.
    J = torch.tensor(_jacobian(T, 60, seed=T + 1, kind=kind), device=device)
    G = gram_matrix(J)

    w = min_norm_weights(G)
    gradient = G @ w
    value = w @ gradient

    assert (w >= 0).all()
    assert w.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert (gradient >= value - 1e-9).all()
    assert torch.allclose(gradient[w > 1e-9], value.expand(int((w > 1e-9).sum())), atol=1e-9)


@pytest.mark.parametrize("seed", range(10))
def test_mgda_two_task_closed_form_matches_enumeration(seed):
    from recon.methods.simplex import best_candidate, quadratic_forms, solve_on_supports, support_masks
    from recon.methods.simplex import to_simplex_points

    G = gram_matrix(torch.tensor(_jacobian(2, 5, seed, "shared")))
    masks = support_masks(2, G.device)
    candidates = to_simplex_points(solve_on_supports(G, masks, torch.ones(2, 1, dtype=G.dtype)).squeeze(-1))

    enumerated = best_candidate(candidates, quadratic_forms(candidates, G))

    torch.testing.assert_close(two_task_weights(G), enumerated, rtol=1e-9, atol=1e-9)


def test_mgda_weights_reported(device):
    J = _jacobian(3, 8, seed=4, kind="gaussian")
    method = methods.build("MGD")
    method(torch.tensor(J, device=device), torch.ones(3, dtype=torch.float64, device=device))
    _, expected = mgda_direction(J)
    np.testing.assert_allclose(method.diagnostics["weights"].cpu().numpy(), expected, atol=1e-5)
