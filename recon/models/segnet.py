"""SegNet with a shared encoder-decoder and one prediction head per task.

This is the CityScapes network of the Recon paper (Shi et al., ICLR 2023, arXiv
2302.11289), taken from Liu, Johns and Davison, "End-to-End Multi-Task Learning
with Attention" (CVPR 2019, arXiv 1803.10704). It has five encoder levels with
64, 128, 256, 512 and 512 filters, and max-pooling whose indices are passed to
max-unpooling in the mirrored decoder. Each task gets a 3×3 then a 1×1
convolution. Module names follow the MTAN authors' code, so the published layer
permutations (``encoder_block.0.conv1``, ``conv_block_dec.2.1.bn1``, ...) name
this model's layers as they are.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recon.dense_tasks import NormalTask
from recon.models.base import MultiTaskModel
from recon.tasks import Task

#: Filters of the five encoder levels; the decoder mirrors them.
FILTERS = (64, 128, 256, 512, 512)

#: Input height and width must be multiples of this: five 2×2 poolings.
SIZE_MULTIPLE = 2 ** len(FILTERS)


class ConvBlock(nn.Sequential):
    """A 3×3 convolution (with bias), BatchNorm and ReLU, named ``conv1``, ``bn1``, ``relu``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)),
            ("bn1", nn.BatchNorm2d(out_channels)),
            ("relu", nn.ReLU(inplace=True)),
        ]))


class PredictionHead(nn.Sequential):
    """A task's head: a 3×3 convolution ``conv1`` then a 1×1 convolution ``conv2`` to its channels."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=1)),
            ("conv2", nn.Conv2d(in_channels, out_channels, kernel_size=1)),
        ]))


def conv_stage(channels: int, blocks: int) -> nn.Module:
    """Return one ``ConvBlock`` at ``channels``, or ``blocks`` of them in an ``nn.Sequential``."""
    if blocks == 1:
        return ConvBlock(channels, channels)
    return nn.Sequential(*(ConvBlock(channels, channels) for _ in range(blocks)))


def init_weights(model: nn.Module) -> None:
    """Initialise as the MTAN authors do: Xavier normal convolutions with zero bias, BatchNorm 1 and 0."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.xavier_normal_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def check_input_size(x: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``x`` is N×3×H×W with H and W multiples of 32."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images of shape N×3×H×W; found {tuple(x.shape)}")
    height, width = x.shape[-2:]
    if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
        raise ValueError(f"image height and width must be multiples of {SIZE_MULTIPLE} (five 2×2 poolings); "
                         f"found {height}×{width}")


@dataclass
class TrunkFeatures:
    """The shared encoder-decoder's feature maps, indexed as in the MTAN authors' code.

    ``encoder[j]`` is ``(after encoder_block[j], after conv_block_enc[j])`` at level
    ``j``, where level 0 is the input resolution. ``upsampled[i]`` and ``decoder[i]``
    are the unpooled input and the output of decoder step ``i``. Step 0 is the
    deepest level and step 4 ends at the input resolution.
    """

    encoder: list[tuple[torch.Tensor, torch.Tensor]]
    upsampled: list[torch.Tensor]
    decoder: list[torch.Tensor]


class SegNet(MultiTaskModel):
    """SegNet whose encoder-decoder all tasks share, with one ``PredictionHead`` per task.

    The layer names are relative to the model (``shared_root`` is the model): 52
    shared layers, the convolutions and BatchNorms of ``encoder_block``,
    ``decoder_block``, ``conv_block_enc`` and ``conv_block_dec``. The first two
    stages of ``conv_block_enc`` and ``conv_block_dec`` hold one ``ConvBlock``
    and the last three hold two. Heads live in ``heads[task]`` and belong to
    their task. A segmentation head returns logits; a ``NormalTask`` head returns
    unit vectors. Input height and
    width must be multiples of 32.
    """

    def __init__(self, tasks: dict[str, Task]) -> None:
        super().__init__()
        self.tasks = tuple(tasks)
        self.unit_vector_tasks = {name for name, task in tasks.items() if isinstance(task, NormalTask)}
        self._build_trunk()
        self.heads = nn.ModuleDict({
            name: PredictionHead(FILTERS[0], task.output_channels) for name, task in tasks.items()
        })
        init_weights(self)

    def _build_trunk(self) -> None:
        # Level j of the encoder maps the previous level's channels to FILTERS[j]; level j of the
        # decoder maps FILTERS[j] back to the previous level's channels (FILTERS[0] at level 0).
        previous = (FILTERS[0], *FILTERS[:-1])
        self.encoder_block = nn.ModuleList(ConvBlock(c_in, c_out) for c_in, c_out in zip((3, *FILTERS[:-1]), FILTERS))
        self.decoder_block = nn.ModuleList(ConvBlock(c_in, c_out) for c_in, c_out in zip(FILTERS, previous))

        blocks = (1, 1, 2, 2, 2)
        self.conv_block_enc = nn.ModuleList(conv_stage(c, n) for c, n in zip(FILTERS, blocks))
        self.conv_block_dec = nn.ModuleList(conv_stage(c, n) for c, n in zip(previous, blocks))

    def own_task_modules(self) -> dict[str, list[nn.Module]]:
        return {task: [self.heads[task]] for task in self.tasks}

    def init_layer(self, module: nn.Module) -> None:
        """Re-initialise a branched layer's copy as the constructor does (Xavier normal, BatchNorm 1 and 0)."""
        init_weights(module)

    def trunk(self, x: torch.Tensor) -> TrunkFeatures:
        """Run the shared encoder-decoder, keeping the feature maps that MTAN's attention reads."""
        check_input_size(x)
        encoder, indices = [], []
        features = x
        for level in range(len(FILTERS)):
            before = self.encoder_block[level](features)
            after = self.conv_block_enc[level](before)
            encoder.append((before, after))
            features, index = F.max_pool2d(after, kernel_size=2, stride=2, return_indices=True)
            indices.append(index)

        upsampled, decoder = [], []
        for level in reversed(range(len(FILTERS))):
            features = F.max_unpool2d(features, indices[level], kernel_size=2, stride=2)
            upsampled.append(features)
            features = self.conv_block_dec[level](self.decoder_block[level](features))
            decoder.append(features)
        return TrunkFeatures(encoder, upsampled, decoder)

    def predict(self, task: str, features: torch.Tensor) -> torch.Tensor:
        """Apply ``task``'s head; a surface-normal output is divided by its length per pixel."""
        output = self.heads[task](features)
        if task in self.unit_vector_tasks:
            output = F.normalize(output, p=2, dim=1)
        return output

    def forward(self, x: torch.Tensor, tasks: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        features = self.trunk(x).decoder[-1]
        return {task: self.predict(task, features) for task in (tasks or self.tasks)}
