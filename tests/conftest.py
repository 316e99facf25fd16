"""Settings shared by every test: wandb off, the slow marker, a seed fixture."""

import os

os.environ.setdefault("WANDB_MODE", "disabled")

import pytest  # noqa: E402
import torch  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than about 20 seconds; left out of the default suite")


@pytest.fixture
def seed() -> int:
    torch.manual_seed(0)
    return 0
