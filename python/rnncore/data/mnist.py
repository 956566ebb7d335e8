"""MNIST from its original IDX files (LeCun's format), for sequential pixel-by-pixel digits.

IDX layout: two zero bytes, a type code (0x08 unsigned byte, 0x09 signed byte, 0x0B int16, 0x0C
int32, 0x0D float32, 0x0E float64), the number of dimensions, then one big-endian uint32 per
dimension, then the data, big-endian, row-major. Files may be gzip-compressed (``.gz``).
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from ._io import DataFormatError, PathLike, existing_dir, read_bytes

IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {np.dtype(v).newbyteorder("="): k for k, v in IDX_TYPES.items()}

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: PathLike) -> np.ndarray:
    """The array stored in an IDX file (.gz aware), in native byte order.

    Raises:
        DataFormatError naming the file: a bad magic number (not 0x0000 + a known type code), a
        header shorter than its dimensions, or a data size that does not match the dimensions.
    """
    data = read_bytes(path, "read_idx")
    if len(data) < 4:
        raise DataFormatError(path, None, f"too short for an IDX header ({len(data)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in IDX_TYPES:
        raise DataFormatError(
            path,
            None,
            f"bad IDX magic number 0x{data[:4].hex()} (expected 0x0000 followed by a type code "
            f"in {{{', '.join(f'0x{c:02x}' for c in IDX_TYPES)}}} and the number of dimensions)",
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFormatError(
            path, None, f"header announces {ndim} dimensions but the file has {len(data)} bytes"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_TYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    got = len(data) - header
    if got != expected:
        raise DataFormatError(
            path,
            None,
            f"data size {got} bytes does not match the dimensions {list(dims)} "
            f"({expected} bytes of {dtype.newbyteorder('=')})",
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header, count=math.prod(dims))
    return arr.reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path: PathLike, array: np.ndarray) -> Path:
    """Write an array as an IDX file (uncompressed); the inverse of :func:`read_idx`."""
    arr = np.asarray(array)
    native = arr.dtype.newbyteorder("=")
    if native not in _CODES:
        raise ValueError(f"write_idx: dtype {arr.dtype} has no IDX type code")
    code = _CODES[native]
    p = Path(path)
    with open(p, "wb") as f:
        f.write(struct.pack(">HBB", 0, code, arr.ndim))
        f.write(struct.pack(f">{arr.ndim}I", *arr.shape))
        f.write(arr.astype(IDX_TYPES[code]).tobytes())
    return p


def _find(root: Path, name: str) -> Path:
    # the original names, gzipped or not, and the common "train-images.idx3-ubyte" spelling
    candidates = [name, name + ".gz"]
    dotted = name.replace("-idx", ".idx")
    candidates += [dotted, dotted + ".gz"]
    for c in candidates:
        if (root / c).is_file():
            return root / c
    raise FileNotFoundError(
        f"load_mnist: {root / name} not found (also looked for {', '.join(candidates[1:])})"
    )


def load_mnist(root: PathLike, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one MNIST split from a folder with the IDX files.

    Args:
        root: folder holding ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte`` (split
            "train") or ``t10k-*`` (split "test"), optionally ``.gz``.
        split: "train" or "test".
    Returns:
        (images uint8 [N, rows, cols], labels int64 [N]).
    Raises:
        DataFormatError: a malformed file, images that are not 3-D uint8, labels that are not
            1-D, or counts that differ between the two files (naming both).
    """
    if split not in MNIST_FILES:
        raise ValueError(f"load_mnist: split must be 'train' or 'test', got {split!r}")
    d = existing_dir(root, "load_mnist")
    img_path, lab_path = (_find(d, n) for n in MNIST_FILES[split])
    images = read_idx(img_path)
    labels = read_idx(lab_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataFormatError(
            img_path,
            None,
            f"expected uint8 images [N, rows, cols], got {images.dtype} {list(images.shape)}",
        )
    if labels.ndim != 1:
        raise DataFormatError(lab_path, None, f"expected labels [N], got {list(labels.shape)}")
    if labels.shape[0] != images.shape[0]:
        raise DataFormatError(
            lab_path,
            None,
            f"{labels.shape[0]} labels but {img_path} has {images.shape[0]} images",
        )
    return images, labels.astype(np.int64)


def pixel_sequences(
    images: np.ndarray, pixels_per_step: int = 1, permutation: np.ndarray | None = None
) -> np.ndarray:
    """Images [N, R, C] as time-major sequences for a recurrent network.

    Args:
        images: uint8 (scaled by 1/255) or float images.
        pixels_per_step: pixels read per step P (1: pixel by pixel, T = R*C; C: row by row);
            must divide R*C.
        permutation: optional fixed permutation of the R*C pixels (permuted MNIST).
    Returns:
        float32 [T = R*C/P, N, P].
    """
    x = np.asarray(images)
    n = x.shape[0]
    flat = x.reshape(n, -1)
    if permutation is not None:
        flat = flat[:, permutation]
    if pixels_per_step < 1 or flat.shape[1] % pixels_per_step:
        raise ValueError(
            f"pixel_sequences: pixels_per_step must divide {flat.shape[1]}, got {pixels_per_step}"
        )
    scale = 1.0 / 255.0 if flat.dtype == np.uint8 else 1.0
    seq = flat.reshape(n, -1, pixels_per_step).transpose(1, 0, 2)
    return np.ascontiguousarray(seq, dtype=np.float32) * np.float32(scale)
