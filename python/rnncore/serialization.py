"""safetensors files in pure NumPy: write and read named arrays, with errors that name the file.

The format (https://github.com/huggingface/safetensors): an 8-byte little-endian unsigned header
length N, then N bytes of UTF-8 JSON ``{name: {"dtype": "F32", "shape": [...], "data_offsets":
[begin, end]}, "__metadata__": {str: str}}`` (padded with spaces), then the raw little-endian
tensor bytes; offsets count from the first byte after the header and the tensors tile that
buffer exactly. Files written here are read by the ``safetensors`` package and by rnncore's C++
reader, and files written by the ``safetensors`` package are read here.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SafetensorsError",
    "save_safetensors",
    "load_safetensors",
    "DTYPES",
    "strict_json_loads",
]

PathLike = str | os.PathLike

# safetensors dtype name -> little-endian numpy dtype. BF16 and the F8 formats have no numpy
# equivalent and are reported as unsupported when read.
DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("?"),
    "U8": np.dtype("u1"),
    "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "F16": np.dtype("<f2"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"),
    "F64": np.dtype("<f8"),
}
_NO_NUMPY = ("BF16", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64")
_CODE_OF = {(dt.kind, dt.itemsize): name for name, dt in DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024  # the safetensors package refuses larger headers too
_METADATA = "__metadata__"


class SafetensorsError(ValueError):
    """A file that is not a valid safetensors file (truncated, garbled, unsupported)."""


def _dtype_code(arr: np.ndarray, name: str, where: str) -> str:
    code = _CODE_OF.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None:
        raise TypeError(
            f"{where}: tensor {name!r} has dtype {arr.dtype}, which safetensors cannot store "
            f"(supported: {', '.join(str(d) for d in DTYPES.values())})"
        )
    return code


def _header_bytes(header: dict[str, Any]) -> bytes:
    """JSON header padded with spaces so that the data start (8 + N) is 8-byte aligned."""
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return raw + b" " * (-len(raw) % 8)


def save_safetensors(
    path: PathLike,
    tensors: Mapping[str, Any],
    metadata: Mapping[str, str] | None = None,
    *,
    fsync: bool = False,
) -> None:
    """Write ``tensors`` to ``path`` in the safetensors format.

    Args:
        path: file to create or overwrite.
        tensors: {name: array}; any shape (0-d included), numpy dtypes bool, int8..int64,
            uint8..uint64, float16/32/64; stored little-endian, C order. Names are non-empty
            strings other than "__metadata__".
        metadata: optional {str: str}, stored under "__metadata__".
        fsync: flush the file to disk (``os.fsync``) before returning.

    Tensors are laid out largest item size first, then by name (as the ``safetensors`` package
    does), so every tensor starts at an offset aligned to its item size.
    """
    where = f"save_safetensors({os.fspath(path)!r})"
    if not isinstance(tensors, Mapping):
        raise TypeError(f"{where}: tensors must be a dict of arrays, got {type(tensors).__name__}")
    arrays: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"{where}: tensor names must be non-empty strings, got {name!r}")
        if name == _METADATA:
            raise ValueError(f"{where}: {_METADATA!r} is reserved and cannot name a tensor")
        arr = np.asarray(value)
        code = _dtype_code(arr, name, where)
        arrays[name] = np.asarray(arr, dtype=DTYPES[code], order="C")  # keeps 0-d shapes
    header: dict[str, Any] = {}
    if metadata is not None:
        if not isinstance(metadata, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            raise TypeError(f"{where}: metadata must be a dict of str to str")
        if metadata:
            header[_METADATA] = dict(metadata)
    order = sorted(arrays, key=lambda n: (-arrays[n].dtype.itemsize, n))
    offset = 0
    for name in order:
        arr = arrays[name]
        header[name] = {
            "dtype": _dtype_code(arr, name, where),
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + arr.nbytes],
        }
        offset += arr.nbytes
    head = _header_bytes(header)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for name in order:
            if arrays[name].nbytes:
                f.write(memoryview(arrays[name].reshape(-1)).cast("B"))
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def strict_json_loads(text: str) -> Any:
    """json.loads that refuses what rnncore's C++ reader refuses: duplicate member names (Python
    would keep the last silently) and the non-standard NaN / Infinity literals. So both readers
    accept and refuse the same safetensors headers and checkpoint.json files.

    Raises ValueError (json.JSONDecodeError for malformed text).
    """

    def members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise ValueError(f'duplicate member "{key}"')
            out[key] = value
        return out

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON value")

    return json.loads(text, object_pairs_hook=members, parse_constant=constant)


def _parse_header(raw: bytes, where: str, data_size: int) -> tuple[dict[str, Any], dict[str, str]]:
    try:
        header = strict_json_loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise SafetensorsError(f"{where}: header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(
            f"{where}: header must be a JSON object, got {type(header).__name__}"
        )
    metadata = header.pop(_METADATA, None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise SafetensorsError(f"{where}: {_METADATA} must be an object of strings")
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict):
            raise SafetensorsError(f"{where}: entry {name!r} must be an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in DTYPES:
            extra = " (no numpy equivalent)" if dtype in _NO_NUMPY else ""
            raise SafetensorsError(
                f"{where}: tensor {name!r} has unknown or unsupported dtype {dtype!r}{extra}; "
                f"supported: {', '.join(DTYPES)}"
            )
        if not isinstance(shape, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
        ):
            raise SafetensorsError(
                f"{where}: tensor {name!r} has an invalid shape {shape!r} (a list of ints >= 0)"
            )
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        ):
            raise SafetensorsError(
                f"{where}: tensor {name!r} has invalid data_offsets {offsets!r} ([begin, end])"
            )
        begin, end = offsets
        if not 0 <= begin <= end <= data_size:
            raise SafetensorsError(
                f"{where}: tensor {name!r} has data_offsets [{begin}, {end}] outside the "
                f"{data_size} data bytes (truncated file?)"
            )
        nbytes = math.prod(shape) * DTYPES[dtype].itemsize
        if end - begin != nbytes:
            raise SafetensorsError(
                f"{where}: tensor {name!r}: {dtype} {shape} needs {nbytes} bytes, its "
                f"data_offsets [{begin}, {end}] span {end - begin}"
            )
        spans.append((begin, end, name))
    spans.sort()
    pos = 0
    for begin, end, name in spans:
        if begin != pos:
            what = "overlaps the previous tensor" if begin < pos else "leaves a gap before it"
            raise SafetensorsError(f"{where}: tensor {name!r} at offset {begin} {what}")
        pos = end
    if pos != data_size:
        raise SafetensorsError(
            f"{where}: the tensors cover {pos} data bytes but the file has {data_size}"
        )
    return header, metadata


def load_safetensors(path: PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file.

    Args:
        path: the file.

    Returns:
        ``(tensors, metadata)``: {name: array} in the file's header order, each a fresh, writable,
        aligned array in native byte order with the stored shape; and the "__metadata__"
        strings ({} when absent).

    Raises:
        FileNotFoundError: no such file.
        SafetensorsError (a ValueError): the file is truncated or garbled — header length past
            the end, invalid JSON, unknown dtype, offsets out of range or not tiling the data —
            with a message naming the file.
    """
    p = Path(path)
    where = f"safetensors file {os.fspath(p)!r}"
    with open(p, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise SafetensorsError(
            f"{where}: {len(blob)} bytes, too short for the 8-byte header length (truncated?)"
        )
    (n,) = struct.unpack("<Q", blob[:8])
    if n > _MAX_HEADER or 8 + n > len(blob):
        raise SafetensorsError(
            f"{where}: header length {n} is larger than the file's remaining {len(blob) - 8} bytes "
            "(truncated or not a safetensors file)"
        )
    header, metadata = _parse_header(blob[8 : 8 + n], where, len(blob) - 8 - n)
    start = 8 + n
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        dt = DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        native = dt.newbyteorder("=")
        if end == begin:
            out[name] = np.empty(shape, dtype=native)
            continue
        arr = np.frombuffer(blob, dtype=dt, count=math.prod(shape), offset=start + begin)
        out[name] = arr.astype(native, copy=True).reshape(shape)
    return out, dict(metadata)
