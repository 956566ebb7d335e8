"""Random draws keyed by an example's index in the global batch, so that the ranks of a
data-parallel job draw exactly the masks one process running the whole batch would.

Every random mask of rnncore's layers (Dropout here; dropout between layers, zoneout and
recurrent dropout in the engine) is a counter-based hash of (the layer's seed, its call count,
the example's index in the batch, the element's position within the example). The index is the
example's position in its call plus :func:`batch_offset`, which is 0 unless a data-parallel
pipeline says where this process's slice of the global batch starts
(:func:`rnncore.distributed.shard_batches` does). Hence a mask never depends on the batch size
or on how a batch is split across processes.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from .. import _core

__all__ = ["batch_offset", "set_batch_offset", "offset_scope", "keyed_uniform", "keyed_dropout"]

_OFFSET: contextvars.ContextVar[int] = contextvars.ContextVar("rnncore_batch_offset", default=0)


def batch_offset() -> int:
    """The index, in the global batch, of the first example of the batch being processed now
    (0 outside data parallelism). A scalar int >= 0."""
    return _OFFSET.get()


def set_batch_offset(offset: int) -> None:
    """Say that the examples about to be processed start at index ``offset`` of their global
    batch (data parallelism: the start of this rank's slice). It holds in the current thread
    (context) until set again; sharded batch iterators set it before yielding each batch.

    Raises:
        TypeError / ValueError: ``offset`` is not an integer >= 0.
    """
    _OFFSET.set(_checked(offset, "set_batch_offset"))


def _checked(offset: int, where: str) -> int:
    if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)):
        raise TypeError(f"{where}: offset must be an integer, got {type(offset).__name__}")
    if offset < 0:
        raise ValueError(f"{where}: offset must be >= 0, got {offset}")
    return int(offset)


@contextmanager
def offset_scope(offset: int) -> Iterator[None]:
    """``with offset_scope(n):`` runs its body with :func:`batch_offset` = n, then restores it."""
    token = _OFFSET.set(_checked(offset, "offset_scope"))
    try:
        yield
    finally:
        _OFFSET.reset(token)


def _view3(shape: tuple[int, ...], batch_axis: int | None) -> tuple[int, int, int]:
    """(outer, B, inner) of ``shape`` around its batch axis (B = 1 with no batch axis)."""
    if batch_axis is None or len(shape) == 0:
        return 1, 1, int(np.prod(shape, dtype=np.int64))
    axis = batch_axis % len(shape)
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    return outer, int(shape[axis]), int(np.prod(shape[axis + 1 :], dtype=np.int64))


def keyed_uniform(seed: int, shape: tuple[int, ...], batch_axis: int | None) -> np.ndarray:
    """Uniform draws in [0, 1), float64 of ``shape``, each keyed by (seed, example, position):
    the example is the index along ``batch_axis`` plus :func:`batch_offset`, the position the
    element's index within its example. ``batch_axis=None``: the whole array is one example (no
    offset). The engine's hash (``rnncore::keyed_uniform``), which Dropout's masks use too.

    Args:
        seed: the stream (a layer's seed combined with its call count), any int.
        shape: the draws' shape.
        batch_axis: the axis that indexes examples, or None.
    """
    shape = tuple(int(n) for n in shape)
    outer, B, inner = _view3(shape, batch_axis)
    offset = 0 if batch_axis is None else batch_offset()
    u = _core.keyed_uniform(outer, B, inner, int(seed) % 2**64, batch_offset=offset)
    return u.reshape(shape)


def keyed_dropout(
    x: np.ndarray, p: float, seed: int, batch_axis: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Inverted dropout of x [...] with :func:`keyed_uniform`'s draws: (y, scale), both shaped
    like x, scale = 1/(1-p) where the draw is >= p, else 0, and y = x * scale. p in [0, 1)."""
    outer, B, inner = _view3(x.shape, batch_axis)
    offset = 0 if batch_axis is None else batch_offset()
    x3 = np.ascontiguousarray(x).reshape(outer, B, inner)
    y, scale = _core.keyed_dropout(x3, float(p), int(seed) % 2**64, batch_offset=offset)
    return y.reshape(x.shape), scale.reshape(x.shape)
