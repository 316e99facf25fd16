"""Degenerate Jacobians: every method returns a finite result, and the exact result where mathematics fixes one."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from recon import methods
from recon.methods import REGISTRY, NonFiniteGradientError
from recon.methods.pcgrad import random_task_orders

from methods_reference import pcgrad_direction

METHODS = sorted(REGISTRY)

G = [1.0, -2.0, 3.0, 0.5]
E1, E2 = [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]


def _times(factor: float) -> Callable:
    """Expect ``factor`` times the first row of J."""
    return lambda J, direction, method: _close(direction, factor * J[0])


def _vector(values: list[float]) -> Callable:
    return lambda J, direction, method: _close(direction, torch.tensor(values, dtype=J.dtype, device=J.device))


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-12)


def _pcgrad_reference(J: torch.Tensor, direction: torch.Tensor, method) -> None:
    # Replay the orders that the method drew from a generator in the same initial state.
    generator = torch.Generator(device=J.device).manual_seed(0)
    orders = random_task_orders(J.shape[0], generator).cpu().numpy()
    expected, _ = pcgrad_direction(J.cpu().numpy(), orders)
    np.testing.assert_allclose(direction.cpu().numpy(), expected, rtol=1e-9, atol=1e-12)


def _graddrop_coin_flip(J: torch.Tensor, direction: torch.Tensor, method) -> None:
    # Every column sums to 0, so P = ½ and the kept sum is ± (the sum of its positive entries).
    # Each non-zero column has entries of both signs, so it drops some.
    positive = J.clamp(min=0).sum(0)
    _close(direction.abs(), positive)
    nonzero_columns = (J != 0).any(dim=0).double().mean()
    assert method.diagnostics["dropped_fraction"].item() == nonzero_columns.item()


# Case -> (Jacobian rows, {method: check of the direction}). CAGrad uses alpha 0.5, rescale 1 (divisor 1.25).
DEGENERATE = {
    # One task. PCGrad has nothing to project; GradDrop's purity is 1 or 0, so all is kept; MGDA's hull is
    # one point. CAGrad: w = 1, λ = c‖g‖ / ‖g‖ = 0.5, d = 1.5 g / 1.25 = 1.2 g.
    "one_task": ([G], {"joint": _times(1), "pcgrad": _times(1), "graddrop": _times(1), "mgda": _times(1),
                       "cagrad": _times(1.2)}),
    # g, g. MGDA: every w gives g, times 2. CAGrad: g_w = g0 = g, λ = 0.5, d = 1.5 g; / 1.25 · 2 = 2.4 g.
    "identical": ([G, G], {"joint": _times(2), "pcgrad": _times(2), "graddrop": _times(2), "mgda": _times(2),
                           "cagrad": _times(2.4)}),
    # g, -g. PCGrad projects each onto the other's normal plane: 0. MGDA: ½ g - ½ g = 0. CAGrad: g0 = 0.
    "opposite": ([G, [-x for x in G]], {"joint": _times(0), "pcgrad": _times(0), "mgda": _times(0),
                                        "cagrad": _times(0), "graddrop": _graddrop_coin_flip}),
    # g, 0. MGDA: 0 is in the hull. CAGrad: f(w) = 0.75 w1 ‖g‖², least at w = (0, 1) where g_w = 0, so
    #   λ g_w = 0 and d = g0 = g / 2; / 1.25 · 2 = 0.8 g.
    "zero_task": ([G, [0.0] * 4], {"joint": _times(1), "pcgrad": _times(1), "graddrop": _times(1),
                                   "mgda": _times(0), "cagrad": _times(0.8)}),
    # e1, e2, e1 + e2 (linearly dependent). No inner product is negative and no entry is negative, so PCGrad
    # and GradDrop give the sum (2, 2, 0, 0). MGDA: (½, ½, 0, 0) · 3. CAGrad: (2.4, 2.4, 0, 0), worked out in
    # test_methods_known_values (dependent_triple).
    "dependent_sum": ([E1, E2, [1.0, 1.0, 0.0, 0.0]],
                      {"joint": _vector([2, 2, 0, 0]), "pcgrad": _vector([2, 2, 0, 0]),
                       "graddrop": _vector([2, 2, 0, 0]), "mgda": _vector([1.5, 1.5, 0, 0]),
                       "cagrad": _vector([2.4, 2.4, 0, 0])}),
    # e1, e2, -(e1 + e2): 0 = ⅓ (g1 + g2 + g3) is in the hull, and g0 = 0. MGDA and CAGrad give 0.
    "dependent_zero_sum": ([E1, E2, [-1.0, -1.0, 0.0, 0.0]],
                           {"joint": _times(0), "mgda": _times(0), "cagrad": _times(0),
                            "pcgrad": _pcgrad_reference, "graddrop": _graddrop_coin_flip}),
    # g1 = (1, -2, 0, 4), g2 = (3, 0, 0, -1): column 1 is reached by task 0 only, column 2 by no task.
    # MGDA: G = [[21, -1], [-1, 10]], γ = (10 + 1) / (21 + 10 + 2) = ⅓;
    #   2 (⅓ g1 + ⅔ g2) = (14/3, -4/3, 0, 4/3). GradDrop keeps a lone entry: column 1 gives -2.
    "single_task_column": ([[1.0, -2.0, 0.0, 4.0], [3.0, 0.0, 0.0, -1.0]],
                           {"joint": _vector([4, -2, 0, 3]), "mgda": _vector([14 / 3, -4 / 3, 0, 4 / 3]),
                            "pcgrad": _pcgrad_reference}),
}


def _build(name: str, device: torch.device) -> methods.Method:
    return methods.build(name, generator=torch.Generator(device=device).manual_seed(0))


def test_degenerate_cases_cover_every_method():
    covered = {name for _, checks in DEGENERATE.values() for name in checks}
    assert covered == set(METHODS)


@pytest.mark.parametrize("case", sorted(DEGENERATE))
@pytest.mark.parametrize("name", METHODS)
def test_degenerate_jacobian(case, name, device):
    rows, checks = DEGENERATE[case]
    J = torch.tensor(rows, dtype=torch.float64, device=device)
    method = _build(name, device)

    direction = method(J, torch.ones(len(rows), dtype=J.dtype, device=device))

    assert torch.isfinite(direction).all()
    if name in checks:
        checks[name](J, direction, method)


@pytest.mark.parametrize("name", METHODS)
def test_unreached_column_stays_zero(name, device):
    rows, _ = DEGENERATE["single_task_column"]
    J = torch.tensor(rows, dtype=torch.float64, device=device)
    direction = _build(name, device)(J, torch.ones(2, dtype=J.dtype, device=device))
    assert direction[2].item() == 0.0


def test_graddrop_keeps_single_task_column(device):
    J = torch.tensor(DEGENERATE["single_task_column"][0], dtype=torch.float64, device=device)
    direction = _build("graddrop", device)(J, torch.ones(2, dtype=J.dtype, device=device))
    assert direction[1].item() == -2.0


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("scale", [1e-30, 1e10])
def test_float32_extreme_scales(name, scale, device):
    # 1e-30² underflows float32 and (1e10)² · P is far from overflowing it, but both must give s · d(J).
    J = torch.tensor([[1.0, -2.0, 0.5, 3.0, 0.0], [-1.5, 1.0, 2.0, -0.5, 1.0], [0.5, 0.5, -1.0, 1.0, 2.0]],
                     dtype=torch.float32, device=device)
    losses = torch.ones(3, dtype=torch.float32, device=device)

    reference = _build(name, device)(J, losses)
    scaled = _build(name, device)(J * scale, losses)

    assert torch.isfinite(scaled).all()
    assert scaled.abs().max().item() > 0
    torch.testing.assert_close(scaled / scale, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("dtype, tolerance", [(torch.float16, 3e-3), (torch.bfloat16, 2e-2)])
def test_half_precision_jacobian(name, dtype, tolerance, device):
    # An ordinary-size Jacobian in half precision gives the float32 result for the same (rounded) entries.
    generator = torch.Generator().manual_seed(3)
    J = torch.randn(3, 4096, generator=generator).to(dtype).to(device)
    losses = torch.ones(3, dtype=dtype, device=device)

    direction = _build(name, device)(J, losses)
    reference = _build(name, device)(J.float(), losses.float())

    assert direction.dtype == dtype
    assert torch.isfinite(direction).all()
    error = (direction.float() - reference).norm() / reference.norm()
    assert error.item() < tolerance


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nonfinite_gradient_names_task(name, bad, device):
    J = torch.ones(3, 5, dtype=torch.float64, device=device)
    J[1, 2] = bad

    with pytest.raises(NonFiniteGradientError, match=r"gradient of task 1 \(row 1 of J\)") as error:
        _build(name, device)(J, torch.ones(3, dtype=J.dtype, device=device))
    assert error.value.task_index == 1


@pytest.mark.parametrize("name", METHODS)
def test_nonfinite_loss_names_task(name, device):
    losses = torch.tensor([1.0, 2.0, float("nan")], dtype=torch.float64, device=device)

    with pytest.raises(NonFiniteGradientError, match="the loss of task 2 is nan") as error:
        _build(name, device)(torch.ones(3, 5, dtype=torch.float64, device=device), losses)
    assert error.value.task_index == 2


def test_nonfinite_error_is_value_error():
    assert issubclass(NonFiniteGradientError, ValueError)


@pytest.mark.parametrize("name", METHODS)
def test_deferred_finite_check(name, device):
    # With check_finite off, the call does not raise, and task_finite contains the flags for the caller.
    J = torch.ones(3, 5, dtype=torch.float64, device=device)
    J[0, 0] = float("nan")
    method = _build(name, device)
    method.check_finite = False

    method(J, torch.ones(3, dtype=J.dtype, device=device))

    assert method.task_finite.tolist() == [False, True, True]
    with pytest.raises(NonFiniteGradientError, match="task 0") as error:
        methods.raise_if_nonfinite(method.task_finite.tolist())
    assert error.value.task_index == 0
