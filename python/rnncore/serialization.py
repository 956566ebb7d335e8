"""safetensors files in pure NumPy: write and read named arrays, with errors that name the file.

The format (https://github.com/huggingface/safetensors): an 8-byte little-endian unsigned header
length N, then N bytes of UTF-8 JSON ``{name: {"dtype": "F32", "shape": [...], "data_offsets":
[begin, end]}, "__metadata__": {str: str}}`` (padded with spaces), then the raw little-endian
tensor bytes; offsets count from the first byte after the header and the tensors tile that
buffer exactly. Files written here are read by the ``safetensors`` package and by rnncore's C++
reader, and files written by the ``safetensors`` package are read here.

Which files are accepted is one rule set, shared with the C++ reader (cpp/src/safetensors.cpp)
and checked against both it and the ``safetensors`` package (0.8) by
tests/test_safetensors_agree.py: N <= 10^8; the header is UTF-8 JSON without lone surrogates,
with numbers that fit a double and at most 127 levels of nesting; each tensor entry is an object
with a known dtype, a shape of at most 64 integers in [0, 2^64) and data_offsets whose span is the
tensor's size; sorted by offsets, the tensors tile the data with no gap, overlap or trailing byte;
"__metadata__" is null or an object of strings. rnncore refuses three things the package
accepts: duplicate member names anywhere (the package keeps the last one, so the file means
different things to different readers), serde's alternative spellings (an entry as an array, a
dtype as ``{"F32": null}``), and tensors numpy cannot represent (more than 64 dimensions, a
dimension >= 2^63, or a byte size of 2^63 or more even when another dimension is 0). A valid
file may hold F8/F6/F4 tensors: load_safetensors refuses to load them (numpy has no such types;
the C++ reader opens the file and refuses to convert those tensors); BF16 loads as float32.

Why not the ``safetensors`` package when it is installed: it accepts files that rnncore refuses
(above), so giving the same verdicts through it would take these header checks first, and its
speed edge is in parsing headers. bench/bench_safetensors.py (loads interleaved, median of 9,
2-core x86 machine, safetensors 0.8) measured, rnncore vs ``safetensors.numpy.load_file``:
50 MB in 10 float32 tensors 5.9 vs 5.3 ms; 500 tensors of 512 bytes 3.2 vs 2.1 ms; 5000 tensors of
64 bytes 33 vs 21 ms. Each tensor is read straight into its own array (one copy); the header
checks cost about 4 us a tensor.
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys
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

# safetensors dtype name -> little-endian numpy dtype: what save_safetensors writes and
# load_safetensors returns as stored. BF16 is also loaded (widened exactly to float32, as the C++
# reader's read_f32 does); the F8/F6/F4 formats are valid in a file but have no numpy type.
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
    "C64": np.dtype("<c8"),
}
# Every dtype of the format (safetensors 0.8) -> bits per element; F6_* and F4 are packed.
_BITS = {
    **{name: dt.itemsize * 8 for name, dt in DTYPES.items()},
    "BF16": 16,
    "F8_E4M3": 8,
    "F8_E5M2": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "F4": 4,
}
# Bytes per element once loaded (BF16 widens to float32; the rest cannot be loaded: 1).
_LOADED_SIZE = {name: max(1, bits // 8) for name, bits in _BITS.items()} | {"BF16": 4}
_CODE_OF = {(dt.kind, dt.itemsize): name for name, dt in DTYPES.items()}
# The `safetensors` package's MAX_HEADER_SIZE and serde_json's nesting limit; numpy's NPY_MAXDIMS
# and npy_intp range. The C++ reader uses the same numbers.
_MAX_HEADER = 100_000_000
_MAX_DEPTH = 127
_MAX_DIMS = 64
_MAX_INTP = 2**63 - 1
_METADATA = "__metadata__"
_ENTRY_FIELDS = ("dtype", "shape", "data_offsets")


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
            uint8..uint64, float16/32/64, complex64; stored little-endian, C order. Names are
            non-empty strings other than "__metadata__".
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

    return json.loads(text, object_pairs_hook=_header_members, parse_constant=_reject_constant)


def _header_int(text: str) -> Any:
    # serde_json (the package's parser) reads "-0" as a float, so it is no size.
    return -0.0 if text == "-0" else int(text)


def _header_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text} is out of the range of a double")
    return value


def _header_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f'duplicate member "{key}"')
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _check_value(value: Any, depth: int, where: str) -> None:
    """Refuses, in a value the header otherwise ignores, what the package's JSON parser refuses
    and json.loads keeps: lone surrogates, integers past the range of a double (other numbers
    are checked by _header_float) and nesting past _MAX_DEPTH. ``depth``: containers from the
    root."""
    if type(value) is int and not -(2**1023) < value < 2**1023:
        try:
            float(value)
        except OverflowError:
            raise SafetensorsError(
                f"{where}: the header holds an integer of {len(str(value))} digits, out of the "
                "range of a double"
            ) from None
    elif isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise SafetensorsError(
                    f"{where}: header is not valid JSON (a \\u escape is a lone surrogate)"
                ) from None
    elif isinstance(value, (list, dict)):
        if depth > _MAX_DEPTH:
            raise SafetensorsError(
                f"{where}: the header nests arrays and objects deeper than {_MAX_DEPTH} levels"
            )
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            _check_value(key, depth + 1, where)
            _check_value(item, depth + 1, where)


class _Where:
    """ "<file>: tensor '<name>'" for messages, formatted only when one is raised."""

    __slots__ = ("where", "name")

    def __init__(self, where: str, name: str) -> None:
        self.where, self.name = where, name

    def __format__(self, spec: str) -> str:
        return f"{self.where}: tensor {self.name!r}"


def _is_size(x: Any) -> bool:
    return type(x) is int and 0 <= x < 2**64  # not bool, not -0.0 (see _header_int)


_Entry = tuple[int, int, str, str, tuple[int, ...]]  # (begin, end, name, dtype, shape)


def _parse_header(
    raw: bytes, where: str, data_size: int
) -> tuple[list[_Entry], list[str], dict[str, str]]:
    """Validates a header against the data size: (entries sorted by offsets, the names in
    header order, metadata). The rules are in the module docstring; the C++ reader applies the
    same."""
    try:
        text = raw.decode("utf-8")
        header = json.loads(
            text,
            object_pairs_hook=_header_members,
            parse_constant=_reject_constant,
            parse_int=_header_int if "-0" in text else None,  # the hook only where it matters
            parse_float=_header_float,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise SafetensorsError(f"{where}: header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(
            f"{where}: header must be a JSON object, got {type(header).__name__}"
        )
    if "\\u" in text:  # only escapes make lone surrogates
        for key in header:
            _check_value(key, 1, where)
    metadata = header.pop(_METADATA, None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise SafetensorsError(f"{where}: {_METADATA} must be an object of strings (or null)")
    _check_value(metadata, 2, where)
    entries = []
    for name, info in header.items():
        if type(info) is not dict:
            raise SafetensorsError(
                f'{where}: tensor {name!r}: entry must be an object {{"dtype", "shape", '
                f'"data_offsets"}}, got {type(info).__name__}'
            )
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if len(info) > 3:  # other members: ignored, as the package ignores them, but checked
            for key, value in info.items():
                if key not in _ENTRY_FIELDS:
                    _check_value(key, 3, where)
                    _check_value(value, 3, where)
        at = _Where(where, name)
        if type(dtype) is not str or dtype not in _BITS:
            raise SafetensorsError(f"{at}: unknown dtype {dtype!r} (known: {', '.join(_BITS)})")
        if type(shape) is not list or not all(map(_is_size, shape)):
            raise SafetensorsError(
                f"{at}: invalid shape {shape!r} (a list of integers in [0, 2^64))"
            )
        if len(shape) > _MAX_DIMS:
            raise SafetensorsError(
                f"{at}: shape has {len(shape)} dimensions, more than numpy's {_MAX_DIMS}"
            )
        if type(offsets) is not list or len(offsets) != 2 or not all(map(_is_size, offsets)):
            raise SafetensorsError(
                f"{at}: invalid data_offsets {offsets!r} ([begin, end], integers in [0, 2^64))"
            )
        # The package's rule: element count, then bit count, fit 64 bits (multiplied left to
        # right, so [2^32, 2^32, 0] overflows). numpy's: each dimension, and the byte size of the
        # non-empty ones, fit int64.
        numel, overflow, nonzero = 1, False, _LOADED_SIZE[dtype]
        for d in shape:
            numel *= d
            overflow = overflow or numel >= 2**64
            nonzero *= d or 1
        bits = numel * _BITS[dtype]
        if overflow or bits >= 2**64:
            raise SafetensorsError(
                f"{at}: shape {shape} overflows 64 bits when its size is computed"
            )
        if nonzero > _MAX_INTP or (numel == 0 and max(shape) > _MAX_INTP):
            raise SafetensorsError(
                f"{at}: shape {shape} is too large for an array (a dimension or the byte size "
                "of the non-empty dimensions is 2^63 or more)"
            )
        if bits % 8:
            raise SafetensorsError(
                f"{at}: {numel} elements of {dtype} are {bits} bits, not whole bytes"
            )
        begin, end = offsets
        if begin > end:
            raise SafetensorsError(f"{at}: data_offsets begin > end ({begin} > {end})")
        if end - begin != bits // 8:
            raise SafetensorsError(
                f"{at}: data_offsets span {end - begin} bytes but {dtype} {shape} needs {bits // 8}"
            )
        if end > data_size:
            raise SafetensorsError(
                f"{at}: truncated: the tensor needs bytes [{begin}, {end}) of the data but the "
                f"file has only {data_size}"
            )
        entries.append((begin, end, name, dtype, tuple(shape)))
    entries.sort()  # by offsets (a tie on both is two empty tensors: then by name)
    pos = 0
    for begin, end, name, _, _ in entries:
        if begin != pos:
            what = "overlaps the previous tensor" if begin < pos else "leaves a gap before it"
            raise SafetensorsError(
                f"{where}: tensor {name!r}: data_offsets begin {begin} {what} (which ends at {pos})"
            )
        pos = end
    if pos != data_size:
        raise SafetensorsError(
            f"{where}: the tensors cover {pos} data bytes but the file has {data_size} "
            "(trailing bytes are not allowed)"
        )
    return entries, list(header), metadata


def _read_header(f: Any, where: str) -> tuple[int, list[_Entry], list[str], dict[str, str]]:
    """(data start, entries, names, metadata) of the open file ``f`` (see _parse_header)."""
    size = os.fstat(f.fileno()).st_size
    head = f.read(8)
    if len(head) < 8:
        raise SafetensorsError(
            f"{where}: {len(head)} bytes, too short for the 8-byte header length (truncated?)"
        )
    (n,) = struct.unpack("<Q", head)
    if n > _MAX_HEADER:
        raise SafetensorsError(
            f"{where}: header length {n} is larger than the format's limit of {_MAX_HEADER} "
            "bytes (not a safetensors file?)"
        )
    if 8 + n > size:
        raise SafetensorsError(
            f"{where}: header length {n} is larger than the file's remaining {size - 8} bytes "
            "(truncated or not a safetensors file)"
        )
    raw = f.read(n)
    if len(raw) != n:
        raise SafetensorsError(f"{where}: the file shrank while it was read")
    entries, names, metadata = _parse_header(raw, where, size - 8 - n)
    return 8 + n, entries, names, metadata


def load_safetensors(
    path: PathLike, *, widen_bf16: bool = True
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file.

    Args:
        path: the file.
        widen_bf16: load BF16 tensors as float32 (exactly: bfloat16 is the top half of a
            float32), as rnncore's C++ reader does; False refuses them instead.

    Returns:
        ``(tensors, metadata)``: {name: array} in the file's header order, each a fresh, writable,
        aligned array in native byte order with the stored shape (dtypes as in ``DTYPES``, C64 as
        complex64, BF16 as float32); and the "__metadata__" strings ({} when absent or null).

    Raises:
        FileNotFoundError: no such file.
        SafetensorsError (a ValueError): the file is truncated or garbled — header length past
            the end, invalid JSON, unknown dtype, offsets out of range or not tiling the data —
            or holds a tensor of a dtype numpy has no type for (F8_*, F6_*, F4; BF16 with
            ``widen_bf16=False``), with a message naming the file and the tensor.
    """
    p = Path(path)
    where = f"safetensors file {os.fspath(p)!r}"
    out: dict[str, np.ndarray] = {}
    with open(p, "rb") as f:
        start, entries, names, metadata = _read_header(f, where)
        for _, _, name, dtype, _ in entries:
            if dtype not in DTYPES and not (dtype == "BF16" and widen_bf16):
                how = (
                    "pass widen_bf16=True to load it as float32"
                    if dtype == "BF16"
                    else ("rnncore converts only BF16")
                )
                raise SafetensorsError(
                    f"{where}: tensor {name!r} has dtype {dtype}, which numpy has no type for "
                    f"({how}); loadable: {', '.join(DTYPES)}, BF16"
                )
        # Read each tensor straight into its own array, in file order (no seeks, one copy).
        for begin, end, name, dtype, shape in entries:
            stored = DTYPES.get(dtype, np.dtype("<u2"))  # BF16: its bits as uint16
            arr = np.empty(shape, dtype=stored.newbyteorder("="))
            if end > begin:
                f.seek(start + begin)
                if f.readinto(memoryview(arr.reshape(-1).view(np.uint8))) != end - begin:
                    raise SafetensorsError(f"{where}: the file shrank while it was read")
                if sys.byteorder == "big" and stored.itemsize > 1:
                    arr.byteswap(inplace=True)
            if dtype == "BF16":
                arr = (arr.astype(np.uint32) << 16).view(np.float32)
            out[name] = arr
    return {name: out[name] for name in names}, dict(metadata)
