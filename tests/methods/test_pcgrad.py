"""PCGrad against a literal loop of Algorithm 1, its guarantee for two tasks, and its random orders."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from recon import methods
from recon.methods.pcgrad import project_conflicts, random_task_orders

from methods_reference import pcgrad_direction


def _conflicting_jacobian(T: int, P: int, seed: int) -> torch.Tensor:
    # Rows around a shared direction with large noise, so some pairs conflict and some do not.
    g = torch.Generator().manual_seed(seed)
    shared = torch.randn(P, generator=g, dtype=torch.float64)
    return 0.5 * shared + torch.randn(T, P, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("T", [2, 3, 4, 6])
@pytest.mark.parametrize("seed", range(4))
def test_pcgrad_matches_loop_with_same_orders(T, seed, device):
    J = _conflicting_jacobian(T, 7, seed).to(device)
    method = methods.build("pcgrad", generator=torch.Generator(device=device).manual_seed(seed))
    replay = torch.Generator(device=device).manual_seed(seed)

    direction = method(J, torch.ones(T, dtype=J.dtype, device=device))
    orders = random_task_orders(T, replay).cpu().numpy()
    expected, projections = pcgrad_direction(J.cpu().numpy(), orders)

    np.testing.assert_allclose(direction.cpu().numpy(), expected, rtol=1e-10, atol=1e-12)
    assert method.diagnostics["projections"].item() == projections


@pytest.mark.parametrize("seed", range(20))
def test_pcgrad_two_tasks_no_conflict_left(seed, device):
    J = _conflicting_jacobian(2, 5, seed).to(device)
    direction = methods.build("pcgrad")(J, torch.ones(2, dtype=J.dtype, device=device))
    inner = J @ direction
    assert (inner >= -1e-12 * J.norm(dim=1) * direction.norm()).all(), inner


@pytest.mark.parametrize("seed", range(5))
def test_pcgrad_two_tasks_order_invariant(seed, device):
    J = _conflicting_jacobian(2, 5, seed).to(device)
    losses = torch.ones(2, dtype=J.dtype, device=device)
    direction = methods.build("pcgrad")(J, losses)
    swapped = methods.build("pcgrad")(J.flip(0), losses)
    torch.testing.assert_close(swapped, direction, rtol=1e-12, atol=1e-12)


def _all_outcomes(J: torch.Tensor) -> list[np.ndarray]:
    """Return PCGrad's result for every combination of visiting orders, sorted for comparison."""
    T = J.shape[0]
    per_task = [list(itertools.permutations([j for j in range(T) if j != i])) for i in range(T)]
    outcomes = []
    for orders in itertools.product(*per_task):
        coefficients, _ = project_conflicts(J @ J.T, torch.tensor(orders))
        outcomes.append(np.round((coefficients.sum(0) @ J).numpy(), 10))
    return sorted(outcomes, key=lambda row: tuple(row))


def test_pcgrad_order_invariant_in_distribution():
    # With T = 3, each task has 2 orders, so 8 equally likely outcomes; renumbering the tasks must
    # give the same multiset of outcomes.
    J = torch.tensor([[1.0, -2.0, 0.5], [-1.0, 1.0, 1.0], [0.5, 1.0, -2.0]], dtype=torch.float64)
    permutation = torch.tensor([2, 0, 1])

    original = _all_outcomes(J)
    renumbered = _all_outcomes(J[permutation])

    np.testing.assert_allclose(np.array(renumbered), np.array(original), atol=1e-9)


@pytest.mark.parametrize("T", [2, 3, 5])
def test_task_orders_are_permutations_of_others(T, device):
    orders = random_task_orders(T, torch.Generator(device=device).manual_seed(1)).cpu()
    assert orders.shape == (T, T - 1)
    for i in range(T):
        assert sorted(orders[i].tolist()) == [j for j in range(T) if j != i]


def test_task_orders_uniform():
    # T = 4: each task has 3! = 6 orders; over 6000 draws each appears about 1000 times (std ≈ 29).
    generator = torch.Generator().manual_seed(2)
    counts: dict[tuple[int, ...], int] = {}
    for _ in range(6000):
        row = tuple(random_task_orders(4, generator)[0].tolist())
        counts[row] = counts.get(row, 0) + 1
    assert len(counts) == 6
    assert all(abs(count - 1000) < 150 for count in counts.values()), counts


def test_pcgrad_without_generator_follows_global_seed():
    J = _conflicting_jacobian(4, 6, 3)
    losses = torch.ones(4, dtype=J.dtype)

    torch.manual_seed(5)
    first = methods.build("pcgrad")(J, losses)
    torch.manual_seed(5)
    again = methods.build("pcgrad")(J, losses)

    torch.testing.assert_close(again, first, rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pcgrad_cpu_generator_cuda_jacobian():
    # A CPU generator with a CUDA J: a CUDA generator seeded from it draws, and its state is checkpointed.
    J = _conflicting_jacobian(4, 6, 4).cuda()
    losses = torch.ones(4, dtype=J.dtype, device=J.device)
    method = methods.build("pcgrad", generator=torch.Generator().manual_seed(3))
    method(J, losses)
    state = method.state_dict()
    expected = method(J, losses)

    restored = methods.build("pcgrad", generator=torch.Generator().manual_seed(3))
    restored.load_state_dict(state)

    torch.testing.assert_close(restored(J, losses), expected, rtol=0, atol=0)
    assert set(state["derived"]) == {"cuda:0"}
