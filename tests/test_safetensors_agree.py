"""rnncore's two safetensors readers (Python: rnncore.serialization; C++: SafeTensorsFile) accept
and refuse the same files, read the same values, and agree with the `safetensors` package except
where rnncore refuses on purpose (issue 18).

Each case below is a file written byte by byte. The C++ side is a small program
(tests/cpp/safetensors_verdicts.cpp) compiled here against cpp/src/safetensors.cpp and
cpp/src/json.cpp alone; it prints each file's verdict and values.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from rnncore.serialization import (
    SafetensorsError,
    _read_header,
    load_safetensors,
    save_safetensors,
)

ROOT = Path(__file__).resolve().parents[1]

OK = "ok"  # valid, and both readers load every tensor
HEADER_ONLY = "header-only"  # valid, but a tensor's dtype has no numpy type: loading refuses
REFUSED = "refused"
# rnncore refuses these although the `safetensors` package (0.8) accepts them; see the module
# docstring of rnncore.serialization for why.
DIVERGES = "diverges"


def t(dtype: str, shape: list, begin: int, end: int, **extra) -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end], **extra}


def j(obj) -> bytes:
    return json.dumps(obj).encode()


def entry_with(extra: str) -> bytes:
    """A header with one U8 tensor of 1 byte and `extra` as the text of one more member."""
    return b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":' + extra.encode() + b"}}"


def nested(depth: int) -> bytes:
    # the root object and the entry are 2 levels; `depth` counts all of them
    return entry_with("[" * (depth - 2) + "]" * (depth - 2))


BF16 = bytes.fromhex("803f20c0807f01000080")  # 1.0, -2.5, inf, smallest subnormal, -0.0
F16 = bytes.fromhex("003c0100ff7b00fc0080007e")  # 1, subnormal, 65504, -inf, -0, nan
U8_1 = b"\x07"

# (id, header: bytes or dict, data, verdict, package: None = same verdict, DIVERGES = the
# package accepts what rnncore refuses)
CASES = [
    # -- accepted ------------------------------------------------------------------------------
    ("bf16", j({"a": t("BF16", [5], 0, 10)}), BF16, OK, None),
    ("f16 specials", j({"a": t("F16", [6], 0, 12)}), F16, OK, None),
    ("u64 max", j({"a": t("U64", [2], 0, 16)}), b"\xff" * 8 + b"\x01" + b"\0" * 7, OK, None),
    ("u16 u32 i16", j({"a": t("U16", [1], 0, 2), "b": t("U32", [1], 2, 6),
                       "c": t("I16", [1], 6, 8)}), b"\xff\xff\xff\xff\xff\xff\x00\x80", OK,
     None),
    ("c64", j({"a": t("C64", [1], 0, 8)}), struct.pack("<ff", 1.5, -2.0), OK, None),
    ("scalar", j({"a": t("F32", [], 0, 4)}), struct.pack("<f", 3.5), OK, None),
    ("out of order", j({"b": t("U8", [1], 1, 2), "a": t("U8", [1], 0, 1)}), b"\1\2", OK, None),
    ("empty tensor", j({"a": t("F32", [0, 3], 0, 0), "b": t("U8", [1], 0, 1)}), U8_1, OK, None),
    ("two empty at 0", j({"a": t("F32", [0], 0, 0), "b": t("F32", [0], 0, 0)}), b"", OK, None),
    ("empty between", j({"a": t("U8", [2], 0, 2), "z": t("U8", [0], 2, 2),
                         "b": t("U8", [2], 2, 4)}), b"\1\2\3\4", OK, None),
    ("empty at end", j({"b": t("U8", [1], 0, 1), "a": t("F32", [0], 1, 1)}), U8_1, OK, None),
    ("no tensors", b"{}", b"", OK, None),
    ("metadata", j({"__metadata__": {"k": "v", "": "é"}}), b"", OK, None),
    ("metadata null", j({"__metadata__": None}), b"", OK, None),
    ("metadata empty", j({"__metadata__": {}}), b"", OK, None),
    ("padded with spaces", b"{}      ", b"", OK, None),
    ("whitespace around", b' \t\n\r{ "a" : { "dtype":"U8", "shape":[ 1 ], "data_offsets":'
     b"[0 ,1] } }\r\n\t ", U8_1, OK, None),
    ("escaped names", b'{"\\u0061":{"dtype":"U\\u0038","shape":[1],"data_offsets":[0,1]},'
     b'"\\ud83d\\ude00\\u0000":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"\1\2", OK,
     None),
    ("empty name", j({"": t("U8", [1], 0, 1)}), U8_1, OK, None),
    ("unknown member", entry_with('{"y": [1, "z"], "w": null}'), U8_1, OK, None),
    ("-0 in a member", entry_with("-0"), U8_1, OK, None),
    ("1e-400 in a member", entry_with("1e-400"), U8_1, OK, None),
    ("30-digit int in a member", entry_with("1" * 30), U8_1, OK, None),
    ("nesting 127", nested(127), U8_1, OK, None),
    ("2^31 x 2^31 x 0", b'{"a":{"dtype":"U8","shape":[2147483648,2147483648,0],'
     b'"data_offsets":[0,0]}}', b"", OK, None),
    ("64 dims", j({"a": t("U8", [1] * 64, 0, 1)}), U8_1, OK, None),
    # -- valid files whose tensors numpy cannot hold ---------------------------------------------
    ("f8_e4m3", j({"a": t("F8_E4M3", [2], 0, 2)}), b"\x38\x40", HEADER_ONLY, None),
    ("f8_e5m2", j({"a": t("F8_E5M2", [2], 0, 2)}), b"\x38\x40", HEADER_ONLY, None),
    ("f8_e8m0", j({"a": t("F8_E8M0", [1], 0, 1)}), b"\x7f", HEADER_ONLY, None),
    ("f8_e4m3fnuz", j({"a": t("F8_E4M3FNUZ", [1], 0, 1)}), b"\x38", HEADER_ONLY, None),
    ("f6 x4", j({"a": t("F6_E3M2", [4], 0, 3)}), b"\0\0\0", HEADER_ONLY, None),
    ("f4 x2", j({"a": t("F4", [2], 0, 1)}), b"\x12", HEADER_ONLY, None),
    ("f8 beside f32", j({"a": t("F32", [1], 0, 4), "b": t("F8_E5M2", [1], 4, 5)}),
     b"\0\0\x80\x3f\x38", HEADER_ONLY, None),
    # -- refused -------------------------------------------------------------------------------
    ("duplicate tensor", b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
     b'"a":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4, REFUSED, DIVERGES),
    ("duplicate metadata key", b'{"__metadata__":{"x":"1","x":"2"}}', b"", REFUSED, DIVERGES),
    ("duplicate __metadata__", b'{"__metadata__":{"x":"1"},"__metadata__":{"y":"2"}}', b"",
     REFUSED, None),
    ("duplicate dtype", b'{"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}',
     U8_1, REFUSED, None),
    ("duplicate unknown member", entry_with('1,"x":2'), U8_1, REFUSED, DIVERGES),
    ("entry as an array", b'{"a":["U8",[1],[0,1]]}', U8_1, REFUSED, DIVERGES),
    ("dtype as an object", b'{"a":{"dtype":{"U8":null},"shape":[1],"data_offsets":[0,1]}}',
     U8_1, REFUSED, DIVERGES),
    ("non-UTF-8 name", b'{"a\xff":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', U8_1,
     REFUSED, None),
    ("UTF-8 surrogate bytes", b'{"a\xed\xa0\x80":{"dtype":"U8","shape":[1],'
     b'"data_offsets":[0,1]}}', U8_1, REFUSED, None),
    ("lone high surrogate", b'{"a\\ud800":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}',
     U8_1, REFUSED, None),
    ("lone low surrogate", entry_with('"\\udc00"'), U8_1, REFUSED, None),
    ("lone surrogate in metadata", b'{"__metadata__":{"k":"\\ud800x"}}', b"", REFUSED, None),
    ("BOM", b"\xef\xbb\xbf{}", b"", REFUSED, None),
    ("control character", b'{"a\x01":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', U8_1,
     REFUSED, None),
    ("NUL padding", b"{}\0\0\0\0\0\0", b"", REFUSED, None),
    ("empty header", b"", b"", REFUSED, None),
    ("header is an array", b"[]", b"", REFUSED, None),
    ("trailing comma", b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},}', U8_1, REFUSED,
     None),
    ("NaN", entry_with("NaN"), U8_1, REFUSED, None),
    ("1e400 in a member", entry_with("1e400"), U8_1, REFUSED, None),
    ("400-digit int in a member", entry_with("9" * 400), U8_1, REFUSED, None),
    ("nesting 128", nested(128), U8_1, REFUSED, None),
    ("nesting 300", nested(300), U8_1, REFUSED, None),
    ("unknown dtype", j({"a": t("Q8", [1], 0, 1)}), U8_1, REFUSED, None),
    ("lower-case dtype", j({"a": t("u8", [1], 0, 1)}), U8_1, REFUSED, None),
    ("dtype a number", b'{"a":{"dtype":1,"shape":[1],"data_offsets":[0,1]}}', U8_1, REFUSED,
     None),
    ("entry null", b'{"a":null}', b"", REFUSED, None),
    ("missing shape", j({"a": {"dtype": "U8", "data_offsets": [0, 1]}}), U8_1, REFUSED, None),
    ("three offsets", j({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1, 1]}}), U8_1,
     REFUSED, None),
    ("shape 1.0", b'{"a":{"dtype":"U8","shape":[1.0],"data_offsets":[0,1]}}', U8_1, REFUSED,
     None),
    ("shape 1e0", b'{"a":{"dtype":"U8","shape":[1e0],"data_offsets":[0,1]}}', U8_1, REFUSED,
     None),
    ("shape -1", b'{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}', U8_1, REFUSED, None),
    ("shape -0", b'{"a":{"dtype":"U8","shape":[-0],"data_offsets":[0,0]}}', b"", REFUSED, None),
    ("shape true", b'{"a":{"dtype":"U8","shape":[true],"data_offsets":[0,1]}}', U8_1, REFUSED,
     None),
    ("shape 2^64", b'{"a":{"dtype":"U8","shape":[18446744073709551616,0],'
     b'"data_offsets":[0,0]}}', b"", REFUSED, None),
    ("offset -0", b'{"a":{"dtype":"U8","shape":[0],"data_offsets":[-0,0]}}', b"", REFUSED, None),
    ("2^32 x 2^32 x 0", b'{"a":{"dtype":"U8","shape":[4294967296,4294967296,0],'
     b'"data_offsets":[0,0]}}', b"", REFUSED, None),
    ("bits overflow", b'{"a":{"dtype":"F64","shape":[4611686018427387904],'
     b'"data_offsets":[0,0]}}', b"", REFUSED, None),
    ("dimension 2^63 x 0", b'{"a":{"dtype":"U8","shape":[9223372036854775808,0],'
     b'"data_offsets":[0,0]}}', b"", REFUSED, DIVERGES),
    ("2^31 x 2^31 x 0 of F64", b'{"a":{"dtype":"F64","shape":[2147483648,2147483648,0],'
     b'"data_offsets":[0,0]}}', b"", REFUSED, DIVERGES),
    ("2^31 x 2^31 x 0 of BF16", b'{"a":{"dtype":"BF16","shape":[2147483648,2147483648,0],'
     b'"data_offsets":[0,0]}}', b"", REFUSED, DIVERGES),
    ("65 dims", j({"a": t("U8", [1] * 65, 0, 1)}), U8_1, REFUSED, DIVERGES),
    ("f4 x1 (half a byte)", j({"a": t("F4", [1], 0, 1)}), U8_1, REFUSED, None),
    ("f6 x1", j({"a": t("F6_E2M3", [1], 0, 1)}), U8_1, REFUSED, None),
    ("span too short", j({"a": t("F32", [3], 0, 8)}), b"\0" * 8, REFUSED, None),
    ("begin > end", j({"a": t("U8", [0], 1, 0)}), U8_1, REFUSED, None),
    ("gap", j({"a": t("U8", [1], 1, 2)}), b"\0\0", REFUSED, None),
    ("overlap", j({"a": t("U8", [2], 0, 2), "b": t("U8", [2], 1, 3)}), b"\0" * 3, REFUSED, None),
    ("same range twice", j({"a": t("U8", [1], 0, 1), "b": t("U8", [1], 0, 1)}), U8_1, REFUSED,
     None),
    ("empty inside another", j({"a": t("U8", [4], 0, 4), "z": t("U8", [0], 2, 2)}), b"\0" * 4,
     REFUSED, None),
    ("empty past the end", j({"a": t("U8", [2], 0, 2), "z": t("U8", [0], 3, 3)}), b"\0" * 2,
     REFUSED, None),
    ("trailing bytes", j({"a": t("U8", [1], 0, 1)}), b"\0\0", REFUSED, None),
    ("truncated data", j({"a": t("U8", [2], 0, 2)}), U8_1, REFUSED, None),
    ("metadata int", j({"__metadata__": {"x": 1}}), b"", REFUSED, None),
    ("metadata null value", j({"__metadata__": {"x": None}}), b"", REFUSED, None),
    ("metadata list", j({"__metadata__": []}), b"", REFUSED, None),
    ("metadata like a tensor", j({"__metadata__": t("U8", [1], 0, 1)}), U8_1, REFUSED, None),
]  # fmt: skip

# Files not made of a header and data: (id, bytes).
RAW_CASES = [
    ("empty file", b""),
    ("7 bytes", b"\0" * 7),
    ("header length past the end", struct.pack("<Q", 10) + b"{}"),
    ("header length > 10^8", struct.pack("<Q", 100_000_001) + b"{}" + b" " * 64),
    ("header length 2^64 - 1", struct.pack("<Q", 2**64 - 1) + b"{}"),
]


def _file_bytes(header: bytes, data: bytes) -> bytes:
    return struct.pack("<Q", len(header)) + header + data


@pytest.fixture(scope="module")
def cpp_reader(tmp_path_factory) -> Path:
    """tests/cpp/safetensors_verdicts.cpp built against the engine's safetensors reader."""
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler (c++ / g++ / $CXX) to build the C++ reader")
    exe = tmp_path_factory.mktemp("cpp") / "safetensors_verdicts"
    cmd = [cxx, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror",
           f"-I{ROOT / 'cpp/include'}", f"-I{ROOT / 'cpp/src'}",
           str(ROOT / "tests/cpp/safetensors_verdicts.cpp"), str(ROOT / "cpp/src/safetensors.cpp"),
           str(ROOT / "cpp/src/json.cpp"), "-o", str(exe)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return exe


def _cpp_verdicts(exe: Path, paths: list[Path]) -> dict[str, dict]:
    """{path: {"ok": bool, "error": str, "metadata": {...}, "tensors": {name: (dtype, shape,
    kind, payload)}}} from the C++ program's output."""
    out = subprocess.run(
        [str(exe), *map(str, paths)], capture_output=True, check=True, text=True
    ).stdout
    verdicts: dict[str, dict] = {}
    current: dict = {}

    def unhex(s: str) -> bytes:
        return b"" if s == "-" else bytes.fromhex(s)

    for line in out.splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "FILE":
            current = verdicts[rest] = {"ok": False, "error": "", "metadata": {}, "tensors": {}}
        elif tag == "ERR":
            current["error"] = rest
        elif tag == "OK":
            current["ok"] = True
        elif tag == "M":
            k, v = rest.split(" ")
            current["metadata"][unhex(k).decode()] = unhex(v).decode()
        elif tag == "T":
            name, dtype, dims, kind, *payload = rest.split(" ", 4)
            shape = () if dims == "-" else tuple(int(d) for d in dims.split(","))
            current["tensors"][unhex(name).decode()] = (dtype, shape, kind, payload)
    return verdicts


def _python_header(path: Path) -> tuple[bool, str]:
    where = f"safetensors file {os.fspath(path)!r}"
    try:
        with open(path, "rb") as f:
            _read_header(f, where)
    except SafetensorsError as e:
        assert os.fspath(path) in str(e), "errors name the file"
        return False, str(e)
    return True, ""


def _python_load(path: Path):
    try:
        return load_safetensors(path), ""
    except SafetensorsError as e:
        assert os.fspath(path) in str(e), "errors name the file"
        return None, str(e)


def _package_verdict(path: Path) -> tuple[bool, str] | None:
    try:
        from safetensors import safe_open
    except ImportError:
        return None
    try:
        with safe_open(str(path), framework="numpy") as f:
            list(f.keys())
    except Exception as e:  # the package raises its own SafetensorError
        return False, str(e)
    return True, ""


def _assert_same_values(name: str, arr: np.ndarray, cpp: tuple, where: str) -> None:
    dtype, shape, kind, payload = cpp
    assert shape == arr.shape, f"{where}: tensor {name!r} shape"
    if kind == "F":
        got = np.array([float(v) for v in payload[0].split()] if payload else [], np.float64)
        want = arr.astype(np.float64).reshape(-1)
        np.testing.assert_array_equal(got, want, err_msg=f"{where}: tensor {name!r}")
        assert np.array_equal(np.signbit(got), np.signbit(want)), f"{where}: {name!r} signs"
    elif kind == "I":
        got = [int(v) for v in payload[0].split()] if payload else []
        assert got == arr.reshape(-1).tolist(), f"{where}: tensor {name!r}"
    elif kind == "R":
        stored = {"U64": "<u8", "C64": "<c8"}[dtype]
        assert bytes.fromhex(payload[0]) == arr.astype(stored).tobytes(), f"{where}: {name!r}"
    else:
        raise AssertionError(f"{where}: C++ could not read tensor {name!r}: {payload}")


def _write_cases(tmp_path: Path) -> list[tuple[str, Path, str, str | None]]:
    files = []
    for i, (case_id, header, data, verdict, package) in enumerate(CASES):
        path = tmp_path / f"case{i:03d}.safetensors"
        path.write_bytes(_file_bytes(header, data))
        files.append((case_id, path, verdict, package))
    for i, (case_id, blob) in enumerate(RAW_CASES):
        path = tmp_path / f"raw{i:03d}.safetensors"
        path.write_bytes(blob)
        files.append((case_id, path, REFUSED, None))
    # Files written by the writers: rnncore's, and the package's when it is installed.
    rng = np.random.default_rng(0)
    arrays = {
        "f32": rng.standard_normal((3, 4)).astype(np.float32),
        "f64": rng.standard_normal(5),
        "f16": np.array([0.5, -1.25, 65504.0], np.float16),
        "i64": np.array([-(2**63), 2**63 - 1], np.int64),
        "i32": np.array([[-1, 2], [3, -4]], np.int32),
        "i8": np.array([-128, 127], np.int8),
        "u8": np.array([0, 255], np.uint8),
        "u64": np.array([2**64 - 1], np.uint64),
        "c64": np.array([1 + 2j], np.complex64),
        "mask": np.array([True, False]),
        "scalar": np.array(2.5, np.float32),
        "empty": np.zeros((0, 4), np.float32),
    }
    ours = tmp_path / "ours.safetensors"
    save_safetensors(ours, arrays, {"format": "rnncore"})
    files.append(("written by rnncore", ours, OK, None))
    try:
        from safetensors.numpy import save_file
    except ImportError:
        pass
    else:
        theirs = tmp_path / "theirs.safetensors"
        save_file(arrays, str(theirs), metadata={"format": "np"})
        files.append(("written by the safetensors package", theirs, OK, None))
    return files


def test_python_cpp_and_the_package_agree_on_every_case(tmp_path, cpp_reader):
    files = _write_cases(tmp_path)
    cpp = _cpp_verdicts(cpp_reader, [path for _, path, _, _ in files])
    problems = []
    for case_id, path, verdict, package in files:
        where = f"case {case_id!r}"
        c = cpp[str(path)]
        header_ok, header_error = _python_header(path)
        loaded, load_error = _python_load(path)
        valid = verdict != REFUSED
        if header_ok != valid or c["ok"] != valid:
            problems.append(
                f"{where}: expected {verdict}; Python header: {header_ok} {header_error!r}; "
                f"C++: {c['ok']} {c['error']!r}"
            )
            continue
        if verdict == REFUSED:
            assert loaded is None, f"{where}: Python loaded a refused file"
            assert str(path) in c["error"], f"{where}: the C++ error names the file"
        elif verdict == HEADER_ONLY:
            assert loaded is None and "which numpy has no type" in load_error, where
            assert any(kind == "X" for _, _, kind, _ in c["tensors"].values()), where
        else:
            assert loaded is not None, f"{where}: Python refused to load: {load_error}"
            tensors, metadata = loaded
            assert metadata == c["metadata"], where
            assert set(tensors) == set(c["tensors"]), where
            for name, arr in tensors.items():
                _assert_same_values(name, arr, c["tensors"][name], where)
        theirs = _package_verdict(path)
        if theirs is None or package == DIVERGES:
            continue
        if not theirs[0] and "unknown variant" in theirs[1] and verdict != REFUSED:
            continue  # an older package without this dtype
        if theirs[0] != valid:
            problems.append(f"{where}: rnncore says {verdict}, the package {theirs}")
    assert not problems, "\n".join(problems)


def test_values_match_the_package(tmp_path):
    """Where the package loads a file into numpy, rnncore loads the same arrays and metadata."""
    st = pytest.importorskip("safetensors.numpy")
    from safetensors import safe_open

    checked = 0
    for case_id, path, verdict, _ in _write_cases(tmp_path):
        if verdict != OK:
            continue
        try:
            theirs = st.load_file(str(path))
        except TypeError:  # BF16 without ml_dtypes: numpy has no bfloat16 to load it into
            continue
        with safe_open(str(path), framework="numpy") as f:
            their_meta = f.metadata() or {}
        ours, meta = load_safetensors(path)
        assert meta == their_meta, case_id
        assert list(ours) == list(theirs) or set(ours) == set(theirs), case_id
        for name, arr in theirs.items():
            if arr.dtype.name == "bfloat16":
                # With ml_dtypes installed (onnx brings it) numpy holds bf16 and the package loads
                # it; rnncore widens bf16 to float32 exactly, so compare in float32.
                arr = arr.astype(np.float32)
            assert ours[name].dtype == arr.dtype and ours[name].shape == arr.shape, case_id
            np.testing.assert_array_equal(ours[name], arr, err_msg=f"{case_id}: {name}")
        checked += 1
    assert checked >= 20


def test_bf16_is_widened_exactly_or_refused(tmp_path):
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(_file_bytes(j({"a": t("BF16", [5], 0, 10)}), BF16))
    (tensors, _) = load_safetensors(path)
    a = tensors["a"]
    assert a.dtype == np.float32 and a.flags.writeable
    np.testing.assert_array_equal(a, np.array([1.0, -2.5, np.inf, 2.0**-133, -0.0], np.float32))
    assert np.signbit(a[4])
    with pytest.raises(SafetensorsError, match="tensor 'a' has dtype BF16.*widen_bf16=True"):
        load_safetensors(path, widen_bf16=False)
