"""Multi-MNIST, Multi-Fashion and Multi-Fashion+MNIST: two items per image, one task per item.

These are the digit benchmarks of Recon (Shi et al., "Recon: Reducing
Conflicting Gradients from the Root for Multi-Task Learning", ICLR 2023,
arXiv 2302.11289), taken from Pareto MTL (Lin et al., "Pareto Multi-Task
Learning", NeurIPS 2019, github.com/Xi-L/ParetoMTL). Each 36×36 one-channel
image contains two 28×28 items, one at the top-left corner and one at the
bottom-right corner, overlapping in the middle. Task T1 classifies the top-left
item and T2 the bottom-right one. In Multi-Fashion+MNIST the top-left item is
an MNIST digit and the bottom-right one a Fashion-MNIST article. There are
120,000 training and 20,000 test images.

The data comes from the first of these that is found:

1. the pickle published with Pareto MTL (``multi_mnist.pickle``,
   ``multi_fashion.pickle``, ``multi_fashion_and_mnist.pickle``) in
   ``data.root`` or ``$RECON_DATA``, or in their subfolder named after the
   dataset. The paper's numbers were measured on it.
2. a copy built earlier from IDX files, in the cache folder.
3. a new build from the MNIST / Fashion-MNIST IDX files, which is then cached.
   The build follows the published description but is not the same draw as
   the published pickles, so accuracies can differ slightly from the paper's.

``datasets/README.md`` describes the search order, the build and the cache.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import pickle
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

import numpy as np
import torch

import recon
from recon.data import DataBundle, TensorSplit, dataset_tasks
from recon.data.idx import IDXFormatError, read_idx_images, read_idx_labels

__all__ = [
    "CANVAS_SIZE", "ITEM_SIZE", "SECOND_ITEM_OFFSET", "SYSTEM_DATA_DIRS",
    "DatasetNotFoundError", "MultiDigitArrays",
    "build_multi_digit", "compose_images", "draw_pairing", "load_published_pickle",
]

logger = logging.getLogger(__name__)

#: Side of a multi-digit image and of one item in it, in pixels.
CANVAS_SIZE = 36
ITEM_SIZE = 28
#: Row and column where the bottom-right item starts: it covers rows and columns 8..35.
SECOND_ITEM_OFFSET = CANVAS_SIZE - ITEM_SIZE
#: Number of classes of each item (digits 0-9, or the ten Fashion-MNIST articles).
NUM_CLASSES = 10
#: Images built per source item: each item is drawn as top-left item this many times, so
#: 60,000 MNIST training items give the 120,000 training images of the published data.
PAIRINGS_PER_SPLIT = 2
#: Folders searched for IDX files after ``data.root`` and ``$RECON_DATA``. Debian's
#: dataset-fashion-mnist package installs into /usr/share/datasets/fashion-mnist.
SYSTEM_DATA_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets"),)
#: Version of the cache file layout and of the build. Increase it when either changes.
CACHE_FORMAT = 1

_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_PAPER_SIZES = {"train": 120_000, "test": 20_000}


@dataclass(frozen=True)
class _IDXSource:
    """A single-item dataset published as IDX files: MNIST or Fashion-MNIST."""

    folder: str
    title: str
    torchvision_class: str
    how_to_get: str


_SOURCES = {
    "mnist": _IDXSource(
        "mnist", "MNIST", "MNIST",
        "download the four files from the MNIST database page (yann.lecun.com/exdb/mnist) "
        "into ROOT/mnist/, where ROOT is data.root or $RECON_DATA",
    ),
    "fashion-mnist": _IDXSource(
        "fashion-mnist", "Fashion-MNIST", "FashionMNIST",
        "run `apt-get install dataset-fashion-mnist` (Debian; installs /usr/share/datasets/fashion-mnist), "
        "or download the four files from github.com/zalandoresearch/fashion-mnist into ROOT/fashion-mnist/, "
        "where ROOT is data.root or $RECON_DATA",
    ),
}


@dataclass(frozen=True)
class _DatasetSpec:
    """One multi-digit dataset: its published pickle and the IDX source of each item."""

    pickle_name: str
    top_left: str
    bottom_right: str


_DATASETS = {
    "multi_mnist": _DatasetSpec("multi_mnist.pickle", "mnist", "mnist"),
    "multi_fashion": _DatasetSpec("multi_fashion.pickle", "fashion-mnist", "fashion-mnist"),
    "multi_fashion_mnist": _DatasetSpec("multi_fashion_and_mnist.pickle", "mnist", "fashion-mnist"),
}


class DatasetNotFoundError(FileNotFoundError):
    """Raised when no source of a dataset is found. The message lists every place searched and how to get the files."""


@dataclass
class MultiDigitArrays:
    """Both splits as NumPy arrays: images N×36×36 (uint8 in 0..255, or float32 in [0, 1]), labels N×2."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


# ---------------------------------------------------------------- entry point


def build_multi_digit(config: dict, *, system_dirs: Sequence[Path] | None = None,
                      download: bool = True) -> DataBundle:
    """Load or build the multi-digit dataset that ``config["name"]`` names.

    ``config`` is the resolved ``data`` section of a run config. ``system_dirs``
    replaces ``SYSTEM_DATA_DIRS``, and ``download=False`` stops before
    torchvision's download. Tests use both to stay off the system folders and
    the network. Raises ``DatasetNotFoundError`` when no source is found, and
    ``ValueError`` naming the file or key for a bad file or config value.
    """
    name = config["name"]
    if name not in _DATASETS:
        raise ValueError(f"data.name '{name}' is not a multi-digit dataset; expected one of {sorted(_DATASETS)}")
    spec = _DATASETS[name]
    data_dirs = _data_dirs(config)

    # The published pickle comes first, because the paper's numbers were measured on it.
    pickle_path = _find_pickle(name, spec, data_dirs)
    if pickle_path is not None:
        arrays = load_published_pickle(pickle_path)
        logger.info("%s: loaded the published pickle %s", name, pickle_path)
    else:
        arrays = _load_or_build(name, spec, config, data_dirs, system_dirs, download)

    train = _to_split(arrays.train_images, arrays.train_labels, config.get("train_size"), "data.train_size",
                      "training")
    test = _to_split(arrays.test_images, arrays.test_labels, config.get("test_size"), "data.test_size", "test")
    tasks, in_channels = dataset_tasks(name)
    return DataBundle(name=name, train=train, test=test, tasks=tasks, in_channels=in_channels)


def _data_dirs(config: dict) -> list[tuple[Path, str]]:
    """Folders given by the user, in search order, each with where it came from."""
    dirs = []
    if config.get("root"):
        dirs.append((Path(config["root"]).expanduser(), "data.root"))
    if os.environ.get("RECON_DATA"):
        dirs.append((Path(os.environ["RECON_DATA"]).expanduser(), "$RECON_DATA"))
    return dirs


def _to_split(images: np.ndarray, labels: np.ndarray, size: int | None, key: str, split: str) -> TensorSplit:
    """Take the first ``size`` images as float32 N×1×36×36 in [0, 1] and one int64 target per task."""
    count = _check_size(size, key, split, images.shape[0])

    # Slicing before the conversion keeps a small train_size from converting the whole split,
    # and one pass over the pixels (not astype, then an in-place division) writes the floats once.
    if images.dtype == np.uint8:
        floats = np.divide(images[:count], np.float32(255), dtype=np.float32)
    else:
        floats = np.ascontiguousarray(images[:count], dtype=np.float32)
    targets = torch.from_numpy(labels[:count].astype(np.int64))
    return TensorSplit(torch.from_numpy(floats).unsqueeze(1),
                       {"T1": targets[:, 0].contiguous(), "T2": targets[:, 1].contiguous()})


def _check_size(size: int | None, key: str, split: str, available: int) -> int:
    """Return the number of images to use: ``size``, or all when it is None."""
    if size is None:
        return available
    if isinstance(size, bool) or not isinstance(size, int):
        raise ValueError(f"{key} must be an integer or null; got {size!r}")
    if not 1 <= size <= available:
        raise ValueError(f"{key} must be between 1 and {available} (the size of the {split} split); got {size}")
    return size


# ---------------------------------------------------------------- published pickles


_PICKLE_STRUCTURE = ("a pickled tuple (trainX, trainLabel, testX, testLabel) of NumPy arrays: images of shape "
                     "N×1296, N×36×36 or N×1×36×36 with pixel values in [0, 1] or [0, 255], "
                     "and labels of shape N×2 with classes 0-9")


def _pickle_candidates(name: str, spec: _DatasetSpec, data_dirs: list[tuple[Path, str]]) -> list[tuple[Path, str]]:
    """List where the published pickle may be: in each data folder, or in its subfolder named after the dataset."""
    return [(path, origin) for folder, origin in data_dirs
            for path in (folder / spec.pickle_name, folder / name / spec.pickle_name)]


def _find_pickle(name: str, spec: _DatasetSpec, data_dirs: list[tuple[Path, str]]) -> Path | None:
    for path, _ in _pickle_candidates(name, spec, data_dirs):
        if path.is_file():
            return path
    return None


def load_published_pickle(path: str | Path) -> MultiDigitArrays:
    """Load a pickle in the layout that Pareto MTL published and check its structure.

    Images are returned as float32 N×36×36 in [0, 1]. The value range is read
    from the data, and images whose maximum is above 1 are divided by 255.
    Both ranges are plausible: the loader in Pareto MTL's train.py passes the
    arrays to the model without scaling, while some later loaders convert each
    image with ``astype(np.uint8)``, which fits only a 0..255 range.

    The unpickler accepts only NumPy arrays, dtypes and scalars, so a crafted
    file cannot run code. Raises ``ValueError`` naming the file for any other
    structure.
    """
    path = Path(path)
    content = _unpickle_arrays(path)
    if not isinstance(content, (tuple, list)) or len(content) != 4:
        raise ValueError(f"{path}: invalid pickle: found {_describe(content)}; expected {_PICKLE_STRUCTURE}")
    train_x, train_y, test_x, test_y = content

    train_images = _check_pickle_images(path, "trainX", train_x)
    test_images = _check_pickle_images(path, "testX", test_x)
    train_labels = _check_pickle_labels(path, "trainLabel", train_y, train_images.shape[0])
    test_labels = _check_pickle_labels(path, "testLabel", test_y, test_images.shape[0])

    # One scale for both splits, so that a test split that happens to be dark is not scaled differently.
    scale = 255.0 if max(train_images.max(), test_images.max()) > 1.0 else 1.0
    for split, images in (("train", train_images), ("test", test_images)):
        if images.shape[0] != _PAPER_SIZES[split]:
            logger.warning("%s: %d %s images; the published file has %d", path, images.shape[0], split,
                           _PAPER_SIZES[split])
    return MultiDigitArrays(_scale_to_unit(train_images, scale), train_labels,
                            _scale_to_unit(test_images, scale), test_labels)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals a pickle of NumPy arrays refers to.

    A pickle can name any importable callable and call it while loading, so
    every other global is rejected before it is imported.
    """

    def find_class(self, module: str, name: str):
        allowed = _allowed_pickle_globals()
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a dataset pickle; "
                                         "only NumPy arrays, dtypes and scalars are")
        return allowed[(module, name)]


@functools.cache
def _allowed_pickle_globals() -> dict[tuple[str, str], object]:
    """Map each global that NumPy's pickles name, under NumPy 1 and NumPy 2 module paths, to its object."""
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # Python 3 writes the bytes of an array with protocol 2 as _codecs.encode(text, 'latin1').
        ("_codecs", "encode"): _latin1_encode,
    }
    core = _numpy_core()
    for prefix in ("numpy.core", "numpy._core"):
        allowed[(f"{prefix}.multiarray", "_reconstruct")] = core.multiarray._reconstruct
        allowed[(f"{prefix}.multiarray", "scalar")] = core.multiarray.scalar
        allowed[(f"{prefix}.numeric", "_frombuffer")] = core.numeric._frombuffer
    return allowed


def _numpy_core():
    """NumPy's core package: ``numpy._core`` since NumPy 2, ``numpy.core`` before."""
    try:
        core = import_module("numpy._core")
        import_module("numpy._core.numeric")
    except ImportError:
        core = import_module("numpy.core")
        import_module("numpy.core.numeric")
    return core


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """Stand-in for ``_codecs.encode`` that accepts only the latin-1 codec NumPy's pickles use."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"codec '{encoding}' is not allowed in a dataset pickle; only latin1 is")
    return text.encode("latin1")


def _unpickle_arrays(path: Path) -> object:
    try:
        with open(path, "rb") as stream:
            # latin1 reads the byte strings of pickles written by Python 2 as NumPy expects.
            return _ArrayUnpickler(stream, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise ValueError(f"{path}: cannot read the pickle ({type(error).__name__}: {error}); "
                         f"expected {_PICKLE_STRUCTURE}") from error


def _check_pickle_images(path: Path, field: str, images: object) -> np.ndarray:
    """Return the images as a N×36×36 view after checking type, size and value range."""
    pixels = CANVAS_SIZE * CANVAS_SIZE
    if not isinstance(images, np.ndarray) or images.ndim < 1 or images.size != images.shape[0] * pixels:
        raise ValueError(f"{path}: {field} is {_describe(images)}; expected {pixels} pixels per image "
                         f"(N×1296, N×36×36 or N×1×36×36). File layout: {_PICKLE_STRUCTURE}")
    if images.shape[0] == 0:
        raise ValueError(f"{path}: {field} contains no images")
    if images.dtype.kind not in "uif":
        raise ValueError(f"{path}: {field} has dtype {images.dtype}; expected an integer or floating-point dtype")
    low, high = images.min(), images.max()
    if not (np.isfinite(low) and np.isfinite(high)) or low < 0 or high > 255:
        raise ValueError(f"{path}: {field} has pixel values from {low} to {high}; expected values in [0, 255]")
    return images.reshape(images.shape[0], CANVAS_SIZE, CANVAS_SIZE)


def _check_pickle_labels(path: Path, field: str, labels: object, count: int) -> np.ndarray:
    """Return the labels as int64 N×2 after checking shape and class range."""
    if not isinstance(labels, np.ndarray) or labels.shape != (count, 2):
        raise ValueError(f"{path}: {field} is {_describe(labels)}; expected shape ({count}, 2): "
                         "the classes of the top-left and bottom-right items of each image")
    if labels.dtype.kind not in "uif" or (labels.dtype.kind == "f" and not np.all(labels == np.round(labels))):
        raise ValueError(f"{path}: {field} has dtype {labels.dtype} with non-integer values; expected class indices")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise ValueError(f"{path}: {field} has classes from {labels.min()} to {labels.max()}; "
                         f"expected 0 to {NUM_CLASSES - 1}")
    return labels.astype(np.int64)


def _scale_to_unit(images: np.ndarray, scale: float) -> np.ndarray:
    floats = images.astype(np.float32)
    if scale != 1.0:
        floats /= scale
    return floats


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__name__}"


# ---------------------------------------------------------------- build from IDX files


def draw_pairing(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw which items go together: indices of the top-left and of the bottom-right item of each image.

    Each of ``PAIRINGS_PER_SPLIT`` rounds draws two independent permutations
    of the ``count`` items, so every item appears exactly that many times at
    each position and the image order is random. An item can be paired with
    itself (about once per round for Multi-MNIST and Multi-Fashion, where both
    items come from one source).
    """
    top_left = np.concatenate([rng.permutation(count) for _ in range(PAIRINGS_PER_SPLIT)])
    bottom_right = np.concatenate([rng.permutation(count) for _ in range(PAIRINGS_PER_SPLIT)])
    return top_left, bottom_right


def compose_images(top_left: np.ndarray, bottom_right: np.ndarray) -> np.ndarray:
    """Place N×28×28 items on N×36×36 canvases: one at rows and columns 0..27, one at 8..35.

    Where the items overlap (rows and columns 8..27) a pixel takes the maximum
    of the two, so neither item hides the other's strokes. The result keeps the
    items' dtype.
    """
    if top_left.shape != bottom_right.shape or top_left.shape[1:] != (ITEM_SIZE, ITEM_SIZE):
        raise ValueError(f"items must both have shape N×{ITEM_SIZE}×{ITEM_SIZE}; "
                         f"got {top_left.shape} and {bottom_right.shape}")
    canvas = np.zeros((top_left.shape[0], CANVAS_SIZE, CANVAS_SIZE), dtype=top_left.dtype)
    canvas[:, :ITEM_SIZE, :ITEM_SIZE] = top_left
    corner = canvas[:, SECOND_ITEM_OFFSET:, SECOND_ITEM_OFFSET:]
    np.maximum(corner, bottom_right, out=corner)
    return canvas


def _build(spec: _DatasetSpec, files: dict[str, dict[str, Path]], seed: int) -> MultiDigitArrays:
    """Build both splits from the IDX files of the two sources, with one generator seeded by ``seed``."""
    rng = np.random.default_rng(seed)
    splits = {}
    # The training split is drawn first, then the test split, from the same generator.
    for split in ("train", "test"):
        first_images, first_labels = _read_items(files[spec.top_left], split)
        second_images, second_labels = _read_items(files[spec.bottom_right], split)
        if first_images.shape[0] != second_images.shape[0]:
            raise ValueError(f"the {split} split has {first_images.shape[0]} items in "
                             f"{files[spec.top_left][split + '_images']} but {second_images.shape[0]} in "
                             f"{files[spec.bottom_right][split + '_images']}; the pairing needs equal counts")
        top_left, bottom_right = draw_pairing(rng, first_images.shape[0])
        images = compose_images(first_images[top_left], second_images[bottom_right])
        labels = np.stack([first_labels[top_left], second_labels[bottom_right]], axis=1).astype(np.int64)
        splits[split] = (images, labels)
    return MultiDigitArrays(*splits["train"], *splits["test"])


def _read_items(files: dict[str, Path], split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one split of a source and check that it contains 28×28 items with classes 0-9."""
    images_path, labels_path = files[f"{split}_images"], files[f"{split}_labels"]
    images, labels = read_idx_images(images_path), read_idx_labels(labels_path)
    if images.shape[1:] != (ITEM_SIZE, ITEM_SIZE):
        raise IDXFormatError(f"{images_path}: images are {images.shape[1]}×{images.shape[2]} pixels; "
                             f"expected {ITEM_SIZE}×{ITEM_SIZE}")
    if images.shape[0] != labels.shape[0]:
        raise IDXFormatError(f"{images_path} has {images.shape[0]} images but {labels_path} has "
                             f"{labels.shape[0]} labels; the two files must come from the same release")
    if labels.max() >= NUM_CLASSES:
        raise IDXFormatError(f"{labels_path}: labels go up to {labels.max()}; expected classes 0 to {NUM_CLASSES - 1}")
    return images, labels


# ---------------------------------------------------------------- finding IDX files


def _find_idx_files(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """Return the IDX files present in ``folder`` (plain or .gz) and the names of those missing."""
    found, missing = {}, []
    for key, stem in _IDX_FILES.items():
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            missing.append(stem)
    return found, missing


def _locate_source(source: _IDXSource, data_dirs: list[tuple[Path, str]], system_dirs: Sequence[Path],
                   cache_dir: Path, download: bool, log: list[str]) -> dict[str, Path] | None:
    """Find the four IDX files of ``source``, downloading them with torchvision as a last resort."""
    candidates = [(folder / source.folder, origin) for folder, origin in data_dirs]
    candidates += [(folder / source.folder, "system data folder") for folder in system_dirs]
    torchvision_root = cache_dir / "torchvision"
    torchvision_raw = torchvision_root / source.torchvision_class / "raw"
    candidates.append((torchvision_raw, "earlier torchvision download"))

    for folder, origin in candidates:
        found, missing = _find_idx_files(folder)
        if not missing:
            return found
        outcome = "not found" if not found else f"incomplete, missing {', '.join(missing)}"
        log.append(f"    {folder} ({origin}): {outcome}")

    if not download:
        log.append(f"    torchvision download of {source.title}: not attempted (download disabled)")
        return None
    error = _download_with_torchvision(source, torchvision_root)
    found, missing = _find_idx_files(torchvision_raw)
    if error is None and not missing:
        logger.info("downloaded %s with torchvision into %s", source.title, torchvision_raw)
        return found
    reason = error or f"files still missing after the download: {', '.join(missing)}"
    log.append(f"    torchvision download of {source.title} into {torchvision_root}: failed ({reason})")
    return None


def _download_with_torchvision(source: _IDXSource, root: Path) -> str | None:
    """Download ``source`` with torchvision and return why it failed, or None on success."""
    try:
        from torchvision import datasets

        getattr(datasets, source.torchvision_class)(str(root), train=True, download=True)
    except (OSError, RuntimeError, ValueError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def _not_found_message(name: str, spec: _DatasetSpec, data_dirs: list[tuple[Path, str]],
                       log: list[str]) -> str:
    lines = [f"{name}: dataset files not found.", "  Published pickle, searched at:"]
    candidates = _pickle_candidates(name, spec, data_dirs)
    lines += [f"    {path} ({origin}): not found" for path, origin in candidates]
    if not candidates:
        lines.append("    nowhere, because data.root and $RECON_DATA are both unset")
    idx_names = ", ".join(f"{stem}[.gz]" for stem in _IDX_FILES.values())
    lines.append(f"  IDX files ({idx_names}), searched in:")
    lines += log
    lines.append("How to get the files:")
    lines.append(f"  - the published pickle (the data of the paper's numbers): put {spec.pickle_name} from the "
                 "Google Drive folder linked in multiMNIST/data/README.md of github.com/Xi-L/ParetoMTL into "
                 "data.root or $RECON_DATA;")
    for key in dict.fromkeys((spec.top_left, spec.bottom_right)):
        lines.append(f"  - {_SOURCES[key].title}: {_SOURCES[key].how_to_get}.")
    return "\n".join(lines)


# ---------------------------------------------------------------- cache


def _load_or_build(name: str, spec: _DatasetSpec, config: dict, data_dirs: list[tuple[Path, str]],
                   system_dirs: Sequence[Path] | None, download: bool) -> MultiDigitArrays:
    """Load the dataset from the cache, or build it from IDX files and cache it."""
    seed = config.get("build_seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"data.build_seed must be a non-negative integer; got {seed!r}")
    cache_dir = _cache_dir(config)
    system_dirs = SYSTEM_DATA_DIRS if system_dirs is None else tuple(system_dirs)

    # Find both sources before anything else, so that one error lists every place searched.
    log: list[str] = []
    files = {key: _locate_source(_SOURCES[key], data_dirs, system_dirs, cache_dir, download, log)
             for key in dict.fromkeys((spec.top_left, spec.bottom_right))}
    if any(found is None for found in files.values()):
        raise DatasetNotFoundError(_not_found_message(name, spec, data_dirs, log))

    cache_path = cache_dir / f"{name}-seed{seed}-{_source_digest(name, seed, files)}.npz"
    arrays = _read_cache(cache_path)
    if arrays is not None:
        logger.info("%s: loaded the cached build %s", name, cache_path)
        return arrays

    arrays = _build(spec, files, seed)
    sources = ", ".join(str(next(iter(found.values())).parent) for found in files.values())
    logger.info("%s: built from the IDX files in %s with build_seed %d", name, sources, seed)
    _write_cache(cache_path, arrays)
    return arrays


def _cache_dir(config: dict) -> Path:
    """``data.cache_dir``, else datasets/cache in a source checkout, else ~/.cache/recon."""
    if config.get("cache_dir"):
        return Path(config["cache_dir"]).expanduser()
    checkout = Path(recon.__file__).resolve().parents[1]
    default = checkout / "datasets" / "cache"
    is_checkout = (checkout / "setup.py").is_file() or (checkout / "pyproject.toml").is_file()
    if is_checkout and _is_writable_dir(default):
        return default
    return Path.home() / ".cache" / "recon"


def _is_writable_dir(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def _source_digest(name: str, seed: int, files: dict[str, dict[str, Path]]) -> str:
    """Hash of what a build depends on: dataset, seed, build version and each source file's path, size and mtime."""
    identity = []
    for found in files.values():
        for path in found.values():
            status = path.stat()
            identity.append([str(path.resolve()), status.st_size, status.st_mtime_ns])
    key = json.dumps({"format": CACHE_FORMAT, "name": name, "seed": seed, "files": identity})
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _read_cache(path: Path) -> MultiDigitArrays | None:
    """Load a cached build. Return None for a missing file, and also for a broken one after a warning."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            if int(stored["format"]) != CACHE_FORMAT:
                raise ValueError(f"cache format {int(stored['format'])}, expected {CACHE_FORMAT}")
            arrays = MultiDigitArrays(stored["train_images"], stored["train_labels"],
                                      stored["test_images"], stored["test_labels"])
        _check_cached(arrays)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        logger.warning("cached dataset %s is unreadable (%s); rebuilding it", path, error)
        return None
    return arrays


def _check_cached(arrays: MultiDigitArrays) -> None:
    for images, labels in ((arrays.train_images, arrays.train_labels), (arrays.test_images, arrays.test_labels)):
        if images.dtype != np.uint8 or images.shape[1:] != (CANVAS_SIZE, CANVAS_SIZE):
            raise ValueError(f"images of dtype {images.dtype} and shape {images.shape}")
        if labels.shape != (images.shape[0], 2):
            raise ValueError(f"labels of shape {labels.shape} for {images.shape[0]} images")


def _write_cache(path: Path, arrays: MultiDigitArrays) -> None:
    """Write the build to a temporary file and move it into place, so no reader sees half a file."""
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".tmp", delete=False) as stream:
            temporary = Path(stream.name)
            # Uncompressed, because on 2 CPU cores the full Multi-Fashion (184 MB) loaded in 0.1-0.9 s,
            # against 2.1 s for the 101 MB compressed file.
            np.savez(stream, format=np.array(CACHE_FORMAT), train_images=arrays.train_images,
                     train_labels=arrays.train_labels, test_images=arrays.test_images,
                     test_labels=arrays.test_labels)
        # NamedTemporaryFile creates the file readable by its owner only; a cache may be shared.
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as error:
        logger.warning("could not cache the built dataset at %s (%s); it will be built again next time",
                       path, error)
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        return
    logger.info("cached the built dataset at %s", path)
