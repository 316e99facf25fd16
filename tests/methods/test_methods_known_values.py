"""Small Jacobians with every method's result worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import pytest
import torch

from recon import methods
from recon.methods.graddrop import sign_dropout
from recon.methods.pcgrad import project_conflicts

SQRT5 = math.sqrt(5)

# Each case: the Jacobian, then each method's expected direction where it does not depend on random draws
# (CAGrad with its defaults alpha 0.5, rescale 1).
CASES = {
    # T = 2, P = 2. g1 = (1, 0), g2 = (-1, 1); G = [[1, -1], [-1, 2]].
    # joint: g1 + g2 = (0, 1).
    # MGDA: γ = (G22 - G12) / (G11 + G22 - 2 G12) = 3 / 5; 0.6 g1 + 0.4 g2 = (0.2, 0.4); times T = 2: (0.4, 0.8).
    # CAGrad: g0 = (0, 0.5), ρ = 0.5 · 0.5 = 0.25, b = (g1·g0, g2·g0) = (0, 0.5). With w = (1 - s, s),
    #   f(s) = 0.5 s + 0.25 sqrt(1 - 4 s + 5 s²) and f'(0) = 0.5 - 0.5 = 0, so w = (1, 0), g_w = g1,
    #   λ = 0.25 / 1; d = g0 + 0.25 g1 = (0.25, 0.5); / 1.25 · 2 = (0.4, 0.8).
    "conflicting_pair": (
        [[1.0, 0.0], [-1.0, 1.0]],
        # PCGrad: see test_pcgrad_hand_pair: (0.5, 1.5). GradDrop: column (1, -1) has P = ½, a coin flip.
        {"joint": [0.0, 1.0], "mgda": [0.4, 0.8], "cagrad": [0.4, 0.8], "pcgrad": [0.5, 1.5]},
    ),
    # T = 2, P = 2. g1 = (1, 0), g2 = (0, 1), orthogonal.
    # MGDA: γ = 1 / 2, point (0.5, 0.5), times 2: (1, 1).
    # CAGrad: g0 = (0.5, 0.5), ρ = 0.5 / √2, b = (0.5, 0.5): f = 0.5 + ρ ‖w‖, so w = (½, ½), g_w = g0,
    #   λ = ρ / ‖g0‖ = 0.5; d = 1.5 g0 = (0.75, 0.75); / 1.25 · 2 = (1.2, 1.2).
    "orthogonal_pair": (
        [[1.0, 0.0], [0.0, 1.0]],
        # PCGrad: g1·g2 = 0, nothing to project. GradDrop: one non-zero entry per column, P ∈ {0, 1}, all kept.
        {"joint": [1.0, 1.0], "mgda": [1.0, 1.0], "cagrad": [1.2, 1.2], "pcgrad": [1.0, 1.0],
         "graddrop": [1.0, 1.0]},
    ),
    # T = 2, P = 3. g1 = (2, 0, 0), g2 = (0, 1, 0).
    # MGDA: γ = 1 / 5; 0.2 g1 + 0.8 g2 = (0.4, 0.8, 0); times 2: (0.8, 1.6, 0).
    # CAGrad: g0 = (1, 0.5, 0), ‖g0‖ = √5 / 2, ρ = √5 / 4, b = (2, 0.5). With w = (1 - s, s),
    #   f'(s) = -1.5 + ρ (5 s - 4) / sqrt(5 s² - 8 s + 4) < 0 on [0, 1] (setting it to 0 has no real root),
    #   so w = (0, 1), g_w = g2, λ = ρ; d = (1, 0.5 + √5 / 4, 0); / 1.25 · 2 = (1.6, 0.8 + 0.4 √5, 0).
    "vertex_optimum": (
        [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        # PCGrad and GradDrop: orthogonal with one non-zero entry per column, so both give g1 + g2.
        {"joint": [2.0, 1.0, 0.0], "mgda": [0.8, 1.6, 0.0], "cagrad": [1.6, 0.8 + 0.4 * SQRT5, 0.0],
         "pcgrad": [2.0, 1.0, 0.0], "graddrop": [2.0, 1.0, 0.0]},
    ),
    # T = 3, P = 3. The unit vectors e1, e2, e3.
    # MGDA: w = (⅓, ⅓, ⅓), point (⅓, ⅓, ⅓); times 3: (1, 1, 1).
    # CAGrad: g0 = (⅓, ⅓, ⅓), b = (⅓, ⅓, ⅓), f = ⅓ + ρ ‖w‖, so w = (⅓, ⅓, ⅓), g_w = g0, λ = 0.5;
    #   d = 1.5 g0 = (0.5, 0.5, 0.5); / 1.25 · 3 = (1.2, 1.2, 1.2).
    "orthonormal_triple": (
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        # PCGrad and GradDrop: as for the orthogonal pair, the sum.
        {"joint": [1.0, 1.0, 1.0], "mgda": [1.0, 1.0, 1.0], "cagrad": [1.2, 1.2, 1.2], "pcgrad": [1.0, 1.0, 1.0],
         "graddrop": [1.0, 1.0, 1.0]},
    ),
    # T = 3, P = 4. g1 = (1, 1, 0, 0), g2 = (1, -1, 0, 0), g3 = (2, 0, 0, 1).
    # MGDA: the segment g1–g2 has its min-norm point x = (1, 0, 0, 0) at w = (½, ½, 0). It is optimal since
    #   g1·x = g2·x = 1 = ‖x‖² and g3·x = 2 ≥ 1. Times 3: (3, 0, 0, 0).
    "redundant_third_task": (
        [[1.0, 1.0, 0.0, 0.0], [1.0, -1.0, 0.0, 0.0], [2.0, 0.0, 0.0, 1.0]],
        # PCGrad: g1·g2 = 0, g1·g3 = 2, g2·g3 = 2, no conflict, so the sum. GradDrop: column (1, -1, 0) has P = ½.
        {"joint": [4.0, 0.0, 0.0, 1.0], "mgda": [3.0, 0.0, 0.0, 0.0], "pcgrad": [4.0, 0.0, 0.0, 1.0]},
    ),
    # T = 3, P = 2. g1 = (1, 0), g2 = (0, 1), g3 = (1, 1) = g1 + g2.
    # MGDA: min-norm point (½, ½) at w = (½, ½, 0); times 3: (1.5, 1.5).
    # CAGrad: g0 = (⅔, ⅔), ρ = 0.5 ‖g0‖ = √2 / 3; on the hull, g0·x + ρ‖x‖ is least on x1 + x2 = 1 at
    #   x = (½, ½): ⅔ + (√2 / 3)(1 / √2) = 1. λ = ρ / ‖x‖ = ⅔; d = g0 + ⅔ x = (1, 1); / 1.25 · 3 = (2.4, 2.4).
    "dependent_triple": (
        [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
        # PCGrad: all inner products ≥ 0; GradDrop: all entries ≥ 0. Both give the sum.
        {"joint": [2.0, 2.0], "mgda": [1.5, 1.5], "cagrad": [2.4, 2.4], "pcgrad": [2.0, 2.0], "graddrop": [2.0, 2.0]},
    ),
}


HAND_VALUES = [(case, name) for case, (_, expected) in sorted(CASES.items()) for name in sorted(expected)]


def test_hand_values_cover_every_method():
    assert {name for _, name in HAND_VALUES} == set(methods.REGISTRY)


@pytest.mark.parametrize("case, name", HAND_VALUES)
def test_method_hand_values(case, name, device, generator):
    rows, expected = CASES[case]
    J = torch.tensor(rows, dtype=torch.float64, device=device)

    direction = methods.build(name, generator=generator)(J, torch.ones(len(rows), dtype=J.dtype, device=device))

    torch.testing.assert_close(direction, torch.tensor(expected[name], dtype=J.dtype, device=device),
                               rtol=1e-9, atol=1e-9)


def test_mgda_hand_weights(device):
    # conflicting_pair: γ = 3 / 5.
    method = methods.build("mgda")
    method(torch.tensor(CASES["conflicting_pair"][0], dtype=torch.float64, device=device),
           torch.ones(2, dtype=torch.float64, device=device))
    torch.testing.assert_close(method.diagnostics["weights"].cpu(), torch.tensor([0.6, 0.4], dtype=torch.float64))


def test_cagrad_hand_weights_and_lambda(device):
    # vertex_optimum: w = (0, 1), λ = ρ = √5 / 4.
    method = methods.build("cagrad")
    method(torch.tensor(CASES["vertex_optimum"][0], dtype=torch.float64, device=device),
           torch.ones(2, dtype=torch.float64, device=device))
    torch.testing.assert_close(method.diagnostics["weights"].cpu(), torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert method.diagnostics["lambda"].item() == pytest.approx(SQRT5 / 4, rel=1e-9)


def test_pcgrad_hand_pair(device, generator):
    # conflicting_pair: g1·g2 = -1 < 0.
    # g1' = g1 - (-1 / ‖g2‖² = -½) g2 = (1, 0) + ½ (-1, 1) = (0.5, 0.5).
    # g2' = g2 - (-1 / ‖g1‖² = -1) g1 = (-1, 1) + (1, 0) = (0, 1). Sum: (0.5, 1.5), 2 projections.
    method = methods.build("pcgrad", generator=generator)
    J = torch.tensor(CASES["conflicting_pair"][0], dtype=torch.float64, device=device)

    direction = method(J, torch.ones(2, dtype=J.dtype, device=device))

    torch.testing.assert_close(direction.cpu(), torch.tensor([0.5, 1.5], dtype=torch.float64))
    assert method.diagnostics["projections"].item() == 2


def test_pcgrad_hand_triple_with_fixed_orders():
    # g1 = (1, 0), g2 = (-1, 1), g3 = (0, -1); g1·g2 = -1, g1·g3 = 0, g2·g3 = -1; ‖g‖² = 1, 2, 1.
    # Orders (0-based): task 0 visits 1 then 2, task 1 visits 2 then 0, task 2 visits 0 then 1.
    # Task 0: vs g2: -1 < 0 → (1, 0) + ½ (-1, 1) = (0.5, 0.5); vs g3: -0.5 < 0 → (0.5, 0.5) + 0.5 (0, -1) = (0.5, 0).
    # Task 1: vs g3: -1 < 0 → (-1, 1) + (0, -1) = (-1, 0); vs g1: -1 < 0 → (-1, 0) + (1, 0) = (0, 0).
    # Task 2: vs g1: 0, no projection; vs g2: -1 < 0 → (0, -1) + ½ (-1, 1) = (-0.5, -0.5).
    # Sum: (0, -0.5), 5 projections.
    J = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
    orders = torch.tensor([[1, 2], [2, 0], [0, 1]])

    coefficients, projections = project_conflicts(J @ J.T, orders)

    torch.testing.assert_close(coefficients.sum(0) @ J, torch.tensor([0.0, -0.5], dtype=torch.float64))
    assert projections.item() == 5


# GradDrop, T = 2, P = 4. Columns (1, -3), (-2, 1), (0, 0), (3, 0):
#   purity P = ½ (1 + Σg / Σ|g|) = ½ (1 - 2/4) = 0.25, ½ (1 - 1/3) = ⅓, ½ (all zero), 1.
GRADDROP_J = [[1.0, -2.0, 0.0, 3.0], [-3.0, 1.0, 0.0, 0.0]]
GRADDROP_CASES = [
    # U = (0.2, 0.5, 0.9, 0.99): 0.25 > 0.2 keeps +1 (drops -3); ⅓ ≤ 0.5 keeps -2 (drops 1); 0; 1 > 0.99 keeps 3.
    (GRADDROP_J, [0.2, 0.5, 0.9, 0.99], [1.0, -2.0, 0.0, 3.0], 0.5),
    # U = (0.3, 0.1, 0, 0): 0.25 ≤ 0.3 keeps -3; ⅓ > 0.1 keeps 1; 0; 1 > 0 keeps 3.
    (GRADDROP_J, [0.3, 0.1, 0.0, 0.0], [-3.0, 1.0, 0.0, 3.0], 0.5),
    # U = P exactly in the first column: P ≤ U keeps the negative entry -3.
    (GRADDROP_J, [0.25, 0.9, 0.5, 0.5], [-3.0, -2.0, 0.0, 3.0], 0.5),
    # T = 3, P = 2. Columns (1, 1, -1): P = ½ (1 + 1/3) = ⅔; (2, -1, -1): P = ½.
    # U = (0.5, 0.6): ⅔ > 0.5 keeps 1 + 1 = 2; ½ ≤ 0.6 keeps -1 - 1 = -2. Both columns drop an entry.
    ([[1.0, 2.0], [1.0, -1.0], [-1.0, -1.0]], [0.5, 0.6], [2.0, -2.0], 1.0),
]


@pytest.mark.parametrize("rows, thresholds, expected, dropped", GRADDROP_CASES)
def test_graddrop_hand_values(rows, thresholds, expected, dropped, device):
    J = torch.tensor(rows, dtype=torch.float64, device=device)

    direction, dropped_fraction = sign_dropout(J, torch.tensor(thresholds, dtype=torch.float64, device=device))

    torch.testing.assert_close(direction.cpu(), torch.tensor(expected, dtype=torch.float64))
    assert dropped_fraction.item() == pytest.approx(dropped)
