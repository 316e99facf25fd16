"""Splits of a dataset and how the trainer iterates over them."""

from __future__ import annotations

from collections.abc import Iterator

import torch

Batch = tuple[torch.Tensor, dict[str, torch.Tensor]]


class Split:
    """One split of a dataset (train or test), iterated in batches of (input, {task: target})."""

    def __len__(self) -> int:
        raise NotImplementedError

    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu", drop_last: bool = False) -> Iterator[Batch]:
        raise NotImplementedError

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        n = len(self)
        return n // batch_size if drop_last else -(-n // batch_size)


class TensorSplit(Split):
    """A split held as tensors: images N×C×H×W and one target tensor per task.

    Batches are gathered by index from the tensors, which is much faster than a
    DataLoader for small images. ``to(device)`` moves the whole split once, so a
    GPU run reads its batches without host-to-device copies.
    """

    def __init__(self, images: torch.Tensor, targets: dict[str, torch.Tensor]) -> None:
        for task, target in targets.items():
            if target.shape[0] != images.shape[0]:
                raise ValueError(f"task '{task}' has {target.shape[0]} targets for {images.shape[0]} images")
        self.images = images
        self.targets = targets

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> "TensorSplit":
        return TensorSplit(self.images.to(device), {t: y.to(device) for t, y in self.targets.items()})

    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu", drop_last: bool = False) -> Iterator[Batch]:
        n = len(self)
        # The order is drawn on the CPU so that it depends only on the generator's seed.
        order = torch.randperm(n, generator=generator) if shuffle else None
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            if order is None:
                index = slice(start, start + batch_size)
            else:
                index = order[start:start + batch_size].to(self.images.device)
            images = self.images[index].to(device, non_blocking=True)
            targets = {t: y[index].to(device, non_blocking=True) for t, y in self.targets.items()}
            yield images, targets
