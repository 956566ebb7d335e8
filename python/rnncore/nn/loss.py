"""Loss functions that return a float and keep their gradient: CrossEntropyLoss and MSELoss."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _core
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


class _Loss(Module):
    """Shared part of the losses: the gradient kept by forward and handed out once by backward."""

    def __init__(self) -> None:
        super().__init__()
        self._grad: np.ndarray | None = None

    def backward(self, scale: float = 1.0) -> np.ndarray:
        """The gradient of the last training-mode forward's loss w.r.t. its input, times ``scale``
        (e.g. 1/k when accumulating k batches). Each forward allows one backward.

        Returns:
            An array shaped like the forward's first argument.
        """
        where = f"{type(self).__name__}.backward"
        s = _scale(scale, where)
        if self._grad is None:
            raise RuntimeError(
                f"{where}: needs a training-mode forward first "
                "(and allows one backward per forward)"
            )
        grad, self._grad = self._grad, None
        if s != 1.0:
            grad *= grad.dtype.type(s)
        return grad


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy over the last axis, fused with its gradient (PyTorch semantics).

    Shapes: ``logits`` [..., C] (the class axis is LAST, so [T, B, V] language-model outputs go in
    as they are; for 2-d [N, C] this is exactly PyTorch's layout), ``targets`` [...] integers in
    [0, C) or ``ignore_index``. ``crit(logits, targets)`` returns the loss as a float;
    ``crit.backward(scale=1.0)`` returns dlogits [..., C].

    Args:
        ignore_index: targets equal to it add no loss and get zero gradient (padding).
        reduction: 'mean' (over the non-ignored targets) or 'sum'.
        label_smoothing: ε in [0, 1]; the target distribution is (1-ε)·onehot + ε/C.

    After a forward, ``count`` is the number of non-ignored targets. When every target is ignored
    the mean loss is 0.0 (PyTorch gives NaN), so an all-padding batch cannot poison an average.
    Numerically stable for any finite logits (log-sum-exp with the row maximum subtracted).
    """

    def __init__(
        self, ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0
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
        self.count = 0

    def forward(self, logits: np.ndarray, targets: Any) -> float:
        """Loss of ``logits`` [..., C] against integer ``targets`` [...]; keeps dlogits in
        training mode.

        Returns:
            The reduced loss as a Python float.
        """
        where = "CrossEntropyLoss.forward"
        logits = _float_array(logits, "logits", where)
        if logits.ndim < 1 or logits.shape[-1] < 1:
            raise ValueError(
                f"{where}: logits must have shape [..., C] with C >= 1, got {logits.shape}"
            )
        if not isinstance(targets, np.ndarray):
            targets = np.asarray(targets)
        if targets.dtype == bool or targets.dtype.kind not in "iu":
            raise TypeError(
                f"{where}: targets must be integer class indices, got dtype {targets.dtype}"
            )
        if targets.shape != logits.shape[:-1]:
            raise ValueError(
                f"{where}: targets must have shape {logits.shape[:-1]} (logits {logits.shape} "
                f"without the class axis), got {targets.shape}"
            )
        C = logits.shape[-1]
        if targets.dtype == np.uint64 and targets.size and targets.max() > np.iinfo(np.int64).max:
            # int64 would wrap it round to a negative index (2^64 - 100 -> -100 = ignore_index)
            big = int(targets.max())
            raise ValueError(
                f"{where}: targets holds {big}, beyond int64; class indices must be in [0, C)"
            )
        flat_t = np.ascontiguousarray(targets.reshape(-1), dtype=np.int64)
        need_grad = self.training
        self._grad = None
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
            self._grad = grad.reshape(logits.shape)
        return float(loss)

    def extra_repr(self) -> str:
        s = f"reduction='{self.reduction}'"
        if self.ignore_index != -100:
            s += f", ignore_index={self.ignore_index}"
        if self.label_smoothing:
            s += f", label_smoothing={self.label_smoothing}"
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
        pred = _float_array(pred, "pred", where)
        target = _float_array(target, "target", where)
        if target.shape != pred.shape:
            raise ValueError(
                f"{where}: target must have shape {pred.shape} like pred, got {target.shape}"
            )
        if target.dtype != pred.dtype:
            raise TypeError(
                f"{where}: target must have pred's dtype {pred.dtype}, got {target.dtype}; "
                f"use target.astype('{pred.dtype}')"
            )
        need_grad = self.training
        self._grad = None
        loss, grad = _core.mse_loss(
            pred.reshape(-1), target.reshape(-1), self.reduction, need_grad, 1.0
        )
        if need_grad:
            self._grad = grad.reshape(pred.shape)
        return float(loss)

    def extra_repr(self) -> str:
        return f"reduction='{self.reduction}'"
