"""Properties every registered method must have; a newly registered method is covered without new code."""

from __future__ import annotations

import pytest
import torch

from recon import methods
from recon.methods import REGISTRY

METHODS = sorted(REGISTRY)
DETERMINISTIC = [name for name in METHODS if not REGISTRY[name].random]
RANDOM = [name for name in METHODS if REGISTRY[name].random]


def build(name: str, device: torch.device, seed: int = 0) -> methods.Method:
    return methods.build(name, generator=torch.Generator(device=device).manual_seed(seed))


def sample_jacobian(T: int, P: int, rank: int, scale: float, seed: int, dtype=torch.float64) -> torch.Tensor:
    """Return a T × P Jacobian of the given rank whose rows have norms spread over two decades, times ``scale``."""
    g = torch.Generator().manual_seed(seed)
    factors = torch.randn(T, rank, generator=g, dtype=torch.float64)
    basis = torch.randn(rank, P, generator=g, dtype=torch.float64)
    row_scales = 10 ** torch.linspace(-1, 1, T, dtype=torch.float64)
    return (scale * row_scales.unsqueeze(1) * (factors @ basis)).to(dtype)


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_direction_shape_dtype_device(name, dtype, device):
    J = sample_jacobian(3, 7, 3, 1.0, seed=1, dtype=dtype).to(device)
    losses = torch.ones(3, dtype=dtype, device=device)

    direction = build(name, device)(J, losses)

    assert direction.shape == (7,)
    assert direction.dtype == dtype
    assert direction.device == J.device


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("T", [2, 3, 5])
@pytest.mark.parametrize("rank", [1, 2, 5])
@pytest.mark.parametrize("scale", [1e-15, 1.0, 1e15])
def test_direction_finite_over_ranks_and_scales(name, T, rank, scale, device):
    J = sample_jacobian(T, 9, min(rank, T), scale, seed=T * 10 + rank).to(device)
    direction = build(name, device)(J, torch.ones(T, dtype=J.dtype, device=device))
    assert torch.isfinite(direction).all()


@pytest.mark.parametrize("T", [1, 2, 5])
def test_joint_is_row_sum(T, device):
    J = sample_jacobian(T, 9, T, 1.0, seed=T).to(device)
    direction = build("joint", device)(J, torch.ones(T, dtype=J.dtype, device=device))
    torch.testing.assert_close(direction, J.sum(0), rtol=0, atol=0)


@pytest.mark.parametrize("name", METHODS)
def test_diagnostics_stay_on_device(name, device):
    J = sample_jacobian(3, 6, 3, 1.0, seed=2).to(device)
    method = build(name, device)
    method(J, torch.ones(3, dtype=J.dtype, device=device))

    for key, value in method.diagnostics.items():
        assert isinstance(value, torch.Tensor), key
        assert value.device == J.device, key


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_task_order_invariance(name, device):
    J = sample_jacobian(4, 6, 4, 1.0, seed=3).to(device)
    losses = torch.ones(4, dtype=J.dtype, device=device)
    permutation = torch.tensor([2, 0, 3, 1], device=device)

    direction = build(name, device)(J, losses)
    permuted = build(name, device)(J[permutation], losses)

    torch.testing.assert_close(permuted, direction, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", RANDOM)
def test_random_task_order_invariance_in_mean(name, device):
    # The mean over many seeds estimates the expected direction, which must not depend on the task order.
    J = torch.tensor([[1.0, -2.0, 0.5, 1.0], [-1.0, 1.0, 1.0, 0.0], [0.5, 1.0, -2.0, 1.0]],
                     dtype=torch.float64, device=device)
    losses = torch.ones(3, dtype=J.dtype, device=device)
    permutation = torch.tensor([2, 0, 1], device=device)
    draws = 400

    original = torch.stack([build(name, device, seed)(J, losses) for seed in range(draws)])
    permuted = torch.stack([build(name, device, draws + seed)(J[permutation], losses) for seed in range(draws)])

    spread = (original.std(0) + permuted.std(0)) / draws**0.5
    difference = (original.mean(0) - permuted.mean(0)).abs()
    assert (difference <= 5 * spread + 1e-12).all(), (difference, spread)


@pytest.mark.parametrize("name", METHODS)
def test_direction_positively_homogeneous(name, device):
    # Scaling every gradient by s > 0 scales the direction by s (same random draws).
    J = sample_jacobian(3, 8, 3, 1.0, seed=4).to(device)
    losses = torch.ones(3, dtype=J.dtype, device=device)

    direction = build(name, device, seed=5)(J, losses)
    scaled = build(name, device, seed=5)(J * 1e3, losses)

    torch.testing.assert_close(scaled, direction * 1e3, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", RANDOM)
def test_random_method_state_round_trip(name, device):
    J = sample_jacobian(3, 50, 3, 1.0, seed=6).to(device)
    losses = torch.ones(3, dtype=J.dtype, device=device)
    method = build(name, device, seed=7)
    method(J, losses)
    state = method.state_dict()

    expected = method(J, losses)
    restored = build(name, device, seed=99)
    restored.load_state_dict(state)

    torch.testing.assert_close(restored(J, losses), expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", RANDOM)
def test_random_method_generator_fixes_draws(name, device):
    J = sample_jacobian(4, 50, 4, 1.0, seed=8).to(device)
    losses = torch.ones(4, dtype=J.dtype, device=device)

    first = build(name, device, seed=11)(J, losses)
    again = build(name, device, seed=11)(J, losses)
    other = [build(name, device, seed=12 + k)(J, losses) for k in range(5)]

    torch.testing.assert_close(again, first, rtol=0, atol=0)
    assert any(not torch.equal(direction, first) for direction in other)


@pytest.mark.parametrize("name", METHODS)
def test_shape_errors_name_the_shapes(name, device):
    method = build(name, device)
    J = torch.ones(2, 5, device=device)

    with pytest.raises(ValueError, match=r"losses must have shape \(2,\).*found \(3,\)"):
        method(J, torch.ones(3, device=device))
    with pytest.raises(ValueError, match=r"J must be a matrix.*found shape \(5,\)"):
        method(torch.ones(5, device=device), torch.ones(5, device=device))
    with pytest.raises(ValueError, match="floating dtype; found torch.int64"):
        method(torch.ones(2, 5, dtype=torch.int64, device=device), torch.ones(2, device=device))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("T", [2, 3, 12])
def test_no_host_synchronisation_on_cuda(name, T):
    # With the finite check deferred, a call must not wait for the device: any synchronisation raises.
    device = torch.device("cuda")
    J = sample_jacobian(T, 1000, T, 1.0, seed=9, dtype=torch.float32).to(device)
    losses = torch.ones(T, device=device)
    method = build(name, device)
    method.check_finite = False
    method(J, losses)  # the first call fills caches (support masks) outside the checked region

    torch.cuda.set_sync_debug_mode("error")
    try:
        method(J, losses)
    finally:
        torch.cuda.set_sync_debug_mode("default")
