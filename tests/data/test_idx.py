"""IDX reader: pixel values, gzip and plain files, and every malformed-file error."""

from __future__ import annotations

import gzip
import re
import struct

import numpy as np
import pytest

from recon.data.idx import IMAGES_MAGIC, LABELS_MAGIC, IDXFormatError, read_idx_images, read_idx_labels

IMAGES = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 10
LABELS = np.array([7, 0, 9], dtype=np.uint8)


@pytest.mark.parametrize("name", ["images", "images.gz"])
def test_images_read_pixels(tmp_path, write_idx, name):
    path = write_idx(tmp_path / name, IMAGES, IMAGES_MAGIC)

    images = read_idx_images(path)

    assert images.dtype == np.uint8
    assert images.shape == (2, 3, 4)
    assert images[0, 0, 0] == 0
    assert images[1, 2, 3] == 230
    assert images[0, 1, 2] == 60
    np.testing.assert_array_equal(images, IMAGES)


@pytest.mark.parametrize("name", ["labels", "labels.gz"])
def test_labels_read_values(tmp_path, write_idx, name):
    path = write_idx(tmp_path / name, LABELS, LABELS_MAGIC)

    labels = read_idx_labels(path)

    assert labels.shape == (3,)
    assert labels.tolist() == [7, 0, 9]


def test_header_is_big_endian(tmp_path):
    # 256 images of 1×2 pixels: a little-endian reader would see 65536 images.
    path = tmp_path / "images"
    path.write_bytes(struct.pack(">4I", IMAGES_MAGIC, 256, 1, 2) + bytes(range(256)) * 2)

    images = read_idx_images(path)

    assert images.shape == (256, 1, 2)
    assert images[255].tolist() == [[254, 255]]


def test_label_file_read_as_images(tmp_path, write_idx):
    path = write_idx(tmp_path / "train-labels", LABELS, LABELS_MAGIC)

    with pytest.raises(IDXFormatError, match=re.escape(str(path)) + r".*invalid magic number 2049.*label file"):
        read_idx_images(path)


def test_image_file_read_as_labels(tmp_path, write_idx):
    path = write_idx(tmp_path / "train-images", IMAGES, IMAGES_MAGIC)

    with pytest.raises(IDXFormatError, match=re.escape(str(path)) + r".*invalid magic number 2051.*image file"):
        read_idx_labels(path)


def test_unknown_magic_number(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(struct.pack(">4I", 1234, 1, 1, 1) + b"\x00")

    with pytest.raises(IDXFormatError, match=re.escape(str(path)) + r".*invalid magic number 1234.*expected 2051"):
        read_idx_images(path)


def test_gzip_without_suffix(tmp_path, write_idx):
    compressed = write_idx(tmp_path / "images.gz", IMAGES, IMAGES_MAGIC)
    path = tmp_path / "images"
    path.write_bytes(compressed.read_bytes())

    with pytest.raises(IDXFormatError, match=re.escape(str(path)) + r".*gzip-compressed: give it a \.gz suffix"):
        read_idx_images(path)


def test_truncated_data(tmp_path, write_idx):
    path = write_idx(tmp_path / "images", IMAGES, IMAGES_MAGIC)
    path.write_bytes(path.read_bytes()[:-5])

    expected = re.escape(f"{path}: file is truncated: header declares shape (2, 3, 4) (24 bytes of data) "
                         "but only 19 bytes follow the header")
    with pytest.raises(IDXFormatError, match=expected):
        read_idx_images(path)


def test_truncated_header(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(struct.pack(">I", LABELS_MAGIC) + b"\x00\x00")

    with pytest.raises(IDXFormatError, match=re.escape(str(path)) + r": file is truncated: it has 6 bytes"):
        read_idx_labels(path)


def test_file_shorter_than_magic(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(b"\x00\x00")

    with pytest.raises(IDXFormatError, match=re.escape(str(path)) + r": file is truncated: it has 2 bytes, too few"):
        read_idx_images(path)


def test_extra_bytes_after_data(tmp_path, write_idx):
    path = write_idx(tmp_path / "labels", LABELS, LABELS_MAGIC)
    path.write_bytes(path.read_bytes() + b"\x01\x02")

    with pytest.raises(IDXFormatError, match=re.escape(str(path)) + r": 2 unexpected bytes after the data"):
        read_idx_labels(path)


def test_empty_array(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(struct.pack(">4I", IMAGES_MAGIC, 0, 28, 28))

    with pytest.raises(IDXFormatError, match=re.escape(str(path)) + r": header declares an empty array"):
        read_idx_images(path)


def test_gz_suffix_on_plain_file(tmp_path, write_idx):
    plain = write_idx(tmp_path / "images", IMAGES, IMAGES_MAGIC)
    path = tmp_path / "images.gz"
    path.write_bytes(plain.read_bytes())

    with pytest.raises(IDXFormatError, match=re.escape(str(path)) + r": invalid or truncated gzip file"):
        read_idx_images(path)


def test_truncated_gzip_stream(tmp_path, write_idx):
    path = write_idx(tmp_path / "images.gz", IMAGES, IMAGES_MAGIC)
    path.write_bytes(path.read_bytes()[:-12])

    with pytest.raises(IDXFormatError, match=re.escape(str(path)) + r": invalid or truncated gzip file"):
        read_idx_images(path)


def test_corrupt_gzip_data(tmp_path):
    compressed = bytearray(gzip.compress(bytes(range(256)) * 64))
    # Flip bytes in the middle of the deflate stream; the header stays valid.
    compressed[20:30] = bytes(b ^ 0xFF for b in compressed[20:30])
    path = tmp_path / "labels.gz"
    path.write_bytes(bytes(compressed))

    with pytest.raises(IDXFormatError, match=re.escape(str(path)) + r": invalid or truncated gzip file"):
        read_idx_labels(path)


def test_missing_file(tmp_path):
    path = tmp_path / "absent-idx3-ubyte"

    with pytest.raises(FileNotFoundError, match=re.escape(f"IDX file not found: {path}")):
        read_idx_images(path)
