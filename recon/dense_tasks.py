"""Dense-prediction tasks of CityScapes and NYUv2: semantic segmentation, depth and surface normals.

Losses and metrics follow the code that the Recon paper (Shi et al., ICLR 2023,
arXiv 2302.11289) inherits from MTAN (Liu et al., CVPR 2019, arXiv 1803.10704)
and CAGrad (Liu et al., NeurIPS 2021, arXiv 2110.14048):

- segmentation: cross-entropy over labelled pixels (label −1 is ignored); mIoU
  and pixel accuracy from one confusion matrix over the whole evaluation set.
- depth: L1 over pixels with depth; absolute and relative error per image.
- normal: 1 − cosine over pixels with a normal; angle error per image.

A pixel has a target when the target's channels are not all 0. The authors
test that the channel sum is non-zero instead, which differs only for a normal
whose non-zero components sum to exactly 0.

The authors evaluate with batch size 1 and average the depth and normal errors
over batches, so their figures are per-image averages. These metrics compute
the same per-image averages for any batch size. Units are those of the paper's tables:
mIoU, pixel accuracy and the ``within_*`` fractions in percent, angles in
degrees, depth errors as ratios. The relative error is |pred − target| / target
in both datasets. CityScapes depth is inverse depth (disparity), so pixels far
away have small targets and the relative error there is large (29.98 for the
single-task SegNet), while NYUv2's depth in metres gives 0.2788.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from recon.tasks import Task, TaskMetric

#: Angle thresholds in degrees of the ``within_*`` normal metrics.
ANGLE_THRESHOLDS = (11.25, 22.5, 30.0)


def valid_pixels(target: torch.Tensor) -> torch.Tensor:
    """Return the N×H×W mask of pixels whose N×C×H×W target has a non-zero channel."""
    return (target != 0).any(dim=1)


def _check_same_shape(task: str, output: torch.Tensor, target: torch.Tensor) -> None:
    if output.shape != target.shape:
        raise ValueError(f"task '{task}': output shape {tuple(output.shape)} differs from "
                         f"target shape {tuple(target.shape)}; both must be N×C×H×W")


def _accumulate(total: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
    """Add ``value`` to a float64 running sum kept on ``value``'s device."""
    value = value.detach().to(torch.float64)
    return value if total is None else total + value


class SegmentationMetric(TaskMetric):
    """mIoU and pixel accuracy, in percent, from a confusion matrix accumulated over all pixels.

    A class that neither the predictions nor the labels contain has no IoU and is
    left out of the mean (the authors' code would return NaN).
    """

    higher_is_better = {"miou": True, "pix_acc": True}

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.confusion: torch.Tensor | None = None

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        n = self.num_classes
        prediction = output.argmax(dim=1)
        labelled = (target >= 0) & (target < n)
        # Pixel counts go to cell label * n + prediction of the flattened confusion matrix, and
        # unlabelled pixels to an extra cell n * n that is dropped. A scatter into a fixed size
        # does not wait for the device, unlike boolean indexing or bincount.
        index = torch.where(labelled, target.long() * n + prediction, n * n).flatten()
        if self.confusion is None:
            self.confusion = torch.zeros(n * n + 1, dtype=torch.int64, device=index.device)
        self.confusion.scatter_add_(0, index, torch.ones_like(index))

    def compute(self) -> dict[str, float]:
        if self.confusion is None:
            raise ValueError("no evaluation images were seen")
        n = self.num_classes
        confusion = self.confusion[:-1].to("cpu", torch.float64).reshape(n, n)
        if confusion.sum() == 0:
            raise ValueError("no labelled pixels were seen; the segmentation metrics are undefined")
        hits = confusion.diag()
        union = confusion.sum(0) + confusion.sum(1) - hits
        present = union > 0
        miou = (hits[present] / union[present]).mean()
        pix_acc = hits.sum() / confusion.sum()
        return {"miou": 100.0 * miou.item(), "pix_acc": 100.0 * pix_acc.item()}


class PerImageMetric(TaskMetric):
    """Base of the metrics computed per image and averaged over images.

    Only images with at least one pixel with a target count. The others have no
    error and are left out of the average, where the authors' code would divide by zero.
    """

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.images: torch.Tensor | None = None

    def _add(self, per_image: dict[str, torch.Tensor], counted: torch.Tensor) -> None:
        # torch.where instead of boolean indexing, which would wait for the device.
        for name, values in per_image.items():
            self.sums[name] = _accumulate(self.sums.get(name), torch.where(counted, values, 0.0).sum())
        self.images = _accumulate(self.images, counted.sum())

    def compute(self) -> dict[str, float]:
        if self.images is None:
            raise ValueError("no evaluation images were seen")
        # One transfer for every sum.
        names = list(self.sums)
        values = torch.stack([self.sums[name] for name in names] + [self.images]).cpu().tolist()
        images = values[-1]
        if images == 0:
            raise ValueError("no evaluation image has a pixel with a target; the metrics are undefined")
        return {name: value / images for name, value in zip(names, values)}


class DepthMetric(PerImageMetric):
    """Mean absolute and relative depth error over each image's pixels with depth, averaged over images."""

    higher_is_better = {"abs_err": False, "rel_err": False}

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        _check_same_shape("depth", output, target)
        valid = valid_pixels(target)
        pixels = valid.sum(dim=(1, 2))
        error = (output.detach().double() - target.double()).abs().sum(dim=1)
        relative = error / torch.where(valid, target.double().abs().sum(dim=1), 1.0)

        counted = pixels > 0
        denominator = pixels.clamp(min=1)
        self._add({
            "abs_err": (error * valid).sum(dim=(1, 2)) / denominator,
            "rel_err": (relative * valid).sum(dim=(1, 2)) / denominator,
        }, counted)


def _median(values: torch.Tensor, valid: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Return each row's median over its valid entries, as NumPy defines it for even counts."""
    ordered = torch.where(valid, values, torch.inf).sort(dim=1).values
    last = (counts - 1).clamp(min=0)
    lower = ordered.gather(1, (last // 2)[:, None])
    upper = ordered.gather(1, ((last + 1) // 2)[:, None])
    return ((lower + upper) / 2)[:, 0]


class NormalMetric(PerImageMetric):
    """Angle error in degrees between predicted and true normals, per image, averaged over images.

    ``angle_mean`` and ``angle_median`` are each image's mean and median error.
    ``within_11.25``, ``within_22.5`` and ``within_30`` are the percentages of
    its pixels whose error is below that many degrees.
    """

    higher_is_better = {"angle_mean": False, "angle_median": False,
                        **{f"within_{t:g}": True for t in ANGLE_THRESHOLDS}}

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        _check_same_shape("normal", output, target)
        valid = valid_pixels(target).flatten(1)
        pixels = valid.sum(dim=1)
        cosine = (output.detach().double() * target.double()).sum(dim=1).flatten(1)
        angle = torch.rad2deg(torch.acos(cosine.clamp(-1.0, 1.0)))

        counted = pixels > 0
        denominator = pixels.clamp(min=1)
        per_image = {
            "angle_mean": (angle * valid).sum(dim=1) / denominator,
            "angle_median": _median(angle, valid, pixels),
        }
        for threshold in ANGLE_THRESHOLDS:
            within = ((angle < threshold) & valid).sum(dim=1)
            per_image[f"within_{threshold:g}"] = 100.0 * within.double() / denominator
        self._add(per_image, counted)


@dataclass(frozen=True)
class SegmentationTask(Task):
    """Semantic segmentation into ``output_channels`` classes; labels are N×H×W integers, −1 unlabelled."""

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Summed then divided by the labelled pixels: the mean cross-entropy, and 0 for a batch
        # without labels instead of the NaN that the mean reduction returns.
        total = F.cross_entropy(output, target, ignore_index=-1, reduction="sum")
        return total / (target != -1).sum().clamp(min=1)

    def new_metric(self) -> TaskMetric:
        return SegmentationMetric(self.output_channels)


@dataclass(frozen=True)
class DepthTask(Task):
    """Depth estimation, N×1×H×W; a target of 0 marks a pixel without depth. L1 loss over the others."""

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_same_shape(self.name, output, target)
        valid = valid_pixels(target)
        error = (output - target).abs().sum(dim=1)
        return (error * valid).sum() / valid.sum().clamp(min=1)

    def new_metric(self) -> TaskMetric:
        return DepthMetric()


@dataclass(frozen=True)
class NormalTask(Task):
    """Surface normals, N×3×H×W unit vectors; an all-zero target marks a pixel without a normal.

    The loss is 1 minus the mean dot product of prediction and target over the
    pixels with a normal (the model outputs unit vectors, so this is the cosine).
    """

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_same_shape(self.name, output, target)
        valid = valid_pixels(target)
        dot = (output * target).sum(dim=1)
        return 1 - (dot * valid).sum() / valid.sum().clamp(min=1)

    def new_metric(self) -> TaskMetric:
        return NormalMetric()
