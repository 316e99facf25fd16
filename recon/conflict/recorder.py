"""Per-step record of layer-wise cosine similarities between task gradients (Recon's search run).

Shi et al., "Recon: Reducing Conflicting Gradients from the Root for Multi-Task
Learning", ICLR 2023, arXiv 2302.11289, Section 4: at every training step of a base
method, the cosine similarity of every pair of task gradients is computed on each
shared layer's parameters. The S-conflict scores (``recon.conflict.scores``) count
the pairs below a threshold S.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from recon.conflict.layers import Layer, shared_layers

if TYPE_CHECKING:
    from recon.models.base import MultiTaskModel

#: Path of a search run's cosines file, relative to the run directory.
COSINES_FILE = Path("conflict") / "cosines.pt"


class _LayerGram:
    """Computes every layer's Gram matrix ``J_l J_lᵀ`` (T × T) from the Jacobian in a fixed set of kernels.

    The columns are cut into chunks of ``chunk_size``. One batched matrix product
    reads J once and gives each chunk's Gram matrix. The Gram matrices of chunks that
    lie inside one layer are summed into that layer in float64. The few columns
    of chunks that cross a layer boundary (and of the last, partial chunk) are
    gathered and added column by column. No Python loop over layers runs per step,
    and nothing is transferred to the host.
    """

    def __init__(self, layers: Sequence[Layer], num_tasks: int, device: torch.device, chunk_size: int) -> None:
        self.num_layers = len(layers)
        self.num_tasks = num_tasks
        self.columns = max((layer.stop for layer in layers), default=0)
        self.chunk_size = chunk_size
        self.num_chunks = self.columns // chunk_size

        # Layer index of every column; -1 marks columns outside every layer.
        column_layer = np.full(self.columns, -1, dtype=np.int64)
        for index, layer in enumerate(layers):
            if (column_layer[layer.start:layer.stop] != -1).any():
                raise ValueError(f"layer '{layer.name}' overlaps another layer's columns")
            column_layer[layer.start:layer.stop] = index

        # A chunk is summed as a whole when all its columns belong to one layer.
        chunked = column_layer[: self.num_chunks * chunk_size].reshape(self.num_chunks, chunk_size)
        whole = (chunked == chunked[:, :1]).all(axis=1) & (chunked[:, 0] >= 0)
        # Chunks that are not whole go to the extra row num_layers, which is dropped.
        chunk_layer = np.where(whole, chunked[:, 0], self.num_layers)

        # The remaining columns: those of split chunks and of the partial last chunk.
        in_split_chunk = np.repeat(~whole, chunk_size)
        remaining = np.concatenate([in_split_chunk, np.ones(self.columns - self.num_chunks * chunk_size, bool)])
        remaining &= column_layer >= 0
        remaining_columns = np.flatnonzero(remaining)

        self.chunk_layer = torch.from_numpy(chunk_layer).to(device)
        self.remaining_columns = torch.from_numpy(remaining_columns).to(device)
        self.remaining_layer = torch.from_numpy(column_layer[remaining_columns]).to(device)
        # float64 accumulation across chunks; MPS has no float64.
        self.dtype = torch.float32 if torch.device(device).type == "mps" else torch.float64

    def __call__(self, J: torch.Tensor) -> torch.Tensor:
        """Return the layers' Gram matrices, shape (layers, T, T), in float64."""
        T = self.num_tasks
        gram = torch.zeros(self.num_layers + 1, T, T, dtype=self.dtype, device=J.device)

        # Whole chunks: one batched product, chunks × T × T.
        if self.num_chunks:
            chunks = J[:, : self.num_chunks * self.chunk_size].reshape(T, self.num_chunks, self.chunk_size)
            chunks = chunks.transpose(0, 1)
            chunk_gram = torch.bmm(chunks, chunks.transpose(1, 2))
            gram.index_add_(0, self.chunk_layer, chunk_gram.to(self.dtype))

        # Remaining columns, each one's outer product added to its layer.
        if self.remaining_columns.numel():
            columns = J.index_select(1, self.remaining_columns).to(self.dtype)  # T × R
            outer = columns.unsqueeze(0) * columns.unsqueeze(1)  # T × T × R
            gram.index_add_(0, self.remaining_layer, outer.permute(2, 0, 1))
        return gram[: self.num_layers]


def cosines_from_gram(gram: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Return the cosine of each task pair on each layer, shape (layers, pairs), from Gram matrices.

    ``pairs`` is a (pairs, 2) tensor of task indices. A pair in which either gradient is
    exactly zero on the layer gets cosine 0, because a zero vector has no direction.
    Since 0 is not below any threshold S in (−1, 0], such a pair never counts as a
    conflict.
    """
    norms = gram.diagonal(dim1=1, dim2=2).clamp_min(0).sqrt()  # layers × T
    dots = gram[:, pairs[:, 0], pairs[:, 1]]
    denominator = norms[:, pairs[:, 0]] * norms[:, pairs[:, 1]]

    # Guarded division: the zero-norm branch never divides by zero.
    defined = denominator > 0
    cos = dots / torch.where(defined, denominator, torch.ones_like(denominator))
    return torch.where(defined, cos, torch.zeros_like(cos)).clamp(-1.0, 1.0)


class ConflictRecorder:
    """Records, at every training step, the cosine of each task-gradient pair on each shared layer.

    The buffer (capacity × layers × pairs, float32) is allocated once on ``device``
    and filled without host transfers; ``save`` moves it to the host once. The
    trainer calls ``record(J, step)`` with the step's Jacobian before the method is
    applied. J's columns must follow ``model.shared_parameters()`` order, each
    parameter flattened, as ``shared_layers`` assumes.

    Memory per step: the batched product reads J once, plus a few small tensors
    (chunks × T × T and the columns of chunks that cross a layer boundary).
    """

    def __init__(self, layers: Sequence[Layer], tasks: Sequence[str], capacity: int,
                 device: torch.device | str = "cpu", chunk_size: int = 1024) -> None:
        if len(tasks) < 2:
            raise ValueError(f"recording gradient conflicts needs at least two tasks; found tasks {list(tasks)}")
        if capacity < 1:
            raise ValueError(f"capacity must be the number of training steps to record (≥ 1); found {capacity}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive number of columns; found {chunk_size}")

        self.layers = list(layers)
        self.tasks = list(tasks)
        self.pairs = list(itertools.combinations(self.tasks, 2))
        self.capacity = capacity
        self.device = torch.device(device)
        self.gram = _LayerGram(self.layers, len(self.tasks), self.device, chunk_size)
        self._pair_index = torch.tensor(list(itertools.combinations(range(len(self.tasks)), 2)),
                                        device=self.device)
        self._cos = torch.zeros(capacity, len(self.layers), len(self.pairs), device=self.device)
        self._steps: list[int] = []

    @classmethod
    def for_model(cls, model: MultiTaskModel, capacity: int, device: torch.device | str = "cpu",
                  chunk_size: int = 1024) -> ConflictRecorder:
        """Build a recorder for the shared layers and tasks of ``model``."""
        return cls(shared_layers(model), model.tasks, capacity, device, chunk_size)

    @property
    def count(self) -> int:
        """Number of steps recorded so far."""
        return len(self._steps)

    def record(self, J: torch.Tensor, step: int) -> None:
        """Record the per-layer cosines of the task-gradient pairs of one step's Jacobian J (T × P)."""
        expected = (len(self.tasks), self.gram.columns)
        if tuple(J.shape) != expected:
            raise ValueError(f"J must have shape {expected} (tasks × shared parameters); found {tuple(J.shape)}")
        if self.count >= self.capacity:
            raise ValueError(f"the recorder is full: its capacity is {self.capacity} steps; build it with the "
                             "run's total number of training steps as capacity")

        # Half-precision Jacobians are accumulated in float32 at least.
        J = J.detach()
        if J.dtype not in (torch.float32, torch.float64):
            J = J.float()

        self._cos[self.count] = cosines_from_gram(self.gram(J), self._pair_index)
        self._steps.append(int(step))

    def cosines(self) -> torch.Tensor:
        """Return the recorded cosines, shape (steps recorded, layers, pairs), on the recorder's device."""
        return self._cos[: self.count]

    def state_dict(self) -> dict[str, Any]:
        """Return the cosines recorded so far (on the host) and their labels, for a checkpoint."""
        return {
            "cos": self.cosines().cpu(),
            "steps": list(self._steps),
            "layers": [layer.name for layer in self.layers],
            "pairs": [list(pair) for pair in self.pairs],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned; the layers and pairs must match this recorder's."""
        layers = [layer.name for layer in self.layers]
        if list(state["layers"]) != layers:
            raise ValueError("the checkpoint's recorded layers differ from the model's shared layers; "
                             "resume with the same model and branched layers as the checkpointed run")
        if [tuple(pair) for pair in state["pairs"]] != self.pairs:
            raise ValueError(f"the checkpoint's task pairs {state['pairs']} differ from this run's {self.pairs}")
        count = len(state["steps"])
        if count > self.capacity:
            raise ValueError(f"the checkpoint contains {count} recorded steps, more than the capacity {self.capacity}")

        self._cos[:count] = state["cos"].to(self._cos)
        self._steps = [int(step) for step in state["steps"]]

    def save(self, run_dir: str | Path, settings: dict[str, Any]) -> Path:
        """Write the recorded cosines to ``run_dir/conflict/cosines.pt`` and return that path.

        The file contains a dict: ``cos`` (float32 tensor, steps × layers × pairs),
        ``layers`` (names), ``pairs`` (task-name pairs), ``params`` (parameters per
        layer), ``steps`` (training step of each row) and ``settings`` (what the caller
        passes: method, config excerpt; it must be JSON-serialisable so that the file
        loads with ``torch.load(weights_only=True)``). The write is atomic.
        """
        try:
            json.dumps(settings)
        except TypeError as error:
            raise ValueError(f"settings must be JSON-serialisable (numbers, strings, lists, dicts): {error}") from None

        data = {
            "cos": self.cosines().cpu().float(),
            "layers": [layer.name for layer in self.layers],
            "pairs": [tuple(pair) for pair in self.pairs],
            "params": [layer.params for layer in self.layers],
            "steps": torch.tensor(self._steps, dtype=torch.int64),
            "settings": dict(settings),
        }
        path = Path(run_dir) / COSINES_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        torch.save(data, partial)
        os.replace(partial, path)
        return path
