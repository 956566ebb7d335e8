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

import contextlib
import math
import os
from collections.abc import Iterator
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
    "swap01",
    "embedding",
    "embedding_backward",
    "linear",
    "linear_backward",
    "cross_entropy",
    "mse_loss",
    "concat_last",
    "split_last",
    "tanh",
    "tanh_backward",
    "bmm",
    "masked_softmax",
    "softmax_backward",
    "add_",
    "sum_axis0",
    "mean_pool",
    "mean_pool_backward",
    "max_pool",
    "max_pool_backward",
    "keyed_dropout",
    "sgd_step",
    "adam_step",
    "rmsprop_step",
    "adadelta_step",
    "adagrad_step",
    "grad_norm",
    "scale",
    "clip_grad_norm",
    "clip_grad_value",
    "all_finite",
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


#: dtypes a DeviceArray holds: floats for values, int64 for ids and targets
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64))


class DeviceArray:
    """A C-order float32/float64 (or int64: ids, targets) array in a GPU device's memory
    (``"cuda"``, or ``"cuda-sim"``'s host memory in tests): what the recurrent layers on a GPU
    return for device inputs, and what the device operations below take and return.

    Zero-copy out: ``torch.from_dlpack(a)``, ``cupy.asarray(a)`` / ``cupy.from_dlpack(a)`` (it
    has ``__dlpack__`` and, on "cuda", ``__cuda_array_interface__``); the memory stays alive
    while any of them uses it. Copies: ``a.numpy()`` / ``np.asarray(a)`` to the host,
    :func:`to_device` from it. The backend's work runs on CUDA's legacy default stream; a
    consumer on another stream is synchronised through the protocols (``stream`` arguments).

    Views share the memory without a copy: :meth:`reshape`, ``a[i]`` and ``a[lo:hi]`` (rows of
    the first axis, step 1). ``a[...] = value`` writes the whole array (a number, a host array
    broadcast to the shape, or a device array of the shape); :meth:`copy` copies on the device.
    A module's parameters on a GPU are views into its flat device buffers.

    Attributes: ``shape`` (tuple), ``dtype`` (numpy dtype), ``device`` ("cuda" or "cuda-sim"),
    ``ptr`` (the device address), ``size``, ``ndim``, ``nbytes``.
    """

    __slots__ = ("_buffer", "_offset", "shape", "dtype", "device")

    def __init__(self, shape: Any, dtype: Any = np.float32, device: str = "cuda") -> None:
        """Uninitialised memory for ``shape`` (ints >= 0) of ``dtype`` (float32, float64 or
        int64) on ``device``; RuntimeError where the device is not available."""
        try:
            dims = tuple(int(n) for n in (shape if isinstance(shape, (tuple, list)) else (shape,)))
        except (TypeError, ValueError):
            raise TypeError(f"DeviceArray: shape must be integers, got {shape!r}") from None
        if any(n < 0 for n in dims):
            raise ValueError(f"DeviceArray: shape must be >= 0, got {dims}")
        dt = np.dtype(dtype)
        if dt not in _DTYPES:
            raise TypeError(f"DeviceArray: dtype must be float32, float64 or int64, got {dt}")
        self.shape, self.dtype = dims, dt
        self.device = _core.require_device(device)
        if self.device == "cpu":
            raise ValueError("DeviceArray: device must be 'cuda' or 'cuda-sim', got 'cpu'")
        self._buffer = _core.DeviceBuffer(self.device, math.prod(dims) * dt.itemsize)
        self._offset = 0  # bytes into the buffer (views)

    @classmethod
    def zeros(cls, shape: Any, dtype: Any = np.float32, device: str = "cuda") -> DeviceArray:
        """Zero-filled memory (see the constructor)."""
        out = cls(shape, dtype, device)
        out.fill(0)
        return out

    @property
    def ptr(self) -> int:
        """The device address of element 0 (0 for an empty array)."""
        base = int(self._buffer.ptr)
        return base + self._offset if base else 0

    def _view(self, offset: int, shape: tuple[int, ...]) -> DeviceArray:
        """``shape`` elements of this memory from element ``offset`` on (checked by callers)."""
        out = object.__new__(DeviceArray)
        out._buffer, out._offset = self._buffer, self._offset + offset * self.dtype.itemsize
        out.shape, out.dtype, out.device = shape, self.dtype, self.device
        return out

    def __getitem__(self, key: Any) -> DeviceArray:
        """``a[i]`` (row i of the first axis) or ``a[lo:hi]`` (rows lo..hi-1, step 1): views;
        ``a[...]``: a."""
        if key is Ellipsis:
            return self
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool) and self.shape:
            i = int(key) + (self.shape[0] if key < 0 else 0)
            if not 0 <= i < self.shape[0]:
                raise IndexError(
                    f"DeviceArray: index {key} out of range for axis 0 of {self.shape}"
                )
            return self._view(i * math.prod(self.shape[1:]), self.shape[1:])
        if not isinstance(key, slice) or not self.shape:
            raise TypeError(
                "DeviceArray: only a[lo:hi] (a range of the first axis) and a[...] index "
                f"device memory; copy to the host with .numpy() first (got {key!r})"
            )
        lo, hi, step = key.indices(self.shape[0])
        if step != 1:
            raise ValueError("DeviceArray: a slice of device memory must have step 1")
        hi = max(hi, lo)
        row = math.prod(self.shape[1:])
        return self._view(lo * row, (hi - lo, *self.shape[1:]))

    def __setitem__(self, key: Any, value: Any) -> None:
        """``a[...] = value`` (or ``a[lo:hi] = value``): a number, a host array broadcast to the
        shape, or a device array of the shape and dtype (copied on the device)."""
        target = self[key]
        if isinstance(value, DeviceArray):
            if value.device != target.device or value.dtype != target.dtype:
                raise TypeError(
                    f"DeviceArray: cannot assign a {value.dtype} array on {value.device!r} to a "
                    f"{target.dtype} array on {target.device!r}"
                )
            if value.shape != target.shape:
                raise ValueError(
                    f"DeviceArray: cannot assign shape {value.shape} to shape {target.shape}"
                )
            _core.device_copy(target.device, target.ptr, value.ptr, target.nbytes, 2)
            return
        if _is_device_array(value):
            raise TypeError("DeviceArray: assign a DeviceArray or host values, not a foreign one")
        if np.isscalar(value) and value == 0 and not np.signbit(value):  # -0.0 is written
            _core.device_zero(target.device, target.ptr, target.nbytes)
            return
        try:
            host = np.ascontiguousarray(np.broadcast_to(np.asarray(value), target.shape))
        except ValueError:
            raise ValueError(
                f"DeviceArray: cannot assign shape {np.shape(value)} to shape {target.shape}"
            ) from None
        if host.dtype.kind not in "biuf":
            raise TypeError(f"DeviceArray: cannot assign values of dtype {host.dtype}")
        host = host.astype(target.dtype, copy=False)
        _core.device_copy(target.device, target.ptr, host.ctypes.data, target.nbytes, 0)

    def fill(self, value: float) -> None:
        """Every element set to ``value``."""
        self[...] = value

    def copy(self) -> DeviceArray:
        """A new array with the same contents (copied on the device)."""
        out = DeviceArray(self.shape, self.dtype, self.device)
        out[...] = self
        return out

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def reshape(self, *shape: Any) -> DeviceArray:
        """The same memory with another shape of as many elements (C order; one -1 entry is
        inferred), as numpy's ``reshape`` of a contiguous array: no copy, no device work."""
        dims = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        try:
            dims = tuple(int(n) for n in dims)
        except (TypeError, ValueError):
            raise TypeError(f"DeviceArray.reshape: shape must be integers, got {shape!r}") from None
        if dims.count(-1) > 1 or any(n < -1 for n in dims):
            raise ValueError(f"DeviceArray.reshape: bad shape {dims}")
        if -1 in dims:
            known = math.prod(n for n in dims if n != -1)
            if known == 0 or self.size % known:
                raise ValueError(f"DeviceArray.reshape: cannot reshape {self.shape} into {dims}")
            dims = tuple(self.size // known if n == -1 else n for n in dims)
        if math.prod(dims) != self.size:
            raise ValueError(f"DeviceArray.reshape: cannot reshape {self.shape} into {dims}")
        return self._view(0, dims)

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
            kind=self.dtype.kind,
        )


def to_device(array: Any, device: str = "cuda", dtype: Any = None) -> DeviceArray:
    """A :class:`DeviceArray` copy of a host array (anything ``np.asarray`` takes) on
    ``device``, converted to ``dtype`` (float32, float64 or int64; default: the array's own
    float dtype, float32 for anything else: ids need ``dtype="int64"``)."""
    a = np.asarray(array)
    if dtype is None:
        dtype = a.dtype if a.dtype in (np.float32, np.float64) else np.float32
    if np.dtype(dtype).kind == "i" and a.dtype.kind not in "iu":
        raise TypeError(f"to_device: an int64 copy needs integers, got dtype {a.dtype}")
    a = np.asarray(a, dtype=dtype, order="C")  # (ascontiguousarray would make 0-d 1-d)
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


def _borrow(obj: Any, device: str, name: str, where: str, kinds: str = "f") -> _Borrowed:
    """The device memory of ``obj`` for a layer on ``device``: a :class:`DeviceArray` of that
    device, an object with ``__cuda_array_interface__``, or one with ``__dlpack__`` on CUDA
    (cuda-sim reads those as its own memory, for the tests). TypeError/ValueError naming
    ``name`` for anything else (another device, strides, an unsupported dtype). ``kinds``: the
    DLPack element kinds accepted ("f" floats of 32/64 bits, "i" int64)."""
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
        ok = (kind == "f" and bits in (32, 64)) or (kind == "i" and bits == 64)
        if kind not in kinds or not ok or lanes != 1:
            want = "float32 or float64" if kinds == "f" else "int64"
            raise TypeError(f"{where}: {name} must hold {want}, got {kind}{bits}")
        if not _c_order(tuple(shape), strides, bits // 8, False):
            raise ValueError(f"{where}: {name} must be C-contiguous on the device")
        return _Borrowed(ptr, tuple(shape), np.dtype(f"{kind}{bits // 8}"), (obj, capsule))
    raise TypeError(f"{where}: {name} must be a device array, got {type(obj).__name__}")


# ---- training operations on device arrays ------------------------------------------------------
# The engine's ops (embedding, linear, cross-entropy, keyed dropout, the optimizers' updates,
# norms and clipping) on arrays in the GPU's memory, so that a training step written with them
# and the recurrent layers' device calls never crosses to the host. Each takes DeviceArrays (or
# CuPy / PyTorch CUDA arrays) and returns DeviceArrays on the same device; the numbers agree
# with the CPU engine's ops (rnncore.nn, rnncore.optim) to rounding.

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _device_of(arrays: tuple[Any, ...], where: str) -> str:
    """The device of the first DeviceArray among ``arrays`` ("cuda" for foreign device arrays);
    TypeError when none is a device array."""
    for a in arrays:
        if isinstance(a, DeviceArray):
            return a.device
    for a in arrays:
        if _is_device_array(a):
            return "cuda"
    raise TypeError(f"{where}: needs device arrays (DeviceArray, CuPy, torch CUDA tensors)")


def _arg(
    a: Any,
    device: str,
    name: str,
    where: str,
    dtype: Any = None,
    shape: tuple[int | None, ...] | None = None,
) -> _Borrowed:
    """``a`` as device memory of ``device``: float32/float64 (or exactly ``dtype``), of ``shape``
    (None entries: any size; None: any shape). TypeError/ValueError naming ``name``."""
    want = None if dtype is None else np.dtype(dtype)
    if not _is_device_array(a):
        raise TypeError(
            f"{where}: {name} must be a device array (DeviceArray, CuPy, torch CUDA tensor), got "
            f"{type(a).__name__}; rnncore.cuda.to_device copies a host array"
        )
    b = _borrow(a, device, name, where, kinds="i" if want == np.int64 else "f")
    if want is not None and b.dtype != want:
        raise TypeError(f"{where}: {name} must have dtype {want}, got {b.dtype}")
    if want is None and b.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{where}: {name} must be float32 or float64, got {b.dtype}")
    if shape is not None:
        ok = len(b.shape) == len(shape) and all(
            w is None or n == w for n, w in zip(b.shape, shape, strict=True)
        )
        if not ok:
            spec = ", ".join("*" if w is None else str(w) for w in shape)
            raise ValueError(f"{where}: {name} must have shape [{spec}], got {list(b.shape)}")
    return b


def _ids(ids: Any, device: str, name: str, where: str) -> _Borrowed:
    """Integer ids as int64 device memory: a device array as it is, a host array uploaded."""
    if _is_device_array(ids):
        return _arg(ids, device, name, where, dtype=np.int64)
    a = np.asarray(ids)
    if a.dtype == bool or a.dtype.kind not in "iu":
        raise TypeError(f"{where}: {name} must be integers, got dtype {a.dtype}")
    d = to_device(a, device, np.int64)
    return _Borrowed(d.ptr, d.shape, d.dtype, d)


@contextlib.contextmanager
def _named(where: str) -> Iterator[None]:
    """The engine's argument errors (ValueError, TypeError) prefixed with the function's name."""
    try:
        yield
    except (ValueError, TypeError) as e:
        raise type(e)(f"{where}: {e}") from None


def _bits(b: _Borrowed) -> int:
    return b.dtype.itemsize * 8


def _same_dtype(where: str, first: _Borrowed, **others: _Borrowed | None) -> None:
    for name, b in others.items():
        if b is not None and b.dtype != first.dtype:
            raise TypeError(f"{where}: {name} has dtype {b.dtype}; expected {first.dtype}")


def _swap01(ptr: int, shape: tuple[int, ...], dtype: np.dtype, device: str) -> DeviceArray:
    """A [n1, n0, n2] copy of the device memory [n0, n1, n2] at ``ptr`` (one kernel)."""
    n0, n1, n2 = shape
    out = DeviceArray((n1, n0, n2), dtype, device)
    _core.device_swap01(device, out.ptr, ptr, n0, n1, n2, dtype.itemsize)
    return out


def swap01(a: Any) -> DeviceArray:
    """A copy of a 3-d device array with its first two axes swapped: [n0, n1, n2] ->
    [n1, n0, n2] (time-major <-> batch-first, or [layers, batch, H] states -> [batch, ...])."""
    where = "rnncore.cuda.swap01"
    device = _device_of((a,), where)
    b = _arg(a, device, "a", where, shape=(None, None, None))
    return _swap01(b.ptr, tuple(b.shape), b.dtype, device)


def embedding(ids: Any, weight: Any, *, checked_ids: bool = False) -> DeviceArray:
    """``weight[ids]`` on the device: ids [...] (int64 device array, or host integers, uploaded)
    in [0, V), weight [V, E] -> [..., E] (ValueError naming the first id out of range).
    ``checked_ids=True``: the caller has checked the ids, so the device's check (which waits
    for the GPU) is skipped; ids out of range then read outside the weight."""
    where = "rnncore.cuda.embedding"
    device = _device_of((weight, ids), where)
    w = _arg(weight, device, "weight", where, shape=(None, None))
    i = _ids(ids, device, "ids", where)
    V, E = w.shape
    out = DeviceArray((*i.shape, E), w.dtype, device)
    _core.device_embedding_forward(
        device, _bits(w), math.prod(i.shape), V, E, i.ptr, w.ptr, out.ptr, bool(checked_ids)
    )
    return out


def embedding_backward(
    ids: Any, dout: Any, dweight: Any, padding_idx: int | None = None, *, checked_ids: bool = False
) -> None:
    """``dweight[ids[n]] += dout[n]`` on the device, except for ``padding_idx``'s row: ids [...],
    dout [..., E], dweight [V, E] (updated). Deterministic (each row adds its tokens in order).
    ``checked_ids``: as for :func:`embedding` (the ids of a checked forward)."""
    where = "rnncore.cuda.embedding_backward"
    device = _device_of((dweight, dout, ids), where)
    dw = _arg(dweight, device, "dweight", where, shape=(None, None))
    i = _ids(ids, device, "ids", where)
    V, E = dw.shape
    do = _arg(dout, device, "dout", where, shape=(*i.shape, E))
    _same_dtype(where, dw, dout=do)
    pad = -1 if padding_idx is None else int(padding_idx)
    if padding_idx is not None and not 0 <= pad < V:
        raise ValueError(f"{where}: padding_idx must be in [0, {V}) or None, got {padding_idx}")
    _core.device_embedding_backward(
        device, _bits(dw), math.prod(i.shape), V, E, i.ptr, do.ptr, dw.ptr, pad, bool(checked_ids)
    )


def linear(x: Any, weight: Any, bias: Any = None) -> DeviceArray:
    """``x · weightᵀ + bias`` on the device (cuBLAS): x [..., I], weight [O, I], bias [O] or
    None -> [..., O]."""
    where = "rnncore.cuda.linear"
    device = _device_of((x, weight), where)
    w = _arg(weight, device, "weight", where, shape=(None, None))
    O, In = w.shape
    xb = _arg(x, device, "x", where)
    if not xb.shape or xb.shape[-1] != In:
        raise ValueError(f"{where}: x must have shape [..., {In}], got {list(xb.shape)}")
    b = None if bias is None else _arg(bias, device, "bias", where, shape=(O,))
    _same_dtype(where, w, x=xb, bias=b)
    out = DeviceArray((*xb.shape[:-1], O), w.dtype, device)
    N = math.prod(xb.shape[:-1])
    _core.device_linear_forward(
        device, _bits(w), N, In, O, xb.ptr, w.ptr, 0 if b is None else b.ptr, out.ptr
    )
    return out


def linear_backward(
    dy: Any, x: Any, weight: Any, dweight: Any, dbias: Any = None, *, need_dx: bool = True
) -> DeviceArray | None:
    """The gradients of :func:`linear`: ``dweight += dyᵀ · x``, ``dbias += Σ dy`` (when given),
    and returns ``dx = dy · weight`` [..., I] (None with ``need_dx=False``).
    dy [..., O], x [..., I], weight and dweight [O, I], dbias [O]."""
    where = "rnncore.cuda.linear_backward"
    device = _device_of((dy, x, weight, dweight), where)
    w = _arg(weight, device, "weight", where, shape=(None, None))
    O, In = w.shape
    xb = _arg(x, device, "x", where)
    if not xb.shape or xb.shape[-1] != In:
        raise ValueError(f"{where}: x must have shape [..., {In}], got {list(xb.shape)}")
    lead = xb.shape[:-1]
    dyb = _arg(dy, device, "dy", where, shape=(*lead, O))
    dw = _arg(dweight, device, "dweight", where, shape=(O, In))
    db = None if dbias is None else _arg(dbias, device, "dbias", where, shape=(O,))
    _same_dtype(where, w, x=xb, dy=dyb, dweight=dw, dbias=db)
    dx = DeviceArray((*lead, In), w.dtype, device) if need_dx else None
    _core.device_linear_backward(
        device,
        _bits(w),
        math.prod(lead),
        In,
        O,
        dyb.ptr,
        xb.ptr,
        w.ptr,
        0 if dx is None else dx.ptr,
        dw.ptr,
        0 if db is None else db.ptr,
    )
    return dx


def cross_entropy(
    logits: Any,
    targets: Any,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    grad_scale: float = 1.0,
    grad: bool = True,
) -> tuple[float, DeviceArray | None, int]:
    """Softmax cross-entropy on the device, fused with its gradient (as
    :class:`rnncore.nn.CrossEntropyLoss`): logits [N, C], targets [N] (int64 device array or
    host integers) in [0, C) or ``ignore_index``. Returns (loss, dlogits [N, C] or None,
    count of rows not ignored); the loss is read back (the call waits for it). A target out of
    range is a ValueError naming it."""
    where = "rnncore.cuda.cross_entropy"
    device = _device_of((logits, targets), where)
    lg = _arg(logits, device, "logits", where, shape=(None, None))
    N, C = lg.shape
    t = _ids(targets, device, "targets", where)
    if t.shape != (N,):
        raise ValueError(f"{where}: targets must have shape [{N}], got {list(t.shape)}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"{where}: reduction must be 'mean' or 'sum', got {reduction!r}")
    d = DeviceArray((N, C), lg.dtype, device) if grad else None
    loss, count = _core.device_cross_entropy(
        device,
        _bits(lg),
        N,
        C,
        lg.ptr,
        t.ptr,
        int(ignore_index),
        reduction == "mean",
        float(label_smoothing),
        float(grad_scale),
        0 if d is None else d.ptr,
    )
    return float(loss), d, int(count)


def bmm(
    a: Any, b: Any, *, transpose_a: bool = False, transpose_b: bool = False, out: Any = None
) -> DeviceArray:
    """Batched matrix products on the device (cuBLAS): op(a[i]) · op(b[i]) for every i, op(x) =
    xᵀ where asked. a [n, M, K] ([n, K, M] with transpose_a), b [n, K, N] ([n, N, K] with
    transpose_b) -> [n, M, N]; with ``out`` ([n, M, N]) the products are added to it and it is
    returned."""
    where = "rnncore.cuda.bmm"
    device = _device_of((a, b), where)
    ab = _arg(a, device, "a", where, shape=(None, None, None))
    bb = _arg(b, device, "b", where, shape=(None, None, None))
    _same_dtype(where, ab, b=bb)
    n, M, K = ab.shape[0], *(ab.shape[2:0:-1] if transpose_a else ab.shape[1:])
    Kb, N = bb.shape[2:0:-1] if transpose_b else bb.shape[1:]
    if bb.shape[0] != n or Kb != K:
        raise ValueError(
            f"{where}: a {list(ab.shape)} and b {list(bb.shape)} do not multiply "
            f"(transpose_a={transpose_a}, transpose_b={transpose_b})"
        )
    if out is None:
        result = DeviceArray((n, M, N), ab.dtype, device)
        accumulate = False
    else:
        result = out
        ob = _arg(out, device, "out", where, shape=(n, M, N))
        _same_dtype(where, ab, out=ob)
        accumulate = True
    _core.device_batched_gemm(
        device,
        _bits(ab),
        n,
        bool(transpose_a),
        bool(transpose_b),
        M,
        N,
        K,
        ab.ptr,
        bb.ptr,
        _arg(result, device, "out", where).ptr,
        accumulate,
    )
    return result


def masked_softmax(scores: Any, lengths: Any) -> DeviceArray:
    """Attention weights on the device: scores [B, T, S] -> the softmax over the first
    lengths[b] source steps of each row (weight 0 past them); lengths [B] host integers in
    [1, S]."""
    where = "rnncore.cuda.masked_softmax"
    device = _device_of((scores,), where)
    sb = _arg(scores, device, "scores", where, shape=(None, None, None))
    B, T, S = sb.shape
    lens = _host_lengths(lengths, B, where)
    w = DeviceArray(sb.shape, sb.dtype, device)
    if B * T == 0:  # no rows
        return w
    with _named(where):
        _core.device_masked_softmax(device, _bits(sb), B * T, S, T, sb.ptr, lens.ctypes.data, w.ptr)
    return w


def softmax_backward(dweights: Any, weights: Any) -> DeviceArray:
    """The gradient of a softmax over the last axis from its output: weights ⊙ (dweights -
    Σ dweights·weights), shaped as weights."""
    where = "rnncore.cuda.softmax_backward"
    device = _device_of((weights, dweights), where)
    wb = _arg(weights, device, "weights", where)
    if not wb.shape:
        raise ValueError(f"{where}: weights must have a last axis, got shape []")
    db = _arg(dweights, device, "dweights", where, shape=tuple(wb.shape))
    _same_dtype(where, wb, dweights=db)
    ds = DeviceArray(wb.shape, wb.dtype, device)
    S = wb.shape[-1]
    _core.device_softmax_backward(
        device, _bits(wb), math.prod(wb.shape) // max(S, 1), S, db.ptr, wb.ptr, ds.ptr
    )
    return ds


def add_(y: Any, x: Any, alpha: float = 1.0) -> Any:
    """``y += alpha * x`` in place on the device (x shaped as y); returns y."""
    where = "rnncore.cuda.add_"
    device = _device_of((y, x), where)
    yb = _arg(y, device, "y", where)
    xb = _arg(x, device, "x", where, shape=tuple(yb.shape))
    _same_dtype(where, yb, x=xb)
    _core.device_axpy(device, _bits(yb), math.prod(yb.shape), float(alpha), xb.ptr, yb.ptr)
    return y


def sum_axis0(x: Any, out: Any = None) -> DeviceArray:
    """Σ over the first axis on the device: x [n, ...] -> [...]; with ``out`` the sum is added
    to it (and it is returned)."""
    where = "rnncore.cuda.sum_axis0"
    device = _device_of((x,), where)
    xb = _arg(x, device, "x", where)
    if not xb.shape:
        raise ValueError(f"{where}: x must have a first axis, got shape []")
    rest = tuple(xb.shape[1:])
    if out is None:
        out = DeviceArray.zeros(rest, xb.dtype, device)
    ob = _arg(out, device, "out", where, shape=rest)
    _same_dtype(where, xb, out=ob)
    _core.device_column_sums(device, _bits(xb), xb.shape[0], math.prod(rest), xb.ptr, ob.ptr)
    return out


def tanh(x: Any) -> DeviceArray:
    """tanh(x) element-wise on the device: any shape, float32/float64 -> the same."""
    where = "rnncore.cuda.tanh"
    device = _device_of((x,), where)
    xb = _arg(x, device, "x", where)
    y = DeviceArray(xb.shape, xb.dtype, device)
    _core.device_tanh(device, _bits(xb), math.prod(xb.shape), xb.ptr, y.ptr, 0, False)
    return y


def tanh_backward(dy: Any, y: Any) -> DeviceArray:
    """The gradient of y = tanh(x) from y itself: dy · (1 - y²), shaped as y."""
    where = "rnncore.cuda.tanh_backward"
    device = _device_of((y, dy), where)
    yb = _arg(y, device, "y", where)
    dyb = _arg(dy, device, "dy", where, shape=tuple(yb.shape))
    _same_dtype(where, yb, dy=dyb)
    dx = DeviceArray(yb.shape, yb.dtype, device)
    _core.device_tanh(device, _bits(yb), math.prod(yb.shape), dx.ptr, yb.ptr, dyb.ptr, True)
    return dx


def concat_last(arrays: Any) -> DeviceArray:
    """Device arrays [..., E_i] (the same leading shape, dtype and device) joined along the last
    axis: [..., Σ E_i] (as ``numpy.concatenate(arrays, axis=-1)``), copied on the device."""
    where = "rnncore.cuda.concat_last"
    arrays = list(arrays)
    if not arrays:
        raise ValueError(f"{where}: needs at least one array")
    device = _device_of(tuple(arrays), where)
    parts = [_arg(a, device, f"arrays[{i}]", where) for i, a in enumerate(arrays)]
    for i, b in enumerate(parts):
        if not b.shape:
            raise ValueError(f"{where}: arrays[{i}] must have at least one axis, got shape []")
    lead = tuple(parts[0].shape[:-1])
    for i, b in enumerate(parts):
        if tuple(b.shape[:-1]) != lead:
            raise ValueError(
                f"{where}: arrays[{i}] must have shape [{', '.join(map(str, lead or ()))}, *] "
                f"like arrays[0], got {list(b.shape)}"
            )
        _same_dtype(where, parts[0], **{f"arrays[{i}]": b})
    total = sum(b.shape[-1] for b in parts)
    out = DeviceArray((*lead, total), parts[0].dtype, device)
    rows, offset = math.prod(lead), 0
    for b in parts:
        width = b.shape[-1]
        _core.device_strided_copy(
            device, _bits(b), rows, width, b.ptr, width, out.ptr + offset * b.dtype.itemsize, total
        )
        offset += width
    return out


def split_last(a: Any, sizes: Any) -> list[DeviceArray]:
    """A device array [..., Σ sizes] cut along the last axis into [..., sizes[i]] copies (the
    inverse of :func:`concat_last`)."""
    where = "rnncore.cuda.split_last"
    device = _device_of((a,), where)
    b = _arg(a, device, "a", where)
    sizes = list(sizes)
    if any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) for n in sizes):
        raise TypeError(f"{where}: sizes must be integers, got {sizes}")
    sizes = [int(n) for n in sizes]
    if not b.shape or any(n < 0 for n in sizes) or sum(sizes) != b.shape[-1]:
        raise ValueError(
            f"{where}: sizes {sizes} must be >= 0 and add up to the last axis of {list(b.shape)}"
        )
    lead, total = tuple(b.shape[:-1]), b.shape[-1]
    rows, offset, out = math.prod(lead), 0, []
    for width in sizes:
        part = DeviceArray((*lead, width), b.dtype, device)
        _core.device_strided_copy(
            device, _bits(b), rows, width, b.ptr + offset * b.dtype.itemsize, total, part.ptr, width
        )
        out.append(part)
        offset += width
    return out


def mse_loss(
    pred: Any,
    target: Any,
    *,
    reduction: str = "mean",
    grad_scale: float = 1.0,
    grad: bool = True,
) -> tuple[float, DeviceArray | None]:
    """Squared error on the device (as :class:`rnncore.nn.MSELoss`): pred [...] a device array,
    target [...] the same shape and dtype (a device array, or a host array, copied over).
    Returns (loss, dpred [...] or None); the loss is read back (the call waits for it)."""
    where = "rnncore.cuda.mse_loss"
    device = _device_of((pred,), where)
    pb = _arg(pred, device, "pred", where)
    if not _is_device_array(target):
        host = np.asarray(target)
        if host.dtype != pb.dtype:
            raise TypeError(f"{where}: target must have pred's dtype {pb.dtype}, got {host.dtype}")
        target = to_device(host, device)
    tb = _arg(target, device, "target", where)
    if tuple(tb.shape) != tuple(pb.shape):
        raise ValueError(
            f"{where}: target must have shape {list(pb.shape)} like pred, got {list(tb.shape)}"
        )
    _same_dtype(where, pb, target=tb)
    if reduction not in ("mean", "sum"):
        raise ValueError(f"{where}: reduction must be 'mean' or 'sum', got {reduction!r}")
    d = DeviceArray(pb.shape, pb.dtype, device) if grad else None
    loss = _core.device_mse_loss(
        device,
        _bits(pb),
        math.prod(pb.shape),
        pb.ptr,
        tb.ptr,
        reduction == "mean",
        float(grad_scale),
        0 if d is None else d.ptr,
    )
    return float(loss), d


def _host_lengths(lengths: Any, B: int, where: str) -> np.ndarray:
    """Sequence lengths as a host int64 array [B] (their range is checked by the engine)."""
    a = np.asarray(lengths)
    if a.dtype == bool or a.dtype.kind not in "iu":
        raise TypeError(f"{where}: lengths must be integers, got dtype {a.dtype}")
    if a.shape != (B,):
        raise ValueError(f"{where}: lengths must have shape [{B}], got {list(a.shape)}")
    return np.ascontiguousarray(a, dtype=np.int64)


def _pool(y: Any, lengths: Any, max_: bool, where: str) -> tuple[DeviceArray, DeviceArray | None]:
    device = _device_of((y,), where)
    yb = _arg(y, device, "y", where, shape=(None, None, None))
    T, B, F = yb.shape
    lens = _host_lengths(lengths, B, where)
    pooled = DeviceArray((B, F), yb.dtype, device)
    argmax = DeviceArray((B, F), np.int64, device) if max_ else None
    with _named(where):
        _core.device_time_pool_forward(
            device,
            _bits(yb),
            max_,
            T,
            B,
            F,
            yb.ptr,
            lens.ctypes.data,
            pooled.ptr,
            0 if argmax is None else argmax.ptr,
        )
    return pooled, argmax


def mean_pool(y: Any, lengths: Any) -> DeviceArray:
    """The mean over each sequence's valid steps on the device: y [T, B, F] (time-major),
    lengths [B] host integers in [1, T] -> [B, F] (summed in double, as the CPU engine)."""
    return _pool(y, lengths, False, "rnncore.cuda.mean_pool")[0]


def max_pool(y: Any, lengths: Any) -> tuple[DeviceArray, DeviceArray]:
    """The maximum over each sequence's valid steps on the device: y [T, B, F], lengths [B]
    host integers in [1, T] -> (pooled [B, F], argmax int64 [B, F]: the step of the first
    maximum; a NaN counts as the maximum, as numpy's argmax)."""
    pooled, argmax = _pool(y, lengths, True, "rnncore.cuda.max_pool")
    assert argmax is not None
    return pooled, argmax


def _pool_backward(
    dpooled: Any, index: Any, T: int, max_: bool, checked: bool, where: str
) -> DeviceArray:
    device = _device_of((dpooled,), where)
    dp = _arg(dpooled, device, "dpooled", where, shape=(None, None))
    B, F = dp.shape
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"{where}: T must be an integer >= 1, got {T!r}")
    dy = DeviceArray((int(T), B, F), dp.dtype, device)
    if max_:
        idx = _ids(index, device, "argmax", where)
        if tuple(idx.shape) != (B, F):
            raise ValueError(f"{where}: argmax must have shape [{B}, {F}], got {list(idx.shape)}")
        lens_ptr, argmax_ptr = 0, idx.ptr
    else:
        lens = _host_lengths(index, B, where)
        lens_ptr, argmax_ptr = lens.ctypes.data, 0
    with _named(where):
        _core.device_time_pool_backward(
            device, _bits(dp), max_, int(T), B, F, dp.ptr, lens_ptr, argmax_ptr, dy.ptr, checked
        )
    return dy


def mean_pool_backward(dpooled: Any, lengths: Any, T: int) -> DeviceArray:
    """The gradient of :func:`mean_pool`: dpooled [B, F] -> dy [T, B, F], dpooled / lengths[b]
    on each sequence's steps and zero past them."""
    return _pool_backward(dpooled, lengths, T, False, False, "rnncore.cuda.mean_pool_backward")


def max_pool_backward(
    dpooled: Any, argmax: Any, T: int, *, checked_argmax: bool = False
) -> DeviceArray:
    """The gradient of :func:`max_pool`: dpooled [B, F], argmax int64 [B, F] -> dy [T, B, F],
    dpooled at each maximum's step and zero elsewhere. Steps outside [0, T) are a ValueError
    (a device check that waits for the GPU; ``checked_argmax=True`` skips it for the argmax a
    max_pool returned)."""
    return _pool_backward(
        dpooled, argmax, T, True, bool(checked_argmax), "rnncore.cuda.max_pool_backward"
    )


def keyed_dropout(
    x: Any, p: float, seed: int, batch_offset: int = 0, *, keep_scale: bool = True
) -> tuple[DeviceArray, DeviceArray | None]:
    """Inverted dropout with the engine's keyed masks (the CPU's exactly): x [outer, B, inner]
    -> (y, scale), both [outer, B, inner], y = x * scale, scale 0 or 1/(1-p). With
    ``keep_scale=False`` scale is None and never written (the same key draws the same mask
    again, for backward)."""
    where = "rnncore.cuda.keyed_dropout"
    device = _device_of((x,), where)
    xb = _arg(x, device, "x", where, shape=(None, None, None))
    y = DeviceArray(xb.shape, xb.dtype, device)
    scale = DeviceArray(xb.shape, xb.dtype, device) if keep_scale else None
    _core.device_keyed_dropout(
        device,
        _bits(xb),
        *xb.shape,
        xb.ptr,
        float(p),
        int(seed),
        int(batch_offset),
        y.ptr,
        0 if scale is None else scale.ptr,
    )
    return y, scale


def _flat(a: Any, device: str, name: str, where: str, like: _Borrowed | None) -> _Borrowed:
    """A buffer of an optimizer step: any shape, as ``like``'s dtype and size."""
    b = _arg(a, device, name, where)
    if like is not None:
        if b.dtype != like.dtype:
            raise TypeError(f"{where}: {name} has dtype {b.dtype}; expected {like.dtype}")
        if math.prod(b.shape) != math.prod(like.shape):
            raise ValueError(
                f"{where}: {name} has {math.prod(b.shape)} elements; param has "
                f"{math.prod(like.shape)}"
            )
    return b


def _step(
    fn: Any, where: str, param: Any, buffers: list[tuple[str, Any, bool]], *opts: Any
) -> None:
    """Calls the binding ``fn`` of an optimizer update with (device, bits, P, param address), the
    addresses of ``buffers`` ((name, array, optional): 0 for an optional None; each checked to
    be param's dtype and size) and ``opts``."""
    device = _device_of((param,), where)
    p = _flat(param, device, "param", where, None)
    ptrs = [
        0 if a is None and optional else _flat(a, device, name, where, p).ptr
        for name, a, optional in buffers
    ]
    fn(device, _bits(p), math.prod(p.shape), p.ptr, *ptrs, *opts)


def sgd_step(
    param: Any,
    grad: Any,
    momentum_buf: Any = None,
    *,
    first_step: bool,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
) -> None:
    """torch.optim.SGD's update of ``param`` in place on the device (as
    :class:`rnncore.optim.SGD`): param, grad, momentum_buf (needed with momentum) of one size."""
    _step(
        _core.device_sgd_step,
        "rnncore.cuda.sgd_step",
        param,
        [("grad", grad, False), ("momentum_buf", momentum_buf, True)],
        *(bool(first_step), float(lr), float(momentum), float(dampening)),
        *(float(weight_decay), bool(nesterov)),
    )


def adam_step(
    param: Any,
    grad: Any,
    exp_avg: Any,
    exp_avg_sq: Any,
    max_exp_avg_sq: Any = None,
    *,
    step: int,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
) -> None:
    """torch.optim.Adam / AdamW (``decoupled_weight_decay``) / AMSGrad (``max_exp_avg_sq``
    given) update of ``param`` in place on the device; ``step`` counts from 1."""
    _step(
        _core.device_adam_step,
        "rnncore.cuda.adam_step",
        param,
        [
            ("grad", grad, False),
            ("exp_avg", exp_avg, False),
            ("exp_avg_sq", exp_avg_sq, False),
            ("max_exp_avg_sq", max_exp_avg_sq, True),
        ],
        *(int(step), float(lr), float(beta1), float(beta2), float(eps)),
        *(float(weight_decay), bool(decoupled_weight_decay)),
    )


def rmsprop_step(
    param: Any,
    grad: Any,
    square_avg: Any,
    grad_avg: Any = None,
    momentum_buf: Any = None,
    *,
    lr: float,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
) -> None:
    """torch.optim.RMSprop's update of ``param`` in place on the device (grad_avg needed when
    centered, momentum_buf with momentum)."""
    _step(
        _core.device_rmsprop_step,
        "rnncore.cuda.rmsprop_step",
        param,
        [
            ("grad", grad, False),
            ("square_avg", square_avg, False),
            ("grad_avg", grad_avg, True),
            ("momentum_buf", momentum_buf, True),
        ],
        *(float(lr), float(alpha), float(eps), float(weight_decay), float(momentum)),
        bool(centered),
    )


def adadelta_step(
    param: Any,
    grad: Any,
    square_avg: Any,
    acc_delta: Any,
    *,
    lr: float = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
) -> None:
    """torch.optim.Adadelta's update of ``param`` in place on the device."""
    _step(
        _core.device_adadelta_step,
        "rnncore.cuda.adadelta_step",
        param,
        [("grad", grad, False), ("square_avg", square_avg, False), ("acc_delta", acc_delta, False)],
        *(float(lr), float(rho), float(eps), float(weight_decay)),
    )


def adagrad_step(
    param: Any,
    grad: Any,
    state_sum: Any,
    *,
    step: int,
    lr: float = 1e-2,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    eps: float = 1e-10,
) -> None:
    """torch.optim.Adagrad's update of ``param`` in place on the device; ``step`` counts from 1."""
    _step(
        _core.device_adagrad_step,
        "rnncore.cuda.adagrad_step",
        param,
        [("grad", grad, False), ("state_sum", state_sum, False)],
        *(int(step), float(lr), float(lr_decay), float(weight_decay), float(eps)),
    )


def _buffers(arrays: Any, where: str) -> tuple[str, dict[int, list[tuple[int, int]]]]:
    """The device and the (address, size) of each array, grouped by element bits."""
    arrays = [arrays] if _is_device_array(arrays) else list(arrays)
    if not arrays:
        raise ValueError(f"{where}: needs at least one device array")
    device = _device_of(tuple(arrays), where)
    groups: dict[int, list[tuple[int, int]]] = {32: [], 64: []}
    for k, a in enumerate(arrays):
        b = _arg(a, device, f"array {k}", where)
        groups[_bits(b)].append((b.ptr, math.prod(b.shape)))
    return device, groups


def grad_norm(grads: Any) -> float:
    """The global L2 norm of device arrays (one array or a sequence), summed in double."""
    device, groups = _buffers(grads, "rnncore.cuda.grad_norm")
    return math.sqrt(sum(_core.device_sum_of_squares(device, b, g) for b, g in groups.items() if g))


def clip_grad_norm(grads: Any, max_norm: float) -> float:
    """Mikolov's clipping on the device: when the global L2 norm of ``grads`` exceeds
    ``max_norm`` (> 0), every array is scaled by max_norm / (norm + 1e-6), as
    :func:`rnncore.optim.clip_grad_norm` (inf: no clipping). Returns the norm before clipping
    (read back)."""
    m = float(max_norm)
    if not m > 0:
        raise ValueError(f"rnncore.cuda.clip_grad_norm: max_norm must be > 0, got {max_norm}")
    norm = grad_norm(grads)
    coef = _core.clip_coefficient(norm, m)
    if coef != 1.0:
        scale(grads, coef)
    return norm


def scale(arrays: Any, factor: float) -> None:
    """Multiplies every element of the device arrays by ``factor``, in place."""
    device, groups = _buffers(arrays, "rnncore.cuda.scale")
    for b, g in groups.items():
        if g:
            _core.device_scale(device, b, g, float(factor))


def clip_grad_value(grads: Any, clip_value: float) -> None:
    """Clamps every element of ``grads`` to [-clip_value, clip_value] on the device (NaN stays)."""
    where = "rnncore.cuda.clip_grad_value"
    device, groups = _buffers(grads, where)
    for b, g in groups.items():
        if g:
            _core.device_clip_grad_value(device, b, g, float(clip_value))


def all_finite(arrays: Any) -> bool:
    """Whether no element of the device arrays is NaN or infinite (read back)."""
    device, groups = _buffers(arrays, "rnncore.cuda.all_finite")
    return all(_core.device_all_finite(device, b, g) for b, g in groups.items() if g)


def _copy_of(obj: Any, device: str, name: str, where: str) -> DeviceArray:
    """A DeviceArray copy (on the device) of the device array ``obj`` (floats or int64)."""
    b = _borrow(obj, device, name, where, kinds="fi")
    if b.dtype not in _DTYPES:
        raise TypeError(f"{where}: {name} must be float32, float64 or int64, got {b.dtype}")
    out = DeviceArray(b.shape, b.dtype, device)
    if out.nbytes:
        _core.device_copy(device, out.ptr, b.ptr, out.nbytes, 2)
    return out


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
