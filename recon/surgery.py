"""Generic model surgery: turn shared layers into task-specific copies, by layer name (Recon, step 3).

Shi et al., "Recon: Reducing Conflicting Gradients from the Root for Multi-Task
Learning", ICLR 2023, arXiv 2302.11289, Section 4: the top-K layers of the layer
permutation become task-specific, one copy per task, and the modified network is
trained from scratch.

Surgery replaces the module at a layer's path with a ``BranchedLayer`` that contains
one deep copy per task, so no layer class needs a branchable variant. Downstream of
a branched layer, each task's data must then flow through its own path, so a branched
model runs one forward pass per task (see ``forward_per_task``).
"""

from __future__ import annotations

import copy
import difflib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from recon.conflict.layers import Layer, shared_layers
from recon.conflict.scores import read_permutation

if TYPE_CHECKING:
    from recon.models.base import MultiTaskModel

logger = logging.getLogger(__name__)

#: Values of ``model.branch.init``.
INIT_MODES = ("copy", "independent")


class BranchedLayer(nn.Module):
    """One copy of a layer per task; ``active`` selects the copy that ``forward`` runs."""

    def __init__(self, copies: dict[str, nn.Module]) -> None:
        super().__init__()
        self.copies = nn.ModuleDict(copies)
        self.active: str | None = None

    def forward(self, *args, **kwargs):
        if self.active is None:
            raise RuntimeError(
                "BranchedLayer called with no active task; run the model through its "
                "forward so that each task's pass selects its own copy"
            )
        return self.copies[self.active](*args, **kwargs)


def branched_copies(model: nn.Module) -> dict[str, list[nn.Module]]:
    """Return, per task, the copies of branched layers that the model holds."""
    copies: dict[str, list[nn.Module]] = {}
    for module in model.modules():
        if isinstance(module, BranchedLayer):
            for task, copy_ in module.copies.items():
                copies.setdefault(task, []).append(copy_)
    return copies


@dataclass
class Branching:
    """Branching state of a model: the module paths, relative to the model, that its forward uses.

    ``upstream_norms`` lists the shared normalisation layers (BatchNorm and others with
    running statistics) whose input is the same in every task's pass. A probe finds
    them at the first training-mode forward, and the field is None until then.

    The modules at these paths are looked up once, at the first forward: looking up
    25 ResNet-18 paths at every call took about 0.3 ms on CPU. A module replaced after
    that (for example by ``SyncBatchNorm.convert_sync_batchnorm``) is not seen, so
    convert before the first forward.
    """

    layers: list[str] = field(default_factory=list)
    upstream_norms: list[str] | None = None
    branched_modules: list[BranchedLayer] | None = field(default=None, repr=False, compare=False)
    upstream_modules: list[nn.Module] | None = field(default=None, repr=False, compare=False)


# Selecting the layers to branch ------------------------------------------------------------------


def _close_names(name: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _check_layer_name(model: MultiTaskModel, name: Any, layers: dict[str, Layer], source: str) -> None:
    """Raise ValueError unless ``name`` is a shared layer of ``model``, saying what it is instead."""
    if not isinstance(name, str):
        raise ValueError(f"{source}: layer names must be strings; found {name!r}")
    if name in layers:
        return

    modules = dict(model.shared_root().named_modules())
    if name not in modules:
        raise ValueError(f"{source}: unknown layer '{name}'{_close_names(name, list(layers))} "
                         f"(the model's shared layers: {', '.join(layers)})")
    if not list(modules[name].parameters(recurse=False)):
        raise ValueError(f"{source}: module '{name}' has no parameters of its own, so it is not a layer "
                         f"(a layer is a module with its own parameters){_close_names(name, list(layers))}")
    raise ValueError(f"{source}: layer '{name}' is not shared: its parameters already belong to one task "
                     "(a task's own module or a branched copy)")


def _layers_within_budget(names: list[str], layers: dict[str, Layer], num_tasks: int, max_params: int) -> list[str]:
    """Return the leading names whose added parameters, (T − 1) × the layer's, stay within ``max_params``."""
    chosen = []
    added = 0
    for name in names:
        cost = (num_tasks - 1) * layers[name].params
        if added + cost > max_params:
            break
        chosen.append(name)
        added += cost
    return chosen


def _check_count(key: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"{key} must be a non-negative integer; found {value!r}")


def select_layers(model: MultiTaskModel, branch: dict[str, Any]) -> list[str]:
    """Return the layers that the ``model.branch`` config section selects, in selection order.

    Either ``layers`` (an explicit list) or ``file`` (a layer permutation) with
    ``top_k`` (the first K layers) and/or ``max_params`` (the leading layers whose
    added parameters stay within the budget). Neither set: no layer.
    """
    file, top_k = branch.get("file"), branch.get("top_k")
    names, max_params = branch.get("layers"), branch.get("max_params")
    layers = {layer.name: layer for layer in shared_layers(model)}
    _check_count("model.branch.top_k", top_k)
    _check_count("model.branch.max_params", max_params)

    # 1. An explicit list.
    if names is not None:
        if file is not None:
            raise ValueError("model.branch.layers and model.branch.file are both set; set one: an explicit "
                             "list of layers, or a permutation file with top_k or max_params (to replace a "
                             "config's file by a list, add model.branch.file=null model.branch.top_k=null)")
        if top_k is not None or max_params is not None:
            raise ValueError("model.branch.top_k and model.branch.max_params select from model.branch.file; "
                             "with model.branch.layers, list exactly the layers to branch (a config that sets "
                             "top_k needs model.branch.top_k=null beside model.branch.layers=[...])")
        if not isinstance(names, list):
            raise ValueError(f"model.branch.layers must be a list of layer names; found {names!r}")
        for name in names:
            _check_layer_name(model, name, layers, "model.branch.layers")
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"model.branch.layers lists {', '.join(duplicates)} more than once")
        return list(names)

    # 2. Nothing to branch.
    if file is None:
        if top_k is not None or max_params is not None:
            raise ValueError("model.branch.top_k and model.branch.max_params need model.branch.file "
                             "(a layer permutation JSON)")
        return []

    # 3. The leading layers of a permutation file.
    permutation = list(read_permutation(file))
    for name in permutation:
        _check_layer_name(model, name, layers, f"model.branch.file {file}")
    if top_k is None and max_params is None:
        raise ValueError(f"model.branch.file is set ({file}) but neither model.branch.top_k nor "
                         "model.branch.max_params; set top_k to branch the first K layers")
    if top_k is not None:
        if top_k > len(permutation):
            raise ValueError(f"model.branch.top_k is {top_k} but {file} lists {len(permutation)} layers; "
                             f"choose top_k between 0 and {len(permutation)}")
        permutation = permutation[:top_k]
    if max_params is not None:
        permutation = _layers_within_budget(permutation, layers, len(model.tasks), max_params)
    return permutation


# Replacing layers ---------------------------------------------------------------------------------


def _root_prefix(model: MultiTaskModel) -> str:
    """Return the path of ``model.shared_root()`` in the model, with a trailing dot (empty for the model)."""
    root = model.shared_root()
    if root is model:
        return ""
    for name, module in model.named_modules():
        if module is root:
            return name + "."
    raise ValueError("model.shared_root() returns a module that is not a submodule of the model")


def _check_not_nested(names: Sequence[str]) -> None:
    for name in names:
        for other in names:
            if other != name and other.startswith(name + "."):
                raise ValueError(f"layer '{other}' lies inside layer '{name}'; branch one of them, not both")


def _check_single_reference(model: MultiTaskModel, layer: nn.Module, name: str) -> None:
    # A second registration would keep the shared layer in use after the path is replaced.
    paths = [path for path, module in model.named_modules(remove_duplicate=False) if module is layer]
    if len(paths) > 1:
        raise ValueError(f"layer '{name}' is registered under several names ({', '.join(paths)}); "
                         "surgery replaces one path, so the model would still use the shared layer")


def _make_copies(model: MultiTaskModel, layer: nn.Module, init: str) -> dict[str, nn.Module]:
    copies = {task: copy.deepcopy(layer) for task in model.tasks}
    if init == "independent":
        for copy_ in copies.values():
            model.init_layer(copy_)
    return copies


def branch_layers(model: MultiTaskModel, names: Sequence[str], init: str = "copy") -> None:
    """Make the shared layers ``names`` task-specific: one copy per task, in place.

    ``init="copy"``: every copy starts from the layer's current weights, so right after
    surgery the model computes what it computed before. ``init="independent"``: each
    copy is re-initialised with ``model.init_layer``. The copies count as task
    parameters from then on (``model.task_parameters()``), so surgery belongs before
    the optimizer is built.

    Limitation: the forward must call the layer as a module. A forward that reads
    ``layer.weight`` directly fails after surgery, because ``BranchedLayer`` has no
    ``weight``.
    """
    if init not in INIT_MODES:
        raise ValueError(f"model.branch.init is '{init}'; allowed values: {', '.join(INIT_MODES)}")
    layers = {layer.name: layer for layer in shared_layers(model)}
    root = model.shared_root()
    for name in names:
        _check_layer_name(model, name, layers, "surgery")
        _check_single_reference(model, root.get_submodule(name), name)
    _check_not_nested(names)

    # Replace each layer with its copies.
    for name in names:
        layer = root.get_submodule(name)
        parent_name, _, child_name = name.rpartition(".")
        setattr(root.get_submodule(parent_name), child_name, BranchedLayer(_make_copies(model, layer, init)))

    # The forward runs one pass per task from now on.
    prefix = _root_prefix(model)
    state = model._branching or Branching()
    model._branching = Branching(state.layers + [prefix + name for name in names], upstream_norms=None)

    added = sum((len(model.tasks) - 1) * layers[name].params for name in names)
    logger.info("branched %d layers (init: %s, %d parameters added): %s", len(names), init, added, ", ".join(names))


def apply_branch_config(model: MultiTaskModel, branch: dict[str, Any]) -> list[str]:
    """Apply the ``model.branch`` config section to ``model`` and return the branched layer names."""
    names = select_layers(model, branch)
    if names:
        branch_layers(model, names, init=branch.get("init", "copy"))
    return names


# Forward of a branched model ----------------------------------------------------------------------


def _task_module_ids(model: MultiTaskModel) -> set[int]:
    """Return the ids of every module inside a task's own modules or a branched copy."""
    ids = set()
    groups = list(model.own_task_modules().values()) + list(branched_copies(model).values())
    for modules in groups:
        for module in modules:
            ids.update(id(submodule) for submodule in module.modules())
    return ids


def _is_running_norm(module: nn.Module) -> bool:
    return isinstance(module, _NormBase) and module.track_running_stats


def _run_probe(model: MultiTaskModel, x: torch.Tensor, call: Callable) -> None:
    """Run one eval-mode pass per task with only task parameters requiring grad."""
    task_params = {id(p) for params in model.task_parameters().values() for p in params}
    requires_grad = {param: param.requires_grad for param in model.parameters()}
    training = {module: module.training for module in model.modules()}
    branched = [model.get_submodule(name) for name in model._branching.layers]
    try:
        for param in requires_grad:
            param.requires_grad_(id(param) in task_params)
        model.eval()
        with torch.enable_grad():
            for task in model.tasks:
                _activate(branched, task)
                call(x, [task])
    finally:
        for param, flag in requires_grad.items():
            param.requires_grad_(flag)
        for module, flag in training.items():
            module.training = flag
        _activate(branched, None)


def find_upstream_norms(model: MultiTaskModel, x: torch.Tensor, call: Callable) -> list[str]:
    """Return the shared running-statistics norms whose input is the same in every task's pass.

    A probe runs each task's pass in eval mode (no running statistics change) on the
    first two samples of ``x`` with only task parameters (own modules and branched
    copies) requiring grad. A norm whose input never requires grad depends on neither
    a branched layer nor a task's own module, so it is upstream of every branch.

    ``call`` is the model's plain ``nn.Module.__call__``. The probe assumes that the
    forward's data flow does not depend on train or eval mode.
    """
    task_modules = _task_module_ids(model)
    candidates = {name: module for name, module in model.named_modules()
                  if _is_running_norm(module) and id(module) not in task_modules}
    downstream: set[str] = set()

    def hook_for(name: str) -> Callable:
        def hook(module: nn.Module, args: tuple) -> None:
            if any(isinstance(arg, torch.Tensor) and arg.requires_grad for arg in args):
                downstream.add(name)
        return hook

    handles = [module.register_forward_pre_hook(hook_for(name)) for name, module in candidates.items()]
    try:
        _run_probe(model, x[:2].detach(), call)
    finally:
        for handle in handles:
            handle.remove()
    upstream = [name for name in candidates if name not in downstream]
    logger.info("shared norms upstream of every branched layer (statistics updated once per step): %s",
                ", ".join(upstream) or "none")
    return upstream


def forward_per_task(model: MultiTaskModel, x: torch.Tensor, tasks: Sequence[str] | None,
                     call: Callable) -> dict[str, torch.Tensor]:
    """Run a branched model: one pass per task, each with that task's copies active.

    Pass t sets every ``BranchedLayer.active = t`` and calls the model with
    ``tasks=[t]`` (``call`` is the plain ``nn.Module.__call__``). Task t's output
    comes from pass t. Shared layers downstream of a branch therefore receive each
    task's features separately, so a shared BatchNorm there updates its running
    statistics once per task per step. The code published with the Recon paper
    (github.com/moukamisama/Recon, archs/modules_recon.py) does the same with lists
    of per-task features.

    In training mode, the shared norms upstream of every branch run with
    ``track_running_stats`` off in passes after the first. They normalise with the
    batch statistics, which gives the same output, and update their running
    statistics once per step, as the published code's single pass of the stem does.

    Limitations: layers upstream of every branch are computed once per pass (the
    gradients are unchanged, the time is not), and a random layer upstream (dropout)
    draws a new sample in each pass.
    """
    state = model._branching
    tasks = list(model.tasks if tasks is None else tasks)
    if state.branched_modules is None:
        state.branched_modules = [model.get_submodule(name) for name in state.layers]

    # Norms to freeze in passes after the first (training mode only).
    norms = []
    if model.training and len(tasks) > 1:
        if state.upstream_norms is None:
            state.upstream_norms = find_upstream_norms(model, x, call)
        if state.upstream_modules is None:
            state.upstream_modules = [model.get_submodule(name) for name in state.upstream_norms]
        norms = [norm for norm in state.upstream_modules if norm.training and norm.track_running_stats]

    outputs = {}
    try:
        for index, task in enumerate(tasks):
            _activate(state.branched_modules, task)
            if index == 1:
                for norm in norms:
                    norm.track_running_stats = False
            outputs[task] = call(x, [task])[task]
    finally:
        _activate(state.branched_modules, None)
        for norm in norms:
            norm.track_running_stats = True
    return outputs


def _activate(layers: list[BranchedLayer], task: str | None) -> None:
    # ``active`` is a plain attribute: object.__setattr__ skips nn.Module's checks for
    # parameters and submodules, a few microseconds per layer and pass.
    for layer in layers:
        object.__setattr__(layer, "active", task)
