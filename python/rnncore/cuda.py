"""The CUDA backend from Python: whether this build has it and whether a GPU is visible.

A layer runs on the GPU with ``device="cuda"`` (``"cuda:0"``); numpy arrays go in and come out
(copied). A build without the CUDA backend, or a machine without a GPU, answers that device with
a RuntimeError saying which. Build it with ``pip install ".[cuda]" -C
cmake.define.RNNCORE_CUDA=ON`` (nvcc on the PATH); the ``cuda`` extra brings cuBLAS, which the
backend loads at run time (:func:`cublas_path` says from where).

``device="cuda-sim"`` runs the CUDA backend's algorithm on the CPU (slowly): the test suite
checks it against the CPU engine on machines without a GPU.
"""

from __future__ import annotations

import os

from . import _core

__all__ = ["is_built", "is_available", "device_count", "cublas_path"]

_cublas: str | None = None


def is_built() -> bool:
    """Whether this build of rnncore has the CUDA backend."""
    return bool(_core.has_cuda())


def device_count() -> int:
    """How many CUDA devices are visible (0 without the backend or without a GPU)."""
    return int(_core.cuda_device_count())


def is_available() -> bool:
    """Whether ``device="cuda"`` can run here: the backend is built and a GPU is visible."""
    return is_built() and device_count() > 0


def _wheel_cublas() -> str | None:
    """libcublas.so.13 of the nvidia-cublas wheel (the ``cuda`` extra), if installed."""
    try:
        import nvidia  # namespace package of NVIDIA's wheels
    except ImportError:
        return None
    for root in getattr(nvidia, "__path__", []):
        for sub in ("cu13/lib", "cublas/lib"):
            path = os.path.join(root, sub, "libcublas.so.13")
            if os.path.isfile(path):
                return path
    return None


def cublas_path() -> str | None:
    """The cuBLAS the backend was given (the nvidia-cublas wheel's), or None: then it loads the
    system's libcublas.so.13 on first use."""
    return _cublas


def _setup() -> None:
    """At import: hand the backend the wheel's cuBLAS, when there is one."""
    global _cublas
    if not is_built():
        return
    path = _wheel_cublas()
    if path is not None:
        _cublas = _core.load_cublas(path)


_setup()
