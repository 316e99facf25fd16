"""Generic surgery: selection from config, exact outputs at init, per-task BatchNorm statistics, errors."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from recon.conflict.layers import shared_layers
from recon.models.base import MultiTaskModel
from recon.models.resnet import MultiTaskResNet18
from recon.surgery import BranchedLayer, apply_branch_config, branch_layers, select_layers

PUBLISHED = Path(__file__).resolve().parents[1] / "logs" / "multi_fashion_mnist_resnet18_S-0.1.json"


class Block(nn.Module):
    """Residual block: relu(bn2(conv2(relu(bn1(conv1(x))))) + x)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + x)


class AttentionNet(MultiTaskModel):
    """Stem, residual block, then per task: a task mask multiplied into the shared features,
    a shared BatchNorm (gate_bn), a shared convolution and BatchNorm (post, post_bn), a head.

    Layer names are relative to the whole model (like SegNet and MTAN).
    """

    def __init__(self, tasks: tuple[str, ...] = ("a", "b"), channels: int = 4) -> None:
        super().__init__()
        self.tasks = tasks
        self.stem = nn.Conv2d(1, channels, 3, padding=1)
        self.stem_bn = nn.BatchNorm2d(channels)
        self.block = Block(channels)
        self.masks = nn.ModuleDict({task: nn.Conv2d(channels, channels, 1) for task in tasks})
        self.gate_bn = nn.BatchNorm2d(channels)
        self.post = nn.Conv2d(channels, channels, 3, padding=1)
        self.post_bn = nn.BatchNorm2d(channels)
        self.heads = nn.ModuleDict({task: nn.Linear(channels, 3) for task in tasks})

    def own_task_modules(self):
        return {task: [self.masks[task], self.heads[task]] for task in self.tasks}

    def forward(self, x, tasks=None):
        features = self.block(F.relu(self.stem_bn(self.stem(x))))
        outputs = {}
        for task in tasks or self.tasks:
            gated = self.gate_bn(features * torch.sigmoid(self.masks[task](features)))
            outputs[task] = self.heads[task](F.relu(self.post_bn(self.post(gated))).mean((2, 3)))
        return outputs


def make_attention_net(tasks=("a", "b")) -> AttentionNet:
    torch.manual_seed(0)
    model = AttentionNet(tasks)
    # Non-trivial BatchNorm parameters and statistics, so that a wrong copy would show.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    return model


def batch(size: int = 6, side: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.randn(size, 1, side, side, generator=torch.Generator().manual_seed(seed))


def count_parameters(model: nn.Module) -> int:
    return sum(param.numel() for param in model.parameters())


# Outputs right after surgery ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_resnet_top25_preserves_outputs(mode):
    torch.manual_seed(0)
    original = MultiTaskResNet18({"T1": 10, "T2": 10})
    branched = copy.deepcopy(original)
    names = apply_branch_config(branched, {"file": str(PUBLISHED), "top_k": 25})
    x = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    original.train(mode == "train")
    branched.train(mode == "train")
    expected, result = original(x), branched(x)

    assert names == list(json.loads(PUBLISHED.read_text()))[:25]
    assert isinstance(branched.trunk.bn1, BranchedLayer)
    for task in ("T1", "T2"):
        torch.testing.assert_close(result[task], expected[task], rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("names", [["block.conv1"], ["block.bn1", "block.conv2"], ["post"], ["stem", "post_bn"]])
def test_attention_net_preserves_outputs(mode, names):
    original = make_attention_net()
    branched = copy.deepcopy(original)
    branch_layers(branched, names)
    original.train(mode == "train")
    branched.train(mode == "train")
    x = batch()
    expected, result = original(x), branched(x)

    for task in ("a", "b"):
        torch.testing.assert_close(result[task], expected[task], rtol=0, atol=1e-6)


def test_requested_tasks_only():
    model = make_attention_net(("a", "b", "c"))
    branch_layers(model, ["block.conv1"])
    model.eval()
    x = batch()
    full = model(x)
    partial = model(x, tasks=["c", "a"])

    assert list(partial) == ["c", "a"]
    assert torch.equal(partial["c"], full["c"])
    assert torch.equal(partial["a"], full["a"])


def test_each_task_uses_its_own_copy():
    model = make_attention_net()
    branch_layers(model, ["post"])
    model.eval()
    x = batch()
    before = model(x)
    with torch.no_grad():
        model.post.copies["b"].weight.mul_(2)
    after = model(x)

    assert torch.equal(after["a"], before["a"])
    assert not torch.allclose(after["b"], before["b"])
    assert model.post.active is None


def test_task_gradient_reaches_only_its_copy():
    model = make_attention_net()
    branch_layers(model, ["block.conv1"])
    outputs = model(batch())
    grads = torch.autograd.grad(outputs["a"].sum(), [model.block.conv1.copies["a"].weight,
                                                     model.block.conv1.copies["b"].weight], allow_unused=True)

    assert grads[0] is not None
    assert grads[0].abs().sum() > 0
    assert grads[1] is None


# BatchNorm running statistics ----------------------------------------------------------------------


def test_block_branch_norm_statistics():
    model = make_attention_net()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
    branch_layers(model, ["block.conv1"])
    model.train()
    x = batch()
    model(x)

    # Manual forward up to each BatchNorm's input, with batch statistics as in training mode.
    def normalise(h, bn):
        return F.batch_norm(h, None, None, bn.weight, bn.bias, training=True)

    stem_out = model.stem(x)
    features = F.relu(normalise(stem_out, model.stem_bn))
    conv1_out = model.block.conv1.copies["a"](features)
    momentum = 0.1

    # stem_bn is upstream of the branch: one update, as in an unbranched step.
    assert model._branching.upstream_norms == ["stem_bn"]
    assert model.stem_bn.num_batches_tracked == 1
    torch.testing.assert_close(model.stem_bn.running_mean, momentum * stem_out.mean((0, 2, 3)))
    # block.bn1 follows the branched conv1: one update per task (the copies are equal at init).
    mean = conv1_out.mean((0, 2, 3))
    assert model.block.bn1.num_batches_tracked == 2
    torch.testing.assert_close(model.block.bn1.running_mean, (1 - momentum) * momentum * mean + momentum * mean)


def test_mask_dependent_norm_updates_per_task():
    original = make_attention_net()
    for module in original.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
    branched = copy.deepcopy(original)
    branch_layers(branched, ["post"])
    original.train()
    branched.train()
    x = batch()
    original(x)
    branched(x)

    # gate_bn depends on the task masks, so it runs per task in both models; the block is upstream.
    assert branched._branching.upstream_norms == ["stem_bn", "block.bn1", "block.bn2"]
    for name in ("stem_bn", "block.bn1", "block.bn2", "gate_bn", "post_bn"):
        bn, reference = branched.get_submodule(name), original.get_submodule(name)
        assert bn.num_batches_tracked == reference.num_batches_tracked, name
        torch.testing.assert_close(bn.running_mean, reference.running_mean, rtol=0, atol=1e-7)
        torch.testing.assert_close(bn.running_var, reference.running_var, rtol=0, atol=1e-7)
    assert branched.gate_bn.num_batches_tracked == 2
    assert branched.block.bn1.num_batches_tracked == 1


def test_gate_norm_statistics_match_manual_computation():
    model = make_attention_net()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
    branch_layers(model, ["post"])
    reference = copy.deepcopy(model)
    model.train()
    x = batch()
    model(x)

    # Manual pass to gate_bn's input, with batch statistics everywhere as in training mode.
    with torch.no_grad():
        stem = reference.stem(x)
        features = F.relu(F.batch_norm(stem, None, None, reference.stem_bn.weight, reference.stem_bn.bias,
                                       training=True))
        block = reference.block
        hidden = F.relu(F.batch_norm(block.conv1(features), None, None, block.bn1.weight, block.bn1.bias,
                                     training=True))
        features = F.relu(F.batch_norm(block.conv2(hidden), None, None, block.bn2.weight, block.bn2.bias,
                                       training=True) + features)
        gated = {task: features * torch.sigmoid(reference.masks[task](features)) for task in ("a", "b")}
    # Task a's pass updates first, then task b's: momentum 0.1 from zero.
    expected = 0.9 * 0.1 * gated["a"].mean((0, 2, 3)) + 0.1 * gated["b"].mean((0, 2, 3))

    torch.testing.assert_close(model.gate_bn.running_mean, expected)
    assert model.gate_bn.num_batches_tracked == 2
    torch.testing.assert_close(model.stem_bn.running_mean, 0.1 * stem.mean((0, 2, 3)))
    assert model.stem_bn.num_batches_tracked == 1


def test_probe_restores_flags():
    model = make_attention_net()
    branch_layers(model, ["post"])
    model.stem.weight.requires_grad_(False)
    model.train()
    model.block.bn2.eval()
    model(batch())

    assert model._branching.upstream_norms is not None
    assert not model.stem.weight.requires_grad
    assert model.post.copies["a"].weight.requires_grad
    assert model.block.conv1.weight.requires_grad
    assert model.training
    assert model.block.bn1.training
    assert not model.block.bn2.training
    assert all(module.track_running_stats for module in model.modules() if isinstance(module, nn.BatchNorm2d))


# Parameters, state and init ----------------------------------------------------------------------------


def test_parameter_count_rule():
    model = make_attention_net(("a", "b", "c"))
    layers = {layer.name: layer.params for layer in shared_layers(model)}
    before = count_parameters(model)
    branch_layers(model, ["block.conv1", "post_bn"])

    assert count_parameters(model) == before + 2 * (layers["block.conv1"] + layers["post_bn"])
    task_counts = {task: sum(p.numel() for p in params) for task, params in model.task_parameters().items()}
    own = sum(p.numel() for p in model.masks["a"].parameters()) + sum(p.numel() for p in model.heads["a"].parameters())
    assert task_counts == dict.fromkeys(("a", "b", "c"), own + layers["block.conv1"] + layers["post_bn"])


def test_state_dict_loads_into_same_surgery():
    source = make_attention_net()
    branch_layers(source, ["block.conv1"], init="independent")
    target = AttentionNet()
    branch_layers(target, ["block.conv1"])
    target.load_state_dict(source.state_dict())
    source.eval()
    target.eval()
    x = batch()

    assert "block.conv1.copies.b.weight" in source.state_dict()
    for task in ("a", "b"):
        assert torch.equal(target(x)[task], source(x)[task])


def test_deepcopy_after_forward_uses_own_modules():
    model = make_attention_net()
    branch_layers(model, ["post"])
    model.train()
    model(batch())
    clone = copy.deepcopy(model)
    with torch.no_grad():
        clone.post.copies["b"].weight.mul_(2)
    model.eval()
    clone.eval()
    x = batch()

    assert clone._branching.branched_modules[0] is clone.post
    assert torch.equal(clone(x)["a"], model(x)["a"])
    assert not torch.allclose(clone(x)["b"], model(x)["b"])


def test_to_dtype_moves_copies():
    model = make_attention_net()
    branch_layers(model, ["post"])
    model.double()

    assert model.post.copies["b"].weight.dtype == torch.float64
    assert model(batch().double())["b"].dtype == torch.float64


def test_independent_init_differs_across_copies():
    model = make_attention_net()
    original_weight = model.post.weight.detach().clone()
    branch_layers(model, ["post", "post_bn"], init="independent")
    copies = model.post.copies

    assert not torch.equal(copies["a"].weight, copies["b"].weight)
    assert not torch.equal(copies["a"].weight, original_weight)
    assert not torch.equal(copies["b"].weight, original_weight)
    for norm in model.post_bn.copies.values():
        assert torch.equal(norm.weight, torch.ones(4))
        assert torch.equal(norm.bias, torch.zeros(4))
        assert torch.equal(norm.running_var, torch.ones(4))


def test_copy_init_starts_equal():
    model = make_attention_net()
    original_weight = model.post.weight.detach().clone()
    branch_layers(model, ["post"])

    assert torch.equal(model.post.copies["a"].weight, original_weight)
    assert torch.equal(model.post.copies["b"].weight, original_weight)
    assert model.post.copies["a"].weight is not model.post.copies["b"].weight


# Selection from the model.branch config ----------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet() -> MultiTaskResNet18:
    return MultiTaskResNet18({"T1": 10, "T2": 10})


def test_select_top_k(resnet):
    names = select_layers(resnet, {"file": str(PUBLISHED), "top_k": 3})

    assert names == ["bn1", "layer1.0.bn1", "layer1.1.bn1"]


def test_select_max_params(resnet):
    # The first seven layers of the file are BatchNorms with 128 or 256 parameters; conv1, the 8th, has 3136.
    budget = 5 * 128 + 2 * 256
    names = select_layers(resnet, {"file": str(PUBLISHED), "max_params": budget})
    capped = select_layers(resnet, {"file": str(PUBLISHED), "max_params": budget, "top_k": 4})

    assert names == list(json.loads(PUBLISHED.read_text()))[:7]
    assert select_layers(resnet, {"file": str(PUBLISHED), "max_params": budget - 1}) == names[:6]
    assert capped == names[:4]


def test_max_params_counts_every_added_copy(tmp_path):
    # Three tasks: each branched layer adds two copies. post_bn and gate_bn hold 8 parameters each.
    model = make_attention_net(("a", "b", "c"))
    path = write_permutation(tmp_path, {"post_bn": 9, "gate_bn": 7, "stem_bn": 5, "post": 1})

    assert select_layers(model, {"file": path, "max_params": 2 * 8 + 2 * 8}) == ["post_bn", "gate_bn"]
    assert select_layers(model, {"file": path, "max_params": 2 * 8 + 2 * 8 - 1}) == ["post_bn"]
    assert select_layers(model, {"file": path, "max_params": 0}) == []


def test_select_explicit_layers(resnet):
    assert select_layers(resnet, {"layers": ["fc", "layer1.0.conv1"]}) == ["fc", "layer1.0.conv1"]
    assert select_layers(resnet, {}) == []
    assert select_layers(resnet, {"file": str(PUBLISHED), "top_k": 0}) == []


def test_surgery_before_optimizer_sees_copies():
    torch.manual_seed(0)
    model = MultiTaskResNet18({"T1": 10, "T2": 10})
    apply_branch_config(model, {"layers": ["layer3.0.bn1"]})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}

    assert id(model.trunk.layer3[0].bn1.copies["T2"].weight) in optimized
    assert len(optimized) == len(list(model.parameters()))


# Errors -------------------------------------------------------------------------------------------------


def write_permutation(tmp_path: Path, data) -> str:
    path = tmp_path / "permutation.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("branch, message", [
    ({"layers": ["layer1.0.bn3"]}, r"unknown layer 'layer1.0.bn3'; did you mean 'layer1.0.bn2', 'layer1.0.bn1'"),
    ({"layers": ["layer1"]}, "module 'layer1' has no parameters of its own"),
    ({"layers": ["bn1", "fc", "bn1"]}, "model.branch.layers lists bn1 more than once"),
    ({"layers": "bn1"}, "model.branch.layers must be a list of layer names"),
    ({"layers": ["bn1"], "file": "x.json"}, "model.branch.layers and model.branch.file are both set"),
    ({"layers": ["bn1"], "top_k": 1}, "select from model.branch.file; with model.branch.layers"),
    ({"top_k": 3}, "need model.branch.file"),
    ({"file": str(PUBLISHED)}, "neither model.branch.top_k nor model.branch.max_params"),
    ({"file": str(PUBLISHED), "top_k": 42}, r"top_k is 42 but .* lists 41 layers; choose top_k between 0 and 41"),
    ({"file": str(PUBLISHED), "top_k": -1}, "model.branch.top_k must be a non-negative integer; found -1"),
    ({"file": str(PUBLISHED), "max_params": -5}, "model.branch.max_params must be a non-negative integer"),
])
def test_branch_config_errors(resnet, branch, message):
    with pytest.raises(ValueError, match=message):
        select_layers(resnet, branch)


def test_unknown_layer_in_file_rejected(resnet, tmp_path):
    path = write_permutation(tmp_path, {"bn1": 5, "layer9.0.conv1": 3})
    with pytest.raises(ValueError, match=r"model.branch.file .*permutation.json: unknown layer 'layer9.0.conv1'"):
        select_layers(resnet, {"file": path, "top_k": 1})


def test_missing_file_rejected(resnet, tmp_path):
    with pytest.raises(FileNotFoundError, match="layer permutation file not found: .*absent.json"):
        select_layers(resnet, {"file": str(tmp_path / "absent.json"), "top_k": 1})


def test_file_not_object_rejected(resnet, tmp_path):
    path = write_permutation(tmp_path, ["bn1", "conv1"])
    with pytest.raises(ValueError, match="contains a list; expected a JSON object mapping layer names to scores"):
        select_layers(resnet, {"file": path, "top_k": 1})


def test_task_module_rejected():
    model = make_attention_net()
    with pytest.raises(ValueError, match="layer 'masks.a' is not shared: its parameters already belong to one task"):
        branch_layers(model, ["masks.a"])


def test_branched_copy_rejected():
    model = make_attention_net()
    branch_layers(model, ["post"])
    with pytest.raises(ValueError, match="layer 'post.copies.a' is not shared"):
        branch_layers(model, ["post.copies.a"])


def test_bad_init_rejected():
    with pytest.raises(ValueError, match="model.branch.init is 'random'; allowed values: copy, independent"):
        branch_layers(make_attention_net(), ["post"], init="random")


class Scale(nn.Module):
    """A layer with a parameter and no reset_parameters()."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x * self.scale


class ScaledNet(AttentionNet):
    """AttentionNet with a Scale layer after the stem, holding a child layer of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.scaler = Scale()
        self.scaler.inner = nn.Linear(1, 1)
        self.alias = self.stem


def test_layer_without_reset_rejected():
    with pytest.raises(ValueError, match="cannot re-initialise a Scale layer: it has no reset_parameters"):
        branch_layers(ScaledNet(), ["scaler"], init="independent")


def test_nested_layers_rejected():
    with pytest.raises(ValueError, match="layer 'scaler.inner' lies inside layer 'scaler'"):
        branch_layers(ScaledNet(), ["scaler", "scaler.inner"])


def test_layer_registered_twice_rejected():
    model = ScaledNet()
    with pytest.raises(ValueError, match=r"layer 'stem' is registered under several names \(stem, alias\)"):
        branch_layers(model, ["stem"])
    assert not isinstance(model.stem, BranchedLayer)
