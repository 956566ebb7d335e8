"""Feed-forward layers with explicit forward/backward: Embedding, Linear (C++ engine), Dropout."""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from .. import _core
from .. import cuda as _cuda
from ._checks import check_device, check_seed, float_dtype, positive_int
from .keyed import _view3, batch_offset, keyed_dropout
from .module import Module, Parameter, reserve_parameters


def _check_array(a: Any, name: str, where: str, dtype: np.dtype) -> np.ndarray:
    """A C-contiguous array of ``dtype``: TypeError for other types or dtypes (no silent cast)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{where}: {name} must be a numpy array, got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(
            f"{where}: {name} must have dtype {dtype} (the layer's), got {a.dtype}; "
            f"use {name}.astype('{dtype}')"
        )
    return np.ascontiguousarray(a)


_F = TypeVar("_F", bound=Callable[..., Any])


def one_call_at_a_time(method: _F) -> _F:
    """Runs a module's forward or backward under the module's lock (``_call_lock``).

    The engine releases the GIL, so two threads on one module would otherwise race on the saved
    input and on the ``+=`` into the gradients (and lose updates).
    """

    @functools.wraps(method)
    def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self._call_lock:
            return method(self, *args, **kwargs)

    return locked  # type: ignore[return-value]


def _owned(a: np.ndarray, source: Any) -> np.ndarray:
    """``a``, copied if it shares memory with the caller's ``source``: what a training forward
    keeps for backward must not change when the caller edits its array in place afterwards."""
    return a.copy() if np.may_share_memory(a, source) else a


class _FlatModule(Module):
    """A module whose parameters are views into one flat buffer, and gradients into another.

    Optimizers treat parameters that lie next to each other in memory as one run and update each
    run with one engine call (see :mod:`rnncore.optim`). On a GPU (the layers with
    ``_FOLLOWS_RESIDENT``) both buffers are :class:`rnncore.cuda.DeviceArray` s and the
    parameters views into them.
    """

    #: moved by ``Module.to`` when the module ``to`` is called on runs wholly on the GPU (see
    #: ``Module._GPU_RESIDENT``): Embedding, Linear and a tied decoder handle device arrays.
    _FOLLOWS_RESIDENT = False
    device = "cpu"

    def _allocate(self, dtype: np.dtype, shapes: list[tuple[str, tuple[int, ...]]]) -> None:
        self._call_lock = threading.Lock()  # see one_call_at_a_time
        total = sum(math.prod(s) for _, s in shapes)
        reserve_parameters(total, type(self).__name__)
        self._flat = np.zeros(total, dtype=dtype)
        self._gflat = np.zeros(total, dtype=dtype)
        self._shapes = list(shapes)
        for name, _ in shapes:
            self._parameters.append(Parameter(name, self._flat, self._gflat))  # bound below
        self._bind()

    def _bind(self) -> None:
        """Points the parameters at their slices of the flat buffers (numpy or device)."""
        offset = 0
        for p, (_, shape) in zip(self._parameters, self._shapes, strict=True):
            size = math.prod(shape)
            p._data = self._flat[offset : offset + size].reshape(shape)
            p._grad = self._gflat[offset : offset + size].reshape(shape)
            offset += size

    def _check_move(self, device: str) -> None:
        if self._FOLLOWS_RESIDENT:
            check_device(device, f"{type(self).__name__}.to", gpu=True)

    def _move_to(self, device: str) -> None:
        if not self._FOLLOWS_RESIDENT:
            return  # a layer without a GPU version (Conv1d, CRF) runs on the CPU
        name = check_device(device, f"{type(self).__name__}.to", gpu=True)
        if name == self.device:
            return
        if name == "cpu":
            self._flat, self._gflat = np.asarray(self._flat), np.asarray(self._gflat)
        else:
            self._flat = _cuda.to_device(np.asarray(self._flat), name, self._flat.dtype)
            self._gflat = _cuda.to_device(np.asarray(self._gflat), name, self._gflat.dtype)
        self._bind()
        self._discard_own_saved()
        self.device = name

    def _device_input(self, x: Any, name: str, where: str, shape: tuple[int, ...] | None) -> Any:
        """``x`` for a device call: a device array as it is, a host array (of the layer's dtype)
        copied to the layer's device. ``shape``: required shape, or None."""
        if not _cuda._is_device_array(x):
            x = _cuda.to_device(_check_array(x, name, where, self.dtype), self.device)
        b = _cuda._borrow(x, self.device, name, where)
        if b.dtype != self.dtype:
            raise TypeError(f"{where}: {name} must be {self.dtype} like the layer, got {b.dtype}")
        if shape is not None and tuple(b.shape) != shape:
            raise ValueError(f"{where}: {name} must have shape {shape}, got {tuple(b.shape)}")
        return x

    def _device_linear_forward(self, x: Any, weight: Parameter, bias: Any, where: str) -> Any:
        """y = x · weightᵀ + bias on the device; a host x gives a host y (copied both ways)."""
        host = not _cuda._is_device_array(x)
        xd = self._device_input(x, "x", where, None)
        O, In = weight.shape
        if not xd.shape or xd.shape[-1] != In:
            raise ValueError(f"{where}: x must have shape [..., I={In}], got {tuple(xd.shape)}")
        y = _cuda.linear(xd, weight.data, None if bias is None else bias.data)
        if self.training:  # a device copy: the caller may change x afterwards
            kept = xd if host else _cuda._copy_of(xd, self.device, "x", where)
            self._save_for_backward((kept, tuple(xd.shape[:-1]), host))
        return y.numpy() if host else y

    def _device_linear_backward(self, dy: Any, weight: Parameter, bias: Any, where: str) -> Any:
        """dx of the newest saved device forward; weight.grad and bias.grad accumulate."""
        x, lead, host = self._peek_saved(where)
        dyd = self._device_input(dy, "dy", where, (*lead, weight.shape[0]))
        self._pop_saved(where)
        dx = _cuda.linear_backward(
            dyd, x, weight.data, weight.grad, None if bias is None else bias.grad
        )
        return dx.numpy() if host else dx

    @property
    def flat_parameters(self) -> np.ndarray:
        """All parameters as one flat array [P] (a view)."""
        return self._flat

    @property
    def flat_gradients(self) -> np.ndarray:
        """All parameter gradients as one flat array [P] (a view, same layout)."""
        return self._gflat

    def zero_grad(self) -> None:
        """Set every parameter gradient to zero (one pass over the flat buffer)."""
        self._gflat[...] = 0


class Embedding(_FlatModule):
    """A lookup table: integer ids [...] -> vectors [..., E] (PyTorch's ``nn.Embedding``).

    Args:
        num_embeddings: vocabulary size V.
        embedding_dim: vector size E.
        padding_idx: an id in [-V, V) (negative counts from the end) whose row starts at zero and
            never receives a gradient, or None.
        dtype: 'float32' or 'float64'.
        seed: seed of the N(0, 1) initialisation (PyTorch's), or None.
        device: 'cpu', or a GPU ('cuda', 'cuda-sim'): the weight and its gradient live in the
            GPU's memory (:class:`rnncore.cuda.DeviceArray` views), and forward returns a
            DeviceArray whatever the ids (host integers are copied over; the vectors stay).

    Parameter: ``weight`` [V, E]. ``backward`` scatter-adds into ``weight.grad`` and returns None
    (ids have no gradient); with ``weight.requires_grad = False`` (frozen, see
    :meth:`from_pretrained`) it adds nothing.
    """

    _FOLLOWS_RESIDENT = True
    _GPU_RESIDENT = True  # alone, it moves with .to()

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        dtype: Any = "float32",
        seed: int | None = None,
        device: str = "cpu",
        *,
        _weight: np.ndarray | None = None,  # from_pretrained's initial weight (as PyTorch's)
    ) -> None:
        super().__init__()
        owner = "Embedding"
        device = check_device(device, owner, gpu=True)
        self.num_embeddings = positive_int(num_embeddings, "num_embeddings", owner)
        self.embedding_dim = positive_int(embedding_dim, "embedding_dim", owner)
        if padding_idx is not None:
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)):
                raise TypeError(
                    f"{owner}: padding_idx must be an integer or None, got "
                    f"{type(padding_idx).__name__}"
                )
            V = self.num_embeddings
            if not -V <= padding_idx < V:
                raise ValueError(f"{owner}: padding_idx must be in [-{V}, {V}), got {padding_idx}")
            padding_idx = int(padding_idx) % V
        self.padding_idx = padding_idx
        self.dtype = float_dtype(dtype, owner)
        self._allocate(self.dtype, [("weight", (self.num_embeddings, self.embedding_dim))])
        self.weight = self._parameters[0]
        self._rng = np.random.default_rng(check_seed(seed, owner))
        if _weight is None:
            self.reset_parameters()
        else:  # from_pretrained's checked array: no random draw to throw away (V may be 10^6)
            self.weight.data[...] = _weight
        self._move_to(device)

    @classmethod
    def from_pretrained(
        cls,
        embeddings: Any,
        freeze: bool = True,
        padding_idx: int | None = None,
        *,
        dtype: Any = None,
        device: str = "cpu",
    ) -> Embedding:
        """An Embedding whose weight is a copy of ``embeddings`` (PyTorch's
        ``nn.Embedding.from_pretrained``).

        Args:
            embeddings: real numbers [V, E] (e.g. ``load_word_vectors(...).vectors``), all finite.
            freeze: True: ``weight.requires_grad = False``, so no optimizer changes it and
                ``backward`` accumulates nothing; False: it trains like any weight.
            padding_idx: as in the constructor, except that, as in PyTorch, its row is kept as
                given (not zeroed); it never receives a gradient.
            dtype: 'float32' or 'float64'; None: the dtype of ``embeddings`` when it is one of
                these (a TypeError otherwise: no silent cast).
            device: 'cpu' or a GPU, as in the constructor.

        Returns:
            The Embedding (V, E); the caller's array is not shared.
        """
        where = "Embedding.from_pretrained"
        if not isinstance(freeze, (bool, np.bool_)):
            raise TypeError(f"{where}: freeze must be a bool, got {type(freeze).__name__}")
        arr = embeddings if isinstance(embeddings, np.ndarray) else np.asarray(embeddings)
        if arr.ndim != 2 or 0 in arr.shape:
            raise ValueError(f"{where}: embeddings must be 2-d [V, E], got shape {arr.shape}")
        if arr.dtype == bool or arr.dtype.kind not in "iuf":
            raise TypeError(f"{where}: embeddings must be real numbers, got dtype {arr.dtype}")
        if dtype is None:
            if arr.dtype not in (np.float32, np.float64):
                raise TypeError(
                    f"{where}: embeddings have dtype {arr.dtype}; pass dtype='float32' or "
                    "'float64' to convert"
                )
            dtype = arr.dtype
        bad = ~np.isfinite(arr)
        if bad.any():
            row = int(np.flatnonzero(bad.any(axis=1))[0])
            raise ValueError(f"{where}: embeddings row {row} is not finite (NaN or infinite)")
        V, E = arr.shape
        emb = cls(V, E, padding_idx, dtype, None, device, _weight=arr)
        emb.weight.requires_grad = not freeze
        return emb

    def reset_parameters(self) -> None:
        """weight ~ N(0, 1), the padding row (if any) zero, as PyTorch."""
        self.weight.data[...] = self._rng.standard_normal(self.weight.shape)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx : self.padding_idx + 1] = 0.0

    @one_call_at_a_time
    def forward(self, ids: Any) -> np.ndarray:
        """Look up the rows of ``ids``.

        Args:
            ids: integer array of any shape [...], values in [0, V).

        Returns:
            [..., E] in the layer's dtype. In training mode a copy of the ids is kept for
            ``backward`` (editing ``ids`` afterwards does not change the gradient).
        """
        where = "Embedding.forward"
        if self.device != "cpu" and _cuda._is_device_array(ids):
            b = _cuda._arg(ids, self.device, "input ids", where, dtype=np.int64)
            try:
                out = _cuda.embedding(ids, self.weight.data)  # checked on the device
            except ValueError:  # read back to name the first bad id as for host ids
                host = np.asarray(_cuda._copy_of(ids, self.device, "ids", where))
                raise ValueError(f"{where}: {self._bad_id(host, host.reshape(-1))}") from None
            if self.training:
                self._save_for_backward((_cuda._copy_of(ids, self.device, "ids", where), b.shape))
            return out
        if not isinstance(ids, np.ndarray):
            ids = np.asarray(ids)
        if ids.dtype == bool or ids.dtype.kind not in "iu":
            raise TypeError(f"{where}: input ids must be integers, got dtype {ids.dtype}")
        flat = np.ascontiguousarray(ids.reshape(-1), dtype=np.int64)
        if self.device != "cpu":  # checked here (the message names the index), then copied over
            if flat.size and (flat.min() < 0 or flat.max() >= self.num_embeddings):
                raise ValueError(f"{where}: {self._bad_id(ids, flat)}")
            dids = _cuda.to_device(flat, self.device, np.int64)
            out = _cuda.embedding(dids, self.weight.data, checked_ids=True)
            if self.training:
                self._save_for_backward((dids.reshape(ids.shape), ids.shape))
            return out.reshape(*ids.shape, self.embedding_dim)
        try:
            out = _core.embedding_forward(flat, self.weight.data)
        except ValueError:
            raise ValueError(f"{where}: {self._bad_id(ids, flat)}") from None
        if self.training:
            self._save_for_backward((_owned(flat, ids), ids.shape))
        return out.reshape(ids.shape + (self.embedding_dim,))

    def _bad_id(self, ids: np.ndarray, flat: np.ndarray) -> str:
        V = self.num_embeddings
        pos = int(np.flatnonzero((flat < 0) | (flat >= V))[0])
        index = tuple(int(i) for i in np.unravel_index(pos, ids.shape)) if ids.ndim > 1 else pos
        return f"input ids: id {int(flat[pos])} at index {index} is out of range [0, {V})"

    @one_call_at_a_time
    def backward(self, dout: np.ndarray) -> None:
        """Accumulate the gradient of the newest unconsumed training forward into
        ``weight.grad`` (forwards are consumed last in, first out; see ``Module``).

        Args:
            dout: [..., E], the gradient w.r.t. the forward's output.

        Returns:
            None: the ids have no gradient.
        """
        where = "Embedding.backward"
        if self.device != "cpu":
            ids, shape = self._peek_saved(where)
            d = self._device_input(dout, "dout", where, (*shape, self.embedding_dim))
            self._pop_saved(where)
            if self.weight.requires_grad:  # the ids of a checked forward
                _cuda.embedding_backward(
                    ids, d, self.weight.grad, self.padding_idx, checked_ids=True
                )
            return None
        dout = _check_array(dout, "dout", where, self.dtype)
        ids, shape = self._peek_saved(where)
        expected = shape + (self.embedding_dim,)
        if dout.shape != expected:
            raise ValueError(f"{where}: dout must have shape {expected}, got {dout.shape}")
        self._pop_saved(where)
        if self.weight.requires_grad:  # frozen: the gradient would never be used
            _core.embedding_backward(
                ids, dout.reshape(-1, self.embedding_dim), self.weight.grad, self.padding_idx
            )
        return None

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.dtype != np.float32:
            s += f", dtype='{self.dtype}'"
        if not self.weight.requires_grad:
            s += ", freeze=True"
        if self.device != "cpu":
            s += f", device='{self.device}'"
        return s


class Linear(_FlatModule):
    """y = x · weightᵀ + bias over the last axis (PyTorch's ``nn.Linear`` and its layout).

    Args:
        in_features: I.
        out_features: O.
        bias: whether to learn a bias [O].
        dtype: 'float32' or 'float64'.
        seed: seed of the U(-1/sqrt(I), 1/sqrt(I)) initialisation (PyTorch's), or None.
        device: 'cpu', or a GPU ('cuda', 'cuda-sim'): the parameters live in the GPU's memory
            and the products run there (cuBLAS); device arrays in give device arrays out, host
            arrays in give host arrays out (copied).

    Parameters: ``weight`` [O, I], ``bias`` [O]; both in one flat buffer.
    Shapes: x [..., I] -> y [..., O]; ``backward(dy [..., O])`` -> dx [..., I]. Each
    training-mode forward keeps its input (a copy where it is the caller's array), and each
    ``backward`` consumes the newest one (last in, first out; see ``Module``): a Linear applied
    to two branches, or at every decoder step, gets every call's gradient.
    """

    _FOLLOWS_RESIDENT = True
    _GPU_RESIDENT = True  # alone, it moves with .to()

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        dtype: Any = "float32",
        seed: int | None = None,
        device: str = "cpu",
    ) -> None:
        super().__init__()
        owner = "Linear"
        device = check_device(device, owner, gpu=True)
        self.in_features = positive_int(in_features, "in_features", owner)
        self.out_features = positive_int(out_features, "out_features", owner)
        self.dtype = float_dtype(dtype, owner)
        shapes = [("weight", (self.out_features, self.in_features))]
        if bias:
            shapes.append(("bias", (self.out_features,)))
        self._allocate(self.dtype, shapes)
        self.weight = self._parameters[0]
        self.bias = self._parameters[1] if bias else None
        self._rng = np.random.default_rng(check_seed(seed, owner))
        self.reset_parameters()
        self._move_to(device)

    def reset_parameters(self) -> None:
        """weight and bias ~ U(-1/sqrt(I), 1/sqrt(I)), PyTorch's default."""
        k = 1.0 / math.sqrt(self.in_features)
        self._flat[...] = self._rng.uniform(-k, k, size=self._flat.shape)

    @one_call_at_a_time
    def forward(self, x: np.ndarray) -> np.ndarray:
        """y = x · weightᵀ + bias.

        Args:
            x: [..., I] in the layer's dtype (at least 1-d).

        Returns:
            y [..., O]. In training mode x is kept for ``backward`` (a copy: editing x afterwards
            does not change the gradient).
        """
        where = "Linear.forward"
        if self.device != "cpu":
            return self._device_linear_forward(x, self.weight, self.bias, where)
        x = _check_array(x, "x", where, self.dtype)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"{where}: x must have shape [..., I={self.in_features}], got {x.shape}"
            )
        x2 = x.reshape(-1, self.in_features)
        y = _core.linear_forward(
            x2, self.weight.data, None if self.bias is None else self.bias.data
        )
        if self.training:
            self._save_for_backward((_owned(x2, x), x.shape[:-1]))
        return y.reshape(x.shape[:-1] + (self.out_features,))

    @one_call_at_a_time
    def backward(self, dy: np.ndarray) -> np.ndarray:
        """Accumulate weight/bias gradients and return dx.

        Args:
            dy: [..., O], shaped like the forward output.

        Returns:
            dx [..., I]. ``weight.grad += dyᵀ·x``, ``bias.grad += Σ dy``.
        """
        where = "Linear.backward"
        if self.device != "cpu":
            return self._device_linear_backward(dy, self.weight, self.bias, where)
        dy = _check_array(dy, "dy", where, self.dtype)
        x2, lead = self._peek_saved(where)
        expected = lead + (self.out_features,)
        if dy.shape != expected:
            raise ValueError(f"{where}: dy must have shape {expected} like y, got {dy.shape}")
        self._pop_saved(where)
        dx = _core.linear_backward(
            dy.reshape(-1, self.out_features),
            x2,
            self.weight.data,
            self.weight.grad,
            None if self.bias is None else self.bias.grad,
            True,
        )
        return dx.reshape(lead + (self.in_features,))

    def extra_repr(self) -> str:
        s = f"in_features={self.in_features}, out_features={self.out_features}"
        if self.bias is None:
            s += ", bias=False"
        if self.dtype != np.float32:
            s += f", dtype='{self.dtype}'"
        if self.device != "cpu":
            s += f", device='{self.device}'"
        return s


class _DeviceMask:
    """A device dropout's mask, kept as its key (drawn again for backward: the same keyed draws
    give the same mask, so nothing of the size of x is kept). p None: everything dropped."""

    __slots__ = ("p", "seed", "view", "offset")

    def __init__(self, p: float | None, seed: int, view: tuple[int, int, int], offset: int) -> None:
        self.p, self.seed, self.view, self.offset = p, seed, view, offset

    def apply(self, x: Any) -> Any:
        """x ⊙ mask / (1-p) (x a DeviceArray)."""
        if self.p is None:
            return _cuda.DeviceArray.zeros(x.shape, x.dtype, x.device)
        y, _ = _cuda.keyed_dropout(
            x.reshape(self.view), self.p, self.seed % 2**64, self.offset, keep_scale=False
        )
        return y.reshape(x.shape)


class Dropout(Module):
    """Inverted dropout: in training, each element is zeroed with probability p and the rest are
    scaled by 1/(1-p); in eval mode, the identity.

    The masks are counter-based draws (:mod:`rnncore.nn.keyed`): element e of example b in the
    k-th training call depends only on (seed, k, b + batch_offset(), e's position within its
    example), so the same seed gives the same masks, and a data-parallel rank holding a slice of
    a batch draws the masks one process holding the whole batch would. Shapes: x [...] -> y [...]
    (same shape and dtype); ``backward(dy)`` -> dy ⊙ mask / (1-p).

    Args:
        p: drop probability in [0, 1] (p = 1 gives zeros, as PyTorch).
        seed: seed of the masks, or None for a fresh random one.
        batch_axis: the axis of x that indexes examples (0 for [B, ...], 1 for time-major
            [T, B, ...]), or None to treat each call's x as one example.
    """

    def __init__(self, p: float = 0.5, seed: int | None = None, batch_axis: int | None = 0) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)):
            raise TypeError(f"Dropout: p must be a number, got {type(p).__name__}")
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        if batch_axis is not None and (
            isinstance(batch_axis, bool) or not isinstance(batch_axis, (int, np.integer))
        ):
            raise TypeError(
                f"Dropout: batch_axis must be an integer or None, got {type(batch_axis).__name__}"
            )
        self.p = float(p)
        self.batch_axis = None if batch_axis is None else int(batch_axis)
        seed = check_seed(seed, "Dropout")
        self._reseed(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0])

    def _reseed(self, seed: int) -> None:
        self._dropout_seed = int(seed) % 2**63
        self._calls = 0

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Apply dropout.

        Args:
            x: float32 or float64 array of any shape (with batch_axis among its axes).

        Returns:
            An array shaped like x (x itself in eval mode or when p == 0).
        """
        where = "Dropout.forward"
        on_device = isinstance(x, _cuda.DeviceArray)  # the CPU's masks, drawn on the device
        if not on_device and not isinstance(x, np.ndarray):
            raise TypeError(f"{where}: x must be a numpy array, got {type(x).__name__}")
        if x.dtype not in (np.float32, np.float64):
            raise TypeError(f"{where}: x must be float32 or float64, got {x.dtype}")
        if not self.training:
            return x
        if self.p == 0.0:
            self._save_for_backward((None, x.shape))
            return x
        axis = self.batch_axis
        if axis is not None and not -x.ndim <= axis < x.ndim:
            raise ValueError(
                f"{where}: batch_axis {axis} is not an axis of x (shape {x.shape}); "
                "construct Dropout with the axis that indexes examples, or None"
            )
        self._calls += 1
        if on_device:  # the mask is kept as its key and drawn again for backward
            mask = _DeviceMask(
                None if self.p == 1.0 else self.p,
                self._dropout_seed + self._calls,
                _view3(x.shape, axis),
                0 if axis is None else batch_offset(),
            )
            self._save_for_backward((mask, x.shape))
            return mask.apply(x)
        if self.p == 1.0:
            scale = np.zeros(x.shape, dtype=x.dtype)
        else:
            y, scale = keyed_dropout(x, self.p, self._dropout_seed + self._calls, axis)
            self._save_for_backward((scale, x.shape))
            return y
        self._save_for_backward((scale, x.shape))
        return x * scale

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dx = dy ⊙ mask / (1-p) with the mask of the newest unconsumed training forward (dy
        itself when p == 0, and in eval mode).

        Args:
            dy: shaped like the forward's x.
        """
        where = "Dropout.backward"
        if not self.training and not self._saved:
            return dy  # eval mode: the identity, whose gradient is dy
        scale, shape = self._peek_saved(where)
        if isinstance(scale, _DeviceMask) or (scale is None and isinstance(dy, _cuda.DeviceArray)):
            if not isinstance(dy, _cuda.DeviceArray) or dy.shape != shape:
                got = dy.shape if isinstance(dy, _cuda.DeviceArray) else type(dy).__name__
                raise ValueError(f"{where}: dy must be a DeviceArray of shape {shape}, got {got}")
            self._pop_saved(where)
            return dy if scale is None else scale.apply(dy)
        if not isinstance(dy, np.ndarray) or dy.shape != shape:
            got = dy.shape if isinstance(dy, np.ndarray) else type(dy).__name__
            raise ValueError(f"{where}: dy must have shape {shape}, got {got}")
        self._pop_saved(where)
        return dy if scale is None else dy * scale

    def extra_repr(self) -> str:
        return f"p={self.p}" + ("" if self.batch_axis == 0 else f", batch_axis={self.batch_axis}")
