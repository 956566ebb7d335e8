"""MNIST's IDX format: every type code round-trips, .gz, and malformed files name themselves."""

import gzip
import struct

import numpy as np
import pytest
from rnncore.data import DataFormatError, load_mnist, pixel_sequences, read_idx, write_idx


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
def test_idx_round_trip(tmp_path, dtype):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if dtype == "uint8":
        a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    got = read_idx(write_idx(tmp_path / "a.idx", a))
    assert got.dtype == a.dtype and np.array_equal(got, a)


def test_idx_header_is_big_endian_as_lecun_wrote_it(tmp_path):
    raw = b"\x00\x00\x08\x01" + struct.pack(">I", 3) + bytes([7, 8, 9])
    (tmp_path / "l.idx").write_bytes(raw)
    assert read_idx(tmp_path / "l.idx").tolist() == [7, 8, 9]
    raw16 = b"\x00\x00\x0b\x01" + struct.pack(">I", 2) + struct.pack(">hh", 258, -2)
    (tmp_path / "s.idx").write_bytes(raw16)
    assert read_idx(tmp_path / "s.idx").tolist() == [258, -2]
    with gzip.open(tmp_path / "l.idx.gz", "wb") as f:
        f.write(raw)
    assert read_idx(tmp_path / "l.idx.gz").tolist() == [7, 8, 9]


def test_malformed_idx_files(tmp_path):
    p = tmp_path / "x.idx"
    p.write_bytes(b"\x12\x34\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DataFormatError, match=r"x\.idx: bad IDX magic number 0x12340801"):
        read_idx(p)
    p.write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DataFormatError, match="bad IDX magic number 0x00000701"):
        read_idx(p)
    p.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">I", 2))
    with pytest.raises(DataFormatError, match="announces 3 dimensions"):
        read_idx(p)
    p.write_bytes(b"\x00\x00\x08\x02" + struct.pack(">II", 2, 3) + bytes(5))
    with pytest.raises(
        DataFormatError, match=r"data size 5 bytes does not match the dimensions \[2, 3\]"
    ):
        read_idx(p)
    p.write_bytes(b"\x00\x00")
    with pytest.raises(DataFormatError, match="too short"):
        read_idx(p)


def write_mnist(root, n_train=6, n_test=4, labels_short=False):
    rng = np.random.default_rng(0)
    write_idx(root / "train-images-idx3-ubyte", rng.integers(0, 256, (n_train, 4, 4), np.uint8))
    write_idx(
        root / "train-labels-idx1-ubyte",
        rng.integers(0, 10, n_train - labels_short).astype(np.uint8),
    )
    with gzip.open(root / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(
            write_idx(root / "tmp", rng.integers(0, 256, (n_test, 4, 4), np.uint8)).read_bytes()
        )
    write_idx(root / "t10k-labels.idx1-ubyte", rng.integers(0, 10, n_test).astype(np.uint8))


def test_load_mnist_finds_plain_gz_and_dotted_names(tmp_path):
    write_mnist(tmp_path)
    images, labels = load_mnist(tmp_path)
    assert images.shape == (6, 4, 4) and images.dtype == np.uint8 and labels.dtype == np.int64
    ti, tl = load_mnist(tmp_path, "test")
    assert ti.shape == (4, 4, 4) and tl.shape == (4,)


def test_load_mnist_errors(tmp_path):
    write_mnist(tmp_path, labels_short=True)
    with pytest.raises(
        DataFormatError,
        match=r"train-labels-idx1-ubyte: 5 labels but .*"
        r"train-images-idx3-ubyte has 6 images",
    ):
        load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte not found|not found"):
        load_mnist(tmp_path / "nowhere")
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((6, 16), np.uint8))
    with pytest.raises(DataFormatError, match=r"expected uint8 images \[N, rows, cols\]"):
        load_mnist(tmp_path)


def test_pixel_sequences():
    img = np.arange(2 * 2 * 4, dtype=np.uint8).reshape(2, 2, 4)
    seq = pixel_sequences(img)
    assert seq.shape == (8, 2, 1) and seq.dtype == np.float32
    assert seq[3, 1, 0] == pytest.approx(11 / 255)
    rows = pixel_sequences(img, 4)
    assert rows.shape == (2, 2, 4)
    perm = np.arange(8)[::-1]
    assert pixel_sequences(img, 1, perm)[0, 0, 0] == pytest.approx(7 / 255)
    with pytest.raises(ValueError, match="must divide 8"):
        pixel_sequences(img, 3)
