"""Random draws of the random methods: on J's device, from the method's generator, checkpointable."""

from __future__ import annotations

from typing import Any

import torch


class MethodGenerators:
    """The generator a random method was built with, and the ones derived from it for other devices.

    A method draws on J's device so that nothing moves between host and device
    and no draw waits for the device. Draws made on the CPU and copied to a GPU
    would avoid a synchronisation only when copied from pinned memory, and
    GradDrop's one threshold per parameter would be slow to draw on the CPU
    and copy at every step.

    When J lives on the generator's device, the generator itself is used.
    Otherwise a generator for J's device is created once, seeded with the
    given generator's initial seed (a host value, so no synchronisation), and
    kept. Draws are then reproducible from the seed but differ from those the
    given generator would make on its own device.

    Without a generator, one is created on the CPU and seeded from torch's
    global generator, so ``torch.manual_seed`` makes a run reproducible.
    """

    def __init__(self, generator: torch.Generator | None) -> None:
        if generator is None:
            seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
            generator = torch.Generator().manual_seed(seed)
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator or None; found {type(generator).__name__}")
        self.base = generator
        self.derived: dict[str, torch.Generator] = {}
        self._pending: dict[str, torch.Tensor] = {}

    def on(self, device: torch.device) -> torch.Generator:
        """Return the generator that draws on ``device``."""
        if _same_device(self.base.device, device):
            return self.base
        key = _device_key(device)
        if key not in self.derived:
            generator = torch.Generator(device=device).manual_seed(self.base.initial_seed())
            if key in self._pending:
                generator.set_state(self._pending.pop(key))
            self.derived[key] = generator
        return self.derived[key]

    def state_dict(self) -> dict[str, Any]:
        """Return the states of the given generator and of every derived one (CPU byte tensors)."""
        derived = {key: generator.get_state() for key, generator in self.derived.items()}
        derived.update(self._pending)
        return {"generator": self.base.get_state(), "derived": derived}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned; derived generators are restored when first used."""
        self.base.set_state(state["generator"])
        self.derived.clear()
        self._pending = dict(state.get("derived", {}))


def _device_key(device: torch.device) -> str:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return str(device)


def _same_device(a: torch.device, b: torch.device) -> bool:
    return _device_key(a) == _device_key(b)
