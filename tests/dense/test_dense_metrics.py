"""Losses and metrics of the dense tasks, against values worked out by hand or with NumPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recon.dense_tasks import DepthTask, NormalTask, SegmentationTask


def _one_hot_logits(prediction: torch.Tensor, classes: int) -> torch.Tensor:
    """N×H×W predicted classes -> N×C×H×W scores whose argmax is that class."""
    return F.one_hot(prediction, classes).permute(0, 3, 1, 2).float()


def test_segmentation_metric_known_confusion():
    # Classes 0-3: class 3 appears in neither labels nor predictions and has no IoU.
    labels = torch.tensor([[[0, 0, 1, 1], [2, 2, -1, 0]]])
    prediction = torch.tensor([[[0, 1, 1, 1], [2, 0, 3, 0]]])
    # Pixel (1, 2) is unlabelled, so its prediction 3 does not count.
    # Class 0: hits 2, labels 3, predicted 3 -> IoU 2 / 4. Class 1: hits 2, labels 2,
    # predicted 3 -> 2 / 3. Class 2: hits 1, labels 2, predicted 1 -> 1 / 2.
    metric = SegmentationTask("segmentation", 4).new_metric()
    metric.update(_one_hot_logits(prediction.clamp(max=3), 4), labels)
    result = metric.compute()
    assert result["miou"] == pytest.approx(100 * (1 / 2 + 2 / 3 + 1 / 2) / 3)
    assert result["pix_acc"] == pytest.approx(100 * 5 / 7)


def test_segmentation_metric_accumulates_batches():
    labels = torch.tensor([[[0, 1]], [[1, 1]]])
    prediction = torch.tensor([[[0, 0]], [[1, 1]]])
    metric = SegmentationTask("segmentation", 2).new_metric()
    for i in range(2):
        metric.update(_one_hot_logits(prediction[i:i + 1], 2), labels[i:i + 1])
    # One confusion matrix over both images: class 0 IoU 1 / 2, class 1 IoU 2 / 3.
    result = metric.compute()
    assert result["miou"] == pytest.approx(100 * (1 / 2 + 2 / 3) / 2)
    assert result["pix_acc"] == pytest.approx(75.0)


def test_segmentation_metric_no_labels():
    metric = SegmentationTask("segmentation", 3).new_metric()
    metric.update(torch.zeros(1, 3, 2, 2), torch.full((1, 2, 2), -1))
    with pytest.raises(ValueError, match="no labelled pixels"):
        metric.compute()


def test_depth_metric_per_image_average():
    target = torch.tensor([[[[1.0, 2.0], [0.0, 4.0]]], [[[2.0, 0.0], [0.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    output = torch.tensor([[[[2.0, 2.0], [9.0, 2.0]]], [[[1.0, 5.0], [5.0, 5.0]]], [[[3.0, 3.0], [3.0, 3.0]]]])
    # Image 0: errors 1, 0, 2 on depths 1, 2, 4 -> abs 1, rel (1 + 0 + 0.5) / 3 = 0.5.
    # Image 1: error 1 on depth 2 -> abs 1, rel 0.5. Image 2 has no depth and is left out.
    metric = DepthTask("depth", 1).new_metric()
    metric.update(output, target)
    result = metric.compute()
    assert result["abs_err"] == pytest.approx(1.0)
    assert result["rel_err"] == pytest.approx(0.5)


def test_depth_metric_images_weigh_equally():
    # One pixel with error 4 in image 0, three pixels with error 0 in image 1: per image
    # (4 + 0) / 2 = 2, where pooling the pixels would give 4 / 4 = 1.
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[1.0, 1.0], [1.0, 0.0]]]])
    output = torch.tensor([[[[5.0, 0.0], [0.0, 0.0]]], [[[1.0, 1.0], [1.0, 0.0]]]])
    metric = DepthTask("depth", 1).new_metric()
    metric.update(output, target)
    assert metric.compute()["abs_err"] == pytest.approx(2.0)


def test_depth_metric_no_depth():
    metric = DepthTask("depth", 1).new_metric()
    metric.update(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="no evaluation image has a pixel with a target"):
        metric.compute()


def _unit(angle_degrees: float) -> list[float]:
    """A unit vector at ``angle_degrees`` from the z-axis, in the x-z plane."""
    radians = math.radians(angle_degrees)
    return [math.sin(radians), 0.0, math.cos(radians)]


def test_normal_metric_known_angles():
    # Image 0: angles 5, 20, 25, 40 (median 22.5); one pixel has no normal.
    # Image 1: angles 10, 12, 31 (median 12).
    angles = [[5.0, 20.0, 25.0, 40.0, None], [10.0, 12.0, 31.0, None, None]]
    output = torch.zeros(2, 3, 1, 5, dtype=torch.float64)
    target = torch.zeros(2, 3, 1, 5, dtype=torch.float64)
    for image, row in enumerate(angles):
        for pixel, angle in enumerate(row):
            output[image, :, 0, pixel] = torch.tensor([0.0, 0.0, 1.0])
            if angle is not None:
                target[image, :, 0, pixel] = torch.tensor(_unit(angle), dtype=torch.float64)
    metric = NormalTask("normal", 3).new_metric()
    metric.update(output, target)
    result = metric.compute()

    assert result["angle_mean"] == pytest.approx((90 / 4 + 53 / 3) / 2, abs=1e-6)
    assert result["angle_median"] == pytest.approx((22.5 + 12) / 2, abs=1e-6)
    assert result["within_11.25"] == pytest.approx((25 + 100 / 3) / 2)
    assert result["within_22.5"] == pytest.approx((50 + 200 / 3) / 2)
    assert result["within_30"] == pytest.approx((75 + 200 / 3) / 2)


def test_normal_median_matches_numpy():
    generator = torch.Generator().manual_seed(0)
    output = F.normalize(torch.randn(3, 3, 5, 7, generator=generator), dim=1).double()
    target = F.normalize(torch.randn(3, 3, 5, 7, generator=generator), dim=1).double()
    target[0, :, :2] = 0  # image 0: 25 pixels with a normal (odd); image 1: all 35 (odd)
    target[2, :, 0, :3] = 0  # image 2: 32 pixels (even)
    metric = NormalTask("normal", 3).new_metric()
    metric.update(output, target)

    medians = []
    for image in range(3):
        valid = (target[image] != 0).any(0).numpy()
        cosine = (output[image] * target[image]).sum(0).numpy()[valid]
        medians.append(np.median(np.degrees(np.arccos(np.clip(cosine, -1, 1)))))
    assert metric.compute()["angle_median"] == pytest.approx(np.mean(medians), abs=1e-9)


def _random_batch(task: str, count: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    if task == "segmentation":
        output = torch.randn(count, 4, 6, 8, generator=generator)
        target = torch.randint(-1, 4, (count, 6, 8), generator=generator)
    elif task == "depth":
        output = torch.rand(count, 1, 6, 8, generator=generator) * 5
        target = torch.rand(count, 1, 6, 8, generator=generator) * 5
        target[target < 1] = 0
    else:
        output = F.normalize(torch.randn(count, 3, 6, 8, generator=generator), dim=1)
        target = F.normalize(torch.randn(count, 3, 6, 8, generator=generator), dim=1)
        target[:, :, :2] *= (torch.rand(count, 1, 2, 8, generator=generator) < 0.5)
    return output, target


TASKS = {"segmentation": SegmentationTask("segmentation", 4), "depth": DepthTask("depth", 1),
         "normal": NormalTask("normal", 3)}


@pytest.mark.parametrize("task", list(TASKS))
def test_metrics_independent_of_batch_size(task):
    output, target = _random_batch(task)
    results = []
    for batch_size in (1, 2, 5):
        metric = TASKS[task].new_metric()
        for start in range(0, output.shape[0], batch_size):
            metric.update(output[start:start + batch_size], target[start:start + batch_size])
        results.append(metric.compute())
    for result in results[1:]:
        assert result.keys() == results[0].keys()
        for name, value in result.items():
            assert value == pytest.approx(results[0][name], rel=1e-9), name


@pytest.mark.parametrize("task", list(TASKS))
def test_higher_is_better_names_every_metric(task):
    output, target = _random_batch(task)
    metric = TASKS[task].new_metric()
    metric.update(output, target)
    assert set(metric.compute()) == set(metric.higher_is_better)


def test_segmentation_loss_ignores_unlabelled():
    output, target = _random_batch("segmentation")
    loss = TASKS["segmentation"].loss(output, target)
    labelled = target != -1
    log_probabilities = F.log_softmax(output, dim=1)
    picked = log_probabilities.permute(0, 2, 3, 1)[labelled].gather(1, target[labelled][:, None])
    assert loss.item() == pytest.approx(-picked.mean().item(), rel=1e-6)


def test_segmentation_loss_without_labels_is_zero():
    loss = TASKS["segmentation"].loss(torch.randn(1, 4, 2, 2), torch.full((1, 2, 2), -1))
    assert loss.item() == 0.0


def test_depth_loss_over_valid_pixels():
    target = torch.tensor([[[[1.0, 0.0], [3.0, 2.0]]]])
    output = torch.tensor([[[[2.0, 7.0], [1.0, 2.0]]]])
    # Errors 1, 2, 0 on the three pixels with depth.
    assert TASKS["depth"].loss(output, target).item() == pytest.approx(1.0)


def test_depth_loss_shape_mismatch():
    message = r"task 'depth': output shape \(1, 1, 2, 2\) differs from target shape \(1, 2, 2\)"
    with pytest.raises(ValueError, match=message):
        TASKS["depth"].loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2))


def test_normal_loss_one_minus_mean_cosine():
    output = torch.zeros(1, 3, 1, 3)
    target = torch.zeros(1, 3, 1, 3)
    output[0, :, 0, 0] = torch.tensor([0.0, 0.0, 1.0])
    target[0, :, 0, 0] = torch.tensor(_unit(60.0))  # cosine 0.5
    output[0, :, 0, 1] = torch.tensor([1.0, 0.0, 0.0])
    target[0, :, 0, 1] = torch.tensor([1.0, 0.0, 0.0])  # cosine 1
    output[0, :, 0, 2] = torch.tensor([1.0, 0.0, 0.0])  # no target: left out
    assert TASKS["normal"].loss(output, target).item() == pytest.approx(1 - 0.75)
