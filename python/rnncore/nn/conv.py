"""Conv1d: PyTorch's 1-d convolution (stride 1, zero padding) on the engine's im2col + GEMM."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _core
from ._checks import check_device, check_seed, float_dtype, positive_int
from .layers import _check_array, _FlatModule, _owned, one_call_at_a_time


class Conv1d(_FlatModule):
    """y[n, o, t] = bias[o] + Σ_{c,k} weight[o, c, k] · x[n, c, t + k - padding]: PyTorch's
    ``nn.Conv1d`` with stride 1 and zero padding, and its parameter names and layout.

    Args:
        in_channels: C.
        out_channels: O.
        kernel_size: K (the filter's width in steps).
        padding: zeros added at both ends of the length axis (K - 1: every window that touches
            the sequence, Kim 2014's "wide" convolution).
        bias: whether to learn a bias [O].
        channels_last: False (PyTorch's layout) x [N, C, L] -> y [N, O, Lo]; True x [N, L, C]
            -> y [N, Lo, O], the engine's own layout (no transposes: word vectors of a sentence
            are already [N, L, E]).
        dtype: 'float32' or 'float64'.
        seed: seed of PyTorch's default initialisation, U(-1/sqrt(C*K), 1/sqrt(C*K)).
        device: 'cpu'.

    Shapes: Lo = L + 2 * padding - K + 1 (must be >= 1). ``backward(dy)`` (dy shaped like y)
    accumulates ``weight.grad`` [O, C, K] and ``bias.grad`` [O] and returns dx shaped like x.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        padding: int = 0,
        bias: bool = True,
        *,
        channels_last: bool = False,
        dtype: Any = "float32",
        seed: int | None = None,
        device: str = "cpu",
    ) -> None:
        super().__init__()
        owner = "Conv1d"
        self.device = check_device(device, owner)
        self.in_channels = positive_int(in_channels, "in_channels", owner)
        self.out_channels = positive_int(out_channels, "out_channels", owner)
        self.kernel_size = positive_int(kernel_size, "kernel_size", owner)
        if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
            raise ValueError(f"{owner}: padding must be an integer >= 0, got {padding!r}")
        self.padding = int(padding)
        self.channels_last = bool(channels_last)
        self.dtype = float_dtype(dtype, owner)
        shapes = [("weight", (self.out_channels, self.in_channels, self.kernel_size))]
        if bias:
            shapes.append(("bias", (self.out_channels,)))
        self._allocate(self.dtype, shapes)
        self.weight = self._parameters[0]
        self.bias = self._parameters[1] if bias else None
        self._rng = np.random.default_rng(check_seed(seed, owner))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """weight and bias ~ U(-1/sqrt(C*K), 1/sqrt(C*K)), PyTorch's default."""
        k = 1.0 / math.sqrt(self.in_channels * self.kernel_size)
        self._flat[...] = self._rng.uniform(-k, k, size=self._flat.shape)

    def output_length(self, length: int) -> int:
        """Lo = L + 2 * padding - K + 1 for an input of length L."""
        return int(length) + 2 * self.padding - self.kernel_size + 1

    @one_call_at_a_time
    def forward(self, x: np.ndarray) -> np.ndarray:
        """y for x [N, C, L] ([N, L, C] with channels_last), the layer's dtype.

        In training mode x is kept for ``backward`` (a copy where it is the caller's array).
        """
        where = "Conv1d.forward"
        x = _check_array(x, "x", where, self.dtype)
        axis = 2 if self.channels_last else 1
        layout = "[N, L, C]" if self.channels_last else "[N, C, L]"
        if x.ndim != 3 or x.shape[axis] != self.in_channels:
            raise ValueError(
                f"{where}: x must be {layout} with C={self.in_channels}, got shape {x.shape}"
            )
        xl = x if self.channels_last else np.ascontiguousarray(x.transpose(0, 2, 1))
        if self.output_length(xl.shape[1]) < 1:
            raise ValueError(
                f"{where}: x has length {xl.shape[1]}, shorter than kernel_size "
                f"{self.kernel_size} with padding {self.padding}"
            )
        y = _core.conv1d_forward(
            xl, self.weight.data, None if self.bias is None else self.bias.data, self.padding
        )
        if self.training:
            self._save_for_backward(_owned(xl, x))
        return y if self.channels_last else np.ascontiguousarray(y.transpose(0, 2, 1))

    @one_call_at_a_time
    def backward(self, dy: np.ndarray) -> np.ndarray:
        """Accumulate weight/bias gradients from dy (shaped like y) and return dx (like x)."""
        where = "Conv1d.backward"
        dy = _check_array(dy, "dy", where, self.dtype)
        xl = self._peek_saved(where)
        N, L, _ = xl.shape
        Lo = self.output_length(L)
        want = (N, Lo, self.out_channels) if self.channels_last else (N, self.out_channels, Lo)
        if dy.shape != want:
            raise ValueError(f"{where}: dy must have shape {want} like y, got {dy.shape}")
        self._pop_saved(where)
        dyl = dy if self.channels_last else np.ascontiguousarray(dy.transpose(0, 2, 1))
        dx = _core.conv1d_backward(
            dyl,
            xl,
            self.weight.data,
            self.weight.grad,
            None if self.bias is None else self.bias.grad,
            self.padding,
            True,
        )
        return dx if self.channels_last else np.ascontiguousarray(dx.transpose(0, 2, 1))

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        if self.padding:
            s += f", padding={self.padding}"
        if self.bias is None:
            s += ", bias=False"
        if self.channels_last:
            s += ", channels_last=True"
        if self.dtype != np.float32:
            s += f", dtype='{self.dtype}'"
        return s
