"""Partition of a model's shared parameters into named layers (the unit of Recon's analysis).

A *layer* is a module under ``model.shared_root()`` with shared parameters of its
own (``parameters(recurse=False)``), such as the weight and bias of a convolution,
linear or BatchNorm module. Its name is the module path relative to the shared root,
as ``named_modules()`` gives it (ResNet-18: ``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.1``, ``fc``). The published layer permutations of Shi et al.,
"Recon: Reducing Conflicting Gradients from the Root for Multi-Task Learning"
(ICLR 2023, arXiv 2302.11289) use these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from recon.models.base import MultiTaskModel


@dataclass(frozen=True)
class Layer:
    """A shared layer and its column range ``[start, stop)`` in the Jacobian of the shared parameters.

    The Jacobian's columns follow ``model.shared_parameters()`` order, each parameter
    flattened, so a layer's columns are its parameters' entries in that order.
    """

    name: str
    start: int
    stop: int

    @property
    def params(self) -> int:
        """Number of parameters (Jacobian columns) of the layer."""
        return self.stop - self.start


def _parameter_columns(model: MultiTaskModel) -> tuple[dict[int, tuple[int, int]], dict[int, str]]:
    """Map each shared parameter (by id) to its column range and to its name in the model."""
    names = {id(p): name for name, p in model.named_parameters()}
    columns = {}
    offset = 0
    for param in model.shared_parameters():
        columns[id(param)] = (offset, offset + param.numel())
        offset += param.numel()
    return columns, names


def _layer_of_module(name: str, module: nn.Module, columns: dict[int, tuple[int, int]],
                     names: dict[int, str]) -> Layer | None:
    """Return the layer that ``module`` forms, or None when it has no shared parameter of its own."""
    own = list(module.parameters(recurse=False))
    shared = [p for p in own if id(p) in columns]
    if not shared:
        return None

    # A module whose weight is shared but whose bias belongs to a task cannot be one layer.
    if len(shared) != len(own):
        owned = [names[id(p)] for p in own if id(p) not in columns]
        raise ValueError(f"module '{name}' mixes shared and task-specific parameters ({', '.join(owned)} "
                         f"belong to a task); a layer's parameters must all be shared or all task-specific")
    if name == "":
        raise ValueError("the shared root module has parameters of its own "
                         f"({', '.join(names[id(p)] for p in own)}); layers must be submodules of the "
                         "shared root, so wrap those parameters in a module")

    # Weight and bias must be neighbours in the Jacobian for a layer to be one column range.
    ranges = sorted(columns[id(p)] for p in shared)
    for (_, previous_stop), (start, _) in zip(ranges, ranges[1:]):
        if start != previous_stop:
            raise ValueError(f"the parameters of layer '{name}' are not contiguous in "
                             "model.shared_parameters() order, so the layer has no single column range")
    return Layer(name, ranges[0][0], ranges[-1][1])


def shared_layers(model: MultiTaskModel) -> list[Layer]:
    """Partition the shared parameters into layers, in the model's module order.

    Every shared parameter belongs to exactly one layer. The partition depends only on
    the model (not on which parameters receive a gradient). Raises ValueError when a
    shared parameter lies outside ``model.shared_root()``, is held by two modules, or a
    layer's parameters are not contiguous in ``model.shared_parameters()`` order.
    """
    columns, names = _parameter_columns(model)

    # One layer per module with shared parameters of its own.
    layers = []
    claimed: dict[int, str] = {}
    for name, module in model.shared_root().named_modules():
        for param in module.parameters(recurse=False):
            if id(param) in claimed:
                raise ValueError(f"parameter {names[id(param)]} is held by both layer '{claimed[id(param)]}' "
                                 f"and layer '{name}'; tied parameters cannot be split into layers")
            if id(param) in columns:
                claimed[id(param)] = name
        layer = _layer_of_module(name, module, columns, names)
        if layer is not None:
            layers.append(layer)

    # Columns outside every layer would be silently left out of the analysis.
    missing = [names[key] for key in columns if key not in claimed]
    if missing:
        raise ValueError(f"shared parameters outside the shared root: {', '.join(missing)}; "
                         "shared_root() must return the module that contains every shared layer")
    return layers
