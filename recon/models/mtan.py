"""MTAN: SegNet with per-task soft-attention modules on the shared features.

Liu, Johns and Davison, "End-to-End Multi-Task Learning with Attention" (CVPR
2019, arXiv 1803.10704), the NYUv2 network of the Recon paper (Shi et al., ICLR
2023, arXiv 2302.11289). Each task owns one attention module per encoder and
decoder level. A module reads the shared features of its level (and the task's
attended features of the previous level) and outputs a sigmoid mask, which
multiplies the shared features. Shared convolutions (``encoder_block_att``,
``decoder_block_att``) carry each task's attended features to the next level.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from recon.models.segnet import FILTERS, ConvBlock, SegNet, TrunkFeatures, init_weights
from recon.tasks import Task

LEVELS = len(FILTERS)


class AttentionModule(nn.Sequential):
    """Two 1×1 convolutions with BatchNorm (``conv1``, ``bn1``, ReLU, ``conv2``, ``bn2``) and a sigmoid."""

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int) -> None:
        super().__init__(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, hidden_channels, kernel_size=1)),
            ("bn1", nn.BatchNorm2d(hidden_channels)),
            ("relu", nn.ReLU(inplace=True)),
            ("conv2", nn.Conv2d(hidden_channels, out_channels, kernel_size=1)),
            ("bn2", nn.BatchNorm2d(out_channels)),
            ("sigmoid", nn.Sigmoid()),
        ]))


def encoder_attention() -> nn.ModuleList:
    """Return one task's encoder attention modules; level j outputs a FILTERS[j]-channel mask."""
    modules = [AttentionModule(FILTERS[0], FILTERS[0], FILTERS[0])]
    # Levels after the first also read the task's attended features from the level above.
    modules += [AttentionModule(2 * c, c, c) for c in FILTERS[1:]]
    return nn.ModuleList(modules)


def decoder_attention() -> nn.ModuleList:
    """Return one task's decoder attention modules; level j outputs a mask over decoder_block[j]'s output."""
    modules = [AttentionModule(2 * FILTERS[0], FILTERS[0], FILTERS[0])]
    modules += [AttentionModule(c + c_out, c_out, c_out) for c, c_out in zip(FILTERS[1:], FILTERS[:-1])]
    return nn.ModuleList(modules)


class MTAN(SegNet):
    """SegNet with Multi-Task Attention Network modules, one set per task.

    Shared layers (names relative to the model, 72 in all): SegNet's 52 and
    the convolutions and BatchNorms of ``encoder_block_att`` and
    ``decoder_block_att``. ``encoder_att[task]`` and ``decoder_att[task]`` (five
    attention modules each) and ``heads[task]`` belong to the task.
    ``forward(x, tasks)`` runs the attention branches of the requested tasks only.
    As in the Recon authors' code, the attended encoder features are max-pooled
    at every level, the deepest included, before bilinear upsampling
    (``align_corners=True``) starts the decoder side.
    """

    def __init__(self, tasks: dict[str, Task]) -> None:
        super().__init__(tasks)
        self.encoder_att = nn.ModuleDict({task: encoder_attention() for task in self.tasks})
        self.decoder_att = nn.ModuleDict({task: decoder_attention() for task in self.tasks})

        # Encoder level j maps FILTERS[j] channels to the next level's FILTERS[j + 1] (512 at
        # the last level). Decoder level j maps FILTERS[j] to FILTERS[j - 1] (64 at level 0).
        encoder_out = (*FILTERS[1:], FILTERS[-1])
        decoder_out = (FILTERS[0], *FILTERS[:-1])
        self.encoder_block_att = nn.ModuleList(ConvBlock(c, c_out) for c, c_out in zip(FILTERS, encoder_out))
        self.decoder_block_att = nn.ModuleList(ConvBlock(c, c_out) for c, c_out in zip(FILTERS, decoder_out))
        init_weights(self)

    def own_task_modules(self) -> dict[str, list[nn.Module]]:
        return {task: [self.encoder_att[task], self.decoder_att[task], self.heads[task]] for task in self.tasks}

    def attend(self, task: str, trunk: TrunkFeatures) -> torch.Tensor:
        """Return ``task``'s attended features at the input resolution (the input of its head)."""
        attended = None
        for level in range(LEVELS):
            before, after = trunk.encoder[level]
            inputs = before if attended is None else torch.cat((before, attended), dim=1)
            mask = self.encoder_att[task][level](inputs)
            attended = self.encoder_block_att[level](mask * after)
            attended = F.max_pool2d(attended, kernel_size=2, stride=2)

        for step, level in enumerate(reversed(range(LEVELS))):
            attended = F.interpolate(attended, scale_factor=2, mode="bilinear", align_corners=True)
            attended = self.decoder_block_att[level](attended)
            mask = self.decoder_att[task][level](torch.cat((trunk.upsampled[step], attended), dim=1))
            attended = mask * trunk.decoder[step]
        return attended

    def forward(self, x: torch.Tensor, tasks: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        trunk = self.trunk(x)
        return {task: self.predict(task, self.attend(task, trunk)) for task in (tasks or self.tasks)}
