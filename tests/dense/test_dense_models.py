"""SegNet and MTAN: layer names, sizes, outputs, task ownership and a few training steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from recon.conflict.layers import shared_layers
from recon.data.dense import dense_tasks
from recon.models import build_model
from recon.models.mtan import MTAN
from recon.models.segnet import SegNet

REPOSITORY = Path(__file__).resolve().parents[2]
CITYSCAPES_TASKS, _ = dense_tasks("cityscapes")
NYUV2_TASKS, _ = dense_tasks("nyuv2")


@pytest.fixture(scope="module")
def segnet() -> SegNet:
    torch.manual_seed(0)
    return SegNet(CITYSCAPES_TASKS).eval()


@pytest.fixture(scope="module")
def mtan() -> MTAN:
    torch.manual_seed(0)
    return MTAN(NYUV2_TASKS).eval()


def _size_mb(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) * 4 / 2**20


def _permutation(name: str) -> list[str]:
    return list(json.loads((REPOSITORY / "logs" / name).read_text()))


def test_segnet_layers_match_published_permutation(segnet):
    names = [layer.name for layer in shared_layers(segnet)]
    assert len(names) == 52
    assert sorted(names) == sorted(_permutation("cityscapes_segnet_S0.0.json"))


def test_mtan_layers_match_published_permutation(mtan):
    names = [layer.name for layer in shared_layers(mtan)]
    assert len(names) == 72
    assert sorted(names) == sorted(_permutation("nyuv2_mtan_S-0.02.json"))


def test_model_sizes_match_paper(segnet, mtan):
    assert round(_size_mb(segnet), 2) == 95.43
    assert round(_size_mb(mtan), 2) == 168.72


def test_build_model_by_name():
    assert type(build_model("segnet", CITYSCAPES_TASKS, 3)) is SegNet
    assert type(build_model("mtan", NYUV2_TASKS, 3)) is MTAN


def test_stage_nesting(segnet):
    # The first two stages hold one block, the last three two blocks in sequence.
    assert segnet.conv_block_enc[1].conv1.in_channels == 128
    assert segnet.conv_block_enc[2][0].conv1.in_channels == 256
    assert segnet.conv_block_dec[1].conv1.out_channels == 64
    assert segnet.conv_block_dec[4][1].conv1.out_channels == 512
    assert segnet.decoder_block[3].conv1.in_channels == 512
    assert segnet.decoder_block[3].conv1.out_channels == 256


def test_initialisation(segnet):
    conv = segnet.encoder_block[2].conv1
    assert torch.all(conv.bias == 0)
    # Xavier normal: standard deviation sqrt(2 / (fan_in + fan_out)).
    fan_in, fan_out = 128 * 9, 256 * 9
    assert conv.weight.std().item() == pytest.approx((2 / (fan_in + fan_out)) ** 0.5, rel=0.05)
    assert torch.all(segnet.encoder_block[2].bn1.weight == 1)
    assert torch.all(segnet.encoder_block[2].bn1.bias == 0)


@torch.no_grad()
def test_segnet_output_shapes(segnet):
    outputs = segnet(torch.randn(1, 3, 128, 256))
    assert set(outputs) == {"segmentation", "depth"}
    assert outputs["segmentation"].shape == (1, 7, 128, 256)
    assert outputs["depth"].shape == (1, 1, 128, 256)


@torch.no_grad()
def test_mtan_output_shapes_and_unit_normals(mtan):
    outputs = mtan(torch.randn(1, 3, 32, 96))
    assert outputs["segmentation"].shape == (1, 13, 32, 96)
    assert outputs["depth"].shape == (1, 1, 32, 96)
    assert outputs["normal"].shape == (1, 3, 32, 96)
    lengths = outputs["normal"].norm(dim=1)
    assert torch.allclose(lengths, torch.ones_like(lengths), atol=1e-5)


@pytest.mark.slow
@torch.no_grad()
def test_mtan_output_shapes_full_size(mtan):
    outputs = mtan(torch.randn(1, 3, 288, 384))
    assert outputs["segmentation"].shape == (1, 13, 288, 384)
    assert outputs["normal"].shape == (1, 3, 288, 384)


def test_input_size_not_multiple_of_32(segnet):
    with pytest.raises(ValueError, match="multiples of 32 .*found 100×96"):
        segnet(torch.randn(1, 3, 100, 96))


@torch.no_grad()
@pytest.mark.parametrize("name", ["segnet", "mtan"])
def test_forward_requested_tasks_only(name, segnet, mtan):
    model = segnet if name == "segnet" else mtan
    x = torch.randn(1, 3, 32, 64)
    everything = model(x)
    depth_only = model(x, tasks=["depth"])
    assert list(depth_only) == ["depth"]
    assert torch.allclose(depth_only["depth"], everything["depth"], atol=1e-6)


def _authors_mtan(model: MTAN, x: torch.Tensor, task: str) -> torch.Tensor:
    """MTAN's forward for one task, indexed as in the authors' code (decoder modules from the end)."""
    encoder = [[None, None] for _ in range(5)]
    decoder = [[None, None] for _ in range(5)]
    pooled, indices, upsampled = [None] * 5, [None] * 5, [None] * 5
    for i in range(5):
        encoder[i][0] = model.encoder_block[i](x if i == 0 else pooled[i - 1])
        encoder[i][1] = model.conv_block_enc[i](encoder[i][0])
        pooled[i], indices[i] = F.max_pool2d(encoder[i][1], 2, 2, return_indices=True)
    for i in range(5):
        upsampled[i] = F.max_unpool2d(pooled[-1] if i == 0 else decoder[i - 1][1], indices[-i - 1], 2, 2)
        decoder[i][0] = model.decoder_block[-i - 1](upsampled[i])
        decoder[i][1] = model.conv_block_dec[-i - 1](decoder[i][0])

    attended = [None] * 5
    for j in range(5):
        inputs = encoder[j][0] if j == 0 else torch.cat((encoder[j][0], attended[j - 1]), dim=1)
        gated = model.encoder_att[task][j](inputs) * encoder[j][1]
        attended[j] = F.max_pool2d(model.encoder_block_att[j](gated), 2, 2)
    features = attended[-1]
    for j in range(5):
        features = F.interpolate(features, scale_factor=2, mode="bilinear", align_corners=True)
        features = model.decoder_block_att[-j - 1](features)
        features = model.decoder_att[task][-j - 1](torch.cat((upsampled[j], features), dim=1)) * decoder[j][1]
    return model.heads[task](features)


@torch.no_grad()
def test_mtan_matches_authors_indexing(mtan):
    x = torch.randn(1, 3, 32, 64)
    outputs = mtan(x)
    for task in ("segmentation", "depth"):
        assert torch.allclose(outputs[task], _authors_mtan(mtan, x, task), atol=1e-5), task
    normal = _authors_mtan(mtan, x, "normal")
    assert torch.allclose(outputs["normal"], normal / normal.norm(dim=1, keepdim=True), atol=1e-5)


@torch.no_grad()
def test_mtan_attention_belongs_to_its_task():
    torch.manual_seed(1)
    # Training mode: BatchNorm normalises with batch statistics, so outputs are of order 1
    # (in evaluation mode a fresh model's outputs are about 1e-8).
    model = MTAN(NYUV2_TASKS).train()
    x = torch.randn(2, 3, 32, 32)
    before = model(x)
    model.encoder_att["segmentation"][2].conv1.weight.add_(0.5)
    after = model(x)
    assert not torch.allclose(after["segmentation"], before["segmentation"])
    assert torch.equal(after["depth"], before["depth"])
    assert torch.equal(after["normal"], before["normal"])


def test_shared_and_task_parameters(segnet, mtan):
    heads = sum(p.numel() for head in segnet.heads.values() for p in head.parameters())
    assert sum(p.numel() for p in segnet.shared_parameters()) == sum(p.numel() for p in segnet.parameters()) - heads

    owned = {task: sum(p.numel() for p in params) for task, params in mtan.task_parameters().items()}
    attention = sum(p.numel() for p in mtan.encoder_att["depth"].parameters())
    attention += sum(p.numel() for p in mtan.decoder_att["depth"].parameters())
    assert owned["depth"] == attention + sum(p.numel() for p in mtan.heads["depth"].parameters())
    shared = sum(p.numel() for p in mtan.shared_parameters())
    assert shared + sum(owned.values()) == sum(p.numel() for p in mtan.parameters())


@pytest.mark.parametrize("cls, tasks", [(SegNet, CITYSCAPES_TASKS), (MTAN, NYUV2_TASKS)])
def test_loss_decreases(cls, tasks):
    torch.manual_seed(2)
    model = cls(tasks).train()
    images = torch.rand(2, 3, 32, 32)
    targets = {
        "segmentation": torch.randint(-1, tasks["segmentation"].output_channels, (2, 32, 32)),
        "depth": torch.rand(2, 1, 32, 32) + 0.5,
        "normal": F.normalize(torch.randn(2, 3, 32, 32), dim=1),
    }
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    history = []
    for _ in range(8):
        outputs = model(images)
        losses = {name: task.loss(outputs[name], targets[name]) for name, task in tasks.items()}
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        history.append({name: loss.item() for name, loss in losses.items()})
    for name in tasks:
        assert history[-1][name] < 0.97 * history[0][name], name
    assert sum(history[-1].values()) < 0.9 * sum(history[0].values())
