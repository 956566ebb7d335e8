"""The CUDA backend from Python: whether this build has it, whether a GPU is visible, and arrays
in the GPU's memory.

A layer runs on the GPU with ``device="cuda"`` (``"cuda:0"``); numpy arrays go in and come out
(copied). Device arrays go in and come out without a copy through the host: an array exposing
``__cuda_array_interface__`` or ``__dlpack__`` on the GPU (CuPy, PyTorch CUDA tensors, JAX,
:class:`DeviceArray`) is read where it lies, and the outputs are :class:`DeviceArray` s, which
CuPy (``cupy.asarray``), PyTorch (``torch.from_dlpack``) and others take without a copy. A build
without the CUDA backend, or a machine without a GPU, answers that device with a RuntimeError
saying which. Build it with ``pip install ".[cuda]" -C
cmake.define.RNNCORE_CUDA=ON`` (nvcc on the PATH); the ``cuda`` extra brings cuBLAS, which the
backend loads at run time (:func:`cublas_path` says from where).

``device="cuda-sim"`` runs the CUDA backend's algorithm on the CPU (slowly): the test suite
checks it against the CPU engine on machines without a GPU.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from . import _core

__all__ = [
    "is_built",
    "is_available",
    "device_count",
    "cublas_path",
    "DeviceArray",
    "to_device",
    "synchronize",
]

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


_DLPACK_CPU, _DLPACK_CUDA = 1, 2
_LEGACY_STREAM = 1  # CUDA's legacy default stream, where the backend runs its work


class DeviceArray:
    """A C-order float32/float64 array in a GPU device's memory (``"cuda"``, or ``"cuda-sim"``'s
    host memory in tests): what the recurrent layers on a GPU return for device inputs.

    Zero-copy out: ``torch.from_dlpack(a)``, ``cupy.asarray(a)`` / ``cupy.from_dlpack(a)`` (it
    has ``__dlpack__`` and, on "cuda", ``__cuda_array_interface__``); the memory stays alive
    while any of them uses it. Copies: ``a.numpy()`` / ``np.asarray(a)`` to the host,
    :func:`to_device` from it. The backend's work runs on CUDA's legacy default stream; a
    consumer on another stream is synchronised through the protocols (``stream`` arguments).

    Attributes: ``shape`` (tuple), ``dtype`` (numpy dtype), ``device`` ("cuda" or "cuda-sim"),
    ``ptr`` (the device address), ``size``, ``ndim``, ``nbytes``.
    """

    __slots__ = ("_buffer", "shape", "dtype", "device")

    def __init__(self, shape: Any, dtype: Any = np.float32, device: str = "cuda") -> None:
        """Uninitialised memory for ``shape`` (ints >= 0) of ``dtype`` (float32 or float64) on
        ``device``; RuntimeError where the device is not available."""
        try:
            dims = tuple(int(n) for n in (shape if isinstance(shape, (tuple, list)) else (shape,)))
        except (TypeError, ValueError):
            raise TypeError(f"DeviceArray: shape must be integers, got {shape!r}") from None
        if any(n < 0 for n in dims):
            raise ValueError(f"DeviceArray: shape must be >= 0, got {dims}")
        dt = np.dtype(dtype)
        if dt not in (np.float32, np.float64):
            raise TypeError(f"DeviceArray: dtype must be float32 or float64, got {dt}")
        self.shape, self.dtype = dims, dt
        self.device = _core.require_device(device)
        if self.device == "cpu":
            raise ValueError("DeviceArray: device must be 'cuda' or 'cuda-sim', got 'cpu'")
        self._buffer = _core.DeviceBuffer(self.device, math.prod(dims) * dt.itemsize)

    @property
    def ptr(self) -> int:
        """The device address of element 0 (0 for an empty array)."""
        return int(self._buffer.ptr)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d DeviceArray")
        return self.shape[0]

    def __repr__(self) -> str:
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype}, device={self.device!r})"

    def numpy(self) -> np.ndarray:
        """A host copy (numpy array of the same shape and dtype)."""
        out = np.empty(self.shape, self.dtype)
        _core.device_copy(self.device, out.ctypes.data, self.ptr, self.nbytes, 1)
        return out

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if copy is False:
            raise ValueError("DeviceArray: a host array of device memory needs a copy")
        out = self.numpy()
        return out if dtype is None else out.astype(dtype, copy=False)

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        """CUDA Array Interface v3 (device "cuda" only: cuda-sim's memory is the host's)."""
        if self.device != "cuda":
            raise AttributeError("__cuda_array_interface__: a cuda-sim array lives on the host")
        return {
            "shape": self.shape,
            "typestr": self.dtype.str,
            "data": (self.ptr, False),
            "strides": None,
            "version": 3,
            "stream": _LEGACY_STREAM,
        }

    def __dlpack_device__(self) -> tuple[int, int]:
        """(2, 0): CUDA device 0; cuda-sim's arrays say (1, 0), the host's memory they are."""
        return (_DLPACK_CUDA, 0) if self.device == "cuda" else (_DLPACK_CPU, 0)

    def __dlpack__(
        self,
        *,
        stream: int | None = None,
        max_version: tuple[int, int] | None = None,
        dl_device: tuple[int, int] | None = None,
        copy: bool | None = None,
    ) -> Any:
        """A DLPack capsule over this memory (no copy; ``copy=True`` is refused). ``stream``: the
        consumer's CUDA stream; work enqueued here is finished for it unless it is the legacy
        default stream (1) or -1 (no synchronisation)."""
        if copy:
            raise BufferError("DeviceArray.__dlpack__: copy=True is not supported")
        if dl_device is not None and tuple(dl_device) != self.__dlpack_device__():
            raise BufferError(f"DeviceArray.__dlpack__: cannot export to device {dl_device}")
        if self.device == "cuda" and stream not in (None, -1, _LEGACY_STREAM):
            _core.device_synchronize(self.device)
        versioned = max_version is not None and max_version[0] >= 1
        device_type, device_id = self.__dlpack_device__()
        return _core.dlpack_capsule(
            self,
            self.ptr,
            list(self.shape),
            self.dtype.itemsize * 8,
            device_type,
            device_id,
            versioned,
        )


def to_device(array: Any, device: str = "cuda", dtype: Any = None) -> DeviceArray:
    """A :class:`DeviceArray` copy of a host array (anything ``np.asarray`` takes) on
    ``device``, converted to ``dtype`` (float32 or float64; default: the array's own float
    dtype, float32 for anything else)."""
    a = np.asarray(array)
    if dtype is None:
        dtype = a.dtype if a.dtype in (np.float32, np.float64) else np.float32
    a = np.ascontiguousarray(a, dtype=dtype)
    out = DeviceArray(a.shape, a.dtype, device)
    _core.device_copy(out.device, out.ptr, a.ctypes.data, a.nbytes, 0)
    return out


def synchronize(device: str = "cuda") -> None:
    """Wait until the GPU has finished the work rnncore enqueued (timing, or handing results to
    code that ignores the stream protocols)."""
    name = _core.require_device(device)
    if name != "cpu":
        _core.device_synchronize(name)


class _Borrowed:
    """Device memory of an array rnncore reads (or writes) for one call: its address, shape and
    dtype, and the objects that keep it alive meanwhile."""

    __slots__ = ("ptr", "shape", "dtype", "keep")

    def __init__(self, ptr: int, shape: tuple[int, ...], dtype: np.dtype, keep: Any) -> None:
        self.ptr, self.shape, self.dtype, self.keep = ptr, shape, dtype, keep


def _is_device_array(obj: Any) -> bool:
    """Whether ``obj`` is an array in a GPU's memory (rather than one numpy can read)."""
    if obj is None or isinstance(obj, np.ndarray):
        return False
    if isinstance(obj, DeviceArray):
        return True
    try:  # PyTorch's CPU tensors have the attribute, and raise AttributeError reading it
        if getattr(obj, "__cuda_array_interface__", None) is not None:
            return True
    except Exception:  # noqa: BLE001
        pass
    dev = getattr(obj, "__dlpack_device__", None)
    if dev is None or not hasattr(obj, "__dlpack__"):
        return False
    try:
        return int(dev()[0]) == _DLPACK_CUDA
    except Exception:  # noqa: BLE001  (a producer that cannot say where it is: not ours)
        return False


def _c_order(shape: tuple[int, ...], strides: Any, itemsize: int, in_bytes: bool) -> bool:
    """Whether ``strides`` (None: C order) describe a C-contiguous layout of ``shape``."""
    if strides is None:
        return True
    expect, unit = [], itemsize if in_bytes else 1
    step = unit
    for n in reversed(shape):
        expect.append(step)
        step *= n
    return all(n <= 1 or s == e for n, s, e in zip(shape, strides, reversed(expect), strict=True))


def _borrow(obj: Any, device: str, name: str, where: str) -> _Borrowed:
    """The device memory of ``obj`` for a layer on ``device``: a :class:`DeviceArray` of that
    device, an object with ``__cuda_array_interface__``, or one with ``__dlpack__`` on CUDA
    (cuda-sim reads those as its own memory, for the tests). TypeError/ValueError naming
    ``name`` for anything else (another device, strides, an unsupported dtype)."""
    if isinstance(obj, DeviceArray):
        if obj.device != device:
            raise ValueError(
                f"{where}: {name} is a DeviceArray on {obj.device!r}; the layer is on {device!r}"
            )
        return _Borrowed(obj.ptr, obj.shape, obj.dtype, obj)
    try:  # PyTorch refuses it for a tensor that requires grad: then DLPack says why
        cai = getattr(obj, "__cuda_array_interface__", None)
    except Exception:  # noqa: BLE001
        cai = None
    if cai is not None:
        shape = tuple(int(n) for n in cai["shape"])
        dtype = np.dtype(cai["typestr"])
        if not _c_order(shape, cai.get("strides"), dtype.itemsize, True):
            raise ValueError(f"{where}: {name} must be C-contiguous on the device")
        stream = cai.get("stream")
        if device == "cuda" and stream not in (None, _LEGACY_STREAM, 2):
            _core.device_synchronize(device, int(stream))  # its producer's work is done
        return _Borrowed(int(cai["data"][0]), shape, dtype, obj)
    if hasattr(obj, "__dlpack__"):
        try:
            try:
                capsule = obj.__dlpack__(stream=_LEGACY_STREAM, max_version=(1, 0))
            except TypeError:  # a producer of DLPack before 1.0 (no max_version)
                capsule = obj.__dlpack__(stream=_LEGACY_STREAM)
        except Exception as e:  # noqa: BLE001  (the producer's reason, e.g. requires_grad)
            raise TypeError(f"{where}: {name} cannot be read as DLPack: {e}") from None
        ptr, shape, strides, kind, bits, lanes, dev_type, dev_id, _ = _core.dlpack_view(capsule)
        if dev_type != _DLPACK_CUDA or dev_id != 0:
            raise ValueError(
                f"{where}: {name} is on DLPack device ({dev_type}, {dev_id}); the layer is on "
                f"{device!r} (CUDA device 0)"
            )
        if kind != "f" or bits not in (32, 64) or lanes != 1:
            raise TypeError(f"{where}: {name} must hold float32 or float64, got {kind}{bits}")
        if not _c_order(tuple(shape), strides, bits // 8, False):
            raise ValueError(f"{where}: {name} must be C-contiguous on the device")
        return _Borrowed(ptr, tuple(shape), np.dtype(f"f{bits // 8}"), (obj, capsule))
    raise TypeError(f"{where}: {name} must be a device array, got {type(obj).__name__}")


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
