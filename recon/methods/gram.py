"""The Gram matrix J Jᵀ that the T × T solvers work on, and the final product with J."""

from __future__ import annotations

import torch

#: Entries of J processed per block on the CPU (1 MiB in float64), so that a block's temporaries stay
#: in cache. Measured on one CPU thread for a 2 × 11.2M float32 J: the Gram matrix took 15 ms in such
#: blocks and 95 ms when J was converted to float64 in 128 MiB blocks, mostly page faults.
CPU_BLOCK_ENTRIES = 2**17

#: Entries of J processed per block on other devices: few, large blocks keep the kernel count low.
DEVICE_BLOCK_ENTRIES = 2**24


def block_columns(J: torch.Tensor) -> int:
    """Return the number of J's columns that one block of a pass over J holds on J's device."""
    entries = CPU_BLOCK_ENTRIES if J.device.type == "cpu" else DEVICE_BLOCK_ENTRIES
    return max(1, entries // J.shape[0])


def gram_matrix(J: torch.Tensor) -> torch.Tensor:
    """Return J Jᵀ in float64 on J's device, divided by its largest diagonal entry.

    Each product of two float32, float16 or bfloat16 numbers is exact in
    float64, and squares of float32 entries (1e-45 to 3e38) stay far inside
    float64's range. So gradients around 1e10, or so small (1e-30) that their
    squared norm underflows float32, keep their full accuracy, and the
    accumulation over P columns loses no more than float64 rounding. Only a
    float64 ``J`` with entries beyond about 1e±150 would overflow or underflow.
    J is converted block by block into one reused float64 buffer.

    The division makes the largest squared task norm 1. Every solver here is
    invariant to a common scale of the gradients, and the fixed tolerances of the
    solvers are then relative. An all-zero ``J`` gives the zero matrix.
    """
    T, P = J.shape
    columns = min(block_columns(J), P)
    G = torch.zeros(T, T, dtype=torch.float64, device=J.device)
    buffer = None if J.dtype == torch.float64 else torch.empty(T, columns, dtype=torch.float64, device=J.device)

    for block in J.split(columns, dim=1):
        if buffer is not None:
            block = buffer[:, : block.shape[1]].copy_(block)
        G.addmm_(block, block.T)

    largest = G.diagonal().amax()
    return G / torch.where(largest > 0, largest, torch.ones_like(largest))


def combine(weights: torch.Tensor, J: torch.Tensor) -> torch.Tensor:
    """Return ``weights @ J`` (P,) in J's dtype: the one product with J that a method makes.

    float16 and bfloat16 Jacobians are combined in float32 so that the weights
    are not rounded to a 3-digit mantissa before the product.
    """
    if J.dtype in (torch.float32, torch.float64):
        return weights.to(J.dtype) @ J
    return (weights.to(torch.float32) @ J.to(torch.float32)).to(J.dtype)
