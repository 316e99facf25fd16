"""CityScapes and NYUv2 as preprocessed for MTAN: one ``.npy`` file per image and target.

Layout of ``ROOT`` (the MTAN authors' downloads, linked from the README of
github.com/lorenmt/mtan, and the copies that CAGrad and Recon use)::

    ROOT/train/image/0.npy, 1.npy, ...   H×W×3 float, values in [0, 1]
    ROOT/train/label_7/  (CityScapes) or label/ (NYUv2)
                                         H×W float class numbers, −1 unlabelled
    ROOT/train/depth/                    H×W×1 float, 0 where there is no depth
    ROOT/train/normal/   (NYUv2 only)    H×W×3 float unit vectors, 0 where missing
    ROOT/val/...                         the same; the Recon paper reports on it

CityScapes has 7 classes at 128×256 and NYUv2 13 classes at 288×384. Any
height and width are read as long as every file of both splits has the size of
``train/image/0.npy``; the models need multiples of 32. Files may be float32
or float64, and labels may also be stored as integers.

Training batches are augmented as in the Recon authors' code: a random scale
crop (scale 1.0, 1.2 or 1.5) and a random horizontal flip.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from recon.data import DataBundle
from recon.data.split import Batch, Split
from recon.dense_tasks import DepthTask, NormalTask, SegmentationTask
from recon.tasks import Task

logger = logging.getLogger(__name__)

__all__ = ["DENSE_DATASETS", "DenseDataset", "DenseSplit", "build_dense", "dense_tasks", "random_flip",
           "random_scale_crop", "resolve_root"]

#: Scales of the random scale crop: a crop of H/s × W/s is resized back to H × W.
CROP_SCALES = (1.0, 1.2, 1.5)

#: Environment variable naming the folder that contains ``cityscapes/`` and ``nyuv2/``.
DATA_ENV = "RECON_DATA"


@dataclass(frozen=True)
class DenseSpec:
    """A dataset's folders (task -> folder under each split), classes and published image size."""

    folders: dict[str, str]
    classes: int
    image_size: tuple[int, int]


DENSE_DATASETS: dict[str, DenseSpec] = {
    "cityscapes": DenseSpec({"segmentation": "label_7", "depth": "depth"}, classes=7, image_size=(128, 256)),
    "nyuv2": DenseSpec({"segmentation": "label", "depth": "depth", "normal": "normal"}, classes=13,
                       image_size=(288, 384)),
}

#: Channels of each array as stored (H×W×C), ``None`` for the H×W label.
CHANNELS = {"image": 3, "segmentation": None, "depth": 1, "normal": 3}

FLOAT_TYPES = (np.float32, np.float64)


def _spec(name: str) -> DenseSpec:
    if name not in DENSE_DATASETS:
        raise ValueError(f"unknown dense dataset '{name}'; dense datasets: {', '.join(DENSE_DATASETS)}")
    return DENSE_DATASETS[name]


def dense_tasks(name: str) -> tuple[dict[str, Task], int]:
    """Return the tasks of ``cityscapes`` or ``nyuv2`` and the input channels (3), reading no file."""
    spec = _spec(name)
    tasks: dict[str, Task] = {
        "segmentation": SegmentationTask("segmentation", spec.classes),
        "depth": DepthTask("depth", 1),
    }
    if "normal" in spec.folders:
        tasks["normal"] = NormalTask("normal", 3)
    return tasks, 3


def resolve_root(config: dict) -> Path:
    """Return ``data.root``, or ``$RECON_DATA/<name>`` when it is unset; raise if neither exists."""
    name = config["name"]
    if config.get("root"):
        root = Path(config["root"]).expanduser()
    elif os.environ.get(DATA_ENV):
        root = Path(os.environ[DATA_ENV]).expanduser() / name
    else:
        raise ValueError(
            f"data.root is not set for dataset '{name}' and ${DATA_ENV} is not set either. Download the "
            f"preprocessed {name} folder that the MTAN authors publish (links in the README of "
            f"github.com/lorenmt/mtan) and pass data.root=FOLDER, the folder holding train/ and val/"
        )
    if not root.is_dir():
        raise FileNotFoundError(f"{name} folder not found: {root} (from data.root or ${DATA_ENV}); it must hold "
                                f"train/ and val/ from the MTAN authors' preprocessed download")
    return root


def _numbered_files(folder: Path) -> int:
    """Return how many files ``0.npy``, ``1.npy``, ... ``folder`` holds; raise on a gap."""
    if not folder.is_dir():
        raise FileNotFoundError(f"folder not found: {folder}")
    numbers = sorted(int(path.stem) for path in folder.glob("*.npy") if path.stem.isdigit())
    for expected, number in enumerate(numbers):
        if number != expected:
            raise FileNotFoundError(f"missing file {folder / f'{expected}.npy'}: the files must be numbered "
                                    f"0.npy to {len(numbers) - 1}.npy without gaps")
    return len(numbers)


def _expected_shape(key: str, size: tuple[int, int]) -> tuple[int, ...]:
    channels = CHANNELS[key]
    return size if channels is None else (*size, channels)


def check_array(path: Path, array: np.ndarray, key: str, size: tuple[int, int]) -> None:
    """Raise ``ValueError`` naming ``path`` if ``array`` has the wrong shape or type for ``key``."""
    expected = _expected_shape(key, size)
    if array.shape != expected:
        layout = "H×W" if CHANNELS[key] is None else "H×W×C"
        raise ValueError(f"{path} has shape {array.shape}; expected {expected} ({layout})")
    integer_label = key == "segmentation" and np.issubdtype(array.dtype, np.integer)
    if array.dtype.type not in FLOAT_TYPES and not integer_label:
        raise ValueError(f"{path} has dtype {array.dtype}; expected float32 or float64")


class DenseDataset(Dataset):
    """One split: item ``(index, seed)`` is the image and targets of file ``index``.

    With ``augment`` the item is augmented with a generator seeded by ``seed``,
    so an item's augmentation depends only on its seed, not on the worker that
    loads it. Items are ``(image, {task: target})``: image 3×H×W float32,
    segmentation H×W int64, depth 1×H×W and normal 3×H×W float32.
    """

    def __init__(self, folder: Path, folders: dict[str, str], classes: int, size: tuple[int, int],
                 length: int, augment: bool) -> None:
        self.folder = folder
        self.folders = {"image": "image", **folders}
        self.classes = classes
        self.size = size
        self.length = length
        self.augment = augment

    def __len__(self) -> int:
        return self.length

    def load(self, key: str, index: int) -> np.ndarray:
        """Read file ``index`` of ``key``'s folder and check its shape, type and, for labels, values."""
        path = self.folder / self.folders[key] / f"{index}.npy"
        array = np.load(path)
        check_array(path, array, key, self.size)
        if key == "segmentation":
            self._check_labels(path, array)
        return array

    def _check_labels(self, path: Path, labels: np.ndarray) -> None:
        valid = (labels == np.round(labels)) & (labels >= -1) & (labels < self.classes)
        if not valid.all():
            bad = labels[~valid].flat[0]
            raise ValueError(f"{path} contains the invalid label {bad}; labels must be whole numbers from -1 "
                             f"(unlabelled) to {self.classes - 1}")

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        index, seed = item
        image = torch.from_numpy(self.load("image", index)).permute(2, 0, 1).float()
        targets = {}
        for task in self.folders:
            if task == "image":
                continue
            array = torch.from_numpy(self.load(task, index))
            targets[task] = array.float() if task == "segmentation" else array.permute(2, 0, 1).float()

        if self.augment:
            generator = torch.Generator().manual_seed(seed)
            image, targets = random_scale_crop(image, targets, generator)
            image, targets = random_flip(image, targets, generator)
        if "segmentation" in targets:
            targets["segmentation"] = targets["segmentation"].long()
        return image.contiguous(), {task: target.contiguous() for task, target in targets.items()}


def random_scale_crop(image: torch.Tensor, targets: dict[str, torch.Tensor], generator: torch.Generator,
                      scales: tuple[float, ...] = CROP_SCALES) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Crop H/s × W/s at a random position and resize it back to H × W, for a random scale s.

    As in the Recon authors' code: the crop is ``int(H / s)`` × ``int(W / s)``
    with its top-left corner drawn uniformly from every position that fits.
    Image and normals are resized bilinearly (``align_corners=True``), labels
    and depth by nearest neighbour. Depth is divided by s: a crop enlarged s
    times looks s times closer. Normals are not renormalised. The generator
    draws, in order, the scale index, the top row and the left column.
    """
    height, width = image.shape[-2:]
    scale = scales[int(torch.randint(len(scales), (1,), generator=generator))]
    crop_height, crop_width = int(height / scale), int(width / scale)
    top = int(torch.randint(height - crop_height + 1, (1,), generator=generator))
    left = int(torch.randint(width - crop_width + 1, (1,), generator=generator))

    def resize(array: torch.Tensor, mode: str) -> torch.Tensor:
        crop = array[..., top:top + crop_height, left:left + crop_width]
        batch = crop[None] if crop.dim() == 3 else crop[None, None]
        align = True if mode == "bilinear" else None
        resized = F.interpolate(batch, size=(height, width), mode=mode, align_corners=align)
        return resized.reshape(*array.shape[:-2], height, width)

    resized = {}
    for task, target in targets.items():
        resized[task] = resize(target, "bilinear" if task == "normal" else "nearest")
    if "depth" in resized:
        resized["depth"] = resized["depth"] / scale
    return resize(image, "bilinear"), resized


def random_flip(image: torch.Tensor, targets: dict[str, torch.Tensor],
                generator: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mirror image and targets left to right with probability 0.5, negating the normals' x-component."""
    if float(torch.rand(1, generator=generator)) >= 0.5:
        return image, targets
    flipped = {task: target.flip(-1) for task, target in targets.items()}
    if "normal" in flipped:
        flipped["normal"][0] = -flipped["normal"][0]
    return image.flip(-1), flipped


class DenseSplit(Split):
    """Dense split (CityScapes or NYUv2) read through a ``DataLoader`` with ``num_workers`` workers.

    ``batches`` draws the order (when shuffling) and then one augmentation seed
    per item (when augmenting) from the generator it is given. The batches
    therefore depend only on that generator's state, for any number of workers.
    """

    def __init__(self, dataset: DenseDataset, num_workers: int) -> None:
        self.dataset = dataset
        self.num_workers = num_workers

    def __len__(self) -> int:
        return len(self.dataset)

    def items(self, shuffle: bool, generator: torch.Generator | None) -> list[tuple[int, int]]:
        """Return the ``(index, augmentation seed)`` pairs of one pass, in order."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        if self.dataset.augment:
            seeds = torch.randint(2**62, (n,), generator=generator)
        else:
            seeds = torch.zeros(n, dtype=torch.int64)
        return list(zip(order.tolist(), seeds.tolist()))

    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu", drop_last: bool = False) -> Iterator[Batch]:
        device = torch.device(device)
        # The loader draws its workers' base seed from the generator it is given; a private one
        # keeps it from advancing torch's global random state. Augmentation does not use it.
        loader = DataLoader(self.dataset, batch_size=batch_size, sampler=self.items(shuffle, generator),
                            num_workers=self.num_workers, drop_last=drop_last,
                            pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(0))
        for images, targets in loader:
            yield (images.to(device, non_blocking=True),
                   {task: target.to(device, non_blocking=True) for task, target in targets.items()})


def _scan_split(folder: Path, folders: dict[str, str], limit: int | None, key: str) -> int:
    """Check that ``folder`` contains every task folder with equally many files; return how many are used."""
    counts = {name: _numbered_files(folder / name) for name in ("image", *folders.values())}
    if len(set(counts.values())) > 1:
        listing = ", ".join(f"{name}/: {count}" for name, count in counts.items())
        raise ValueError(f"the folders of {folder} contain different numbers of files ({listing}); "
                         f"each image needs one file in every folder")
    count = counts["image"]
    if count == 0:
        raise FileNotFoundError(f"no numbered .npy files in {folder / 'image'}")
    if limit is not None and not 0 < limit <= count:
        raise ValueError(f"{key} is {limit} but {folder} contains {count} images; use a number from 1 to {count}")
    return count if limit is None else limit


def _check_headers(folder: Path, folders: dict[str, str], count: int, size: tuple[int, int]) -> None:
    """Check the shape and type of every file from its header, before any training starts."""
    for key, name in {"image": "image", **folders}.items():
        for index in range(count):
            path = folder / name / f"{index}.npy"
            check_array(path, np.load(path, mmap_mode="r"), key, size)


def _image_size(root: Path) -> tuple[int, int]:
    path = root / "train" / "image" / "0.npy"
    shape = np.load(path, mmap_mode="r").shape
    if len(shape) != 3 or shape[-1] != 3:
        raise ValueError(f"{path} has shape {shape}; expected H×W×3")
    return shape[0], shape[1]


def build_dense(config: dict) -> DataBundle:
    """Build CityScapes or NYUv2 from the resolved ``data`` config section.

    The ``test`` split is ``ROOT/val``. ``data.train_size`` and ``data.test_size``
    keep the first N files, ``data.augment`` turns the training augmentation on,
    and ``data.num_workers`` sets the loading processes.
    """
    name = config["name"]
    spec = _spec(name)
    workers = config.get("num_workers", 0)
    if workers < 0:
        raise ValueError(f"data.num_workers is {workers}; use 0 (load in the training process) or more")
    root = resolve_root(config)

    # The test split is val/: the Recon paper reports its results on the validation images.
    splits = {}
    for split, folder_name in (("train", "train"), ("test", "val")):
        folder = root / folder_name
        if not folder.is_dir():
            raise FileNotFoundError(f"folder not found: {folder}; {root} must hold train/ and val/")
        key = f"{split}_size"
        splits[split] = (folder, _scan_split(folder, spec.folders, config.get(key), f"data.{key}"))

    size = _image_size(root)
    if size != spec.image_size:
        logger.warning("%s images are %d×%d; the Recon paper uses %d×%d", name, *size, *spec.image_size)
    for folder, count in splits.values():
        _check_headers(folder, spec.folders, count, size)

    tasks, in_channels = dense_tasks(name)
    augment = config.get("augment", True)
    train = DenseDataset(splits["train"][0], spec.folders, spec.classes, size, splits["train"][1], augment)
    test = DenseDataset(splits["test"][0], spec.folders, spec.classes, size, splits["test"][1], augment=False)
    logger.info("%s from %s: %d training and %d test images of %d×%d, augmentation %s",
                name, root, len(train), len(test), *size, "on" if augment else "off")
    return DataBundle(name, DenseSplit(train, workers), DenseSplit(test, workers), tasks, in_channels)
