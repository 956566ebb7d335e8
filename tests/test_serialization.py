"""rnncore.serialization: safetensors round trips, interop with the safetensors package, and clear
errors naming the file for truncated or garbled files."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from rnncore.serialization import SafetensorsError, load_safetensors, save_safetensors


def _tensors():
    rng = np.random.default_rng(0)
    return {
        "embedding.weight": rng.standard_normal((5, 3)).astype(np.float32),
        "rnn.weight_hh_l0_reverse": rng.standard_normal((4, 2)),  # float64
        "ids": np.arange(7, dtype=np.int64),
        "i32": np.array([[-1, 2], [3, -4]], dtype=np.int32),
        "i16": np.array([1, -2, 3], dtype=np.int16),
        "u8": np.array([0, 255, 7], dtype=np.uint8),
        "i8": np.array([-128, 127], dtype=np.int8),
        "u16": np.array([65535], dtype=np.uint16),
        "u32": np.array([2**32 - 1], dtype=np.uint32),
        "u64": np.array([2**64 - 1], dtype=np.uint64),
        "f16": np.array([0.5, -1.25, 65504.0], dtype=np.float16),
        "mask": np.array([True, False, True]),
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
    }


def _assert_same(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for k in a:
        assert b[k].dtype == a[k].dtype, k
        assert b[k].shape == a[k].shape, k
        np.testing.assert_array_equal(b[k], a[k], err_msg=k)


def test_round_trip_every_dtype_and_metadata(tmp_path):
    path = tmp_path / "t.safetensors"
    tensors = _tensors()
    save_safetensors(path, tensors, {"format": "rnncore", "note": "ünïcode"})
    loaded, meta = load_safetensors(path)
    _assert_same(tensors, loaded)
    assert meta == {"format": "rnncore", "note": "ünïcode"}
    for arr in loaded.values():  # fresh, writable, aligned arrays
        assert arr.flags.writeable and arr.flags.aligned and arr.flags.c_contiguous
    # The data start is 8-byte aligned and every tensor starts at a multiple of its item size.
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0
    header = json.loads(raw[8 : 8 + n])
    for name, info in header.items():
        if name != "__metadata__":
            assert info["data_offsets"][0] % tensors[name].dtype.itemsize == 0


def test_non_contiguous_and_big_endian_inputs_are_stored_correctly(tmp_path):
    a = np.arange(24, dtype=np.float64).reshape(4, 6)[:, ::2]  # a strided view
    b = np.arange(5, dtype=">i8")  # big-endian
    save_safetensors(tmp_path / "x.safetensors", {"a": a, "b": b})
    loaded, meta = load_safetensors(tmp_path / "x.safetensors")
    np.testing.assert_array_equal(loaded["a"], a)
    np.testing.assert_array_equal(loaded["b"], b)
    assert loaded["b"].dtype == np.dtype("int64") and meta == {}


def test_interop_with_the_safetensors_package(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    from safetensors import safe_open

    tensors = _tensors()
    ours = tmp_path / "ours.safetensors"
    save_safetensors(ours, tensors, {"k": "v"})
    _assert_same(tensors, st.load_file(str(ours)))
    with safe_open(str(ours), framework="numpy") as f:
        assert f.metadata() == {"k": "v"}

    theirs = tmp_path / "theirs.safetensors"
    st.save_file(tensors, str(theirs), metadata={"format": "np"})
    loaded, meta = load_safetensors(theirs)
    _assert_same(tensors, loaded)
    assert meta == {"format": "np"}


def _write_raw(path, header: dict | bytes, data: bytes = b"", n: int | None = None):
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(head) if n is None else n) + head + data)


@pytest.mark.parametrize(
    "header, data, n, message",
    [
        (b"", b"", None, "not valid JSON"),
        (b"{not json", b"", None, "not valid JSON"),
        (b"[1, 2]", b"", None, "must be a JSON object"),
        ({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4, None,
         r"truncated: the tensor needs bytes \[0, 8\) of the data but the file has only 4"),
        ({"x": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}}, b"\0" * 4, None,
         "tensor 'x' has dtype F8_E4M3, which numpy has no type for"),
        ({"x": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, None,
         "unknown dtype 'Q9'"),
        ({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, None,
         r"span 8 bytes but F32 \[3\] needs 12"),
        ({"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4, None,
         "invalid shape"),
        ({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}, b"\0" * 4, None,
         "invalid data_offsets"),
        ({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
          "y": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 8, None,
         "overlaps"),
        ({"x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, None,
         "leaves a gap"),
        ({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 6, None,
         "cover 4 data bytes but the file has 6"),
        ({"__metadata__": {"a": 1}}, b"", None, "__metadata__ must be an object of strings"),
        ({}, b"", 10**6, "header length 1000000 is larger"),
        ({}, b"", 2**63, "header length"),
        # what the C++ reader refuses, Python refuses too (issue 13)
        (b'{"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
         b'"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', b"\0" * 4, None,
         'duplicate member "x"'),
        (b'{"__metadata__": {"a": "1"}, "x": {"dtype": "F32", "shape": [NaN], '
         b'"data_offsets": [0, 4]}}', b"\0" * 4, None, "NaN is not a JSON value"),
    ],
)  # fmt: skip
def test_garbled_files_raise_errors_naming_the_file(tmp_path, header, data, n, message):
    path = tmp_path / "bad.safetensors"
    _write_raw(path, header, data, n)
    with pytest.raises(SafetensorsError, match=message) as info:
        load_safetensors(path)
    assert "bad.safetensors" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_every_truncation_of_a_valid_file_is_detected(tmp_path):
    good = tmp_path / "good.safetensors"
    save_safetensors(good, {"a": np.ones((3, 2), np.float32), "b": np.arange(4)})
    raw = good.read_bytes()
    cut = tmp_path / "cut.safetensors"
    for size in range(len(raw)):
        cut.write_bytes(raw[:size])
        with pytest.raises(SafetensorsError, match="cut.safetensors"):
            load_safetensors(cut)


def test_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_safetensors(tmp_path / "nope.safetensors")
    path = tmp_path / "x.safetensors"
    with pytest.raises(TypeError, match="tensor 'obj' has dtype object"):
        save_safetensors(path, {"obj": np.array([None, 1], dtype=object)})
    with pytest.raises(TypeError, match="complex128"):
        save_safetensors(path, {"c": np.zeros(2, np.complex128)})
    with pytest.raises(ValueError, match="reserved"):
        save_safetensors(path, {"__metadata__": np.zeros(1)})
    with pytest.raises(TypeError, match="non-empty strings"):
        save_safetensors(path, {"": np.zeros(1)})
    with pytest.raises(TypeError, match="metadata must be a dict of str to str"):
        save_safetensors(path, {"a": np.zeros(1)}, {"n": 1})
    with pytest.raises(TypeError, match="tensors must be a dict"):
        save_safetensors(path, [np.zeros(1)])
