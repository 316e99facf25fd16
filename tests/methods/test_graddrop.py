"""GradDrop against a literal per-coordinate loop, its random thresholds and its expected value."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recon import methods
from recon.methods.graddrop import sign_dropout

from methods_reference import graddrop_direction


def _jacobian(T: int, P: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    J = torch.randn(T, P, generator=g, dtype=torch.float64)
    J[:, ::7] = 0  # some columns that no task reaches
    return J


@pytest.mark.parametrize("T", [2, 3, 5])
@pytest.mark.parametrize("seed", range(3))
def test_sign_dropout_matches_loop(T, seed, device):
    J = _jacobian(T, 60, seed)
    thresholds = torch.rand(60, generator=torch.Generator().manual_seed(seed + 100), dtype=torch.float64)

    direction, dropped = sign_dropout(J.to(device), thresholds.to(device))
    expected, expected_dropped = graddrop_direction(J.numpy(), thresholds.numpy())

    np.testing.assert_allclose(direction.cpu().numpy(), expected, rtol=1e-12, atol=1e-12)
    assert dropped.item() == pytest.approx(expected_dropped)


def test_graddrop_draws_thresholds_from_generator(device):
    # The method's result equals sign_dropout with thresholds drawn from a generator in the same state.
    J = _jacobian(3, 50, 7).to(device)
    method = methods.build("graddrop", generator=torch.Generator(device=device).manual_seed(4))
    replay = torch.Generator(device=device).manual_seed(4)

    direction = method(J, torch.ones(3, dtype=J.dtype, device=device))
    thresholds = torch.rand(50, generator=replay, device=device, dtype=torch.float64)
    expected, dropped = sign_dropout(J, thresholds)

    torch.testing.assert_close(direction, expected, rtol=0, atol=0)
    torch.testing.assert_close(method.diagnostics["dropped_fraction"], dropped)


def test_graddrop_mean_matches_expectation():
    # E[result] = P · S⁺ + (1 - P) · S⁻ per coordinate. The mean of 2000 draws is within 5 standard errors.
    J = torch.tensor([[1.0, -2.0, 0.5], [-3.0, 1.0, 0.5], [1.0, 0.5, -1.0]], dtype=torch.float64)
    positive = J.clamp(min=0).sum(0)
    negative = J.clamp(max=0).sum(0)
    purity = 0.5 * (1 + J.sum(0) / J.abs().sum(0))
    expected = purity * positive + (1 - purity) * negative

    method = methods.build("graddrop", generator=torch.Generator().manual_seed(0))
    draws = torch.stack([method(J, torch.ones(3, dtype=J.dtype)) for _ in range(2000)])

    spread = draws.std(0) / 2000**0.5
    assert ((draws.mean(0) - expected).abs() < 5 * spread).all()


def test_graddrop_same_sign_keeps_everything(device):
    J = torch.tensor([[1.0, -2.0, 0.0], [3.0, -1.0, 2.0]], dtype=torch.float64, device=device)
    method = methods.build("graddrop")
    direction = method(J, torch.ones(2, dtype=J.dtype, device=device))
    torch.testing.assert_close(direction, J.sum(0))
    assert method.diagnostics["dropped_fraction"].item() == 0.0
