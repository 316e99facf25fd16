"""Random generator states as checkpoint-safe values, and back.

A checkpoint is loaded with ``torch.load(..., weights_only=True)``, which
accepts only tensors and plain containers of numbers and strings. Python's
``random`` state is a tuple of 625 integers and NumPy's legacy state contains
a uint32 array, so both are stored as int64 tensors (every value is below 2**32).
"""

from __future__ import annotations

import random

import numpy as np
import torch


def capture_random_state() -> dict:
    """Return the state of Python's, NumPy's and torch's global generators (CUDA included)."""
    version, internal, gauss_next = random.getstate()
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    state = {
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "torch": torch.get_rng_state(),
        # Reading the CUDA states would initialise CUDA, which a run on the CPU has not done.
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }
    return state


def restore_random_state(state: dict) -> None:
    """Set the global generators to what ``capture_random_state`` returned.

    The CUDA states are restored only when this machine has as many CUDA
    devices as the one that captured them. They are captured only once CUDA is
    initialised, and the trainer rejects a resume on another device type.
    """
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"].tolist()), python["gauss_next"]))

    numpy = state["numpy"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state((numpy["name"], keys, numpy["position"], numpy["has_gauss"], numpy["cached_gaussian"]))

    torch.set_rng_state(state["torch"])
    cuda = state["cuda"]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
