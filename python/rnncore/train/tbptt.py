"""Truncated BPTT: carry a recurrent layer's final state into the next window, gradients stopped.

The classic PTB recipe (Zaremba et al. 2014): the token stream is cut into B contiguous columns
(:func:`rnncore.data.batchify`), read in windows of ``bptt`` steps (:class:`rnncore.data.
BPTTBatches`), and the state at the end of one window is the initial state of the next, so the
network sees unbroken text while backpropagation stops at the window boundary.

Without autograd, "detaching" is simple: the state is plain numpy data. Passing the previous
window's final state as ``state=`` and calling ``backward`` without propagating the returned
``dstate0`` any further is exactly truncated BPTT. :class:`StateCarrier` keeps that state between
``training_step`` calls, resets it at epoch starts, when the batch size changes, and for single
columns at document boundaries. Typical use inside a language model::

    def on_epoch_start(self, training):
        self.carrier.reset()

    def training_step(self, batch):
        x, y = batch                                     # [T, B] ids
        h, final = self.rnn(self.embedding(x), state=self.carrier.get(x.shape[1]))
        self.carrier.update(final, last_tokens=x[-1])
        loss = self.crit(self.decoder(h), y)
        dh, _ = self.rnn.backward(self.decoder.backward(self.crit.backward()))   # dstate0 dropped
        self.embedding.backward(dh)
        return {"loss": loss, "count": self.crit.count}
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["StateCarrier", "detach_state", "zero_state", "reset_state_columns", "state_batch_size"]

State = Any  # h [L*D, B, H], or a tuple (h, c) for an LSTM


def _arrays(state: State) -> tuple[np.ndarray, ...]:
    if isinstance(state, (tuple, list)):
        return tuple(state)
    return (state,)


def _like(state: State, arrays: list[np.ndarray]) -> State:
    return tuple(arrays) if isinstance(state, (tuple, list)) else arrays[0]


def detach_state(state: State) -> State:
    """Copies of the state's arrays (tuple structure kept), independent of the layer's buffers.

    Args:
        state: h [L*D, B, H] or (h, c), or None.

    Returns:
        The same structure with copied arrays, or None.
    """
    if state is None:
        return None
    return _like(state, [np.array(a, copy=True) for a in _arrays(state)])


def state_batch_size(state: State) -> int | None:
    """B of a state h [L*D, B, H] or (h, c); None for None."""
    if state is None:
        return None
    return int(_arrays(state)[0].shape[1])


def zero_state(layer: Any, batch_size: int) -> State:
    """The all-zero initial state of a recurrent layer for ``batch_size`` sequences.

    Args:
        layer: an rnncore.nn RNN, LSTM or GRU.
        batch_size: B.

    Returns:
        h [L*D, B, H] (or (h, c) for an LSTM) in the layer's dtype.
    """
    return layer.zero_state(batch_size)


def reset_state_columns(state: State, mask: Any) -> State:
    """A new state where the batch columns with ``mask[b]`` True are zero (the others unchanged).

    Args:
        state: h [L*D, B, H] or (h, c).
        mask: bool [B] (True: this sequence starts afresh).

    Returns:
        The same structure; new arrays (the input is not modified).
    """
    if state is None:
        return None
    arrays = _arrays(state)
    mask = np.asarray(mask, dtype=bool).reshape(-1)
    B = arrays[0].shape[1]
    if mask.shape != (B,):
        raise ValueError(f"reset_state_columns: mask must have shape [B={B}], got {mask.shape}")
    keep = (~mask).astype(arrays[0].dtype)[None, :, None]
    return _like(state, [a * keep for a in arrays])


class StateCarrier:
    """Holds the recurrent state from one truncated-BPTT window to the next.

    Args:
        reset_token: a token id that ends a document (e.g. ``vocab.eos_id``): a column whose
            previous window ended with it starts the next window from a zero state. None: carry
            across documents (the PTB recipe does).

    ``get(B)`` returns the state to pass as ``state=`` (None at the start, after :meth:`reset`
    or when B changed, e.g. a smaller last batch); ``update(final_state, last_tokens=x[-1])``
    stores the window's final state (and its last input tokens [B] for ``reset_token``).
    """

    def __init__(self, reset_token: int | None = None) -> None:
        self.reset_token = reset_token
        self._state: State = None
        self._last: np.ndarray | None = None

    @property
    def state(self) -> State:
        """The stored state (h [L*D, B, H] or (h, c)), or None."""
        return self._state

    def reset(self) -> None:
        """Forget the state: the next window starts from zeros (epoch start, new data)."""
        self._state = None
        self._last = None

    def reset_columns(self, mask: Any) -> None:
        """Zero the stored state of the columns with ``mask[b]`` True (bool [B])."""
        self._state = reset_state_columns(self._state, mask)

    def update(self, state: State, last_tokens: Any = None) -> None:
        """Store a window's final state (h [L*D, B, H] or (h, c)) for the next window.

        Args:
            state: the final state returned by the recurrent layer (kept as data: no gradient
                will flow back into the window that produced it).
            last_tokens: the window's last input ids [B], needed when ``reset_token`` is set.
        """
        self._state = detach_state(state)
        self._last = None if last_tokens is None else np.asarray(last_tokens).reshape(-1).copy()

    def get(self, batch_size: int | None = None) -> State:
        """The state to start the next window from, or None for zeros.

        Args:
            batch_size: the next window's B; a different B than the stored state's drops it.

        Returns:
            h [L*D, B, H] or (h, c), or None.
        """
        if self._state is None:
            return None
        if batch_size is not None and state_batch_size(self._state) != int(batch_size):
            self.reset()
            return None
        if self.reset_token is not None and self._last is not None:
            mask = self._last == self.reset_token
            if mask.any():
                self.reset_columns(mask)
        return self._state

    def __repr__(self) -> str:
        b = state_batch_size(self._state)
        return f"StateCarrier(batch_size={b}, reset_token={self.reset_token})"
