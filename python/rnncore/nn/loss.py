"""Loss functions that return a float and keep their gradient: CrossEntropyLoss and MSELoss."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _core
from .. import cuda as _cuda
from .module import Module

_REDUCTIONS = ("mean", "sum")


def _reduction(value: Any, owner: str) -> str:
    if value not in _REDUCTIONS:
        raise ValueError(f"{owner}: reduction must be 'mean' or 'sum', got {value!r}")
    return str(value)


def _scale(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{where}: scale must be a number, got {type(value).__name__}")
    if not np.isfinite(value):
        raise ValueError(f"{where}: scale must be finite, got {value}")
    return float(value)


def _float_array(a: Any, name: str, where: str) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{where}: {name} must be a numpy array, got {type(a).__name__}")
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{where}: {name} must be float32 or float64, got {a.dtype}")
    return np.ascontiguousarray(a)


class _Shape:
    """The shape of a device array, for the layout checks written for numpy arrays."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape, self.ndim = shape, len(shape)


def _int_targets(targets: Any, where: str) -> np.ndarray:
    """Host class indices as an integer array, else TypeError/ValueError naming them."""
    if not isinstance(targets, np.ndarray):
        targets = np.asarray(targets)
    if targets.dtype == bool or targets.dtype.kind not in "iu":
        raise TypeError(
            f"{where}: targets must be integer class indices, got dtype {targets.dtype}"
        )
    if targets.dtype == np.uint64 and targets.size and targets.max() > np.iinfo(np.int64).max:
        # int64 would wrap it round to a negative index (2^64 - 100 -> -100 = ignore_index)
        big = int(targets.max())
        raise ValueError(
            f"{where}: targets holds {big}, beyond int64; class indices must be in [0, C)"
        )
    return targets


def _device_name(a: Any) -> str:
    """The device of a device array: a DeviceArray's own, "cuda" for CuPy / torch arrays."""
    return a.device if isinstance(a, _cuda.DeviceArray) else "cuda"


class _Loss(Module):
    """Shared part of the losses: the gradient each training forward keeps, handed out once by
    backward (newest forward first, see :class:`~rnncore.nn.Module`)."""

    def backward(self, scale: float = 1.0) -> np.ndarray:
        """The gradient of the newest unconsumed training forward's loss w.r.t. its input, times
        ``scale`` (e.g. 1/k when accumulating k batches). Each forward allows one backward.

        Returns:
            An array shaped like the forward's first argument.
        """
        where = f"{type(self).__name__}.backward"
        s = _scale(scale, where)
        grad = self._pop_saved(where)
        if s != 1.0:
            if isinstance(grad, _cuda.DeviceArray):
                _cuda.scale(grad, s)
            else:
                grad *= grad.dtype.type(s)
        return grad


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy, fused with its gradient (PyTorch semantics).

    Shapes: ``logits`` [..., C] with the class axis last (rnncore's layout: [T, B, V]
    language-model outputs go in as they are) or PyTorch's [N, C, d1, ...] with the class axis
    second; ``targets`` the logits' shape without the class axis, integers in [0, C) or
    ``ignore_index``. ``crit(logits, targets)`` returns the loss as a float;
    ``crit.backward(scale=1.0)`` returns dlogits shaped like the logits.

    Args:
        ignore_index: targets equal to it add no loss and get zero gradient (padding).
        reduction: 'mean' (over the non-ignored targets) or 'sum'.
        label_smoothing: ε in [0, 1]; the target distribution is (1-ε)·onehot + ε/C.
        class_axis: -1 (last), 1 (PyTorch's, for logits of 2 or more axes), or None (default):
            taken from the shapes — the last axis when the targets fit only that layout,
            axis 1 when they fit only PyTorch's, and a ValueError when they fit both (3-d
            logits [N, C, T] with C == T, or [T, B, V] with B == V), since guessing would be
            silently wrong half the time; pass ``class_axis`` then.

    After a forward, ``count`` is the number of non-ignored targets. When every target is ignored
    the mean loss is 0.0 (PyTorch gives NaN), so an all-padding batch cannot poison an average.
    Numerically stable for any finite logits (log-sum-exp with the row maximum subtracted).
    """

    def __init__(
        self,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        class_axis: int | None = None,
    ) -> None:
        super().__init__()
        owner = "CrossEntropyLoss"
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
            raise TypeError(
                f"{owner}: ignore_index must be an integer, got {type(ignore_index).__name__}"
            )
        self.ignore_index = int(ignore_index)
        self.reduction = _reduction(reduction, owner)
        if isinstance(label_smoothing, bool) or not isinstance(
            label_smoothing, (int, float, np.floating, np.integer)
        ):
            raise TypeError(
                f"{owner}: label_smoothing must be a number, got {type(label_smoothing).__name__}"
            )
        if not 0.0 <= float(label_smoothing) <= 1.0:
            raise ValueError(f"{owner}: label_smoothing must be in [0, 1], got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        if class_axis not in (None, -1, 1) or isinstance(class_axis, bool):
            raise ValueError(f"{owner}: class_axis must be None, -1 or 1, got {class_axis!r}")
        self.class_axis = class_axis
        self.count = 0

    def _class_axis(self, logits: np.ndarray, targets: np.ndarray, where: str) -> int:
        """-1 or 1: where the classes of ``logits`` are, given the targets' shape."""
        last = targets.shape == logits.shape[:-1]
        second = logits.ndim >= 2 and targets.shape == logits.shape[:1] + logits.shape[2:]
        axis = self.class_axis
        if axis is None:
            if last and second and logits.ndim >= 3:
                raise ValueError(
                    f"{where}: logits {logits.shape} and targets {targets.shape} fit both "
                    "layouts, [..., C] (classes last) and PyTorch's [N, C, ...]: pass "
                    "CrossEntropyLoss(class_axis=-1) or class_axis=1"
                )
            axis = 1 if second and not last else -1
        want = logits.shape[:-1] if axis == -1 else logits.shape[:1] + logits.shape[2:]
        if targets.shape != want:
            layout = "[..., C] (classes last)" if axis == -1 else "[N, C, ...] (classes second)"
            raise ValueError(
                f"{where}: targets must have shape {want} (logits {logits.shape} as {layout} "
                f"without the class axis), got {targets.shape}"
            )
        return axis

    def forward(self, logits: np.ndarray, targets: Any) -> float:
        """Loss of ``logits`` ([..., C], or [N, C, ...]: see the class doc) against integer
        ``targets``; keeps dlogits in training mode.

        Returns:
            The reduced loss as a Python float.
        """
        where = "CrossEntropyLoss.forward"
        if _cuda._is_device_array(logits):
            return self._forward_device(logits, targets, where)
        logits = _float_array(logits, "logits", where)
        if logits.ndim < 1 or logits.shape[-1] < 1:
            raise ValueError(
                f"{where}: logits must have shape [..., C] with C >= 1, got {logits.shape}"
            )
        targets = _int_targets(targets, where)
        axis = self._class_axis(logits, targets, where)
        shape = logits.shape
        if axis == 1 and logits.ndim > 2:
            logits = np.ascontiguousarray(np.moveaxis(logits, 1, -1))
        C = logits.shape[-1]
        flat_t = np.ascontiguousarray(targets.reshape(-1), dtype=np.int64)
        need_grad = self.training
        try:
            loss, grad, count = _core.cross_entropy(
                logits.reshape(-1, C),
                flat_t,
                self.ignore_index,
                self.reduction,
                self.label_smoothing,
                need_grad,
                1.0,
            )
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        self.count = int(count)
        if need_grad:
            grad = grad.reshape(logits.shape)
            if axis == 1 and len(shape) > 2:
                grad = np.ascontiguousarray(np.moveaxis(grad, -1, 1))
            self._save_for_backward(grad)
        return float(loss)

    def _forward_device(self, logits: Any, targets: Any, where: str) -> float:
        """forward() of device logits (classes last): the fused loss and gradient on the device;
        targets on the host or the device. The gradient stays on the device."""
        device = _device_name(logits)
        lg = _cuda._arg(logits, device, "logits", where)
        if not lg.shape or lg.shape[-1] < 1:
            raise ValueError(
                f"{where}: logits must have shape [..., C] with C >= 1, got {tuple(lg.shape)}"
            )
        on_device = _cuda._is_device_array(targets)
        if on_device:
            t_shape = tuple(_cuda._arg(targets, device, "targets", where, dtype=np.int64).shape)
        else:
            targets = _int_targets(targets, where)
            t_shape = targets.shape
        axis = self._class_axis(_Shape(tuple(lg.shape)), _Shape(t_shape), where)
        if axis == 1 and len(lg.shape) > 2:
            raise ValueError(
                f"{where}: on a GPU the classes must be the last axis of logits (class_axis=-1); "
                f"got logits {tuple(lg.shape)} with the classes second"
            )
        C = lg.shape[-1]
        if not isinstance(logits, _cuda.DeviceArray):  # CuPy, torch: a DeviceArray to reshape
            logits = _cuda._copy_of(logits, device, "logits", where)
        if not on_device:
            flat_t: Any = np.ascontiguousarray(targets.reshape(-1), dtype=np.int64)
        elif isinstance(targets, _cuda.DeviceArray):
            flat_t = targets.reshape(-1)
        else:
            flat_t = _cuda._copy_of(targets, device, "targets", where).reshape(-1)
        need_grad = self.training
        try:
            loss, grad, count = _cuda.cross_entropy(
                logits.reshape(-1, C),
                flat_t,
                ignore_index=self.ignore_index,
                reduction=self.reduction,
                label_smoothing=self.label_smoothing,
                grad=need_grad,
            )
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        self.count = int(count)
        if need_grad:
            self._save_for_backward(grad.reshape(tuple(lg.shape)))
        return float(loss)

    def extra_repr(self) -> str:
        s = f"reduction='{self.reduction}'"
        if self.ignore_index != -100:
            s += f", ignore_index={self.ignore_index}"
        if self.label_smoothing:
            s += f", label_smoothing={self.label_smoothing}"
        if self.class_axis is not None:
            s += f", class_axis={self.class_axis}"
        return s


class MSELoss(_Loss):
    """Mean (or summed) squared error, PyTorch's ``nn.MSELoss``.

    Shapes: ``pred`` [...] and ``target`` [...] the same shape and dtype (float32 or float64).
    ``crit(pred, target)`` returns the loss as a float; ``crit.backward(scale=1.0)`` returns
    dpred [...].

    Args:
        reduction: 'mean' (over all elements) or 'sum'.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = _reduction(reduction, "MSELoss")

    def forward(self, pred: np.ndarray, target: np.ndarray) -> float:
        """Loss of ``pred`` against ``target``; keeps dpred in training mode.

        Returns:
            The reduced loss as a Python float.
        """
        where = "MSELoss.forward"
        if _cuda._is_device_array(pred):
            return self._forward_device(pred, target, where)
        pred = _float_array(pred, "pred", where)
        target = _float_array(target, "target", where)
        self._check_target(pred, target, where)
        need_grad = self.training
        loss, grad = _core.mse_loss(
            pred.reshape(-1), target.reshape(-1), self.reduction, need_grad, 1.0
        )
        if need_grad:
            self._save_for_backward(grad.reshape(pred.shape))
        return float(loss)

    @staticmethod
    def _check_target(pred: Any, target: Any, where: str) -> None:
        """The target's shape and dtype are pred's (host arrays or device memory)."""
        if tuple(target.shape) != tuple(pred.shape):
            raise ValueError(
                f"{where}: target must have shape {tuple(pred.shape)} like pred, got "
                f"{tuple(target.shape)}"
            )
        if target.dtype != pred.dtype:
            raise TypeError(
                f"{where}: target must have pred's dtype {pred.dtype}, got {target.dtype}; "
                f"use target.astype('{pred.dtype}')"
            )

    def _forward_device(self, pred: Any, target: Any, where: str) -> float:
        """forward() of a device pred: the loss and gradient on the device; the target on the
        host (copied over) or the device. The gradient stays on the device."""
        device = _device_name(pred)
        pb = _cuda._arg(pred, device, "pred", where)
        if not _cuda._is_device_array(target):
            target = _float_array(target, "target", where)
        tb = (
            _cuda._arg(target, device, "target", where)
            if _cuda._is_device_array(target)
            else target
        )
        self._check_target(pb, tb, where)
        need_grad = self.training
        loss, grad = _cuda.mse_loss(pred, target, reduction=self.reduction, grad=need_grad)
        if need_grad:
            self._save_for_backward(grad)
        return float(loss)

    def extra_repr(self) -> str:
        return f"reduction='{self.reduction}'"
