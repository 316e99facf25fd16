"""Loading CityScapes and NYUv2 folders: contents, errors and reproducible batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recon.data import build_data, dataset_tasks
from recon.data.dense import dense_tasks
from recon.dense_tasks import DepthTask, NormalTask, SegmentationTask


def test_dense_tasks_without_files():
    tasks, channels = dense_tasks("nyuv2")
    assert channels == 3
    assert list(tasks) == ["segmentation", "depth", "normal"]
    assert isinstance(tasks["segmentation"], SegmentationTask)
    assert tasks["segmentation"].output_channels == 13
    assert isinstance(tasks["depth"], DepthTask)
    assert tasks["depth"].output_channels == 1
    assert isinstance(tasks["normal"], NormalTask)
    assert tasks["normal"].output_channels == 3

    tasks, _ = dataset_tasks("cityscapes")
    assert list(tasks) == ["segmentation", "depth"]
    assert tasks["segmentation"].output_channels == 7


def test_dense_tasks_unknown_name():
    with pytest.raises(ValueError, match="unknown dense dataset 'kitti'.*cityscapes, nyuv2"):
        dense_tasks("kitti")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_load_nyuv2_values(dense_root, data_config, dtype):
    root = dense_root("nyuv2", dtype)
    bundle = build_data(data_config("nyuv2", root))
    assert bundle.name == "nyuv2"
    assert bundle.in_channels == 3
    assert len(bundle.train) == 3
    assert len(bundle.test) == 2

    images, targets = next(bundle.test.batches(2))
    assert images.dtype == torch.float32
    assert images.shape == (2, 3, 16, 32)
    assert targets["segmentation"].dtype == torch.int64
    assert targets["segmentation"].shape == (2, 16, 32)
    assert targets["depth"].shape == (2, 1, 16, 32)
    assert targets["normal"].shape == (2, 3, 16, 32)

    # Test item 1 is val file 1, moved from H×W×C to C×H×W.
    stored = {name: np.load(root / "val" / name / "1.npy") for name in ("image", "label", "depth", "normal")}
    np.testing.assert_allclose(images[1].numpy(), stored["image"].transpose(2, 0, 1).astype(np.float32))
    np.testing.assert_array_equal(targets["segmentation"][1].numpy(), stored["label"].astype(np.int64))
    np.testing.assert_allclose(targets["depth"][1].numpy(), stored["depth"].transpose(2, 0, 1).astype(np.float32))
    np.testing.assert_allclose(targets["normal"][1].numpy(), stored["normal"].transpose(2, 0, 1).astype(np.float32))


def test_load_cityscapes_tasks(dense_root, data_config):
    root = dense_root("cityscapes")
    bundle = build_data(data_config("cityscapes", root))
    images, targets = next(bundle.train.batches(3))
    assert set(targets) == {"segmentation", "depth"}
    labels = np.stack([np.load(root / "train" / "label_7" / f"{i}.npy") for i in range(3)])
    np.testing.assert_array_equal(targets["segmentation"].numpy(), labels.astype(np.int64))
    assert images.shape == (3, 3, 16, 32)


def test_train_and_test_size(dense_root, data_config):
    root = dense_root("cityscapes")
    bundle = build_data(data_config("cityscapes", root, train_size=2, test_size=1))
    assert len(bundle.train) == 2
    assert len(bundle.test) == 1


def test_train_size_above_count(dense_root, data_config):
    root = dense_root("cityscapes")
    with pytest.raises(ValueError, match="data.train_size is 5 but .*train contains 3 images"):
        build_data(data_config("cityscapes", root, train_size=5))


def test_root_unset(data_config, monkeypatch):
    monkeypatch.delenv("RECON_DATA", raising=False)
    with pytest.raises(ValueError, match="data.root is not set.*lorenmt/mtan"):
        build_data(data_config("nyuv2", None))


def test_root_from_environment(dense_root, data_config, monkeypatch):
    root = dense_root("nyuv2")
    monkeypatch.setenv("RECON_DATA", str(root.parent))
    bundle = build_data(data_config("nyuv2", None))
    assert len(bundle.train) == 3


def test_root_missing(tmp_path, data_config):
    with pytest.raises(FileNotFoundError, match="nyuv2 folder not found: .*absent"):
        build_data(data_config("nyuv2", tmp_path / "absent"))


def test_missing_task_folder(dense_root, data_config):
    root = dense_root("nyuv2")
    for path in (root / "val" / "normal").iterdir():
        path.unlink()
    (root / "val" / "normal").rmdir()
    with pytest.raises(FileNotFoundError, match=r"folder not found: .*val/normal"):
        build_data(data_config("nyuv2", root))


def test_missing_split_folder(dense_root, data_config):
    root = dense_root("cityscapes")
    for folder in (root / "val").iterdir():
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
    (root / "val").rmdir()
    with pytest.raises(FileNotFoundError, match=r"folder not found: .*cityscapes/val; .* must hold train/ and val/"):
        build_data(data_config("cityscapes", root))


def test_count_mismatch(dense_root, data_config):
    root = dense_root("nyuv2")
    (root / "train" / "depth" / "2.npy").unlink()
    with pytest.raises(ValueError, match=r"different numbers of files \(image/: 3, label/: 3, depth/: 2, normal/: 3\)"):
        build_data(data_config("nyuv2", root))


def test_gap_in_numbering(dense_root, data_config):
    root = dense_root("cityscapes")
    for name in ("image", "label_7", "depth"):
        (root / "train" / name / "1.npy").rename(root / "train" / name / "7.npy")
    with pytest.raises(FileNotFoundError, match=r"missing file .*train/image/1\.npy"):
        build_data(data_config("cityscapes", root))


def test_wrong_shape(dense_root, data_config):
    root = dense_root("nyuv2")
    np.save(root / "val" / "normal" / "1.npy", np.zeros((16, 32, 2), np.float32))
    with pytest.raises(ValueError, match=r"val/normal/1\.npy has shape \(16, 32, 2\); expected \(16, 32, 3\)"):
        build_data(data_config("nyuv2", root))


def test_size_differs_between_files(dense_root, data_config):
    root = dense_root("cityscapes")
    np.save(root / "train" / "label_7" / "2.npy", np.zeros((16, 30), np.float32))
    with pytest.raises(ValueError, match=r"train/label_7/2\.npy has shape \(16, 30\); expected \(16, 32\)"):
        build_data(data_config("cityscapes", root))


def test_wrong_dtype(dense_root, data_config):
    root = dense_root("cityscapes")
    np.save(root / "train" / "image" / "0.npy", np.zeros((16, 32, 3), np.uint8))
    with pytest.raises(ValueError, match=r"train/image/0\.npy has dtype uint8; expected float32 or float64"):
        build_data(data_config("cityscapes", root))


def test_label_out_of_range(dense_root, data_config):
    root = dense_root("cityscapes")
    labels = np.zeros((16, 32), np.float32)
    labels[3, 4] = 7.0
    np.save(root / "val" / "label_7" / "0.npy", labels)
    bundle = build_data(data_config("cityscapes", root))
    message = r"val/label_7/0\.npy contains the invalid label 7\.0; .* -1 \(unlabelled\) to 6"
    with pytest.raises(ValueError, match=message):
        next(bundle.test.batches(1))


def test_negative_workers(dense_root, data_config):
    root = dense_root("cityscapes")
    with pytest.raises(ValueError, match="data.num_workers is -1"):
        build_data(data_config("cityscapes", root, num_workers=-1))


def _collect(split, batch_size, seed, workers=None):
    if workers is not None:
        split.num_workers = workers
    generator = torch.Generator().manual_seed(seed)
    return list(split.batches(batch_size, shuffle=True, generator=generator))


def _same_batches(first, second) -> bool:
    if len(first) != len(second):
        return False
    for (images_a, targets_a), (images_b, targets_b) in zip(first, second):
        if not torch.equal(images_a, images_b):
            return False
        if any(not torch.equal(targets_a[task], targets_b[task]) for task in targets_a):
            return False
    return True


def test_batches_follow_generator(dense_root, data_config):
    root = dense_root("nyuv2", train=6)
    bundle = build_data(data_config("nyuv2", root, augment=True))
    first = _collect(bundle.train, 4, seed=3)
    again = _collect(bundle.train, 4, seed=3)
    other = _collect(bundle.train, 4, seed=4)
    assert [images.shape[0] for images, _ in first] == [4, 2]
    assert _same_batches(first, again)
    assert not _same_batches(first, other)


def test_batches_independent_of_workers(dense_root, data_config):
    root = dense_root("nyuv2", train=4)
    bundle = build_data(data_config("nyuv2", root, augment=True))
    in_process = _collect(bundle.train, 2, seed=5, workers=0)
    with_workers = _collect(bundle.train, 2, seed=5, workers=2)
    assert _same_batches(in_process, with_workers)


def test_batches_leave_global_random_state(dense_root, data_config):
    root = dense_root("cityscapes")
    bundle = build_data(data_config("cityscapes", root, augment=True))
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    _collect(bundle.train, 2, seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_drop_last(dense_root, data_config):
    root = dense_root("cityscapes")
    bundle = build_data(data_config("cityscapes", root))
    batches = list(bundle.train.batches(2, drop_last=True))
    assert len(batches) == 1
    assert bundle.train.num_batches(2, drop_last=True) == 1


def test_test_split_not_augmented(dense_root, data_config):
    root = dense_root("nyuv2")
    bundle = build_data(data_config("nyuv2", root, augment=True))
    images, _ = next(bundle.test.batches(1))
    stored = np.load(root / "val" / "image" / "0.npy").transpose(2, 0, 1)
    np.testing.assert_allclose(images[0].numpy(), stored)
