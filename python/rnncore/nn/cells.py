"""One-step recurrent cells RNNCell, LSTMCell and GRUCell: PyTorch's interface and parameter
names, forward and backward through rnncore's engine, for step-by-step decoding."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from .module import Module, Parameter
from .recurrent import recurrent_layer

State = Any  # h [B, H], or (h, c) for an LSTMCell


class _Cell(Module):
    """Shared part of the cells: a one-layer, one-step engine layer under PyTorch's cell names.

    Each training-mode call is saved; ``backward`` consumes them newest first, so a decoder that
    steps a cell T times runs T backwards in reverse step order (see :class:`Module`).
    """

    _registry_cell = ""  # the engine cell a subclass runs

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        dtype: Any = "float32",
        seed: int | None = None,
        device: str = "cpu",
    ) -> None:
        super().__init__()
        self._layer = recurrent_layer(
            self._registry_cell,
            input_size,
            hidden_size,
            bias=bias,
            dtype=dtype,
            seed=seed,
            device=device,
        )
        self.input_size = self._layer.input_size
        self.hidden_size = self._layer.hidden_size
        self.bias = self._layer.bias
        self.dtype = self._layer.dtype
        self.device = self._layer.device
        self._has_c = self._layer._has_c
        # The engine's arrays under PyTorch's cell names: weight_ih_l0 -> weight_ih.
        for p in self._layer.parameters():
            self._parameters.append(Parameter(p.name.removesuffix("_l0"), p.data, p.grad))

    # The engine layer is not a child: its parameters are this cell's, under other names.
    def children(self) -> Iterator[tuple[str, Module]]:
        return iter(())

    def _reseed(self, seed: int) -> None:
        self._layer._reseed(seed)

    def _check_move(self, device: str) -> None:
        self._layer._check_move(device)

    def _move_to(self, device: str) -> None:
        self._layer._move_to(device)
        self.device = self._layer.device
        for p, q in zip(self._parameters, self._layer.parameters(), strict=True):
            p._data, p._grad = q.data, q.grad

    def _discard_own_saved(self) -> None:
        self._saved.clear()
        self._layer.discard_saved()

    @property
    def flat_parameters(self) -> np.ndarray:
        """All parameters as one flat array [P] (a view)."""
        return self._layer.flat_parameters

    @property
    def flat_gradients(self) -> np.ndarray:
        """All parameter gradients as one flat array [P] (a view, same layout)."""
        return self._layer.flat_gradients

    def zero_grad(self) -> None:
        """Set every parameter gradient to zero."""
        self._layer.zero_grad()

    def reset_parameters(self, init: str = "uniform") -> None:
        """Re-initialise as :meth:`RNN.reset_parameters` (PyTorch's U(-1/sqrt(H), 1/sqrt(H)))."""
        self._layer.reset_parameters(init)

    def _state_in(self, hx: State, batched: bool, where: str) -> State:
        """hx [B, H] (LSTM: (h, c)) -> the layer's [1, B, H]; None stays None."""
        if hx is None:
            return None

        def lift(a: Any, name: str) -> Any:
            if a is None:
                return None
            if not isinstance(a, np.ndarray):
                raise TypeError(f"{where}: {name} must be a numpy array, got {type(a).__name__}")
            want = 2 if batched else 1
            if a.ndim != want:
                layout = "[B, H]" if batched else "[H] (unbatched input)"
                raise ValueError(f"{where}: {name} must be {layout}, got shape {a.shape}")
            return a[None] if batched else a[None, None]

        if self._has_c:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"{where}: hx of an LSTMCell must be a tuple (h, c) or None")
            return lift(hx[0], "h"), lift(hx[1], "c")
        if isinstance(hx, (tuple, list)):
            raise TypeError(f"{where}: hx of a {type(self).__name__} must be an array h")
        return lift(hx, "hx")

    @contextlib.contextmanager
    def _named(self, where: str) -> Iterator[None]:
        """Errors of the engine layer underneath name the cell's method (LSTMCell.forward), not
        the layer's (LSTM.forward)."""
        try:
            yield
        except (ValueError, TypeError, RuntimeError) as e:
            inner = f"{type(self._layer).__name__}.{where.rsplit('.', 1)[1]}: "
            msg = str(e)
            if msg.startswith(inner):
                raise type(e)(where + ": " + msg[len(inner) :]) from None
            raise

    def forward(self, input: np.ndarray, hx: State = None) -> State:
        """One step: h' = cell(x, h) (LSTMCell: (h', c')).

        Args:
            input: x [B, I], or [I] for one unbatched sequence, in the cell's dtype.
            hx: h [B, H] (LSTMCell: (h, c), each [B, H]), or None for zeros; unbatched: [H].

        Returns:
            h' [B, H] (LSTMCell: (h', c')), unbatched [H].
        """
        where = f"{type(self).__name__}.forward"
        if not isinstance(input, np.ndarray):
            raise TypeError(f"{where}: input must be a numpy array, got {type(input).__name__}")
        if input.ndim not in (1, 2):
            raise ValueError(f"{where}: input must be [B, I] or [I], got shape {input.shape}")
        batched = input.ndim == 2
        x = input[None] if batched else input[None, None]
        state = self._state_in(hx, batched, where)
        self._layer.training = self.training  # the cell's mode is the engine layer's
        with self._named(where):
            _, hn = self._layer(x, state)
        if self.training:
            self._save_for_backward(batched)
        squeeze = (lambda a: a[0]) if batched else (lambda a: a[0, 0])
        if self._has_c:
            return squeeze(hn[0]), squeeze(hn[1])
        return squeeze(hn)

    def backward(self, dstate: State) -> tuple[np.ndarray, State]:
        """Backward of the newest unconsumed training step.

        Args:
            dstate: gradient w.r.t. h' [B, H] (LSTMCell: (dh', dc'), either may be None).

        Returns:
            (dx [B, I], dhx) with dhx shaped like hx (LSTMCell: (dh, dc)). Parameter gradients
            accumulate into ``p.grad``.
        """
        where = f"{type(self).__name__}.backward"
        batched = self._peek_saved(where)
        d = self._state_in(dstate, batched, where) if dstate is not None else None
        self._pop_saved(where)
        with self._named(where):
            dx, dh0 = self._layer.backward(None, d)
        squeeze = (lambda a: a[0]) if batched else (lambda a: a[0, 0])
        if self._has_c:
            return squeeze(dx), (squeeze(dh0[0]), squeeze(dh0[1]))
        return squeeze(dx), squeeze(dh0)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.dtype != np.float32:
            s += f", dtype='{self.dtype}'"
        return s


class RNNCell(_Cell):
    """h' = act(W_ih x + b_ih + W_hh h + b_hh), act = tanh or relu (PyTorch's ``nn.RNNCell``).

    Parameters: weight_ih [H, I], weight_hh [H, H], bias_ih [H], bias_hh [H].
    Shapes: x [B, I], h [B, H] -> h' [B, H].

    Args:
        input_size, hidden_size: I and H.
        bias: learn bias_ih and bias_hh.
        nonlinearity: "tanh" or "relu".
        dtype: "float32" or "float64".
        seed: seed of PyTorch's U(-1/sqrt(H), 1/sqrt(H)) initialisation, or None.
        device: "cpu", "cuda" or "cuda-sim", as for :class:`~rnncore.nn.LSTM`.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        dtype: Any = "float32",
        seed: int | None = None,
        device: str = "cpu",
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}"
            )
        self.nonlinearity = nonlinearity
        self._registry_cell = "rnn" if nonlinearity == "tanh" else "rnn_relu"
        super().__init__(input_size, hidden_size, bias, dtype, seed, device)


class LSTMCell(_Cell):
    """c' = f*c + i*g, h' = o*tanh(c'), gates i, f, g, o (PyTorch's ``nn.LSTMCell``).

    Parameters: weight_ih [4H, I], weight_hh [4H, H], bias_ih [4H], bias_hh [4H].
    Shapes: x [B, I], (h, c) each [B, H] -> (h', c').
    Args: input_size, hidden_size, bias, dtype, seed, device as :class:`RNNCell`.
    """

    _registry_cell = "lstm"


class GRUCell(_Cell):
    """h' = (1-z)*n + z*h, n = tanh(W_in x + b_in + r*(W_hn h + b_hn)), gates r, z, n
    (PyTorch's ``nn.GRUCell``).

    Parameters: weight_ih [3H, I], weight_hh [3H, H], bias_ih [3H], bias_hh [3H].
    Shapes: x [B, I], h [B, H] -> h' [B, H].
    Args: input_size, hidden_size, bias, dtype, seed, device as :class:`RNNCell`.
    """

    _registry_cell = "gru"
