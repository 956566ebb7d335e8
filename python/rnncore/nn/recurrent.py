"""Recurrent sequence layers RNN, LSTM and GRU: PyTorch's interface, rnncore's C++ engine.

Each call runs a whole (padded, optionally variable-length) batch of sequences through every layer
and direction in C++; ``backward`` runs BPTT and accumulates parameter gradients.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _core
from .. import cuda as _cuda
from ._checks import check_device, check_seed, float_dtype, positive_int
from .keyed import batch_offset
from .module import Module, Parameter, reserve_parameters

#: The engine's cell registry by name: {"lstm": {"name", "torch_mode", "layer", "layer_option",
#: "gates", "states"}, ...} (cpp/src/cells/registry.h is the one list).
CELLS: dict[str, dict[str, Any]] = {c["name"]: c for c in _core.cells()}
_INITS = ("uniform", "orthogonal", "identity")
#: Cells with a forget gate in block 1 (LSTM's i, f, g, o; gated-forget's i, f, r): forget_bias.
FORGET_GATE_CELLS = ("lstm", "gated-forget")

State = Any  # h [L*D, B, H], or (h, c) for an LSTM


def _probability(value: Any, name: str, owner: str) -> float:
    """``value`` as a float in [0, 1), else TypeError/ValueError naming ``owner`` and ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{owner}: {name} must be a number, got {type(value).__name__}")
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{owner}: {name} must be in [0, 1), got {value}")
    return float(value)


def _host_state(state: State) -> State:
    """A state of DeviceArrays as numpy arrays (None stays None)."""
    if isinstance(state, tuple):
        return tuple(None if a is None else a.numpy() for a in state)
    return None if state is None else state.numpy()


class _Recurrent(Module):
    """Shared implementation of :class:`RNN`, :class:`LSTM` and :class:`GRU`.

    ``cell`` is a registry name (:data:`CELLS`): the subclasses pick it from their PyTorch-style
    options (``nonlinearity``, ``reset_after``). ``device``: "cpu"; "cuda" (numpy arrays in and
    out, copied, or device arrays in and out without a copy: inputs with
    ``__cuda_array_interface__`` or ``__dlpack__`` on the GPU, outputs
    :class:`rnncore.cuda.DeviceArray`; a RuntimeError in a build without the CUDA backend or
    without a GPU; every cell and option runs there);
    "cuda-sim" runs the CUDA backend's algorithm on the CPU (slow; for testing). See
    :mod:`rnncore.cuda`.
    """

    _mode = ""

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bias: bool,
        batch_first: bool,
        dropout: float,
        bidirectional: bool,
        dtype: Any,
        seed: int | None,
        init: str,
        forget_bias: float | None = None,
        device: str = "cpu",
        proj_size: int = 0,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.input_size = positive_int(input_size, "input_size", owner)
        self.hidden_size = positive_int(hidden_size, "hidden_size", owner)
        self.num_layers = positive_int(num_layers, "num_layers", owner)
        if isinstance(proj_size, bool) or not isinstance(proj_size, (int, np.integer)):
            raise TypeError(
                f"{owner}: proj_size must be an integer, got {type(proj_size).__name__}"
            )
        if proj_size != 0 and not 0 < proj_size < self.hidden_size:
            raise ValueError(
                f"{owner}: proj_size must be 0 or in [1, hidden_size={self.hidden_size}), "
                f"got {proj_size}"
            )
        self.proj_size = int(proj_size)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.floating)):
            raise TypeError(f"{owner}: dropout must be a number, got {type(dropout).__name__}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"{owner}: dropout must be in [0, 1), got {dropout}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"{owner}: seed must be an integer or None, got {type(seed).__name__}")
        self.dropout = float(dropout)
        self.zoneout = _probability(zoneout, "zoneout", owner)
        self.recurrent_dropout = _probability(recurrent_dropout, "recurrent_dropout", owner)
        if self.proj_size and (self.zoneout or self.recurrent_dropout):
            raise ValueError(
                f"{owner}: zoneout and recurrent_dropout do not combine with proj_size"
            )
        if not isinstance(layer_norm, (bool, np.bool_)):
            raise TypeError(f"{owner}: layer_norm must be True or False, got {layer_norm!r}")
        self.layer_norm = bool(layer_norm)
        if self.layer_norm and not CELLS[cell]["layer_norm"]:
            have = ", ".join(n for n, c in CELLS.items() if c["layer_norm"])
            msg = f"{owner}: layer_norm is for the cells {have}, not {cell!r}"
            if cell == "gru_v1":
                msg += (
                    " (pass reset_after=True: the reset-before GRU's W_hn (r*h) is a second "
                    "recurrent product, with no one row to normalise)"
                )
            raise ValueError(msg)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.bidirectional = bool(bidirectional)
        self.dtype = float_dtype(dtype, owner)
        self.device = check_device(device, owner, gpu=True)
        self.cell = cell
        self._has_c = CELLS[cell]["states"] == 2  # the state is (h, c)
        reserve_parameters(self._num_parameters(), owner)  # before the engine allocates
        self._core = self._new_core(self.device)
        # On a GPU inside a model that runs wholly there (see Module.to), the parameters and
        # gradients live in device memory (these two DeviceArrays); otherwise in the engine's
        # host buffers, uploaded by every GPU call.
        self._dparams: _cuda.DeviceArray | None = None
        self._dgrads: _cuda.DeviceArray | None = None
        flat, gflat = self._core.params, self._core.grads
        for name, _, _ in self._core.param_info():
            self._parameters.append(Parameter(name, flat, gflat))  # bound to their slices below
        self._bind(flat, gflat)
        self._rng = np.random.default_rng(check_seed(seed, owner))
        # Dropout masks come from (seed of this layer, call counter): reproducible runs.
        self._dropout_seed = int(self._rng.integers(0, 2**63 - 1))
        self._calls = 0
        self.record_step_grad_norms = False
        self.step_grad_norms: np.ndarray | None = None
        self.reset_parameters(init, forget_bias)

    def _new_core(self, device: str) -> Any:
        """An engine layer of this configuration on ``device`` (parameters zero)."""
        core_cls = _core.RecurrentF32 if self.dtype == np.float32 else _core.RecurrentF64
        return core_cls(
            self.cell,
            self.input_size,
            self.hidden_size,
            self.num_layers,
            self.bidirectional,
            self.bias,
            self.dropout,
            device,
            self.proj_size,
            self.zoneout,
            self.recurrent_dropout,
            self.layer_norm,
        )

    def _bind(self, flat: Any, gflat: Any) -> None:
        """Points the parameters at their slices of flat buffers (the engine's, or device)."""
        for p, (_, offset, shape) in zip(self._parameters, self._core.param_info(), strict=True):
            size = math.prod(shape)
            p._data = flat[offset : offset + size].reshape(shape)
            p._grad = gflat[offset : offset + size].reshape(shape)

    def _check_move(self, device: str) -> None:
        name = check_device(device, f"{type(self).__name__}.to", gpu=True)
        if self.int8_inference and name != "cpu":
            raise ValueError(
                f"{type(self).__name__}.to: int8 inference runs on the CPU engine; set "
                f"int8_inference = False before moving to {name!r}"
            )

    def _move_to(self, device: str) -> None:
        self._check_move(device)
        name = check_device(device, f"{type(self).__name__}.to", gpu=True)
        if name == self.device:
            return
        self._keep_on_device(False)
        core = self._new_core(name)
        core.params[...] = self._core.params
        core.grads[...] = self._core.grads
        self._saved.clear()
        self._core, self.device = core, name
        self._bind(core.params, core.grads)

    def _keep_on_device(self, on: bool) -> None:
        """Parameters and gradients in the GPU's memory (on), or in the engine's host buffers
        (off); Module.to calls it for the layers of a model that runs wholly on the GPU."""
        if on and self.device != "cpu" and self._dparams is None:
            self._dparams = _cuda.to_device(self._core.params, self.device, self.dtype)
            self._dgrads = _cuda.to_device(self._core.grads, self.device, self.dtype)
            self._bind(self._dparams, self._dgrads)
        elif not on and self._dparams is not None:
            self._core.params[...] = self._dparams.numpy()
            self._core.grads[...] = self._dgrads.numpy()
            self._dparams = self._dgrads = None
            self._bind(self._core.params, self._core.grads)
        self._core.discard_saved()

    @property
    def int8_inference(self) -> bool:
        """Whether inference forwards multiply by W_ih and W_hh in int8 (default False).

        As PyTorch's ``quantize_dynamic``: each weight row quantized to int8 on every call (the
        parameters stay float32, so training, optimizers and checkpoints are unaffected), each
        input row quantized on the fly to 7 bits, products accumulated exactly in int32 and
        scaled back; biases, gates, states and ``proj_size``'s W_hr stay float32. Batch-1
        latency is what it is for (``bench/bench_rnn.py``'s b1_latency rows); outputs differ
        from float32 by the quantization error, a few 1e-3 on a PyTorch-initialised LSTM. A NaN
        or infinite input row (or weight row) gives NaN in every output it reaches, where float32
        may saturate an infinity to a finite value. Training-mode forwards ignore it. float32
        layers on the CPU without layer norm only (ValueError otherwise: layer norm scales the
        quantization error up to the gates').
        """
        return bool(self._core.int8_inference)

    @int8_inference.setter
    def int8_inference(self, on: bool) -> None:
        owner = f"{type(self).__name__}.int8_inference"
        if not isinstance(on, (bool, np.bool_)):
            raise TypeError(f"{owner}: must be True or False, got {on!r}")
        try:
            self._core.int8_inference = bool(on)
        except ValueError as e:
            raise ValueError(f"{owner}: {e}") from None

    # ---- parameters ------------------------------------------------------------------------
    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def flat_parameters(self) -> Any:
        """All parameters as one flat array [P] (a view; PyTorch's order; a DeviceArray when
        they live on the GPU)."""
        return self._core.params if self._dparams is None else self._dparams

    @property
    def flat_gradients(self) -> Any:
        """All parameter gradients as one flat array [P] (a view, same layout)."""
        return self._core.grads if self._dgrads is None else self._dgrads

    def zero_grad(self) -> None:
        """Set every parameter gradient to zero (one call over the flat buffer)."""
        if self._dgrads is None:
            self._core.zero_grad()
        else:
            self._dgrads[...] = 0

    def _reseed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        self._dropout_seed = int(self._rng.integers(0, 2**63 - 1))
        self._calls = 0

    @property
    def saved_forwards(self) -> int:
        """How many training forwards wait for their backward (the engine keeps them)."""
        return int(self._core.saved_forwards)

    def _discard_own_saved(self) -> None:
        self._core.discard_saved()

    def reset_parameters(self, init: str = "uniform", forget_bias: float | None = None) -> None:
        """(Re)initialise the weights.

        Args:
            init: ``"uniform"`` — PyTorch's default, every weight and bias ~ U(-1/sqrt(H),
                1/sqrt(H)); ``"orthogonal"`` — each [H, H] gate block of weight_hh orthogonal,
                weight_ih ~ U(-1/sqrt(H), 1/sqrt(H)), biases zero; ``"identity"`` — IRNN (Le et
                al. 2015, RNN only): weight_hh = I, weight_ih ~ N(0, 0.001²), biases zero.
            forget_bias: cells with a forget gate (LSTM, GatedRNN with it): the forget-gate slice
                of bias_ih is set to this value (and of bias_hh to 0), e.g. 1.0 (Jozefowicz et
                al. 2015).
        """
        owner = type(self).__name__
        if init not in _INITS:
            raise ValueError(f"{owner}: init must be one of {_INITS}, got {init!r}")
        if init == "identity" and CELLS[self.cell]["layer"] != "RNN":
            raise ValueError(f"{owner}: init='identity' (IRNN) is for RNN layers only")
        H = self.hidden_size
        k = 1.0 / math.sqrt(H)
        rng = self._rng
        for p in self._parameters:
            if p.name.startswith("ln_"):  # layer norm: gains 1, the cell state's shift 0
                p.data[...] = 1.0 if p.name.startswith("ln_weight") else 0.0
                continue
            is_hh = p.name.startswith("weight_hh")
            is_bias = p.name.startswith("bias")
            if init == "uniform" or (init == "orthogonal" and p.name.startswith("weight_ih")):
                p.data[...] = rng.uniform(-k, k, size=p.shape)
            elif is_bias:
                p.data[...] = 0.0
            elif init == "identity":
                p.data[...] = np.eye(H) if is_hh else rng.normal(0.0, 1e-3, size=p.shape)
            elif p.name.startswith("weight_hr"):  # the projection: as weight_ih
                p.data[...] = rng.uniform(-k, k, size=p.shape)
            else:  # orthogonal recurrent blocks ([H, R]: orthonormal columns when R < H)
                R = p.shape[1]
                for g in range(p.shape[0] // H):
                    q, r = np.linalg.qr(rng.normal(size=(H, R)))
                    p.data[g * H : (g + 1) * H] = q * np.sign(np.diag(r))
        if forget_bias is not None:
            if self.cell not in FORGET_GATE_CELLS:
                raise ValueError(f"{owner}: forget_bias needs a forget gate (LSTM, GatedRNN)")
            if not self.bias:
                raise ValueError(f"{owner}: forget_bias needs bias=True")
            for p in self._parameters:
                if p.name.startswith("bias_ih"):
                    p.data[H : 2 * H] = float(forget_bias)
                elif p.name.startswith("bias_hh"):
                    p.data[H : 2 * H] = 0.0

    def _num_parameters(self) -> int:
        """P, the flat buffer's length, from the sizes alone (no allocation): per layer and
        direction G*H*(I_l + R) weights, 2*G*H biases, R*H for a projection, 2*G*H layer-norm
        gains (+ 2*H with a cell state); I_l = D*R above layer 0."""
        G, H, R = CELLS[self.cell]["gates"], self.hidden_size, self.state_size
        D, L = self.num_directions, self.num_layers
        lane = G * H * R + (2 * G * H if self.bias else 0) + (R * H if self.proj_size else 0)
        if self.layer_norm:
            lane += 2 * G * H + (2 * H if self._has_c else 0)
        return D * (G * H * self.input_size + lane) + (L - 1) * D * (G * H * D * R + lane)

    @property
    def state_size(self) -> int:
        """R: the size of h and of each direction's output (proj_size if set, else hidden_size)."""
        return self.proj_size or self.hidden_size

    def zero_state(self, batch_size: int) -> State:
        """The all-zero initial state for ``batch_size`` sequences, in the layer's dtype.

        Returns h [L*D, B, R], or (h, c) with c [L*D, B, H] for a cell with a cell state (LSTM).
        """
        lead = (self.num_layers * self.num_directions, int(batch_size))
        h = np.zeros(lead + (self.state_size,), dtype=self.dtype)
        if not self._has_c:
            return h
        return h, np.zeros(lead + (self.hidden_size,), dtype=self.dtype)

    # ---- forward / backward ----------------------------------------------------------------
    def _time_major(self, a: Any, name: str, where: str) -> np.ndarray:
        if not isinstance(a, np.ndarray):
            if _cuda._is_device_array(a):
                raise TypeError(
                    f"{where}: {name} is in GPU memory ({type(a).__name__}) and the layer is on "
                    f"{self.device!r}: move the layer with .to('cuda'), or pass a numpy array"
                )
            raise TypeError(f"{where}: {name} must be a numpy array, got {type(a).__name__}")
        if a.ndim != 3:
            layout = "[B, T, F]" if self.batch_first else "[T, B, F]"
            raise ValueError(f"{where}: {name} must be 3-d {layout}, got shape {a.shape}")
        if self.batch_first:
            a = a.transpose(1, 0, 2)
        return np.ascontiguousarray(a)

    def _state_arrays(self, state: Any, name: str, where: str) -> tuple[Any, Any]:
        if state is None:
            return None, None
        arr = state if isinstance(state, np.ndarray) else None
        if arr is None and isinstance(state, (list, tuple)) and state:
            if all(isinstance(v, (int, np.integer)) for v in state):
                arr = np.asarray(state)
        if arr is not None and arr.ndim == 1 and arr.dtype.kind in "iu":
            raise TypeError(
                f"{where}: {name} looks like sequence lengths (1-d integers); the second "
                "positional argument is the initial state, as in PyTorch: pass lengths=..."
            )
        if self._has_c:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise TypeError(f"{where}: {name} of an LSTM must be a tuple (h, c) or None")
            h, c = state
        else:
            if isinstance(state, (tuple, list)):
                raise TypeError(
                    f"{where}: {name} of a {self._mode} must be an array h, not a tuple"
                )
            h, c = state, None
        return (
            None if h is None else np.ascontiguousarray(h) if isinstance(h, np.ndarray) else h,
            None if c is None else np.ascontiguousarray(c) if isinstance(c, np.ndarray) else c,
        )

    def forward(
        self, input: np.ndarray, hx: State = None, *, lengths: Any = None, state: State = None
    ) -> tuple[np.ndarray, State]:
        """Run the whole sequence batch: ``layer(x, hx)`` as PyTorch's.

        Args:
            input: x [T, B, I] ([B, T, I] if batch_first), the layer's dtype.
            hx: initial state h [L*D, B, R] (LSTM: (h, c), c [L*D, B, H]), or None for zeros.
            lengths: keyword only: None, or B integers in [1, T], each sequence's length.
                Outputs past a sequence's end are zero; its final state is the state at its own
                last step (PyTorch's packed-sequence semantics).
            state: keyword alias of ``hx`` (earlier rnncore releases), not both.

        On a GPU layer, x (or a state) in GPU memory makes a device call: the arrays are read
        where they lie (host states are uploaded) and y and the final state are
        :class:`rnncore.cuda.DeviceArray` s; :meth:`backward` then takes device or host arrays.

        Returns:
            y [T, B, D*R] ([B, T, D*R] if batch_first) and the final state, same structure as
            ``hx``. In training mode the call is saved for ``backward``; several calls before
            backward are consumed newest first (see :class:`~rnncore.nn.Module`).
        """
        where = f"{type(self).__name__}.forward"
        hx_name = "hx"  # errors name the argument as the caller spelled it
        if state is not None:
            if hx is not None:
                raise TypeError(f"{where}: pass the initial state as hx or as state=, not both")
            hx, hx_name = state, "state"
        x = input
        where = f"{type(self).__name__}.forward"
        h0, c0 = self._state_arrays(hx, hx_name, where)
        on_device = self.device != "cpu" and any(_cuda._is_device_array(a) for a in (x, h0, c0))
        xt = None if on_device else self._time_major(x, "x", where)
        lens = None
        if lengths is not None:
            try:
                lens = np.asarray(lengths)
            except (ValueError, TypeError, OverflowError) as e:
                raise ValueError(
                    f"{where}: lengths must be B integers, got {lengths!r} ({e})"
                ) from None
            if lens.dtype == bool or lens.dtype.kind not in "iu":
                raise TypeError(f"{where}: lengths must be integers, got dtype {lens.dtype}")
            if lens.ndim != 1:
                raise ValueError(f"{where}: lengths must be 1-d [B], got shape {lens.shape}")
            lens = np.ascontiguousarray(lens, dtype=np.int64)
        if on_device:
            return self._forward_device(x, lens, h0, c0, hx_name, where)
        if self._dparams is not None:  # parameters on the GPU: host arrays in, host arrays out
            y, st = self._forward_device(x, lens, h0, c0, hx_name, where)
            return y.numpy(), _host_state(st)
        self._calls += 1
        try:
            y, hn, cn = self._core.forward(
                xt,
                lens,
                h0,
                c0,
                self.training,
                (self._dropout_seed + self._calls) % 2**64,
                batch_offset(),
            )
        except (ValueError, TypeError) as e:
            msg = f"{hx_name} ({e})" if str(e).startswith(("h0", "c0")) else str(e)
            raise type(e)(f"{where}: {msg}") from None
        self._check_saved_memory()
        if self.batch_first:
            y = y.transpose(1, 0, 2)
        return y, ((hn, cn) if self._has_c else hn)

    def _check_saved_memory(self) -> None:
        """After a training forward: warn once if unconsumed forwards hold too much memory."""
        if self.training:  # the engine keeps them, so it counts them
            self._check_saved(self._core.saved_forwards, self._core.saved_bytes, 5)

    def backward(self, dy: np.ndarray | None, dstate: State = None) -> tuple[np.ndarray, State]:
        """BPTT through the newest unconsumed training-mode forward (each forward allows one
        backward; several forwards are consumed last in, first out).

        Args:
            dy: gradient of the loss w.r.t. y, shaped like y; None for zeros.
            dstate: gradient w.r.t. the final state (LSTM: (dh, dc), either may be None), or None.

        Returns:
            dx shaped like x, and the gradient w.r.t. the initial state (same structure as the
            state). Parameter gradients accumulate into ``p.grad``. With
            ``record_step_grad_norms = True``, ``step_grad_norms`` then holds ||dL/dh_t|| (over
            the batch) for every layer/direction and step: float64 [L*D, T], the diagnostic of
            vanishing and exploding gradients.
        """
        where = f"{type(self).__name__}.backward"
        dhn, dcn = self._state_arrays(dstate, "dstate", where)
        if self.device != "cpu" and any(_cuda._is_device_array(a) for a in (dy, dhn, dcn)):
            return self._backward_device(dy, dhn, dcn, where)
        if self._dparams is not None:  # parameters on the GPU: host arrays in, host arrays out
            dx, dst = self._backward_device(dy, dhn, dcn, where)
            return dx.numpy(), _host_state(dst)
        dyt = None if dy is None else self._time_major(dy, "dy", where)
        try:
            dx, dh0, dc0, norms = self._core.backward(dyt, dhn, dcn, self.record_step_grad_norms)
        except (ValueError, TypeError) as e:
            msg = str(e)
            if msg.startswith(("dhn", "dcn")):
                msg = f"dstate ({msg})"
            raise type(e)(f"{where}: {msg}") from None
        except RuntimeError as e:
            raise RuntimeError(f"{where}: {e}") from None
        self.step_grad_norms = norms
        if self.batch_first:
            dx = dx.transpose(1, 0, 2)
        return dx, ((dh0, dc0) if self._has_c else dh0)

    # ---- device arrays (a layer on a GPU) ---------------------------------------------------
    def _on_device(
        self, a: Any, name: str, where: str, shape: tuple[int, ...] | None, ndim: int = 3
    ) -> Any:
        """``a`` as the layer's device memory (read in place: an array on the layer's GPU; a host
        array is uploaded), checked: the layer's dtype, ``ndim`` axes, ``shape`` if given."""
        if _cuda._is_device_array(a):
            b = _cuda._borrow(a, self.device, name, where)
        else:
            host = np.asarray(a)
            if host.dtype != self.dtype:
                raise TypeError(f"{where}: {name} must be {self.dtype}, got {host.dtype}")
            d = _cuda.to_device(host, self.device, self.dtype)
            b = _cuda._Borrowed(d.ptr, d.shape, d.dtype, d)
        if b.dtype != self.dtype:
            raise TypeError(f"{where}: {name} must be {self.dtype} like the layer, got {b.dtype}")
        if len(b.shape) != ndim or (shape is not None and b.shape != shape):
            want = shape if shape is not None else f"{ndim}-d"
            raise ValueError(f"{where}: {name} must have shape {want}, got {b.shape}")
        return b

    def _swapped(self, b: Any) -> _cuda.DeviceArray:
        """A [n1, n0, n2] copy of device memory [n0, n1, n2] (batch-first <-> time-major)."""
        return _cuda._swap01(b.ptr, tuple(b.shape), self.dtype, self.device)

    def _forward_device(
        self, x: Any, lens: np.ndarray | None, h0: Any, c0: Any, hx_name: str, where: str
    ) -> tuple[Any, State]:
        """forward() on device arrays: x read where it lies, y and the state DeviceArrays."""
        xb = self._on_device(x, "x", where, None)
        if self.batch_first:
            xb = self._swapped(xb)
        steps, batch, features = xb.shape
        if steps < 1 or batch < 1:
            raise ValueError(f"{where}: x: T and B must be >= 1, got shape {xb.shape}")
        if features != self.input_size:
            raise ValueError(
                f"{where}: x must be [T, B, I={self.input_size}], got shape {xb.shape}"
            )
        if lens is not None and lens.shape != (batch,):
            raise ValueError(f"{where}: lengths must be [B={batch}], got shape {lens.shape}")
        lead = self.num_layers * self.num_directions
        hb = (
            None
            if h0 is None
            else self._on_device(h0, hx_name, where, (lead, batch, self.state_size))
        )
        cb = None
        if c0 is not None:
            cb = self._on_device(c0, hx_name, where, (lead, batch, self.hidden_size))
        y = _cuda.DeviceArray(
            (steps, batch, self.num_directions * self.state_size), self.dtype, self.device
        )
        hn = _cuda.DeviceArray((lead, batch, self.state_size), self.dtype, self.device)
        cn = (
            _cuda.DeviceArray((lead, batch, self.hidden_size), self.dtype, self.device)
            if self._has_c
            else None
        )
        self._calls += 1
        try:
            self._core.forward_device(
                xb.ptr,
                steps,
                batch,
                lens,
                0 if hb is None else hb.ptr,
                0 if cb is None else cb.ptr,
                y.ptr,
                hn.ptr,
                0 if cn is None else cn.ptr,
                0 if self._dparams is None else self._dparams.ptr,  # 0: the engine's own
                self.training,
                (self._dropout_seed + self._calls) % 2**64,
                True,
                keep=True,
                batch_offset=batch_offset(),
            )
        except (ValueError, TypeError) as e:
            raise type(e)(f"{where}: {e}") from None
        self._check_saved_memory()
        if self.batch_first:
            y = self._swapped(y)
        return y, ((hn, cn) if self._has_c else hn)

    def _backward_device(self, dy: Any, dhn: Any, dcn: Any, where: str) -> tuple[Any, State]:
        """backward() on device arrays: dx and the initial state's gradient as DeviceArrays;
        parameter gradients accumulate into ``p.grad`` (on the host, or on the GPU with the
        parameters) as with numpy arrays; ``step_grad_norms`` (a host array) as there."""
        if not self._core.has_saved_forward:
            self._core.backward_device(None, 0, 0, 0, 0, 0, 0, 0, 0)  # raises, naming why
        steps, batch = self._core.saved_shape
        lead, width = self.num_layers * self.num_directions, self.num_directions * self.state_size
        dyb = None
        if dy is not None:
            shape = (batch, steps, width) if self.batch_first else (steps, batch, width)
            dyb = self._on_device(dy, "dy", where, shape)
            if self.batch_first:
                dyb = self._swapped(dyb)
        dhb = (
            None
            if dhn is None
            else self._on_device(dhn, "dstate", where, (lead, batch, self.state_size))
        )
        dcb = None
        if dcn is not None:
            if not self._has_c:
                raise ValueError(f"{where}: dstate: only an LSTM has a cell state")
            dcb = self._on_device(dcn, "dstate", where, (lead, batch, self.hidden_size))
        norms = np.zeros((lead, steps)) if self.record_step_grad_norms else None
        dx = _cuda.DeviceArray((steps, batch, self.input_size), self.dtype, self.device)
        dh0 = _cuda.DeviceArray((lead, batch, self.state_size), self.dtype, self.device)
        dc0 = (
            _cuda.DeviceArray((lead, batch, self.hidden_size), self.dtype, self.device)
            if self._has_c
            else None
        )
        try:
            self._core.backward_device(
                None,
                0 if dyb is None else dyb.ptr,
                0 if dhb is None else dhb.ptr,
                0 if dcb is None else dcb.ptr,
                dx.ptr,
                dh0.ptr,
                0 if dc0 is None else dc0.ptr,
                0 if self._dparams is None else self._dparams.ptr,  # 0: the engine's own ...
                0 if self._dgrads is None else self._dgrads.ptr,  # ... and gradients
                0 if norms is None else norms.ctypes.data,
            )
        except (ValueError, TypeError, RuntimeError) as e:
            raise type(e)(f"{where}: {e}") from None
        self.step_grad_norms = norms
        if self.batch_first:
            dx = self._swapped(dx)
        return dx, ((dh0, dc0) if self._has_c else dh0)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.cell == "rnn_relu":
            s += ", nonlinearity='relu'"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.zoneout:
            s += f", zoneout={self.zoneout}"
        if self.recurrent_dropout:
            s += f", recurrent_dropout={self.recurrent_dropout}"
        if self.layer_norm:
            s += ", layer_norm=True"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.cell == "gru_v1":
            s += ", reset_after=False"
        if self.dtype != np.float32:
            s += f", dtype='{self.dtype}'"
        if self.device != "cpu":
            s += f", device='{self.device}'"
        return s


class RNN(_Recurrent):
    """Elman RNN: h_t = act(W_ih x_t + b_ih + W_hh h_(t-1) + b_hh), act = tanh or relu.

    Shapes: x [T, B, I] -> y [T, B, D*H], state h [L*D, B, H]. ``init="identity"`` with
    ``nonlinearity="relu"`` gives the IRNN of Le et al. (2015).
    """

    _mode = "RNN"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        dtype: Any = "float32",
        seed: int | None = None,
        *,
        init: str = "uniform",
        device: str = "cpu",
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(
            "rnn" if nonlinearity == "tanh" else "rnn_relu",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            dtype,
            seed,
            init,
            device=device,
            zoneout=zoneout,
            recurrent_dropout=recurrent_dropout,
        )


class LSTM(_Recurrent):
    """LSTM (gate order i, f, g, o as PyTorch): c' = f*c + i*g, h' = o*tanh(c').

    Shapes: x [T, B, I] -> y [T, B, D*H], state (h, c), each [L*D, B, H].

    ``proj_size=P`` (0 < P < H) is PyTorch's LSTM with projections (LSTMP, Sak et al. 2014):
    h' = W_hr (o*tanh(c')) has size P, so y [T, B, D*P], h [L*D, B, P], c [L*D, B, H],
    weight_hh [4H, P], layers above the first take D*P inputs, and every layer and direction
    has ``weight_hr_l{k}[_reverse]`` [P, H] (PyTorch's names: state_dicts move across).
    """

    _mode = "LSTM"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        dtype: Any = "float32",
        seed: int | None = None,
        *,
        init: str = "uniform",
        forget_bias: float | None = None,
        device: str = "cpu",
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
        proj_size: int = 0,
        layer_norm: bool = False,
    ) -> None:
        super().__init__(
            "lstm",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            dtype,
            seed,
            init,
            forget_bias,
            device=device,
            zoneout=zoneout,
            recurrent_dropout=recurrent_dropout,
            proj_size=proj_size,
            layer_norm=layer_norm,
        )


class GRU(_Recurrent):
    """GRU (gate order r, z, n as PyTorch): h' = (1-z)*n + z*h.

    ``reset_after=True`` (PyTorch/cuDNN): n = tanh(W_in x + b_in + r*(W_hn h + b_hn));
    ``reset_after=False`` (Cho et al. 2014): n = tanh(W_in x + b_in + W_hn (r*h) + b_hn).
    Shapes: x [T, B, I] -> y [T, B, D*H], state h [L*D, B, H].
    """

    _mode = "GRU"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        dtype: Any = "float32",
        seed: int | None = None,
        *,
        init: str = "uniform",
        reset_after: bool = True,
        device: str = "cpu",
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
        layer_norm: bool = False,
    ) -> None:
        self.reset_after = bool(reset_after)
        super().__init__(
            "gru" if self.reset_after else "gru_v1",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            dtype,
            seed,
            init,
            device=device,
            zoneout=zoneout,
            recurrent_dropout=recurrent_dropout,
            layer_norm=layer_norm,
        )


#: GatedRNN's gate sets, and the registry cell each one runs (all three gates: the LSTM).
GATE_SETS: dict[tuple[str, ...], str] = {
    (): "gated-residual",
    ("input",): "gated-input",
    ("input", "forget"): "gated-forget",
    ("input", "forget", "output"): "lstm",
}


class GatedRNN(_Recurrent):
    """The lecture's LSTM built one gate at a time (state s, candidate r = tanh(U_r x + V_r s +
    b_r), each gate g = σ(U_g x + V_g s + b_g)):

    - ``gates=()``, the residual cell: s' = s + r;
    - ``("input",)``, write access: s' = s + i ⊙ r;
    - ``("input", "forget")``: s' = f ⊙ s + i ⊙ r;
    - ``("input", "forget", "output")``, read access: h' = o ⊙ tanh(s') is what the next step
      and the next layer see, instead of s' — the LSTM (this layer then is one, state (h, c)).

    Without the output gate the output and the state are s: y [T, B, D*H], state h [L*D, B, H]
    holding s. weight_ih/weight_hh/bias_ih/bias_hh stack the gate blocks in the order (input,
    forget, candidate, output) restricted to the gates present, so that with all three gates an
    LSTM's state_dict loads as it is and gives the same numbers. Arguments otherwise as
    :class:`LSTM` (the engine runs the same fused forward and backward, lengths, layers and
    directions for every gate set).
    """

    _mode = "GatedRNN"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        gates: Any = (),
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        dtype: Any = "float32",
        seed: int | None = None,
        *,
        init: str = "uniform",
        forget_bias: float | None = None,
        device: str = "cpu",
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
    ) -> None:
        if isinstance(gates, str) or not isinstance(gates, (tuple, list)):
            raise TypeError(
                f"GatedRNN: gates must be a tuple of gate names, got {type(gates).__name__}"
            )
        key = tuple(gates)
        if key not in GATE_SETS:
            allowed = ", ".join(repr(k) for k in GATE_SETS)
            raise ValueError(f"GatedRNN: gates must be one of {allowed}, got {key!r}")
        self.gates = key
        super().__init__(
            GATE_SETS[key],
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            dtype,
            seed,
            init,
            forget_bias,
            device=device,
            zoneout=zoneout,
            recurrent_dropout=recurrent_dropout,
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gates={self.gates!r}"


def _option_value(key: str, text: str) -> Any:
    """A registry layer_option's value: "relu" -> "relu", "0"/"1" -> int, and GatedRNN's gates
    "input,forget" -> ("input", "forget")."""
    if key == "gates":
        return tuple(g for g in text.split(",") if g)
    return int(text) if text.isdigit() else text


def recurrent_layer(cell: str, input_size: int, hidden_size: int, **kwargs: Any) -> _Recurrent:
    """A recurrent layer for a registered cell name (see :data:`CELLS`).

    "rnn" -> ``RNN(nonlinearity="tanh")``, "rnn_relu" -> ``RNN(nonlinearity="relu")``, "lstm" ->
    ``LSTM``, "gru" -> ``GRU``, "gru_v1" -> ``GRU(reset_after=False)``, "gated-input" ->
    ``GatedRNN(gates=("input",))`` (and the other gated cells): the registry names each
    cell's layer class and the constructor keyword that selects it, so a new cell needs no edit
    here. ``kwargs`` go to the class (num_layers, bidirectional, dropout, dtype, seed, init, ...).

    Shapes: as the layer class, x [T, B, I] -> y [T, B, D*H].
    """
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
    info = CELLS[cell]
    if info["layer_option"]:
        key, value = info["layer_option"].split("=", 1)
        kwargs[key] = _option_value(key, value)
    layer_cls = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU, "GatedRNN": GatedRNN}[info["layer"]]
    return layer_cls(input_size, hidden_size, **kwargs)
