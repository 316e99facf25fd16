"""Settings shared by every test: wandb off, no downloads, the slow marker, a seed fixture."""

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


@pytest.fixture(autouse=True)
def no_dataset_download(monkeypatch):
    """Keep every test off the network: torchvision's dataset download fails at once, as offline."""
    from recon.data import multi_digit

    monkeypatch.setattr(multi_digit, "_download_with_torchvision",
                        lambda source, root: "downloads are disabled in the tests")
