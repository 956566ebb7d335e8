"""rnncore: fast recurrent neural networks (RNN, LSTM, GRU) on the CPU.

A C++ engine (Eigen + OpenMP) computes whole sequences forward and backward; this package is the
thin Python layer around it. Start with :mod:`rnncore.nn`.
"""

from __future__ import annotations

from . import _native

_native.load_core()  # rnncore._core: the engine build for this CPU (portable, AVX2 or AVX-512)

import numpy as np  # noqa: E402

from . import _blas, _core, cuda, data, metrics, nn, optim, serialization, train  # noqa: E402
from ._version import __version__  # noqa: E402

__all__ = [
    "__version__",
    "nn",
    "cuda",
    "optim",
    "data",
    "metrics",
    "train",
    "serialization",
    "set_num_threads",
    "get_num_threads",
    "has_openmp",
    "set_flush_denormals",
    "flush_denormals",
    "gemm_backend",
    "set_gemm_backend",
    "engine_variant",
    "cmake_dir",
]

_blas.load()


def set_num_threads(n: int) -> int:
    """Set the number of threads the engine uses (OpenMP); returns the previous number.

    Args:
        n: threads, >= 1.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: n must be an integer >= 1, got {n!r}")
    return _core.set_num_threads(n)


def get_num_threads() -> int:
    """Number of threads the engine uses."""
    return _core.get_num_threads()


def _threads_from_environment() -> None:
    """``RNNCORE_NUM_THREADS=N`` sets the engine's threads at import (a library user's knob, like
    OMP_NUM_THREADS but for rnncore alone); a bad value warns and leaves the default."""
    import os
    import warnings

    raw = os.environ.get("RNNCORE_NUM_THREADS", "").strip()
    if not raw:
        return
    if raw.isdigit() and int(raw) >= 1:
        set_num_threads(int(raw))
    else:
        warnings.warn(
            f"RNNCORE_NUM_THREADS must be an integer >= 1, got {raw!r}; using the default",
            RuntimeWarning,
            stacklevel=2,
        )


_threads_from_environment()


def has_openmp() -> bool:
    """True when the engine was built with OpenMP."""
    return _core.has_openmp()


def set_flush_denormals(on: bool) -> bool:
    """Whether the engine flushes denormal floats to zero while it computes; returns the previous
    setting. On by default: a gradient decaying through many steps (a loss at the last step only,
    every many-to-one classifier) turns denormal, and x86 computes on denormals ~100x slower (a
    T=784 LSTM backward took 3.6x longer). Only values below 1.2e-38 (float32) are lost. The mode
    holds during engine calls alone, so numpy and torch in the same process keep IEEE arithmetic.

    Args:
        on: True to flush (FTZ/DAZ), False for IEEE denormals.
    """
    if not isinstance(on, (bool, np.bool_)):
        raise TypeError(f"set_flush_denormals: on must be True or False, got {on!r}")
    return bool(_core.set_flush_denormals(bool(on)))


def flush_denormals() -> bool:
    """Whether the engine flushes denormals to zero (see :func:`set_flush_denormals`)."""
    return bool(_core.flush_denormals())


def engine_variant() -> str:
    """Instruction-set variant of the engine in use: "avx512", "avx2" or "baseline"."""
    return _native.variant


def gemm_backend() -> str:
    """The matrix-product backend in use: "openblas (<core>)" or "eigen"."""
    return _core.gemm_backend()


def set_gemm_backend(name: str) -> str:
    """Choose the library behind the engine's large matrix products; returns `gemm_backend()`.

    Args:
        name: "auto" (OpenBLAS when it loads, else Eigen), "openblas" or "eigen" (the engine's
            built-in kernels). ``RNNCORE_BLAS`` sets the same at import time. Results agree
            between backends to float rounding.
    """
    if not isinstance(name, str) or name.strip().lower() not in _blas.BACKENDS:
        raise ValueError(f"set_gemm_backend: name must be one of {_blas.BACKENDS}, got {name!r}")
    return _blas.load(name.strip().lower())


def cmake_dir() -> str:
    """The folder of rnncore's CMake package files, for C++ programs that link the engine.

    Give it to CMake (as pybind11's ``get_cmake_dir``)::

        cmake -S . -B build -Drnncore_DIR="$(python -m rnncore --cmake-dir)"

    then ``find_package(rnncore CONFIG REQUIRED)`` and link ``rnncore::rnncore``.

    Raises:
        FileNotFoundError: this installation has no C++ package files (built with
            ``RNNCORE_INSTALL=OFF``, or an editable install made before they existed).
    """
    from pathlib import Path

    for base in __path__:  # an editable install has the source folder and the installed one
        folder = Path(base) / "share" / "cmake" / "rnncore"
        if (folder / "rnncoreConfig.cmake").is_file():
            return str(folder)
    raise FileNotFoundError(
        "rnncore.cmake_dir: this rnncore installation has no CMake package files "
        f"(looked for share/cmake/rnncore/rnncoreConfig.cmake under {list(__path__)}); "
        "reinstall it with `pip install .`"
    )
