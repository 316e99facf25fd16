"""GradDrop: keep, per coordinate, only the task gradients of one randomly chosen sign."""

from __future__ import annotations

from typing import Any

import torch

from recon.methods.base import Method
from recon.methods.gram import block_columns
from recon.methods.randomness import MethodGenerators


class GradDrop(Method):
    """Gradient sign dropout on the shared parameters' gradients.

    Chen, Ngiam, Huang, Luong, Kretzschmar, Chai and Anguelov, "Just Pick a
    Sign: Optimizing Deep Multitask Models with Gradient Sign Dropout",
    NeurIPS 2020, arXiv 2010.06808, Algorithm 1, in the variant that the
    CAGrad and Recon code compare against. Per coordinate of the shared
    parameters:

        P = ½ (1 + Σ_t g_t / Σ_t |g_t|)        (sign purity)
        U ~ Uniform[0, 1), one draw per coordinate per step
        keep the positive entries where P > U, the negative ones where P ≤ U

    and the direction is the sum of the kept entries. That sum is T times the
    authors' code's mean of the kept entries, the same summed-loss scale that
    joint training has. A coordinate where every g_t is 0 has nothing to keep.
    Its purity (0 / 0 in the formula) is taken as ½, and its result is 0.

    Differences from the paper's algorithm: the paper applies the mask to the
    gradients of the activations at the layer where the task heads split, and
    mixes in a leak term (ℓ_i) for each task. Here the mask applies to the
    gradients of the shared parameters themselves, without leak.

    The thresholds are drawn on J's device (see ``MethodGenerators``).
    ``diagnostics["dropped_fraction"]`` stores the fraction of coordinates where
    at least one non-zero entry was dropped.
    """

    def __init__(self, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.generators = MethodGenerators(generator)
        self._thresholds: torch.Tensor | None = None

    def direction(self, J: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        thresholds = self._threshold_buffer(J)
        torch.rand(J.shape[1], generator=self.generators.on(J.device), out=thresholds)

        direction, dropped_fraction = sign_dropout(J, thresholds)
        self.diagnostics = {"dropped_fraction": dropped_fraction}
        return direction

    def _threshold_buffer(self, J: torch.Tensor) -> torch.Tensor:
        """Return a (P,) buffer for U, kept between calls: a fresh one costs page faults on the CPU."""
        dtype = _accumulation_dtype(J)
        buffer = self._thresholds
        if buffer is None or buffer.shape[0] != J.shape[1] or buffer.dtype != dtype or buffer.device != J.device:
            buffer = self._thresholds = torch.empty(J.shape[1], dtype=dtype, device=J.device)
        return buffer

    def state_dict(self) -> dict[str, Any]:
        return self.generators.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generators.load_state_dict(state)


def sign_dropout(J: torch.Tensor, thresholds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return GradDrop's direction (P,) for given thresholds U (P,), and the fraction of coordinates with a drop.

    With S⁺ and S⁻ the sums of the positive and of the negative entries of a
    column, Σ|g_t| = S⁺ - S⁻ and the purity simplifies to P = S⁺ / (S⁺ - S⁻).
    So P > U is evaluated as S⁺ > U (S⁺ - S⁻), without a division. An all-zero
    column gives 0 > 0, which is false, so it keeps its negative sum, 0. The
    kept sum is S⁺ or S⁻, each summed over entries of one sign, so a small sum
    is not lost in cancellation. Sums run in float32 for float16 and bfloat16 ``J``.

    The columns are processed in blocks of ``block_columns(J)``, so that on the
    CPU every temporary stays in cache.
    """
    dtype = _accumulation_dtype(J)
    direction = torch.empty(J.shape[1], dtype=J.dtype, device=J.device)
    dropped = torch.zeros((), dtype=dtype, device=J.device)

    columns = block_columns(J)
    for start in range(0, J.shape[1], columns):
        block = slice(start, start + columns)
        kept, dropped_here = _sign_dropout_block(J[:, block].to(dtype), thresholds[block].to(dtype))
        direction[block] = kept
        dropped += dropped_here
    return direction, dropped / J.shape[1]


def _sign_dropout_block(J: torch.Tensor, thresholds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the kept sums of a block of columns and the number of its columns with a drop."""
    positive = J.clamp(min=0).sum(dim=0)
    negative = J.clamp(max=0).sum(dim=0)

    # P > U  ⇔  S⁺ - U (S⁺ - S⁻) > 0, as a float 1 or 0 (the sign cut at 0). On the CPU, torch.where and
    # bool tensors ran several times slower than these float operations.
    keep_positive = torch.sign(positive - thresholds * (positive - negative)).clamp_(min=0)

    # lerp returns its end points exactly at weights 0 and 1. The side not kept is non-zero exactly where
    # some entry was dropped, and |sign| counts those columns (faster than count_nonzero on the CPU).
    kept = torch.lerp(negative, positive, keep_positive)
    dropped = torch.lerp(positive, negative, keep_positive).sign_().abs_().sum()
    return kept, dropped


def _accumulation_dtype(J: torch.Tensor) -> torch.dtype:
    return torch.float64 if J.dtype == torch.float64 else torch.float32
