"""Vanishing and exploding gradients made visible: ||dL/dh_t|| for every step t, and its plot.

The engine measures, during BPTT, the norm of the gradient of the loss with respect to each
hidden state h_t (``record_step_grad_norms``). With the loss on the last step only, that norm
against t shows how far back the error signal reaches: a tanh RNN's decays geometrically, an
LSTM's (with a forget-gate bias) much more slowly.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..nn import Module
from ..nn.recurrent import _Recurrent
from .rng import named_modules

__all__ = ["step_gradient_norms", "plot_step_gradient_norms", "recurrent_layers"]

_RECURRENT = (_Recurrent,)  # RNN, LSTM, GRU, GatedRNN: every registered cell's layer


def recurrent_layers(model: Module) -> dict[str, Module]:
    """{dotted name: layer} of the RNN/LSTM/GRU layers inside ``model`` (itself included)."""
    return {name or "rnn": m for name, m in named_modules(model) if isinstance(m, _RECURRENT)}


def _last_step_grad(y: np.ndarray, batch_first: bool, seed: int) -> np.ndarray:
    """dL/dy with the loss on the last step only: a fixed random direction of norm 1 there."""
    dy = np.zeros_like(y)
    last = (slice(None), -1) if batch_first else (-1,)
    v = np.random.default_rng(seed).standard_normal(dy[last].shape)
    dy[last] = v / np.linalg.norm(v)
    return dy


def step_gradient_norms(
    target: Module,
    inputs: Any,
    *,
    dy: np.ndarray | None = None,
    lengths: Any = None,
    state: Any = None,
    seed: int = 0,
) -> np.ndarray | dict[str, np.ndarray]:
    """||dL/dh_t|| for every step t, measured by the engine during one backward pass.

    Two forms:

    - ``target`` an RNN/LSTM/GRU layer and ``inputs`` its x [T, B, I] ([B, T, I] if
      batch_first): one forward and backward with ``dy`` as dL/dy (default: the loss on the last
      step only — a fixed random unit vector at t = T-1, zeros elsewhere, from ``seed``).
      Returns float64 [L*D, T] (row l*D + d: layer l, direction d).
    - ``target`` a model with ``training_step(batch)`` and ``inputs`` a batch: runs that step
      with recording switched on in every recurrent layer. Returns {layer name: [L*D, T]}.

    Either way the parameter gradients, the layers' recording flags and the training mode are
    left as they were (the gradients are saved and put back).

    Args:
        target: a recurrent layer or a model.
        inputs: x for a layer, a batch for a model.
        dy: layer form only: dL/dy shaped like y, or None for the last-step loss.
        lengths, state: layer form only: passed to the layer's forward.
        seed: seed of the default dy direction.
    """
    params = target.parameters()
    saved_grads = [p.grad.copy() for p in params]
    was_training = target.training
    layers = {"": target} if isinstance(target, _RECURRENT) else recurrent_layers(target)
    if not layers:
        raise ValueError(
            f"step_gradient_norms: {type(target).__name__} has no RNN/LSTM/GRU layer to measure"
        )
    flags = {name: layer.record_step_grad_norms for name, layer in layers.items()}
    try:
        target.train()
        for layer in layers.values():
            layer.record_step_grad_norms = True
            layer.step_grad_norms = None
        if isinstance(target, _RECURRENT):
            y, _ = target(inputs, lengths=lengths, state=state)
            grad = _last_step_grad(y, target.batch_first, seed) if dy is None else dy
            target.backward(grad)
            return np.array(target.step_grad_norms, dtype=np.float64)
        if lengths is not None or state is not None or dy is not None:
            raise TypeError("step_gradient_norms: dy, lengths and state are for a layer target")
        step = getattr(target, "training_step", None)
        if step is None:
            raise TypeError(
                f"step_gradient_norms: {type(target).__name__} is neither a recurrent layer "
                "nor a model with training_step(batch)"
            )
        step(inputs)
        return {
            name: np.array(layer.step_grad_norms, dtype=np.float64)
            for name, layer in layers.items()
            if layer.step_grad_norms is not None
        }
    finally:
        for name, layer in layers.items():
            layer.record_step_grad_norms = flags[name]
        for p, g in zip(params, saved_grads, strict=True):
            p.grad[...] = g
        target.train(was_training)


def plot_step_gradient_norms(
    norms: Mapping[str, Any],
    path: str | Path,
    *,
    title: str = "Gradient norm ||dL/dh_t|| through time",
    normalize: bool = False,
) -> Path:
    """Plot step gradient norms of several networks on one log-scale axis and save a PNG.

    Args:
        norms: {label: norms}; each [T] or [L*D, T] (one curve per row, labelled
            "label [row]" when there are several), e.g. {"RNN": ..., "LSTM": ..., "GRU": ...}.
        path: the image file to write (PNG unless the suffix says otherwise).
        title: the figure title.
        normalize: divide each curve by its value at the last step (where the loss is).

    Returns:
        ``path`` as a Path. Needs matplotlib (``pip install rnncore[plot]``); zeros (underflow)
        are left out of the log-scale curve.
    """
    Figure = _figure_class()
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    for label, values in norms.items():
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise ValueError(
                f"plot_step_gradient_norms: norms[{label!r}] must be [T] or [L*D, T], got "
                f"shape {arr.shape}"
            )
        for row in range(arr.shape[0]):
            curve = arr[row]
            if normalize and curve[-1] > 0:
                curve = curve / curve[-1]
            curve = np.where(curve > 0, curve, np.nan)
            name = label if arr.shape[0] == 1 else f"{label} [{row}]"
            ax.plot(np.arange(curve.size), curve, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("time step t")
    ax.set_ylabel("||dL/dh_t||" + (" (relative to t = T-1)" if normalize else ""))
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    return out


def _figure_class() -> Any:
    """matplotlib's Figure, imported on first use (no pyplot: no global state, no GUI)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            "plotting needs matplotlib: pip install 'rnncore[plot]' (or pip install matplotlib)"
        ) from None
    return Figure
