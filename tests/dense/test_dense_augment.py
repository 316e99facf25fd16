"""Training augmentation: random scale crop and horizontal flip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recon.data.dense import CROP_SCALES, random_flip, random_scale_crop

HEIGHT, WIDTH = 20, 30


def _sample() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Image and targets whose every pixel value is distinct, so a crop's origin can be read off."""
    pixels = torch.arange(HEIGHT * WIDTH, dtype=torch.float32).reshape(HEIGHT, WIDTH)
    image = torch.stack([pixels, pixels + 1000, pixels + 2000])
    normal = torch.stack([pixels + 0.25, -pixels, pixels * 2])
    targets = {"segmentation": pixels.clone(), "depth": (pixels + 1)[None], "normal": normal}
    return image, targets


def _draws(seed: int) -> tuple[float, int, int]:
    """Redo the documented draws of random_scale_crop: scale index, top row, left column."""
    generator = torch.Generator().manual_seed(seed)
    scale = CROP_SCALES[int(torch.randint(len(CROP_SCALES), (1,), generator=generator))]
    crop_height, crop_width = int(HEIGHT / scale), int(WIDTH / scale)
    top = int(torch.randint(HEIGHT - crop_height + 1, (1,), generator=generator))
    left = int(torch.randint(WIDTH - crop_width + 1, (1,), generator=generator))
    return scale, top, left


def _seed_with_scale(scale: float) -> int:
    return next(seed for seed in range(1000) if _draws(seed)[0] == scale and _draws(seed)[1] > 0)


@pytest.mark.parametrize("scale", [1.2, 1.5])
def test_scale_crop_nearest_and_depth(scale):
    seed = _seed_with_scale(scale)
    _, top, left = _draws(seed)
    crop_height, crop_width = int(HEIGHT / scale), int(WIDTH / scale)
    image, targets = _sample()
    _, cropped = random_scale_crop(image, targets, torch.Generator().manual_seed(seed))

    # Nearest neighbour as PyTorch defines it: output row r reads crop row floor(r * h / H).
    rows = top + np.floor(np.arange(HEIGHT) * crop_height / HEIGHT).astype(int)
    columns = left + np.floor(np.arange(WIDTH) * crop_width / WIDTH).astype(int)
    pixels = targets["segmentation"].numpy()
    expected_labels = pixels[np.ix_(rows, columns)]
    np.testing.assert_array_equal(cropped["segmentation"].numpy(), expected_labels)
    np.testing.assert_allclose(cropped["depth"][0].numpy(), (expected_labels + 1) / scale, rtol=1e-6)


def test_scale_crop_bilinear_corners():
    seed = _seed_with_scale(1.5)
    _, top, left = _draws(seed)
    crop_height, crop_width = int(HEIGHT / 1.5), int(WIDTH / 1.5)
    image, targets = _sample()
    resized, cropped = random_scale_crop(image, targets, torch.Generator().manual_seed(seed))

    # align_corners=True maps the crop's corner pixels onto the output's corner pixels.
    bottom, right = top + crop_height - 1, left + crop_width - 1
    for row, column, source_row, source_column in [(0, 0, top, left), (-1, -1, bottom, right),
                                                   (0, -1, top, right), (-1, 0, bottom, left)]:
        assert resized[:, row, column].tolist() == image[:, source_row, source_column].tolist()
        assert cropped["normal"][:, row, column].tolist() == targets["normal"][:, source_row, source_column].tolist()
    # Halfway between two crop columns, bilinear interpolation averages them; normals keep their scale.
    middle = resized[0, 0, (WIDTH - 1) // 2]
    assert image[0, top, left] <= middle <= image[0, top, right]


def test_scale_crop_scale_one_keeps_sample():
    seed = next(seed for seed in range(1000) if _draws(seed)[0] == 1.0)
    image, targets = _sample()
    resized, cropped = random_scale_crop(image, targets, torch.Generator().manual_seed(seed))
    assert torch.equal(resized, image)
    for task in targets:
        assert torch.equal(cropped[task], targets[task])


def test_scale_crop_draws_every_scale():
    image, targets = _sample()
    targets["depth"] = torch.ones(1, HEIGHT, WIDTH)
    scales = set()
    for seed in range(60):
        _, cropped = random_scale_crop(image, targets, torch.Generator().manual_seed(seed))
        # A constant depth of 1 becomes 1 / scale everywhere.
        assert torch.all(cropped["depth"] == cropped["depth"][0, 0, 0])
        scales.add(round(1.0 / float(cropped["depth"][0, 0, 0]), 6))
    assert scales == set(CROP_SCALES)


def _seed_for_flip(flip: bool) -> int:
    return next(seed for seed in range(100)
                if (float(torch.rand(1, generator=torch.Generator().manual_seed(seed))) < 0.5) == flip)


def test_flip_mirrors_and_negates_normal_x():
    image, targets = _sample()
    flipped_image, flipped = random_flip(image, targets, torch.Generator().manual_seed(_seed_for_flip(True)))
    np.testing.assert_array_equal(flipped_image.numpy(), image.numpy()[:, :, ::-1])
    np.testing.assert_array_equal(flipped["segmentation"].numpy(), targets["segmentation"].numpy()[:, ::-1])
    np.testing.assert_array_equal(flipped["depth"].numpy(), targets["depth"].numpy()[:, :, ::-1])
    normal = targets["normal"].numpy()[:, :, ::-1]
    np.testing.assert_array_equal(flipped["normal"][0].numpy(), -normal[0])
    np.testing.assert_array_equal(flipped["normal"][1:].numpy(), normal[1:])
    # The input is left as it was.
    assert targets["normal"][0, 0, 0] == 0.25


def test_flip_not_drawn_keeps_sample():
    image, targets = _sample()
    same_image, same = random_flip(image, targets, torch.Generator().manual_seed(_seed_for_flip(False)))
    assert torch.equal(same_image, image)
    for task in targets:
        assert torch.equal(same[task], targets[task])
