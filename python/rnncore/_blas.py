"""Hands the engine a fast single-threaded CBLAS: Intel MKL when the optional `mkl` wheel is
installed (``pip install "rnncore[mkl]"``), else OpenBLAS from the scipy-openblas32 wheel.

The engine's own GEMM is Eigen's; OpenBLAS's kernels run about twice as fast on AVX-512 machines,
and MKL's another 10-30% on the input projection and input-gradient products (measured on the
2-core AVX-512 development VM: a medium LSTM training step 10% faster than with OpenBLAS).
rnncore splits every product across its own OpenMP threads, so the library is set to one thread
(MKL's sequential layer; rnncore's private copy of OpenBLAS): numpy's, scipy's and torch's thread
settings are untouched.

``RNNCORE_BLAS`` in the environment picks the backend when rnncore is imported: ``auto`` (the
default: the first of mkl, openblas that loads), ``mkl``, ``openblas`` or ``eigen``.
"""

from __future__ import annotations

import ctypes
import os
import re
import warnings
from importlib import metadata

from . import _core

BACKENDS = ("auto", "mkl", "openblas", "eigen")

_handle: ctypes.CDLL | None = None  # kept alive: the engine holds pointers into it

_MKL_THREADING_SEQUENTIAL = 1  # MKL_THREADING_SEQUENTIAL in mkl_service.h


def _gemm_pointers(lib: ctypes.CDLL, prefix: str) -> tuple[int, int]:
    s = ctypes.cast(getattr(lib, prefix + "cblas_sgemm"), ctypes.c_void_p).value
    d = ctypes.cast(getattr(lib, prefix + "cblas_dgemm"), ctypes.c_void_p).value
    return s, d


def _load_mkl() -> tuple[ctypes.CDLL, int, int, str] | None:
    """MKL's single dynamic library from the `mkl` wheel, switched to its sequential layer."""
    try:
        files = metadata.files("mkl") or []
    except metadata.PackageNotFoundError:
        return None
    paths = [f.locate() for f in files if f.name.startswith("libmkl_rt.so")]
    if not paths:
        return None
    try:
        lib = ctypes.CDLL(str(paths[0]))
        layer = lib.MKL_Set_Threading_Layer
        layer.argtypes = [ctypes.c_int]
        # Another copy of MKL already running with threads in this process would put its own
        # team inside each of the engine's threads: refuse it rather than oversubscribe.
        if layer(_MKL_THREADING_SEQUENTIAL) != _MKL_THREADING_SEQUENTIAL:
            return None
        sgemm, dgemm = _gemm_pointers(lib, "")
        buf = ctypes.create_string_buffer(256)
        lib.MKL_Get_Version_String(buf, len(buf))
    except (OSError, AttributeError):
        return None
    found = re.search(r"Version (\d[\d.]*)", buf.value.decode(errors="replace"))
    return lib, sgemm, dgemm, f"mkl ({found.group(1) if found else '?'}, sequential)"


def _load_openblas() -> tuple[ctypes.CDLL, int, int, str] | None:
    """OpenBLAS from scipy-openblas32, started with one thread."""
    try:
        import scipy_openblas32 as sob

        # Start the library with one thread, so it never creates the worker pool whose idle
        # threads would compete with the engine's; the variable is restored right after, so
        # OpenBLAS copies loaded later (scipy's) keep their own defaults.
        saved = os.environ.get("OPENBLAS_NUM_THREADS")
        os.environ["OPENBLAS_NUM_THREADS"] = "1"
        try:
            lib = ctypes.CDLL(os.path.join(sob.get_lib_dir(), sob.get_library(True)))
        finally:
            if saved is None:
                del os.environ["OPENBLAS_NUM_THREADS"]
            else:
                os.environ["OPENBLAS_NUM_THREADS"] = saved
        set_threads = lib.scipy_openblas_set_num_threads
        set_threads.argtypes = [ctypes.c_int]
        set_threads(1)
        core = lib.scipy_openblas_get_corename
        core.restype = ctypes.c_char_p
        sgemm, dgemm = _gemm_pointers(lib, "scipy_")
    except (ImportError, OSError, AttributeError, IndexError):
        return None
    return lib, sgemm, dgemm, f"openblas ({core().decode(errors='replace')})"


def load(name: str | None = None) -> str:
    """Register a BLAS with the engine; returns the backend in use (`rnncore.gemm_backend()`).

    Args:
        name: one of BACKENDS; None reads ``RNNCORE_BLAS`` (unset: "auto"). A named backend that
            cannot be loaded falls back to the next one with a RuntimeWarning.
    """
    global _handle
    if name is None:
        name = os.environ.get("RNNCORE_BLAS", "").strip().lower() or "auto"
        if name in ("0", "off", "none"):
            name = "eigen"
    if name not in BACKENDS:
        raise ValueError(f"RNNCORE_BLAS / backend must be one of {BACKENDS}, got {name!r}")
    order = {"auto": ("mkl", "openblas"), "mkl": ("mkl", "openblas"), "openblas": ("openblas",)}
    for candidate in order.get(name, ()):
        found = _load_mkl() if candidate == "mkl" else _load_openblas()
        if found is not None:
            _handle, sgemm, dgemm, label = found
            _core._set_blas(sgemm, dgemm, label)
            return _core.gemm_backend()
        if candidate == name:
            hint = ' (pip install "rnncore[mkl]")' if name == "mkl" else ""
            warnings.warn(
                f"rnncore: the {name} backend could not be loaded{hint}; falling back",
                RuntimeWarning,
                stacklevel=2,
            )
    _core._set_blas(0, 0, "eigen")
    return _core.gemm_backend()
