"""Gradient clipping by global norm or by value, and the non-finite gradient check."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _core
from .. import cuda as _cuda

_ARRAYS = (np.ndarray, _cuda.DeviceArray)


def _grads(params: Any, where: str) -> list[Any]:
    """The gradient arrays of Parameters (``.grad``) or the arrays themselves, as a list (numpy
    arrays, or DeviceArrays for parameters on a GPU). Frozen Parameters (``requires_grad``
    False) are left out, as PyTorch leaves out a parameter whose grad is None."""
    if isinstance(params, _ARRAYS) or hasattr(params, "grad"):
        params = [params]
    try:
        items = list(params)
    except TypeError:
        raise TypeError(
            f"{where}: params must be Parameters or gradient arrays (or an iterable of them), "
            f"got {type(params).__name__}"
        ) from None
    out = []
    for k, p in enumerate(items):
        g = p if isinstance(p, _ARRAYS) else getattr(p, "grad", None)
        if not isinstance(g, _ARRAYS):
            raise TypeError(
                f"{where}: params[{k}] must be a Parameter or a numpy array, got {type(p).__name__}"
            )
        if getattr(p, "requires_grad", True):
            out.append(g)
    return out


def _split(grads: list[Any]) -> tuple[list[np.ndarray], list[Any]]:
    """(host arrays, device arrays)."""
    device = [g for g in grads if isinstance(g, _cuda.DeviceArray)]
    return [g for g in grads if not isinstance(g, _cuda.DeviceArray)], device


def _norm(grads: list[Any], where: str) -> float:
    """The global L2 norm of host and device arrays together (each part summed where it lies)."""
    host, device = _split(grads)
    n_host = float(_call(_core.grad_norm, where, host)) if host else 0.0
    n_dev = float(_call(_cuda.grad_norm, where, device)) if device else 0.0
    return math.hypot(n_host, n_dev) if device else n_host


def _call(fn: Any, where: str, *args: Any) -> Any:
    try:
        return fn(*args)
    except (ValueError, TypeError) as e:
        msg = str(e).replace("buffers[", "params[")
        raise type(e)(f"{where}: {msg}") from None


def clip_grad_norm(params: Any, max_norm: float) -> float:
    """Clip gradients by their global L2 norm, in place (``torch.nn.utils.clip_grad_norm_``).

    The norm is taken over all gradients together, as if concatenated. When it exceeds
    ``max_norm``, every gradient is multiplied by max_norm / (norm + 1e-6) (Mikolov's and
    PyTorch's rule; PyTorch also multiplies, by a factor that rounds to 1, in the 1e-6 band just
    below max_norm, which this function leaves alone). A NaN/inf norm is returned and nothing is
    scaled: check it, or use an optimizer with ``skip_nonfinite=True``.

    Args:
        params: Parameters (their ``.grad``; frozen ones are left out) or gradient arrays
            (float32/float64, C-contiguous, any shapes), or one of them.
        max_norm: > 0 (inf disables clipping but still returns the norm).

    Returns:
        The global norm before clipping, as a float. One engine call for all arrays.
    """
    where = "clip_grad_norm"
    if isinstance(max_norm, bool) or not isinstance(
        max_norm, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"{where}: max_norm must be a number, got {type(max_norm).__name__}")
    if not float(max_norm) > 0.0:
        raise ValueError(f"{where}: max_norm must be > 0, got {max_norm}")
    grads = _grads(params, where)
    host, device = _split(grads)
    if not device:
        return float(_call(_core.clip_grad_norm, where, grads, float(max_norm)))
    norm = _norm(grads, where)  # parameters on a GPU: the same rule, scaled where they lie
    coef = _core.clip_coefficient(norm, float(max_norm))
    if coef != 1.0:
        _cuda.scale(device, coef)
        for g in host:
            g *= g.dtype.type(coef)
    return norm


def clip_grad_value(params: Any, clip_value: float) -> None:
    """Clamp every gradient element to [-clip_value, clip_value], in place
    (``torch.nn.utils.clip_grad_value_``; NaN stays NaN).

    Args:
        params: Parameters or gradient arrays, or one of them.
        clip_value: > 0 and finite.
    """
    where = "clip_grad_value"
    if isinstance(clip_value, bool) or not isinstance(
        clip_value, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"{where}: clip_value must be a number, got {type(clip_value).__name__}")
    if not (float(clip_value) > 0.0 and math.isfinite(clip_value)):
        raise ValueError(f"{where}: clip_value must be > 0 and finite, got {clip_value}")
    host, device = _split(_grads(params, where))
    if host:
        _call(_core.clip_grad_value, where, host, float(clip_value))
    if device:
        _cuda.clip_grad_value(device, float(clip_value))


def grad_norm(params: Any) -> float:
    """The global L2 norm of the gradients (no change), as a float.

    Args:
        params: Parameters or gradient arrays, or one of them.
    """
    where = "grad_norm"
    return _norm(_grads(params, where), where)


def all_finite(params: Any) -> bool:
    """True when no gradient element is NaN or infinite (one engine pass over all arrays).

    Args:
        params: Parameters or gradient arrays, or one of them.
    """
    where = "all_finite"
    host, device = _split(_grads(params, where))
    ok = bool(_call(_core.all_finite, where, host)) if host else True
    return ok and (not device or _cuda.all_finite(device))


clip_grad_norm_ = clip_grad_norm
clip_grad_value_ = clip_grad_value
