"""Reader of the IDX files that MNIST and Fashion-MNIST are published in.

An IDX file is a big-endian header followed by the raw array: a 4-byte magic
number, whose last two bytes give the element type (0x08: unsigned byte) and
the number of dimensions, then one 4-byte size per dimension. Files may be
gzip-compressed, as they are distributed; a name ending in ``.gz`` is read as
gzip.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IMAGES_MAGIC", "LABELS_MAGIC", "IDXFormatError", "read_idx", "read_idx_images", "read_idx_labels"]

#: Magic number of an image file: unsigned bytes, 3 dimensions (count, rows, columns).
IMAGES_MAGIC = 0x00000803
#: Magic number of a label file: unsigned bytes, 1 dimension (count).
LABELS_MAGIC = 0x00000801

_HEADER_WORD = 4


class IDXFormatError(ValueError):
    """An IDX file that cannot be read: bad magic number, truncated data, broken gzip stream."""


def read_idx_images(path: str | Path) -> np.ndarray:
    """Read an IDX image file into a uint8 array of shape count × rows × columns."""
    return read_idx(path, IMAGES_MAGIC)


def read_idx_labels(path: str | Path) -> np.ndarray:
    """Read an IDX label file into a uint8 array of shape (count,)."""
    return read_idx(path, LABELS_MAGIC)


def read_idx(path: str | Path, expected_magic: int) -> np.ndarray:
    """Read an unsigned-byte IDX file and check its header against ``expected_magic``.

    Raises ``FileNotFoundError`` if the file is missing and ``IDXFormatError``,
    naming the file, if it is not a valid IDX file of that kind: wrong magic
    number, a size of zero, or a data length that differs from the header's.
    The returned array is read-only because it shares the file's buffer.
    """
    path = Path(path)
    data = _read_bytes(path)

    # Header: the magic number first, so that a file of the wrong kind is named as such.
    ndim = expected_magic & 0xFF
    header_size = _HEADER_WORD * (1 + ndim)
    if len(data) < _HEADER_WORD:
        raise IDXFormatError(f"{path}: file is truncated: it has {len(data)} bytes, too few for a magic number")
    magic = int(np.frombuffer(data, dtype=">u4", count=1)[0])
    if magic != expected_magic:
        raise IDXFormatError(f"{path}: invalid magic number {magic} (0x{magic:08x}); expected {expected_magic} "
                             f"(0x{expected_magic:08x}: unsigned bytes, {ndim} dimension(s)). "
                             f"{_describe_magic(magic, expected_magic)}")
    if len(data) < header_size:
        raise IDXFormatError(f"{path}: file is truncated: it has {len(data)} bytes, "
                             f"fewer than the {header_size}-byte header of an IDX file with {ndim} dimension(s)")
    shape = tuple(int(size) for size in np.frombuffer(data, dtype=">u4", count=ndim, offset=_HEADER_WORD))
    if 0 in shape:
        raise IDXFormatError(f"{path}: header declares an empty array of shape {shape}")

    # Data: exactly one byte per element, nothing after it.
    expected_bytes = int(np.prod(shape))
    found_bytes = len(data) - header_size
    if found_bytes < expected_bytes:
        raise IDXFormatError(f"{path}: file is truncated: header declares shape {shape} "
                             f"({expected_bytes} bytes of data) but only {found_bytes} bytes follow the header")
    if found_bytes > expected_bytes:
        raise IDXFormatError(f"{path}: {found_bytes - expected_bytes} unexpected bytes after the data "
                             f"of shape {shape} that the header declares")
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def _read_bytes(path: Path) -> bytes:
    """Return the file's content, decompressed if its name ends in ``.gz``."""
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as stream:
            return stream.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise IDXFormatError(f"{path}: invalid or truncated gzip file ({error}); "
                             "download the file again, or store it uncompressed without the .gz suffix") from error


def _describe_magic(magic: int, expected_magic: int) -> str:
    """Say what a wrong magic number most likely means, so the user knows which file to replace."""
    if magic == LABELS_MAGIC and expected_magic == IMAGES_MAGIC:
        return "This is a label file, not an image file."
    if magic == IMAGES_MAGIC and expected_magic == LABELS_MAGIC:
        return "This is an image file, not a label file."
    if magic >> 16 == 0x1F8B:
        return "The file is gzip-compressed: give it a .gz suffix."
    return "The file is not an IDX file of this kind."
