"""Hands the engine a fast single-threaded CBLAS (OpenBLAS from the scipy-openblas32 wheel).

The engine's own GEMM is Eigen's; OpenBLAS's kernels run about twice as fast on AVX-512 machines.
rnncore splits every product across its own OpenMP threads, so the library is set to one thread
(this is rnncore's private copy of OpenBLAS: numpy's and scipy's thread settings are untouched).
Set RNNCORE_BLAS=eigen in the environment to keep the built-in kernels.
"""

from __future__ import annotations

import ctypes
import os

from . import _core

_handle: ctypes.CDLL | None = None  # kept alive: the engine holds pointers into it


def load() -> str:
    """Register the BLAS with the engine if it can be found; returns the backend in use."""
    global _handle
    if os.environ.get("RNNCORE_BLAS", "").strip().lower() in ("eigen", "0", "off", "none"):
        _core._set_blas(0, 0, "eigen")
        return _core.gemm_backend()
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
        return _core.gemm_backend()
    _handle = lib
    name = f"openblas ({core().decode(errors='replace')})"
    _core._set_blas(sgemm, dgemm, name)
    return _core.gemm_backend()
