"""rnncore's engine inside PyTorch: drop-ins for torch.nn.RNN, LSTM and GRU with autograd.

``rnncore.torch.LSTM`` *is a* ``torch.nn.LSTM`` (same constructor, parameter names, state_dict,
call ``m(x, hx)`` with tensors or a PackedSequence, train/eval, ``double()``/``float()``), whose
forward and backward run in rnncore's C++ engine through a ``torch.autograd.Function``. Swap one
line of a PyTorch program::

    import rnncore.torch as rtorch
    rnn = rtorch.LSTM(128, 256, num_layers=2, batch_first=True)   # was torch.nn.LSTM(...)

The parameters live in the engine's flat buffer: each ``torch.nn.Parameter`` is a view of it, so
optimizers, ``load_state_dict`` and ``torch.save`` work on them as usual and a forward copies no
weights. Activations cross zero-copy too: a contiguous CPU input is read in place, outputs are
the engine's arrays. Importing this module needs PyTorch; rnncore itself never does.

On a GPU (``.cuda()``, ``device="cuda"``; a CUDA build of rnncore, see :mod:`rnncore.cuda`) the
layer runs rnncore's CUDA backend on the tensors where they lie: inputs, states, outputs and
gradients stay torch CUDA tensors and nothing goes through the host, so the rest of the model,
the loss and the optimizer stay on the GPU too (the parameters are packed into one flat device
buffer per call, a device-to-device copy).

Beyond PyTorch's options: ``zoneout=`` and ``recurrent_dropout=`` (keyword, all three),
``layer_norm=True`` (LSTM, GRU: adds ``ln_*`` parameters), ``GRU(reset_after=False)`` (Cho et al.'s
GRU, same parameter names) and :class:`GatedRNN`, the lecture's gated cells.
"""

from __future__ import annotations

import math
from typing import Any

try:
    import torch
    from torch import nn
    from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence
except ImportError as e:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "rnncore.torch needs PyTorch (pip install torch); the rest of rnncore does not"
    ) from e

import numpy as np

from . import _core
from .nn.recurrent import CELLS, GATE_SETS

__all__ = ["RNN", "LSTM", "GRU", "GatedRNN"]

_ENGINE_DTYPES = {torch.float32: _core.RecurrentF32, torch.float64: _core.RecurrentF64}


class _Engine:
    """One engine layer and torch's view of its flat parameter buffer."""

    def __init__(self, cfg: dict[str, Any], dtype: torch.dtype) -> None:
        self.core = _ENGINE_DTYPES[dtype](**cfg)
        self.dtype = dtype
        self.flat = torch.from_numpy(self.core.params)  # shares the engine's memory
        self.info = [(name, off, tuple(shape)) for name, off, shape in self.core.param_info()]
        base, item = self.flat.data_ptr(), self.flat.element_size()
        self.ptrs = [base + off * item for _, off, _ in self.info]

    def view(self, i: int) -> torch.Tensor:
        """Parameter i of the flat buffer as a tensor of its shape (a view)."""
        _, off, shape = self.info[i]
        return self.flat[off : off + math.prod(shape)].view(shape)

    def holds(self, params: list[torch.Tensor]) -> bool:
        """Whether ``params`` are exactly this buffer's views (then a forward copies nothing)."""
        return all(
            p.dtype == self.dtype and p.data_ptr() == ptr and p.is_contiguous()
            for p, ptr in zip(params, self.ptrs, strict=True)
        )

    def load(self, params: list[torch.Tensor]) -> None:
        """Copy parameter values into the buffer."""
        with torch.no_grad():
            for i, p in enumerate(params):
                self.view(i).copy_(p)


def _numpy(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().contiguous().numpy()


def _refuse_double_backward() -> None:
    """create_graph=True asks for a differentiable backward, which the engine's BPTT is not."""
    if torch.is_grad_enabled():
        raise RuntimeError(
            "rnncore.torch: double backward (create_graph=True) through a recurrent layer is "
            "not supported; use torch.nn's layer for higher-order gradients"
        )


def _address(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


class _DeviceEngine:
    """One engine layer on a GPU device ("cuda", or "cuda-sim" for the tests) that reads the
    tensors' own memory: the parameters come in as one flat buffer per call."""

    def __init__(self, cfg: dict[str, Any], dtype: torch.dtype, device: str) -> None:
        self.core = _ENGINE_DTYPES[dtype](**cfg, device=device)
        self.dtype = dtype
        self.info = [(name, off, tuple(shape)) for name, off, shape in self.core.param_info()]
        self.size = int(self.core.params.size)
        # In param_info's order the parameters tile the buffer (one cat packs them); checked,
        # not assumed, so a layout with gaps still packs correctly, slice by slice.
        ends = [off + math.prod(shape) for _, off, shape in self.info]
        self.tiled = [off for _, off, _ in self.info] == [0, *ends[:-1]] and ends[-1] == self.size
        dirs = 2 if cfg["bidirectional"] else 1
        self.lanes = cfg["num_layers"] * dirs  # L*D
        self.hidden = cfg["hidden_size"]  # H: c's width
        self.width = cfg["proj_size"] or cfg["hidden_size"]  # R: h's width
        self.out = dirs * self.width  # D*R: y's width
        self.has_c = CELLS[cfg["cell"]]["states"] == 2

    def state_shape(self, batch: int, cell: bool = False) -> tuple[int, int, int]:
        """[L*D, B, R] (h), or [L*D, B, H] (c: cell=True)."""
        return (self.lanes, batch, self.hidden if cell else self.width)

    def forward(
        self,
        x: torch.Tensor,
        lengths: np.ndarray | None,
        h0: torch.Tensor | None,
        c0: torch.Tensor | None,
        flat: torch.Tensor,
        training: bool,
        seed: int,
        stochastic: bool,
    ) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(saved context or None, y, hn, cn) of x [T, B, I] on the device, checked."""
        steps, batch = x.shape[0], x.shape[1]
        y = x.new_empty((steps, batch, self.out))
        hn = x.new_empty(self.state_shape(batch))
        cn = x.new_empty(self.state_shape(batch, True)) if self.has_c else None
        _stream_sync(x.device)
        handle = self.core.forward_device(
            x.data_ptr(),
            steps,
            batch,
            lengths,
            _address(h0),
            _address(c0),
            y.data_ptr(),
            hn.data_ptr(),
            _address(cn),
            flat.data_ptr(),
            training,
            seed,
            stochastic,
        )
        _stream_sync(x.device)
        return handle, y, hn, cn

    def flatten(self, params: list[torch.Tensor]) -> torch.Tensor:
        """The parameters in the engine's layout: one contiguous tensor [P] on their device."""
        with torch.no_grad():
            if self.tiled:
                return torch.cat([p.reshape(-1) for p in params])
            flat = params[0].new_zeros(self.size)
            for (_, off, shape), p in zip(self.info, params, strict=True):
                flat[off : off + math.prod(shape)].copy_(p.reshape(-1))
            return flat

    def grads(self, dflat: torch.Tensor, needs: Any) -> list[torch.Tensor | None]:
        """Each parameter's gradient: a view of the flat gradient [P] (None where not needed)."""
        return [
            dflat[off : off + math.prod(shape)].view(shape) if need else None
            for (_, off, shape), need in zip(self.info, needs, strict=True)
        ]


def _stream_sync(device: torch.device) -> None:
    """The CUDA backend runs on the legacy default stream: a caller on another stream hands
    over here (before the call: its inputs are ready; after: our outputs are)."""
    if device.type == "cuda" and torch.cuda.current_stream(device) != torch.cuda.default_stream(
        device
    ):
        torch.cuda.current_stream(device).synchronize()
        torch.cuda.default_stream(device).synchronize()


class _DeviceFunction(torch.autograd.Function):
    """_RecurrentFunction on a GPU device: the engine reads and writes the tensors in place."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        engine: _DeviceEngine,
        mode: tuple[bool, bool, int],
        lengths: np.ndarray | None,
        x: torch.Tensor,
        h0: torch.Tensor | None,
        c0: torch.Tensor | None,
        *params: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        save, stochastic, seed = mode
        flat = engine.flatten(list(params))
        # A stochastic forward without gradients still trains (dropout): its context is dropped.
        handle, y, hn, cn = engine.forward(
            x, lengths, h0, c0, flat, save or stochastic, seed, stochastic
        )
        ctx.set_materialize_grads(False)
        if save:
            ctx.engine, ctx.handle, ctx.mode, ctx.lengths = engine, handle, mode, lengths
            ctx.flat = flat
            ctx.has_h0, ctx.has_c0 = h0 is not None, c0 is not None
            ctx.save_for_backward(x, h0, c0, *params)
        return (y, hn) if cn is None else (y, hn, cn)

    @staticmethod
    def backward(ctx: Any, dy: Any, dhn: Any, dcn: Any = None) -> tuple[Any, ...]:
        _refuse_double_backward()
        x, h0, c0, *_ = ctx.saved_tensors  # raises if any was modified in place
        engine, flat = ctx.engine, ctx.flat
        handle = ctx.handle
        if handle.consumed:  # retain_graph: run the forward again for a fresh context
            _, stochastic, seed = ctx.mode
            handle = engine.forward(x, ctx.lengths, h0, c0, flat, True, seed, stochastic)[0]
        batch = x.shape[1]
        dx = torch.empty_like(x)
        dh0 = x.new_empty(engine.state_shape(batch)) if ctx.has_h0 else None
        dc0 = x.new_empty(engine.state_shape(batch, True)) if ctx.has_c0 else None
        dflat = torch.zeros_like(flat)
        args = [None if g is None else g.contiguous() for g in (dy, dhn, dcn)]
        _stream_sync(x.device)
        engine.core.backward_device(
            handle,
            *(_address(g) for g in args),
            dx.data_ptr(),
            _address(dh0),
            _address(dc0),
            flat.data_ptr(),
            dflat.data_ptr(),
        )
        _stream_sync(x.device)
        return (
            None,
            None,
            None,
            dx if ctx.needs_input_grad[3] else None,
            dh0 if ctx.needs_input_grad[4] else None,
            dc0 if ctx.needs_input_grad[5] else None,
            *engine.grads(dflat, ctx.needs_input_grad[6:]),
        )


class _RecurrentFunction(torch.autograd.Function):
    """y, hn[, cn] = engine(x, h0[, c0]; params): one autograd node per whole-sequence call.

    The first backward consumes the saved forward; a further one (retain_graph=True, e.g.
    gradcheck) recomputes the forward from the saved inputs first. Not twice differentiable
    (create_graph=True raises).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        engine: _Engine,
        mode: tuple[bool, bool, int],
        lengths: np.ndarray | None,
        x: torch.Tensor,
        h0: torch.Tensor | None,
        c0: torch.Tensor | None,
        *params: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        save, stochastic, seed = mode
        core = engine.core
        args = (x.detach().numpy(), lengths, _numpy(h0), _numpy(c0))
        try:
            if save:
                y, hn, cn, handle = core.forward_saved(*args, seed=seed, stochastic=stochastic)
            elif stochastic:  # dropout without gradients: the saved context is dropped at once
                y, hn, cn, _ = core.forward_saved(*args, seed=seed, stochastic=True)
            else:
                y, hn, cn = core.forward(*args, training=False, seed=seed)
        except (ValueError, TypeError) as e:
            raise type(e)(str(e)) from None
        y, hn = torch.from_numpy(y), torch.from_numpy(hn)
        outs = (y, hn) if cn is None else (y, hn, torch.from_numpy(cn))
        ctx.set_materialize_grads(False)
        if save:
            ctx.engine, ctx.handle, ctx.mode, ctx.lengths = engine, handle, mode, lengths
            ctx.has_h0, ctx.has_c0 = h0 is not None, c0 is not None
            # Saved for torch's in-place checks (x and y are read again by backward; the
            # parameters must not change in between) and for a recompute on a second backward.
            ctx.save_for_backward(x, y, h0, c0, *params)
        return outs

    @staticmethod
    def backward(ctx: Any, dy: Any, dhn: Any, dcn: Any = None) -> tuple[Any, ...]:
        _refuse_double_backward()
        x, y, h0, c0, *params = ctx.saved_tensors  # raises if any was modified in place
        core = ctx.engine.core
        handle = ctx.handle
        if handle.consumed:  # retain_graph: run the forward again for a fresh context
            _, stochastic, seed = ctx.mode
            *_, handle = core.forward_saved(
                x.detach().numpy(),
                ctx.lengths,
                _numpy(h0),
                _numpy(c0),
                seed=seed,
                stochastic=stochastic,
            )
        dx, dh0, dc0, dparams = core.backward_saved(handle, _numpy(dy), _numpy(dhn), _numpy(dcn))
        flat = torch.from_numpy(dparams)
        pgrads = [
            flat[off : off + math.prod(shape)].view(shape) if need else None
            for (_, off, shape), need in zip(ctx.engine.info, ctx.needs_input_grad[6:], strict=True)
        ]
        return (
            None,
            None,
            None,
            torch.from_numpy(dx) if ctx.needs_input_grad[3] else None,
            torch.from_numpy(dh0) if ctx.has_h0 and ctx.needs_input_grad[4] else None,
            torch.from_numpy(dc0) if ctx.has_c0 and ctx.needs_input_grad[5] else None,
            *pgrads,
        )


def _check_probability(value: Any, name: str, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}: {name} must be a number, got {type(value).__name__}")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{owner}: {name} must be in [0, 1), got {value}")
    return float(value)


class _EngineRecurrent:
    """The engine half of :class:`RNN`, :class:`LSTM`, :class:`GRU` and :class:`GatedRNN`
    (mixed in before the torch.nn class, whose attributes it reads)."""

    _engine: _Engine | None
    _shadow: _Engine | None
    #: The engine for parameters on the CPU: "cpu", or "cuda-sim" (the CUDA backend's algorithm
    #: on host memory, through the same calls as on a GPU: how the tests check the GPU path on
    #: machines without one).
    _cpu_engine_device = "cpu"

    def _attach(
        self, cell: str, zoneout: float, recurrent_dropout: float, layer_norm: bool
    ) -> None:
        owner = type(self).__name__
        self._cell = cell
        self.zoneout = _check_probability(zoneout, "zoneout", owner)
        self.recurrent_dropout = _check_probability(recurrent_dropout, "recurrent_dropout", owner)
        self.layer_norm = bool(layer_norm)
        if self.proj_size and (self.zoneout or self.recurrent_dropout):
            raise ValueError(
                f"{owner}: zoneout and recurrent_dropout do not combine with proj_size"
            )
        if self.layer_norm and not CELLS[cell]["layer_norm"]:
            have = ", ".join(n for n, c in CELLS.items() if c["layer_norm"])
            raise ValueError(f"{owner}: layer_norm is for the cells {have}, not {cell!r}")
        self._cfg = dict(
            cell=cell,
            input_size=self.input_size,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            bidirectional=bool(self.bidirectional),
            bias=bool(self.bias),
            dropout=float(self.dropout),
            proj_size=int(self.proj_size),
            zoneout=self.zoneout,
            recurrent_dropout=self.recurrent_dropout,
            layer_norm=self.layer_norm,
        )
        self._has_c = CELLS[cell]["states"] == 2
        first = next(iter(self._parameters.values()), None)
        dtype = first.dtype if first is not None else torch.get_default_dtype()
        device = first.device if first is not None else torch.device("cpu")
        if device.type not in ("cpu", "cuda"):
            raise RuntimeError(f"{owner}: rnncore's engine runs on the CPU or CUDA, not {device}")
        if dtype not in _ENGINE_DTYPES:
            raise TypeError(f"{owner}: dtype must be torch.float32 or torch.float64, got {dtype}")
        self._shadow = None
        self._device_engines: dict[tuple[str, torch.dtype], _DeviceEngine] = {}
        self._engine = _Engine(self._cfg, dtype)
        names = []
        for i, (name, _, _) in enumerate(self._engine.info):
            view = self._engine.view(i)
            old = self._parameters.get(name)
            with torch.no_grad():
                if old is not None:  # torch's initialised weight: same values, engine memory
                    view.copy_(old)
                elif name.startswith("ln_weight"):  # layer norm starts as the identity
                    view.fill_(1.0)
                else:
                    view.zero_()
            setattr(self, name, nn.Parameter(view))  # an existing name keeps its place
            names.append(name)
        self._flat_weights_names = names
        self._own = [self._parameters[n] for n in names]
        if device.type == "cuda":  # built in the engine's buffer, then moved where asked
            with torch.no_grad():
                for p in self._own:
                    p.data = p.data.to(device)
        self.register_load_state_dict_post_hook(_adopt_loaded)
        self._all_weights = [
            [n for n in names if n.endswith(f"_l{k // self._dirs()}" + self._suffix(k))]
            for k in range(self.num_layers * self._dirs())
        ]
        if hasattr(self, "_init_flat_weights"):
            self._init_flat_weights()

    def _dirs(self) -> int:
        return 2 if self.bidirectional else 1

    def _suffix(self, k: int) -> str:
        return "_reverse" if k % self._dirs() == 1 else ""

    # ---- keeping the parameters in the engine's buffer -----------------------------------------
    def _adopt(self) -> None:
        """Take the module's registered parameters as its own and put them in the engine: after
        their storage or the objects changed (``double()``, ``param.data = ...``,
        ``load_state_dict(assign=True)``, unpickling). Each becomes a view of the engine buffer of
        its dtype again, its values copied in."""
        self._own = [self._parameters[n] for n in self._flat_weights_names]
        dtype, device = self._own[0].dtype, self._own[0].device
        if device.type != "cpu" or dtype not in _ENGINE_DTYPES:
            return  # forward explains what is wrong
        if self._engine is None or self._engine.dtype != dtype:
            self._engine = _Engine(self._cfg, dtype)
            self._shadow = None
        self._engine.load(self._own)
        for i, p in enumerate(self._own):
            p.data = self._engine.view(i)

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        ret = super()._apply(fn, recurse)  # type: ignore[misc]
        if getattr(self, "_cfg", None) is not None:
            self._adopt()
        return ret

    def _engine_for(self, params: list[torch.Tensor]) -> _Engine | _DeviceEngine:
        owner = type(self).__name__
        dtype, device = params[0].dtype, params[0].device
        for n, p in zip(self._flat_weights_names, params, strict=True):
            if p.device != device:
                raise RuntimeError(
                    f"{owner}: parameters must all be on one device; {n} is on {p.device}, "
                    f"{self._flat_weights_names[0]} on {device}"
                )
            if p.dtype != dtype or dtype not in _ENGINE_DTYPES:
                raise TypeError(
                    f"{owner}: parameters must all be torch.float32 or all torch.float64, "
                    f"got {n} {p.dtype}"
                )
        if device.type == "cuda" or (device.type == "cpu" and self._cpu_engine_device != "cpu"):
            return self._device_engine(device, dtype)
        if device.type != "cpu":
            raise RuntimeError(f"{owner}: rnncore's engine runs on the CPU or CUDA, not {device}")
        if self._engine is not None and self._engine.holds(params):
            return self._engine
        own = self._own
        if all(p is q for p, q in zip(params, own, strict=True)):
            self._adopt()  # the module's own parameters moved (param.data = ...): back in
            return self._engine  # type: ignore[return-value]
        # Other tensors in their place (torch.func.functional_call): a second engine, so that
        # the module's own parameters, which the first one holds, stay as they are.
        if self._shadow is None or self._shadow.dtype != dtype:
            self._shadow = _Engine(self._cfg, dtype)
        self._shadow.load(params)
        return self._shadow

    @property
    def int8_inference(self) -> bool:
        """Inference without gradients (``torch.no_grad()``, ``eval()``) multiplies by W_ih and
        W_hh in int8, as ``torch.ao.quantization.quantize_dynamic`` does but with rnncore's
        kernels (see :attr:`rnncore.nn.LSTM.int8_inference`): 3-4x torch.nn's float32 at batch 1
        on an AVX2 CPU, less error than quantize_dynamic. Training and any forward that records
        gradients stay float32, as do the parameters. float32 CPU modules without layer norm
        (ValueError otherwise)."""
        return bool(self.__dict__.get("_int8", False))

    @int8_inference.setter
    def int8_inference(self, on: bool) -> None:
        owner = f"{type(self).__name__}.int8_inference"
        if not isinstance(on, bool):
            raise TypeError(f"{owner}: must be True or False, got {on!r}")
        if on and self._engine is not None:
            try:  # refuses what the engine refuses (float64, layer norm), naming it
                self._engine.core.int8_inference = True
            except ValueError as e:
                raise ValueError(f"{owner}: {e}") from None
        self.__dict__["_int8"] = on

    def flatten_parameters(self) -> None:
        """A no-op, as torch.nn's on the CPU: on a GPU torch would move the weights into cuDNN's
        packed layout, which rnncore's engine does not read (and which has no place for the
        ``ln_*`` weights); the engine packs its own buffer each call."""

    def _device_engine(self, device: torch.device, dtype: torch.dtype) -> _DeviceEngine:
        """The GPU engine for parameters on ``device`` (made on first use, one per dtype)."""
        owner = type(self).__name__
        if device.type == "cuda":
            if device.index not in (None, 0):
                raise RuntimeError(f"{owner}: rnncore's CUDA backend runs on cuda:0, not {device}")
            name = "cuda"
        else:
            name = self._cpu_engine_device
        engines = self.__dict__.setdefault("_device_engines", {})
        engine = engines.get((name, dtype))
        if engine is None:
            try:
                engine = _DeviceEngine(self._cfg, dtype, name)
            except RuntimeError as e:  # no CUDA backend in this build, or no GPU
                raise RuntimeError(f"{owner}: {e}") from None
            engines[(name, dtype)] = engine
        return engine

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()  # type: ignore[misc]
        state["_engine"] = None  # the engine is rebuilt from the parameters
        state["_device_engines"] = {}
        state["_shadow"] = None
        state["_own"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # type: ignore[misc]
        self._adopt()

    # ---- forward ---------------------------------------------------------------------------------
    def forward(self, input: Any, hx: Any = None) -> tuple[Any, Any]:
        """``y, h_n = m(x, h_0)`` (LSTM: ``y, (h_n, c_n) = m(x, (h_0, c_0))``), as torch.nn's.

        Args:
            input: x [T, B, I] ([B, T, I] if batch_first), or [T, I] unbatched, or a
                PackedSequence (of any batch order); the parameters' dtype.
            hx: h_0 [L*D, B, R] (R = proj_size or H; LSTM: (h_0, c_0), c_0 [L*D, B, H]), [L*D, R]
                for unbatched input, or None for zeros; in the caller's batch order.

        Returns:
            y [T, B, D*R] ([B, T, D*R] if batch_first; a PackedSequence for packed input, with
            zeros past each end when padded), and the final state shaped like hx: each sequence's
            state at its own last step.
        """
        owner = type(self).__name__
        names = self._flat_weights_names
        params = [getattr(self, n) for n in names]
        engine = self._engine_for(params)
        int8 = self.int8_inference
        if isinstance(engine, _Engine):
            if engine.core.int8_inference != int8:  # a new engine (dtype change, shadow)
                try:
                    engine.core.int8_inference = int8
                except ValueError as e:  # e.g. double() after int8_inference = True
                    raise ValueError(f"{owner}.int8_inference: {e}") from None
        elif int8:
            raise RuntimeError(
                f"{owner}: int8_inference runs on the CPU engine, not on {params[0].device}"
            )
        packed = isinstance(input, PackedSequence)
        lengths = None
        unbatched = False
        if packed:
            x, lens = pad_packed_sequence(input, batch_first=False)
            lengths = np.ascontiguousarray(lens.numpy(), dtype=np.int64)
        else:
            if not isinstance(input, torch.Tensor):
                raise TypeError(
                    f"{owner}: input must be a torch.Tensor or PackedSequence, "
                    f"got {type(input).__name__}"
                )
            if input.dim() not in (2, 3):
                raise ValueError(
                    f"{owner}: input must be 3-d (or 2-d unbatched), got shape {tuple(input.shape)}"
                )
            unbatched = input.dim() == 2
            x = input.unsqueeze(1) if unbatched else input
            if self.batch_first and not unbatched:
                x = x.transpose(0, 1)
        if x.dtype != engine.dtype:
            raise TypeError(
                f"{owner}: input dtype {x.dtype} does not match the parameters' {engine.dtype}: "
                f"convert the input (input.to({engine.dtype})) or the model (model.to(...))"
            )
        if x.device != params[0].device:
            raise RuntimeError(
                f"{owner}: input is on {x.device}, the parameters on {params[0].device}: move one "
                f"(input.to({str(params[0].device)!r}) or model.to(...))"
            )
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"{owner}: input.size(-1) must be input_size={self.input_size}, got {x.shape[-1]}"
            )
        x = x.contiguous()
        h0, c0 = self._split_state(hx, unbatched, owner)
        training = self.training
        stochastic = training and bool(
            (self.dropout and self.num_layers > 1) or self.zoneout or self.recurrent_dropout
        )
        save = torch.is_grad_enabled() and (
            x.requires_grad
            or any(p.requires_grad for p in params)
            or any(s is not None and s.requires_grad for s in (h0, c0))
        )
        if save and not training and (self.zoneout or self.recurrent_dropout):
            raise RuntimeError(
                f"{owner}: gradients through zoneout or recurrent dropout need training mode "
                "(call .train()); their evaluation forms have no backward in the engine"
            )
        seed = int(torch.randint(0, 2**62, (1,)).item()) if stochastic else 0
        if x.shape[1] == 0 and x.shape[0] > 0:
            outs = self._empty_batch(x, params)  # as torch.nn: empty outputs, zero gradients
        elif isinstance(engine, _DeviceEngine):
            _check_device_states(engine, x, h0, c0, owner)
            outs = _DeviceFunction.apply(
                engine, (save, stochastic, seed), lengths, x, h0, c0, *params
            )
        else:
            outs = _RecurrentFunction.apply(
                engine, (save, stochastic, seed), lengths, x, h0, c0, *params
            )
        y, hn = outs[0], outs[1]
        if packed:
            y = _repack(y, input)
        elif unbatched:
            y = y.squeeze(1)
        elif self.batch_first:
            y = y.transpose(0, 1)
        if unbatched:
            hn = hn.squeeze(1)
        if self._has_c:
            cn = outs[2].squeeze(1) if unbatched else outs[2]
            return y, (hn, cn)
        return y, hn

    def _empty_batch(self, x: torch.Tensor, params: list[torch.Tensor]) -> tuple[Any, ...]:
        """(y [T, 0, D*R], h_n [L*D, 0, R], c_n [L*D, 0, H] or None) of a batch of no sequences:
        empty, yet in autograd's graph, so that a backward gives the parameters zero gradients
        as torch.nn does."""
        link = sum((p.sum() for p in params), x.sum()) * 0
        dirs = 2 if self.bidirectional else 1
        width = self.proj_size or self.hidden_size
        lanes = self.num_layers * dirs
        y = x.new_zeros((x.shape[0], 0, dirs * width)) + link
        hn = x.new_zeros((lanes, 0, width)) + link
        cn = x.new_zeros((lanes, 0, self.hidden_size)) + link if self._has_c else None
        return y, hn, cn

    def _split_state(
        self, hx: Any, unbatched: bool, owner: str
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if hx is None:
            return None, None
        if self._has_c:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"{owner}: hx must be a tuple (h_0, c_0) or None")
            h, c = hx
        else:
            if not isinstance(hx, torch.Tensor):
                raise TypeError(
                    f"{owner}: hx must be a tensor h_0 or None, got {type(hx).__name__}"
                )
            h, c = hx, None
        out = []
        for name, s in (("h_0", h), ("c_0", c)):
            if s is None:
                out.append(None)
                continue
            if not isinstance(s, torch.Tensor):
                raise TypeError(f"{owner}: {name} must be a tensor, got {type(s).__name__}")
            want = 2 if unbatched else 3
            if s.dim() != want:
                raise ValueError(
                    f"{owner}: {name} must be {want}-d for {'un' if unbatched else ''}batched "
                    f"input, got shape {tuple(s.shape)}"
                )
            out.append((s.unsqueeze(1) if unbatched else s).contiguous())
        return out[0], out[1]

    def extra_repr(self) -> str:
        s = super().extra_repr()  # type: ignore[misc]
        if self.zoneout:
            s += f", zoneout={self.zoneout}"
        if self.recurrent_dropout:
            s += f", recurrent_dropout={self.recurrent_dropout}"
        if self.layer_norm:
            s += ", layer_norm=True"
        if self._cell == "gru_v1":
            s += ", reset_after=False"
        return s


def _check_device_states(
    engine: _DeviceEngine,
    x: torch.Tensor,
    h0: torch.Tensor | None,
    c0: torch.Tensor | None,
    owner: str,
) -> None:
    """The GPU engine reads h_0 and c_0 by address: their device, dtype and shape are checked
    here (the CPU engine's binding checks its numpy arrays itself)."""
    batch = x.shape[1]
    for name, s, shape in (
        ("h_0", h0, engine.state_shape(batch)),
        ("c_0", c0, engine.state_shape(batch, True)),
    ):
        if s is None:
            continue
        if s.device != x.device or s.dtype != x.dtype:
            raise TypeError(
                f"{owner}: {name} must be {x.dtype} on {x.device} like the input, got {s.dtype} "
                f"on {s.device}"
            )
        if tuple(s.shape) != shape:
            raise ValueError(
                f"{owner}: {name} must have shape {list(shape)} [L*D, B, "
                f"{'H' if name == 'c_0' else 'R'}], got {list(s.shape)}"
            )


def _adopt_loaded(module: _EngineRecurrent, incompatible: Any) -> None:
    """load_state_dict's post-hook: with assign=True the loaded tensors replace the parameters
    (new objects), which then move into the engine; a plain load copied into it already."""
    names = module._flat_weights_names
    if any(module._parameters.get(n) is not p for n, p in zip(names, module._own, strict=True)):
        module._adopt()


def _repack(y: torch.Tensor, like: PackedSequence) -> PackedSequence:
    """Padded y [T, B, F] (the caller's batch order) as a PackedSequence laid out like ``like``:
    row j of step t is sequence sorted_indices[j] (a gather, so gradients flow)."""
    bs = like.batch_sizes
    order = like.sorted_indices
    t_idx = torch.repeat_interleave(torch.arange(len(bs)), bs)
    starts = torch.cumsum(bs, 0) - bs  # each step's first row in the packed data
    slot = torch.arange(int(bs.sum())) - torch.repeat_interleave(starts, bs)
    b_idx = slot if order is None else order[slot]
    return PackedSequence(y[t_idx, b_idx], bs, like.sorted_indices, like.unsorted_indices)


class RNN(_EngineRecurrent, nn.RNN):
    """``torch.nn.RNN`` run by rnncore's engine (tanh or relu): h' = act(W_ih x + b_ih + W_hh h +
    b_hh). Shapes: x [T, B, I] -> y [T, B, D*H], h [L*D, B, H].

    Extra keyword arguments: ``zoneout``, ``recurrent_dropout`` (in [0, 1); training only).
    """

    def __init__(
        self, *args: Any, zoneout: float = 0.0, recurrent_dropout: float = 0.0, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._attach(
            "rnn" if self.nonlinearity == "tanh" else "rnn_relu", zoneout, recurrent_dropout, False
        )


class LSTM(_EngineRecurrent, nn.LSTM):
    """``torch.nn.LSTM`` run by rnncore's engine (gate order i, f, g, o; ``proj_size`` too).
    Shapes: x [T, B, I] -> y [T, B, D*R], (h [L*D, B, R], c [L*D, B, H]), R = proj_size or H.

    Extra keyword arguments: ``zoneout``, ``recurrent_dropout``, ``layer_norm`` (adds
    ``ln_weight_ih/hh``, ``ln_weight_c``, ``ln_bias_c`` per layer and direction).
    """

    def __init__(
        self,
        *args: Any,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
        layer_norm: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._attach("lstm", zoneout, recurrent_dropout, layer_norm)


class GRU(_EngineRecurrent, nn.GRU):
    """``torch.nn.GRU`` run by rnncore's engine (gate order r, z, n). Shapes: x [T, B, I] ->
    y [T, B, D*H], h [L*D, B, H].

    Extra keyword arguments: ``reset_after=False`` (Cho et al. 2014: n = tanh(W_in x + b_in +
    W_hn (r*h) + b_hn); same parameters), ``zoneout``, ``recurrent_dropout``, ``layer_norm``
    (reset-after only).
    """

    def __init__(
        self,
        *args: Any,
        reset_after: bool = True,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
        layer_norm: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._attach("gru" if reset_after else "gru_v1", zoneout, recurrent_dropout, layer_norm)


class GatedRNN(_EngineRecurrent, nn.Module):
    """The lecture's gated cells as a torch module (see :class:`rnncore.nn.GatedRNN`): ``gates``
    (), ("input",), ("input", "forget") or ("input", "forget", "output") — the last is the
    LSTM (state (h, c); its state_dict loads into torch.nn.LSTM). Without the output gate the
    state is s: x [T, B, I] -> y [T, B, D*H], h [L*D, B, H]. Weights start ~ U(-1/sqrt(H),
    1/sqrt(H)) from torch's generator, as torch.nn.LSTM's.
    """

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
        device: Any = None,
        dtype: Any = None,
        *,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if isinstance(gates, str) or not isinstance(gates, (tuple, list)):
            raise TypeError(
                f"GatedRNN: gates must be a tuple of gate names, got {type(gates).__name__}"
            )
        key = tuple(gates)
        if key not in GATE_SETS:
            allowed = ", ".join(repr(k) for k in GATE_SETS)
            raise ValueError(f"GatedRNN: gates must be one of {allowed}, got {key!r}")
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GatedRNN: {name} must be an integer >= 1, got {value!r}")
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"GatedRNN: num_layers must be an integer >= 1, got {num_layers!r}")
        self.gates = key
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first = bool(bias), bool(batch_first)
        self.dropout = _check_probability(dropout, "dropout", "GatedRNN")
        self.bidirectional = bool(bidirectional)
        self.proj_size = 0
        dt = dtype or torch.get_default_dtype()
        if dt not in _ENGINE_DTYPES:
            raise TypeError(f"GatedRNN: dtype must be torch.float32 or torch.float64, got {dt}")
        where = torch.device("cpu") if device is None else torch.device(device)
        if where.type not in ("cpu", "cuda"):
            raise RuntimeError(f"GatedRNN: rnncore's engine runs on the CPU or CUDA, not {where}")
        # A placeholder fixes the dtype; _attach replaces it by the engine's parameters.
        self._engine = None
        self.register_parameter("_dtype_probe", nn.Parameter(torch.empty(0, dtype=dt)))
        self._attach(GATE_SETS[key], zoneout, recurrent_dropout, False)
        if where.type == "cuda":
            self.to(where)
        del self._dtype_probe
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H)) (torch.nn.LSTM's initialisation)."""
        k = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-k, k)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, gates={self.gates!r}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.zoneout:
            s += f", zoneout={self.zoneout}"
        if self.recurrent_dropout:
            s += f", recurrent_dropout={self.recurrent_dropout}"
        return s
