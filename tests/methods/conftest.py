"""Fixtures of the method tests: the device to test on and a seeded generator there.

Set RECON_TEST_DEVICE (for example ``cuda``) to run them on another device; the
default is the CPU.
"""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture
def device() -> torch.device:
    return torch.device(os.environ.get("RECON_TEST_DEVICE", "cpu"))


@pytest.fixture
def generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)
