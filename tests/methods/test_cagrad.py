"""CAGrad against SciPy on the dual problem of the authors' code, and its options."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from recon import methods

from methods_reference import cagrad_direction


def _jacobian(T: int, P: int, seed: int, kind: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        return rng.standard_normal((T, P))
    if kind == "shared":
        return rng.standard_normal(P) + 0.7 * rng.standard_normal((T, P))
    return rng.standard_normal((T, P)) * rng.lognormal(0, 1, (T, 1))


def _relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def _run(J: np.ndarray, device: torch.device, **options) -> np.ndarray:
    method = methods.build("cagrad", **options)
    losses = torch.ones(len(J), dtype=torch.float64, device=device)
    return method(torch.tensor(J, device=device), losses).cpu().numpy()


@pytest.mark.parametrize("T", [2, 3, 5])
@pytest.mark.parametrize("kind", ["gaussian", "shared", "spread"])
@pytest.mark.parametrize("alpha", [0.2, 0.5, 0.9])
def test_cagrad_matches_scipy(T, kind, alpha, device):
    J = _jacobian(T, 10, seed=T * 7, kind=kind)
    expected = cagrad_direction(J, alpha, rescale=1)
    assert _relative_error(_run(J, device, alpha=alpha), expected) < 1e-3


@pytest.mark.parametrize("kind", ["gaussian", "shared", "spread"])
def test_cagrad_many_tasks_matches_scipy(kind, device):
    J = _jacobian(12, 30, seed=12, kind=kind)
    expected = cagrad_direction(J, 0.5, rescale=1)
    assert _relative_error(_run(J, device), expected) < 1e-3


@pytest.mark.parametrize("rescale, divisor", [(0, 1.0), (1, 1.25), (2, 1.5)])
def test_cagrad_rescale_divides(rescale, divisor, device):
    J = _jacobian(3, 6, seed=1, kind="gaussian")
    unscaled = _run(J, device, rescale=0)
    np.testing.assert_allclose(_run(J, device, rescale=rescale), unscaled / divisor, rtol=1e-12)


@pytest.mark.parametrize("T", [1, 2, 3, 5])
def test_cagrad_alpha_zero_is_joint(T, device):
    J = _jacobian(T, 6, seed=T, kind="gaussian")
    np.testing.assert_allclose(_run(J, device, alpha=0.0), J.sum(0), rtol=1e-12, atol=1e-12)


def test_cagrad_diagnostics(device):
    # Interior optimum: λ = c‖g0‖ / ‖g_w‖ from the reported weights.
    J = _jacobian(3, 8, seed=2, kind="shared")
    method = methods.build("cagrad", alpha=0.5)
    method(torch.tensor(J, device=device), torch.ones(3, dtype=torch.float64, device=device))

    weights = method.diagnostics["weights"].cpu().numpy()
    expected_lambda = 0.5 * np.linalg.norm(J.mean(0)) / np.linalg.norm(weights @ J)

    assert weights.min() >= 0
    assert weights.sum() == pytest.approx(1.0)
    assert method.diagnostics["lambda"].item() == pytest.approx(expected_lambda, rel=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("epsilon", [1e-3, 1e-5])
def test_cagrad_small_combined_gradient(dtype, epsilon, device):
    # g1 = (1, ε), g2 = (-1, ε): g0 = (0, ε), b = (ε², ε²), so f(w) = ε² + 0.5 ε ‖g_w‖ is least at the
    # min-norm point w = (½, ½), g_w = (0, ε) = g0. λ = 0.5 ε / ε = 0.5 even though ‖g_w‖ = ε ‖g1‖;
    # d = 1.5 g0, / 1.25 · 2 = (0, 2.4 ε).
    J = torch.tensor([[1.0, epsilon], [-1.0, epsilon]], dtype=dtype, device=device)
    method = methods.build("cagrad")

    direction = method(J, torch.ones(2, dtype=dtype, device=device))

    torch.testing.assert_close(direction.cpu(), torch.tensor([0.0, 2.4 * epsilon], dtype=dtype),
                               rtol=1e-4, atol=1e-6 * epsilon)
    assert method.diagnostics["lambda"].item() == pytest.approx(0.5, rel=1e-4)


@pytest.mark.parametrize("options, message", [
    ({"alpha": -0.1}, r"'alpha' must be a finite number ≥ 0; found alpha = -0.1"),
    ({"alpha": float("nan")}, r"'alpha' must be a finite number ≥ 0; found alpha = nan"),
    ({"alpha": "0.5"}, r"'alpha' must be a finite number ≥ 0; found alpha = '0.5'"),
    ({"rescale": 3}, r"'rescale' must be 0 \(none\), 1 .* or 2 .*; found rescale = 3"),
    ({"rescale": True}, r"found rescale = True"),
])
def test_cagrad_invalid_options(options, message):
    with pytest.raises(ValueError, match=message):
        methods.build("cagrad", **options)


def test_cagrad_large_alpha_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="recon.methods.cagrad"):
        methods.build("cagrad", alpha=1.5)
    assert "assumes 0 ≤ alpha < 1" in caplog.text
