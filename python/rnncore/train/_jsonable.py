"""Lossless JSON for training state: big ints, non-finite floats and small arrays round-trip.

Strict JSON (no NaN/Infinity literals, no integers past 2**53) so that any reader, the C++ one
included, can parse checkpoint.json; the values that JSON cannot hold become tagged objects:
``{"__int__": "123..."}``, ``{"__float__": "inf"}``, ``{"__ndarray__": [...], "dtype": "<u4",
"shape": [...]}``. Tuples come back as lists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

_SAFE_INT = 2**53


def encode(obj: Any, where: str = "value") -> Any:
    """``obj`` as plain JSON values (dict/list/str/int/float/bool/None), tagging what JSON lacks.

    Raises:
        TypeError: for objects that are not numbers, strings, arrays, lists or dicts (naming the
            position, e.g. ``extra['a'][2]``).
    """
    if obj is None or isinstance(obj, (bool, np.bool_, str)):
        return bool(obj) if isinstance(obj, np.bool_) else obj
    if isinstance(obj, (int, np.integer)):
        v = int(obj)
        return v if -_SAFE_INT <= v <= _SAFE_INT else {"__int__": str(v)}
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else {"__float__": repr(v)}
    if isinstance(obj, np.ndarray):
        return {
            "__ndarray__": encode(obj.reshape(-1).tolist(), where),
            "dtype": obj.dtype.str,
            "shape": list(obj.shape),
        }
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
                k = str(int(k))
            if not isinstance(k, str):
                raise TypeError(f"{where}: dict keys must be strings, got {k!r}")
            out[k] = encode(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        return [encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(f"{where}: cannot be stored as JSON: {type(obj).__name__}")


def decode(obj: Any) -> Any:
    """Inverse of :func:`encode`."""
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if isinstance(obj, dict):
        if len(obj) == 1 and "__int__" in obj:
            return int(obj["__int__"])
        if len(obj) == 1 and "__float__" in obj:
            return float(obj["__float__"])
        if "__ndarray__" in obj and set(obj) == {"__ndarray__", "dtype", "shape"}:
            arr = np.array(decode(obj["__ndarray__"]), dtype=np.dtype(obj["dtype"]))
            return arr.reshape(obj["shape"])
        return {k: decode(v) for k, v in obj.items()}
    return obj


def plain(obj: Any) -> Any:
    """``obj`` as plain JSON for people and plotting tools: non-finite floats become None."""
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj
