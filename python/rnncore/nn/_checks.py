"""Argument checks shared by the layers of rnncore.nn: errors name the layer and the argument."""

from __future__ import annotations

from typing import Any

import numpy as np


def positive_int(value: Any, name: str, owner: str) -> int:
    """``value`` as an int >= 1, else TypeError/ValueError naming ``owner`` and ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{owner}: {name} must be an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{owner}: {name} must be >= 1, got {value}")
    return int(value)


def check_seed(seed: Any, owner: str) -> int | None:
    """``seed`` as None or an int >= 0 (what numpy's generators take), else TypeError/ValueError
    naming ``owner``'s seed."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(
            f"{owner}: seed must be a non-negative integer or None, got {type(seed).__name__}"
        )
    if seed < 0:
        raise ValueError(f"{owner}: seed must be >= 0, got {seed}")
    return int(seed)


def float_dtype(value: Any, owner: str) -> np.dtype:
    """``value`` as numpy float32 or float64, else TypeError naming ``owner``."""
    try:
        dt = np.dtype(value)
    except TypeError:
        raise TypeError(f"{owner}: dtype must be 'float32' or 'float64', got {value!r}") from None
    if dt not in (np.float32, np.float64):
        raise TypeError(f"{owner}: dtype must be 'float32' or 'float64', got {dt}")
    return dt


def check_device(value: Any, owner: str, *, gpu: bool = False) -> str:
    """``value`` as a device name this build can use: "cpu"; with ``gpu=True`` (the recurrent
    layers, Embedding, Linear) also "cuda" where built with CUDA and a GPU is visible, and
    "cuda-sim" (the CUDA backend's algorithm on the CPU, for testing).

    Raises TypeError for a non-string, ValueError for an unknown name or a GPU device of a layer
    that runs on the CPU only, and RuntimeError naming CUDA when the build has no CUDA backend or
    no GPU is visible (as ``torch`` does).
    """
    if not isinstance(value, str):
        raise TypeError(f"{owner}: device must be a string like 'cpu', got {type(value).__name__}")
    from .. import _core

    try:
        name = _core.require_device(value)
    except ValueError as e:
        raise ValueError(f"{owner}: {e}") from None
    except RuntimeError as e:
        raise RuntimeError(f"{owner}: {e}") from None
    if name != "cpu" and not gpu:
        raise ValueError(
            f"{owner}: device {value!r}: this layer runs on the CPU only so far (on the GPU: the "
            "recurrent layers RNN, LSTM, GRU, GatedRNN, and Embedding, Linear); use device='cpu'"
        )
    return name
