"""The Gram matrix behind MGDA, CAGrad and PCGrad: float64 accuracy whatever J's dtype and scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import recon.methods.gram as gram
from recon.methods.gram import combine, gram_matrix


def _exact_normalised_gram(J: torch.Tensor) -> np.ndarray:
    # The float32 entries are exact in float64, so NumPy's float64 product is the reference.
    values = J.double().cpu().numpy()
    G = values @ values.T
    return G / np.diag(G).max()


@pytest.mark.parametrize("scale", [1e-30, 1.0, 1e10, 1e30])
def test_gram_float32_scales(scale, device):
    # At 1e-30 the squared norms underflow float32; at 1e30 they overflow it. Neither may show.
    generator = torch.Generator().manual_seed(0)
    J = (torch.randn(3, 1000, generator=generator) * scale).to(device)

    G = gram_matrix(J)

    assert G.dtype == torch.float64
    np.testing.assert_allclose(G.cpu().numpy(), _exact_normalised_gram(J), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gram_half_precision_upcast(dtype, device):
    J = torch.randn(4, 3000, generator=torch.Generator().manual_seed(1)).to(dtype).to(device)
    np.testing.assert_allclose(gram_matrix(J).cpu().numpy(), _exact_normalised_gram(J), rtol=1e-12, atol=1e-15)


def test_gram_chunks_agree(monkeypatch):
    J = torch.randn(3, 1001, generator=torch.Generator().manual_seed(2))
    whole = gram_matrix(J)
    monkeypatch.setattr(gram, "CPU_BLOCK_ENTRIES", 200)
    monkeypatch.setattr(gram, "DEVICE_BLOCK_ENTRIES", 200)
    torch.testing.assert_close(gram_matrix(J), whole, rtol=1e-14, atol=1e-15)


def test_gram_all_zero():
    assert torch.equal(gram_matrix(torch.zeros(3, 5)), torch.zeros(3, 3, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_combine_returns_j_dtype(dtype):
    J = torch.tensor([[1.0, 2.0], [3.0, -4.0]]).to(dtype)
    direction = combine(torch.tensor([0.5, 0.25], dtype=torch.float64), J)
    assert direction.dtype == dtype
    torch.testing.assert_close(direction.double(), torch.tensor([1.25, 0.0], dtype=torch.float64))
