"""Hands the engine a fast single-threaded CBLAS (OpenBLAS from the scipy-openblas32 wheel).

The engine's own GEMM is Eigen's; OpenBLAS's kernels run about twice as fast on AVX-512 machines.
rnncore splits every product across its own OpenMP threads, so the library is set to one thread
(this is rnncore's private copy of OpenBLAS: numpy's and scipy's thread settings are untouched).

``RNNCORE_BLAS`` in the environment picks the backend when rnncore is imported: ``auto`` (the
default: OpenBLAS when it loads, else Eigen), ``openblas`` or ``eigen``.

Intel MKL (the `mkl` wheel) was measured as a third backend: 10-30% faster than OpenBLAS on the
input projection and input-gradient products, ~10% on a medium LSTM training step. It is not
offered: PyTorch's CPU wheel exports the MKL it links statically, so with the wheel's MKL loaded
first the two bind to each other's symbols, and torch's matrix products then ran on one thread
(torch.mm at 2 threads: 124 instead of 203 GFLOP/s) in any process that also imports torch.
"""

from __future__ import annotations

import ctypes
import os
import warnings

from . import _core

BACKENDS = ("auto", "openblas", "eigen")

_handle: ctypes.CDLL | None = None  # kept alive: the engine holds pointers into it


def _load_openblas() -> tuple[ctypes.CDLL, int, int, str] | None:
    """OpenBLAS from scipy-openblas32, started with one thread; None when it cannot be loaded."""
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
        sgemm = ctypes.cast(lib.scipy_cblas_sgemm, ctypes.c_void_p).value
        dgemm = ctypes.cast(lib.scipy_cblas_dgemm, ctypes.c_void_p).value
    except (ImportError, OSError, AttributeError, IndexError):
        return None
    return lib, sgemm, dgemm, f"openblas ({core().decode(errors='replace')})"


def load(name: str | None = None) -> str:
    """Register a BLAS with the engine; returns the backend in use (`rnncore.gemm_backend()`).

    Args:
        name: one of BACKENDS; None reads ``RNNCORE_BLAS`` (unset: "auto"). "openblas" that
            cannot be loaded falls back to Eigen with a RuntimeWarning.
    """
    global _handle
    if name is None:
        name = os.environ.get("RNNCORE_BLAS", "").strip().lower() or "auto"
        if name in ("0", "off", "none"):
            name = "eigen"
    if name not in BACKENDS:
        raise ValueError(f"RNNCORE_BLAS / backend must be one of {BACKENDS}, got {name!r}")
    if name != "eigen":
        found = _load_openblas()
        if found is not None:
            _handle, sgemm, dgemm, label = found
            _core._set_blas(sgemm, dgemm, label)
            return _core.gemm_backend()
        if name == "openblas":
            warnings.warn(
                "rnncore: OpenBLAS (scipy-openblas32) could not be loaded; using Eigen's GEMM",
                RuntimeWarning,
                stacklevel=2,
            )
    _core._set_blas(0, 0, "eigen")
    return _core.gemm_backend()
