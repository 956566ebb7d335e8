"""ONNX export of rnncore's task models, recurrent layers as ONNX's own RNN/LSTM/GRU operators.

Layout legend (the engine's): time-major, T steps, B batch, E embedding, H hidden, R the width of
h (H, or an LSTM's proj_size), L layers, D directions, V vocabulary, C classes or tags. Every
graph computes in float32 (onnxruntime has no float64 RNN/LSTM/GRU kernels; a float64 model's
weights are rounded) with dynamic T and B, opset 17, and is checked with ``onnx.checker``.

What each model becomes (graph inputs are named after the model's forward arguments):

- SequenceClassifier, KimCNN: ``ids`` int64 [T, B], ``lengths`` int64 [B] -> ``logits`` [B, C].
- LanguageModel: ``ids`` [T, B], ``h0`` [L, B, R] (and ``c0`` [L, B, H] for an LSTM) ->
  ``logits`` [T, B, V], ``hn`` (and ``cn``): the state goes in and out, so a caller can run a
  prompt and then one token at a time (zeros for a fresh start).
- SequenceTagger: ``ids``, ``lengths`` (and ``chars`` [Lc, N], ``char_lengths`` [N] with
  character features) -> ``logits`` [T, B, C] and ``tags`` int64 [T, B]: the model's decoding
  (argmax + BIO repair, or the CRF's Viterbi path as an ONNX Scan), -100 past each length.
- Forecaster: ``x`` [T, B, I] -> ``forecast`` [B, h] (what ``predict`` gives) and, for the
  "many_to_many" mode, ``predictions`` [T, B, h] (every step's).
- SequenceRegressor (the long-range tasks): ``x`` [T, B, I] (int64 ids [T, B] with an
  embedding), ``lengths`` [B] -> ``outputs`` [B, O] (readout "last") or [T, B, O] ("all").
- Seq2Seq: two files. The encoder ``src`` [S, B], ``src_lengths`` [B] -> ``h0`` [L, B, H]
  (``c0``), ``context`` [B, H] (with ``context=True``), ``memory`` [S, B, H] (with attention);
  the one-step decoder ``tokens`` [B], ``h0`` (``c0``), ``context``, ``memory``,
  ``src_lengths`` -> ``log_probs`` [B, V], ``hn`` (``cn``). Its inputs carry the encoder's
  output names, and ``hn``/``cn`` feed back as the next step's ``h0``/``c0``.

Plain cells ("rnn", "rnn_relu", "lstm", "gru" reset-after = ONNX linear_before_reset=1,
"gru_v1" = linear_before_reset=0) become one ONNX RNN/LSTM/GRU node per layer, with
``sequence_lens`` for ragged batches and both directions in one node. What those operators cannot
express (an LSTM's proj_size, layer_norm, zoneout's inference-time expectation, the GatedRNN
cells) is unrolled exactly: one ONNX Scan per layer and direction whose body is the cell's step.
Dropout (a training-time op) is left out. Each file's ``metadata_props`` hold the rnncore version,
the model type and config, and, where the model carries them (``load_checkpoint`` sets them), the
JSON lists ``labels``, ``tag_names``, ``vocab`` and ``char_vocab`` that map text to ids and back.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OPSET", "export", "to_onnx"]

#: The ONNX operator set of every exported graph (LayerNormalization needs 17).
OPSET = 17
#: The IR version that goes with opset 17, so older runtimes read the files too.
IR_VERSION = 8
_INSTALL = 'pip install "rnncore[onnx]"'
_LN_EPS = 1e-5  # the engine's layer-norm epsilon (cpp/src/cells/layer_norm.h)
_IGNORE = -100  # the taggers' id past each sequence's end
#: Cells with an ONNX operator: (operator, ONNX gate block of each PyTorch block, attributes).
#: LSTM PyTorch i,f,g,o -> ONNX i,o,f,c; GRU PyTorch r,z,n -> ONNX z,r,h.
_NATIVE: dict[str, tuple[str, list[int], dict[str, Any]]] = {
    "rnn": ("RNN", [0], {"activations": ["Tanh"]}),
    "rnn_relu": ("RNN", [0], {"activations": ["Relu"]}),
    "lstm": ("LSTM", [0, 3, 1, 2], {}),
    "gru": ("GRU", [1, 0, 2], {"linear_before_reset": 1}),
    "gru_v1": ("GRU", [1, 0, 2], {"linear_before_reset": 0}),
}
#: The GatedRNN cells: number of sigmoid gates before the candidate block.
_GATED = {"gated-residual": 0, "gated-input": 1, "gated-forget": 2}


def _onnx() -> Any:
    """The onnx package, or an ImportError that says how to install it."""
    try:
        import onnx
    except ImportError as e:
        raise ImportError(
            f"rnncore.onnx needs the onnx package (and onnxruntime to run the graphs): {_INSTALL}"
        ) from e
    return onnx


# ---- graph building ---------------------------------------------------------------------------
class _Builder:
    """The nodes of one graph. A Scan body is a builder of its own (``sub``) that shares the name
    counter and the constants: those live in the main graph, visible from every subgraph, and
    every name is unique across the whole model (ONNX forbids shadowing an outer name)."""

    def __init__(self, root: _Builder | None = None) -> None:
        onnx = _onnx()
        self.helper, self.numpy_helper, self.TP = onnx.helper, onnx.numpy_helper, onnx.TensorProto
        self.nodes: list[Any] = []
        self.inits: list[Any] = root.inits if root else []
        self._consts: dict[Any, str] = root._consts if root else {}
        self._count = root._count if root else itertools.count()

    def sub(self) -> _Builder:
        return _Builder(self)

    def name(self, hint: str) -> str:
        return f"{hint}_{next(self._count)}"

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, **attrs: Any) -> Any:
        """Append one node; returns its output name (a list when n_out > 1)."""
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        node = self.helper.make_node(op_type, inputs, outs, name=self.name(op_type), **attrs)
        self.nodes.append(node)
        return outs[0] if n_out == 1 else outs

    def op_to(self, op_type: str, inputs: list[str], outputs: list[str], **attrs: Any) -> None:
        """Append one node writing the named outputs (graph outputs, Scan body outputs)."""
        node = self.helper.make_node(op_type, inputs, outputs, name=self.name(op_type), **attrs)
        self.nodes.append(node)

    def weight(self, array: np.ndarray, hint: str) -> str:
        """A float32 initializer (weights are stored once; no caching by value)."""
        name = self.name(hint)
        arr = np.ascontiguousarray(array, dtype=np.float32)
        self.inits.append(self.numpy_helper.from_array(arr, name))
        return name

    def const(self, values: Any, dtype: Any) -> str:
        """A small constant (axes, shapes, scalars), shared by value."""
        arr = np.asarray(values, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            name = self.name("const")
            self.inits.append(self.numpy_helper.from_array(arr, name))
            self._consts[key] = name
        return self._consts[key]

    def ints(self, values: Any) -> str:
        return self.const(values, np.int64)

    def scalar(self, value: float) -> str:
        return self.const(value, np.float32)

    def value_info(self, name: str, elem: Any, shape: list[Any]) -> Any:
        return self.helper.make_tensor_value_info(name, elem, shape)

    # ---- small composites -------------------------------------------------------------------
    def dim(self, x: str, axis: int) -> str:
        """x.shape[axis] as an int64 [1] tensor."""
        return self.op("Shape", [x], start=axis, end=axis + 1)

    def linear(self, x: str, layer: Any, hint: str) -> str:
        """y [..., O] = x [..., I] · weightᵀ + bias (an rnncore Linear; MatMul + Add)."""
        w = self.weight(np.asarray(layer.weight.data).T, f"{hint}.weight_t")
        y = self.op("MatMul", [x, w])
        if layer.bias is not None:
            y = self.op("Add", [y, self.weight(layer.bias.data, f"{hint}.bias")])
        return y

    def embedding(self, ids: str, emb: Any, hint: str, table: str | None = None) -> str:
        """Gather of ids [...] from an Embedding's table -> [..., E]."""
        table = table or self.weight(emb.weight.data, f"{hint}.weight")
        return self.op("Gather", [table, ids], axis=0)

    def time_mask(self, ids_or_x: str, lengths: str) -> str:
        """bool [T, B, 1]: step t belongs to sequence b (t < lengths[b])."""
        T = self.op("Squeeze", [self.dim(ids_or_x, 0), self.ints([0])])
        steps = self.op("Range", [self.const(0, np.int64), T, self.const(1, np.int64)])
        mask = self.op("Less", [self.op("Unsqueeze", [steps, self.ints([1])]), lengths])
        return self.op("Unsqueeze", [mask, self.ints([2])])

    def zeros_like_rows(self, x: str, width: int) -> str:
        """float zeros [B, width] for x [T, B, ...] (a lane's default initial state)."""
        shape = self.op("Concat", [self.dim(x, 1), self.ints([width])], axis=0)
        return self.op(
            "ConstantOfShape",
            [shape],
            value=self.numpy_helper.from_array(np.zeros(1, np.float32), self.name("zero")),
        )


# ---- recurrent layers -------------------------------------------------------------------------
def _fits_onnx_operator(layer: Any) -> bool:
    """Whether ONNX's RNN/LSTM/GRU operator computes the layer (else it is unrolled): a plain
    cell without proj_size, layer_norm or zoneout (recurrent_dropout is training-only)."""
    return (
        layer.cell in _NATIVE
        and not getattr(layer, "proj_size", 0)
        and not getattr(layer, "layer_norm", False)
        and not getattr(layer, "zoneout", 0.0)
    )


def _check_layer(layer: Any, where: str) -> None:
    """ValueError for a layer this exporter has no step for (a cell newer than this file)."""
    if layer.cell not in _NATIVE and layer.cell not in _GATED:
        raise ValueError(
            f"{where}: cell {layer.cell!r} has no ONNX export (known cells: "
            f"{sorted(_NATIVE) + sorted(_GATED)})"
        )


def _bias_pair(p: dict[str, Any], sfx: str, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(bias_ih, bias_hh) of one lane, zeros for a layer built with bias=False."""
    zero = np.zeros(rows, dtype=np.float32)
    return (
        np.asarray(p[f"bias_ih{sfx}"].data) if f"bias_ih{sfx}" in p else zero,
        np.asarray(p[f"bias_hh{sfx}"].data) if f"bias_hh{sfx}" in p else zero,
    )


def _native_layer(
    b: _Builder,
    layer: Any,
    p: dict[str, Any],
    l: int,
    x: str,
    seq_lens: str | None,
    h0: str | None,
    c0: str | None,
) -> tuple[str, str, str | None]:
    """Layer l (both directions) as one ONNX RNN/LSTM/GRU node.

    x [T, B, I_l]; seq_lens int32 [B] or None; h0, c0 [D, B, H] or None for zeros.
    Returns y [T, B, D*H], hn [D, B, H], cn [D, B, H] (LSTM) or None.
    """
    op_type, order, attrs = _NATIVE[layer.cell]
    H, D = layer.hidden_size, layer.num_directions
    G = len(order)

    def blocks(a: np.ndarray) -> np.ndarray:  # PyTorch gate blocks -> ONNX's order
        a = np.asarray(a)
        return np.concatenate([a[k * H : (k + 1) * H] for k in order], axis=0)

    Ws, Rs, Bs = [], [], []
    for d in range(D):
        sfx = f"_l{l}" + ("_reverse" if d else "")
        Ws.append(blocks(p[f"weight_ih{sfx}"].data))
        Rs.append(blocks(p[f"weight_hh{sfx}"].data))
        b_ih, b_hh = _bias_pair(p, sfx, G * H)
        Bs.append(np.concatenate([blocks(b_ih), blocks(b_hh)]))  # ONNX: B = [Wb, Rb]
    hint = f"rnn.l{l}"
    inputs = [
        x,
        b.weight(np.stack(Ws), f"{hint}.W"),
        b.weight(np.stack(Rs), f"{hint}.R"),
        b.weight(np.stack(Bs), f"{hint}.B"),
        seq_lens or "",
        h0 or "",
    ]
    if op_type == "LSTM":
        inputs.append(c0 or "")
    while inputs[-1] == "":  # trailing optional inputs are left out
        inputs.pop()
    extra = dict(attrs)
    if "activations" in extra:
        extra["activations"] = extra["activations"] * D
    outs = b.op(
        op_type,
        inputs,
        n_out=3 if op_type == "LSTM" else 2,
        hidden_size=H,
        direction="bidirectional" if D == 2 else "forward",
        **extra,
    )
    # Y [T, D, B, H] -> [T, B, D, H] -> [T, B, D*H]: forward then reverse features per step
    y = b.op("Reshape", [b.op("Transpose", [outs[0]], perm=[0, 2, 1, 3]), b.ints([0, 0, -1])])
    return y, outs[1], (outs[2] if op_type == "LSTM" else None)


class _Lane:
    """The weights of one layer and direction, by their role (PyTorch's parameter names)."""

    def __init__(self, layer: Any, l: int, d: int) -> None:
        p = dict(layer.named_parameters())
        self.sfx = sfx = f"_l{l}" + ("_reverse" if d else "")
        self.hint = f"rnn.l{l}{'r' if d else ''}"
        self.cell, self.H = layer.cell, layer.hidden_size
        self.R = layer.proj_size or layer.hidden_size
        self.has_c = layer.cell == "lstm"
        self.ln = bool(getattr(layer, "layer_norm", False))
        self.zoneout = float(getattr(layer, "zoneout", 0.0))
        self.w_ih = np.asarray(p[f"weight_ih{sfx}"].data)
        self.w_hh = np.asarray(p[f"weight_hh{sfx}"].data)
        self.GH = self.w_ih.shape[0]
        self.b_ih, self.b_hh = _bias_pair(p, sfx, self.GH)
        self.w_hr = np.asarray(p[f"weight_hr{sfx}"].data) if layer.proj_size else None
        self.p = p

    def ln_weight(self, b: _Builder, name: str) -> str:
        return b.weight(self.p[f"{name}{self.sfx}"].data, f"{self.hint}.{name}")


def _cell_step(s: _Builder, w: _Lane, h: str, c: str | None, xt: str) -> tuple[str, str | None]:
    """The cell's equations for one step inside a Scan body (the reference's, rnncore.reference).

    h [B, R], c [B, H] (LSTM) or None, xt [B, G*H] the step's input projection (bias and input
    layer norm included). Returns (h' [B, R], c' [B, H] or None), zoneout's inference-time
    expectation applied.
    """
    H = w.H

    def split(a: str, n: int) -> list[str]:
        return s.op("Split", [a, s.ints([H] * n)], n_out=n, axis=-1) if n > 1 else [a]

    def sigmoid(a: str) -> str:
        return s.op("Sigmoid", [a])

    def gru_mix(z: str, n: str) -> str:  # h' = (1 - z) * n + z * h
        return s.op("Add", [s.op("Mul", [s.op("Sub", [s.scalar(1.0), z]), n]), s.op("Mul", [z, h])])

    c_new = None
    if w.cell == "gru_v1":
        # reset before the recurrent product: n = tanh(W_in x + b_in + W_hn (r*h) + b_hn)
        hrz = s.op("MatMul", [h, s.weight(w.w_hh[: 2 * H].T, f"{w.hint}.weight_hh_rz_t")])
        hrz = s.op("Add", [hrz, s.weight(w.b_hh[: 2 * H], f"{w.hint}.bias_hh_rz")])
        xr, xz, xn = split(xt, 3)
        hr, hz = split(hrz, 2)
        r, z = sigmoid(s.op("Add", [xr, hr])), sigmoid(s.op("Add", [xz, hz]))
        hn = s.op("MatMul", [s.op("Mul", [r, h]), s.weight(w.w_hh[2 * H :].T, f"{w.hint}.w_hn_t")])
        hn = s.op("Add", [hn, s.weight(w.b_hh[2 * H :], f"{w.hint}.bias_hn")])
        h_new = gru_mix(z, s.op("Tanh", [s.op("Add", [xn, hn])]))
    else:
        hp = s.op("MatMul", [h, s.weight(w.w_hh.T, f"{w.hint}.weight_hh_t")])
        b_hh = s.weight(w.b_hh, f"{w.hint}.bias_hh")
        if w.ln:  # g_hh * LN(W_hh h) + b_hh
            hp = s.op(
                "LayerNormalization",
                [hp, w.ln_weight(s, "ln_weight_hh"), b_hh],
                axis=-1,
                epsilon=_LN_EPS,
            )
        else:
            hp = s.op("Add", [hp, b_hh])
        if w.cell in ("rnn", "rnn_relu"):
            h_new = s.op("Tanh" if w.cell == "rnn" else "Relu", [s.op("Add", [xt, hp])])
        elif w.cell == "lstm":
            i, f, g, o = split(s.op("Add", [xt, hp]), 4)
            keep = s.op("Mul", [sigmoid(f), c])
            c_new = s.op("Add", [keep, s.op("Mul", [sigmoid(i), s.op("Tanh", [g])])])
            c_read = c_new
            if w.ln:  # h' reads g_c * LN(c') + b_c
                c_read = s.op(
                    "LayerNormalization",
                    [c_new, w.ln_weight(s, "ln_weight_c"), w.ln_weight(s, "ln_bias_c")],
                    axis=-1,
                    epsilon=_LN_EPS,
                )
            h_new = s.op("Mul", [sigmoid(o), s.op("Tanh", [c_read])])
            if w.w_hr is not None:  # LSTMP: h = W_hr (o * tanh(c))
                h_new = s.op("MatMul", [h_new, s.weight(w.w_hr.T, f"{w.hint}.weight_hr_t")])
        elif w.cell == "gru":
            xr, xz, xn = split(xt, 3)
            hr, hz, hn = split(hp, 3)
            r, z = sigmoid(s.op("Add", [xr, hr])), sigmoid(s.op("Add", [xz, hz]))
            h_new = gru_mix(z, s.op("Tanh", [s.op("Add", [xn, s.op("Mul", [r, hn])])]))
        else:  # GatedRNN: blocks (input, forget, candidate) restricted to the gates present
            k = _GATED[w.cell]
            parts = split(s.op("Add", [xt, hp]), k + 1)
            cand = s.op("Tanh", [parts[k]])
            write = s.op("Mul", [sigmoid(parts[0]), cand]) if k else cand
            keep = s.op("Mul", [sigmoid(parts[1]), h]) if k == 2 else h
            h_new = s.op("Add", [keep, write])
    if w.zoneout:
        # inference: the expectation p * previous + (1 - p) * new (the engine's zone_forward)
        p_ = s.scalar(w.zoneout)
        q_ = s.scalar(np.float32(1.0) - np.float32(w.zoneout))
        h_new = s.op("Add", [s.op("Mul", [p_, h]), s.op("Mul", [q_, h_new])])
        if c is not None:
            c_new = s.op("Add", [s.op("Mul", [p_, c]), s.op("Mul", [q_, c_new])])
    return h_new, c_new


def _unrolled_lane(
    b: _Builder,
    layer: Any,
    l: int,
    d: int,
    x: str,
    lengths: str,
    mask: str,
    h0: str | None,
    c0: str | None,
) -> tuple[str, str, str | None]:
    """One layer and direction as an ONNX Scan over time whose body is the cell's step: the
    exact inference-time equations of cells and options ONNX's operators lack.

    x [T, B, I_l]; lengths int64 [B]; mask bool [T, B, 1]; h0 [B, R], c0 [B, H] or None.
    A finished sequence keeps its state and outputs zeros (the engine's ragged semantics); the
    reverse direction runs the forward recurrence on each sequence reversed within its length.
    Returns y [T, B, R], hn [B, R], cn [B, H] (LSTM) or None.
    """
    w = _Lane(layer, l, d)
    if d:
        x = b.op("ReverseSequence", [x, lengths], time_axis=0, batch_axis=1)
    # The input side for every step at once, as the engine does: [T, B, G*H].
    xp = b.op("MatMul", [x, b.weight(w.w_ih.T, f"{w.hint}.weight_ih_t")])
    b_ih = b.weight(w.b_ih, f"{w.hint}.bias_ih")
    if w.ln:  # g_ih * LN(W_ih x) + b_ih
        g_ih = w.ln_weight(b, "ln_weight_ih")
        xp = b.op("LayerNormalization", [xp, g_ih, b_ih], axis=-1, epsilon=_LN_EPS)
    else:
        xp = b.op("Add", [xp, b_ih])
    states = [h0 or b.zeros_like_rows(x, w.R)]
    if w.has_c:
        states.append(c0 or b.zeros_like_rows(x, w.H))

    s = b.sub()
    FLOAT, BOOL = s.TP.FLOAT, s.TP.BOOL
    h, xt, mt = s.name("h"), s.name("xp_t"), s.name("m_t")
    c = s.name("c") if w.has_c else None
    ins = [s.value_info(h, FLOAT, [None, w.R])]
    if c is not None:
        ins.append(s.value_info(c, FLOAT, [None, w.H]))
    ins += [s.value_info(xt, FLOAT, [None, w.GH]), s.value_info(mt, BOOL, [None, 1])]
    h_new, c_new = _cell_step(s, w, h, c, xt)
    # a finished sequence keeps its state and writes zeros
    h_out, y_t = s.name("h_out"), s.name("y_t")
    s.op_to("Where", [mt, h_new, h], [h_out])
    outs = [s.value_info(h_out, FLOAT, [None, w.R])]
    if c is not None:
        c_out = s.name("c_out")
        s.op_to("Where", [mt, c_new, c], [c_out])
        outs.append(s.value_info(c_out, FLOAT, [None, w.H]))
    s.op_to("Where", [mt, h_new, s.scalar(0.0)], [y_t])
    outs.append(s.value_info(y_t, FLOAT, [None, w.R]))
    body = s.helper.make_graph(s.nodes, s.name(f"{w.hint}_step"), ins, outs)

    res = b.op("Scan", states + [xp, mask], n_out=len(states) + 1, body=body, num_scan_inputs=2)
    y = res[-1]
    if d:
        y = b.op("ReverseSequence", [y, lengths], time_axis=0, batch_axis=1)
    return y, res[0], (res[1] if w.has_c else None)


def _recurrent(
    b: _Builder,
    layer: Any,
    x: str,
    lengths: str | None,
    *,
    h0: str | None = None,
    c0: str | None = None,
    where: str,
) -> tuple[str, str, str | None]:
    """A stacked (bidirectional) recurrent layer: ONNX operators where they express it, else
    Scans.

    x [T, B, I]; lengths int64 [B] or None (every sequence has T steps); h0 [L*D, B, R], c0
    [L*D, B, H] or None for zeros. Returns y [T, B, D*R] (zero past each length), hn [L*D, B, R]
    and cn [L*D, B, H] (LSTM) or None. Dropout between layers is a training-only op: left out.
    """
    _check_layer(layer, where)
    D, L = layer.num_directions, layer.num_layers
    p = dict(layer.named_parameters())
    native = _fits_onnx_operator(layer)
    has_c = layer.cell == "lstm"
    mask = b.time_mask(x, lengths) if lengths is not None else None
    seq_lens = None
    if native and lengths is not None:
        seq_lens = b.op("Cast", [lengths], to=b.TP.INT32)  # ONNX wants int32 sequence_lens
    if not native and lengths is None:  # the Scan lanes mask every step: all T valid
        T = b.dim(x, 0)
        lengths = b.op("Expand", [T, b.dim(x, 1)])
        mask = b.time_mask(x, lengths)
    hs, cs = [], []
    inp = x
    for l in range(L):
        if native:
            h0_l = c0_l = None
            if h0 is not None:
                h0_l = b.op("Slice", [h0, b.ints([l * D]), b.ints([(l + 1) * D]), b.ints([0])])
            if c0 is not None:
                c0_l = b.op("Slice", [c0, b.ints([l * D]), b.ints([(l + 1) * D]), b.ints([0])])
            inp, hn_l, cn_l = _native_layer(b, layer, p, l, inp, seq_lens, h0_l, c0_l)
            hs.append(hn_l)
            cs.append(cn_l)
            continue
        ys = []
        for d in range(D):
            k = b.const(l * D + d, np.int64)  # a scalar index: Gather drops the axis
            h0_k = b.op("Gather", [h0, k], axis=0) if h0 is not None else None
            c0_k = b.op("Gather", [c0, k], axis=0) if c0 is not None else None
            y, hn_k, cn_k = _unrolled_lane(b, layer, l, d, inp, lengths, mask, h0_k, c0_k)
            ys.append(y)
            hs.append(b.op("Unsqueeze", [hn_k, b.ints([0])]))
            if has_c:
                cs.append(b.op("Unsqueeze", [cn_k, b.ints([0])]))
        inp = ys[0] if D == 1 else b.op("Concat", ys, axis=-1)
    hn = hs[0] if len(hs) == 1 else b.op("Concat", hs, axis=0)
    cn = None
    if has_c:
        cn = cs[0] if len(cs) == 1 else b.op("Concat", cs, axis=0)
    if native and mask is not None:
        # onnxruntime writes zeros past each length, but the ONNX spec does not say so
        inp = b.op("Where", [mask, inp, b.scalar(0.0)])
    return inp, hn, cn


# ---- models -----------------------------------------------------------------------------------
class _Graph:
    """One exported graph: builder, inputs, outputs and a short description."""

    def __init__(self, title: str) -> None:
        self.b = _Builder()
        self.title = title
        self.inputs: list[Any] = []
        self.outputs: list[Any] = []

    def input(self, name: str, elem: str, shape: list[Any]) -> str:
        self.inputs.append(self.b.value_info(name, getattr(self.b.TP, elem), shape))
        return name

    def output(self, value: str, name: str, elem: str, shape: list[Any]) -> None:
        self.b.op_to("Identity", [value], [name])
        self.outputs.append(self.b.value_info(name, getattr(self.b.TP, elem), shape))


def _classifier(model: Any) -> list[_Graph]:
    """SequenceClassifier: ids [T, B], lengths [B] -> logits [B, C] (its eval forward)."""
    g = _Graph("rnncore SequenceClassifier: logits of ids [T, B] with lengths [B]")
    b = g.b
    ids, lengths = g.input("ids", "INT64", ["T", "B"]), g.input("lengths", "INT64", ["B"])
    x = b.embedding(ids, model.embedding, "embedding")
    y, hn, _ = _recurrent(b, model.rnn, x, lengths, where="SequenceClassifier")
    D = model.num_directions
    if model.pooling == "last":
        # the top layer's final states, forward direction then reverse: [D, B, R] -> [B, D*R]
        top = b.op("Slice", [hn, b.ints([-D]), b.ints([2**62]), b.ints([0])])
        pooled = b.op("Reshape", [b.op("Transpose", [top], perm=[1, 0, 2]), b.ints([0, -1])])
    elif model.pooling == "mean":
        # outputs past a sequence's end are zero, so the plain sum is the sum of valid steps
        total = b.op("ReduceSum", [y, b.ints([0])], keepdims=0)
        count = b.op("Cast", [b.op("Unsqueeze", [lengths, b.ints([1])])], to=b.TP.FLOAT)
        pooled = b.op("Div", [total, count])
    else:  # max over each sequence's valid steps
        masked = b.op("Where", [b.time_mask(ids, lengths), y, b.scalar(-np.inf)])
        pooled = b.op("ReduceMax", [masked], axes=[0], keepdims=0)
    g.output(b.linear(pooled, model.classifier, "classifier"), "logits", "FLOAT", ["B", "C"])
    return [g]


def _kim_cnn(model: Any) -> list[_Graph]:
    """KimCNN: ids [T, B], lengths [B] -> logits [B, C]: wide Conv per width, max over the
    windows that touch the sentence, ReLU."""
    g = _Graph("rnncore KimCNN: logits of ids [T, B] with lengths [B]")
    b = g.b
    ids, lengths = g.input("ids", "INT64", ["T", "B"]), g.input("lengths", "INT64", ["B"])
    x = b.embedding(ids, model.embedding, "embedding")
    # words past a sentence's end read as zero vectors (Kim's padding)
    valid = b.op("Cast", [b.time_mask(ids, lengths)], to=b.TP.FLOAT)
    x = b.op("Transpose", [b.op("Mul", [x, valid])], perm=[1, 2, 0])  # [B, E, T]
    Tn = b.op("Squeeze", [b.dim(ids, 0), b.ints([0])])
    pooled = []
    for i, (conv, w) in enumerate(zip(model.convs, model.widths, strict=True)):
        inputs = [x, b.weight(conv.weight.data, f"convs.{i}.weight")]
        if conv.bias is not None:
            inputs.append(b.weight(conv.bias.data, f"convs.{i}.bias"))
        pad = conv.padding
        y = b.op("Conv", inputs, pads=[pad, pad], kernel_shape=[conv.kernel_size])  # [B, M, Lo]
        Lo = b.op("Add", [Tn, b.const(2 * pad - conv.kernel_size + 1, np.int64)])
        steps = b.op("Range", [b.const(0, np.int64), Lo, b.const(1, np.int64)])
        touch = b.op("Unsqueeze", [b.op("Add", [lengths, b.const(w - 1, np.int64)]), b.ints([1])])
        windows = b.op("Unsqueeze", [b.op("Less", [steps, touch]), b.ints([1])])  # [B, 1, Lo]
        top = b.op(
            "ReduceMax",
            [b.op("Where", [windows, y, b.scalar(-np.inf)])],
            axes=[2],
            keepdims=0,
        )
        pooled.append(b.op("Relu", [top]))
    h = pooled[0] if len(pooled) == 1 else b.op("Concat", pooled, axis=1)
    g.output(b.linear(h, model.classifier, "classifier"), "logits", "FLOAT", ["B", "C"])
    return [g]


def _language_model(model: Any) -> list[_Graph]:
    """LanguageModel: ids [T, B], h0 [L, B, R] (c0 [L, B, H]) -> logits [T, B, V], hn (cn)."""
    rnn = model.rnn
    has_c = rnn.cell == "lstm"
    g = _Graph(
        "rnncore LanguageModel: next-token logits of ids [T, B] from the state h0"
        + (", c0" if has_c else "")
    )
    b = g.b
    ids = g.input("ids", "INT64", ["T", "B"])
    L, R, H = rnn.num_layers, rnn.state_size, rnn.hidden_size
    h0 = g.input("h0", "FLOAT", [L, "B", R])
    c0 = g.input("c0", "FLOAT", [L, "B", H]) if has_c else None
    table = b.weight(model.embedding.weight.data, "embedding.weight")
    x = b.embedding(ids, model.embedding, "embedding", table=table)
    y, hn, cn = _recurrent(b, rnn, x, None, h0=h0, c0=c0, where="LanguageModel")
    dec = model.decoder
    if hasattr(dec, "_weight"):  # TiedDecoder: logits = y · embedding.weightᵀ + bias
        flat = b.op("Reshape", [y, b.ints([-1, model.embedding.embedding_dim])])
        bias = b.weight(dec.bias.data, "decoder.bias")
        logits2 = b.op("Gemm", [flat, table, bias], transB=1)
        lead = b.op("Shape", [y], start=0, end=2)
        shape = b.op("Concat", [lead, b.ints([dec.out_features])], axis=0)
        logits = b.op("Reshape", [logits2, shape])
    else:
        logits = b.linear(y, dec, "decoder")
    V = model.vocab_size
    g.output(logits, "logits", "FLOAT", ["T", "B", V])
    g.output(hn, "hn", "FLOAT", [L, "B", R])
    if has_c:
        g.output(cn, "cn", "FLOAT", [L, "B", H])
    return [g]


def _tagger(model: Any) -> list[_Graph]:
    """SequenceTagger: ids [T, B], lengths [B] (chars [Lc, N], char_lengths [N]) -> logits
    [T, B, C] and decoded tags int64 [T, B] (-100 past each length)."""
    g = _Graph("rnncore SequenceTagger: tag logits and decoded tags of ids [T, B], lengths [B]")
    b = g.b
    ids, lengths = g.input("ids", "INT64", ["T", "B"]), g.input("lengths", "INT64", ["B"])
    x = b.embedding(ids, model.embedding, "embedding")
    if model.use_chars:
        chars = g.input("chars", "INT64", ["Lc", "N"])
        char_lengths = g.input("char_lengths", "INT64", ["N"])
        xc = b.embedding(chars, model.char_embedding, "char_embedding")
        _, hc, _ = _recurrent(b, model.char_rnn, xc, char_lengths, where="SequenceTagger")
        # [2, N, Hc] -> [N, 2*Hc]: each word's forward | backward final state
        word_feat = b.op("Reshape", [b.op("Transpose", [hc], perm=[1, 0, 2]), b.ints([0, -1])])
        # scatter the N words into [B, T, 2*Hc] where t < lengths[b], sentence by sentence
        mask_bt = b.op("Transpose", [b.op("Squeeze", [b.time_mask(ids, lengths), b.ints([2])])])
        positions = b.op("Transpose", [b.op("NonZero", [mask_bt])])  # [N, 2] (b, t), row-major
        width = 2 * model.char_rnn.hidden_size
        shape = b.op("Concat", [b.dim(ids, 1), b.dim(ids, 0), b.ints([width])], axis=0)
        zeros = b.op(
            "ConstantOfShape",
            [shape],
            value=b.numpy_helper.from_array(np.zeros(1, np.float32), b.name("zero")),
        )
        feat = b.op("ScatterND", [zeros, positions, word_feat])
        x = b.op("Concat", [x, b.op("Transpose", [feat], perm=[1, 0, 2])], axis=-1)
    y, _, _ = _recurrent(b, model.rnn, x, lengths, where="SequenceTagger")
    logits = b.linear(y, model.classifier, "classifier")
    C = model.classifier.out_features
    g.output(logits, "logits", "FLOAT", ["T", "B", C])
    mask = b.op("Squeeze", [b.time_mask(ids, lengths), b.ints([2])])  # [T, B]
    if model.crf is not None:
        tags = _viterbi(b, model.crf, logits, mask)
    else:
        tags = b.op("ArgMax", [logits], axis=-1, keepdims=0)
        if model.bio is not None:
            tags = _bio_repair(b, model.bio, tags)
    g.output(b.op("Where", [mask, tags, b.const(_IGNORE, np.int64)]), "tags", "INT64", ["T", "B"])
    return [g]


def _bio_repair(b: _Builder, bio: Any, tags: str) -> str:
    """BIORepair on tags int64 [T, B]: an I-X after O, the start, or another type -> B-X."""
    kind = b.const(bio.type, np.int64)
    types = b.op("Gather", [kind, tags], axis=0)
    prev = b.op("Slice", [types, b.ints([0]), b.ints([-1]), b.ints([0])])  # types of t - 1
    first = b.op("Expand", [b.const([[0]], np.int64), b.op("Shape", [prev], start=1)])
    prev = b.op("Concat", [first, prev], axis=0)
    inside = b.op("Gather", [b.const(bio.is_inside, bool), tags], axis=0)
    bad = b.op("And", [inside, b.op("Not", [b.op("Equal", [prev, types])])])
    begin = b.op("Gather", [b.const(bio.begin_of, np.int64), tags], axis=0)
    return b.op("Where", [bad, begin, tags])


def _viterbi(b: _Builder, crf: Any, emissions: str, mask: str) -> str:
    """The CRF's Viterbi path as two Scans (forward max-product, then backtracking), in float64
    as the engine's: emissions [T, B, K], mask bool [T, B] (t < length) -> tags int64 [T, B].

    Forbidden transitions and first tags score -inf; ties go to the lowest tag id (the engine's
    strict > and ONNX ArgMax's first index agree). Step 0 runs through the Scans as a no-op so
    that T = 1 needs no empty Scan.
    """
    K = crf.num_tags
    trans = np.asarray(crf.transitions.data, np.float64)
    start = np.asarray(crf.start_transitions.data, np.float64)
    if crf.allowed is not None:
        trans = np.where(crf.allowed, trans, -np.inf)
        start = np.where(crf.allowed_start, start, -np.inf)
    end = np.asarray(crf.end_transitions.data, np.float64)
    DOUBLE, INT64, BOOL = b.TP.DOUBLE, b.TP.INT64, b.TP.BOOL
    e = b.op("Cast", [emissions], to=DOUBLE)
    # transition steps are 1 <= t < length
    T = b.op("Squeeze", [b.dim(e, 0), b.ints([0])])
    steps = b.op("Range", [b.const(0, np.int64), T, b.const(1, np.int64)])
    later = b.op("Unsqueeze", [b.op("Greater", [steps, b.const(0, np.int64)]), b.ints([1])])
    moves = b.op("And", [mask, later])  # [T, B]
    e0 = b.op("Gather", [e, b.const(0, np.int64)], axis=0)  # [B, K]
    score0 = b.op("Add", [e0, b.const(start, np.float64)])

    # forward: score'[j] = max_i (score[i] + trans[i, j]) + e_t[j], back_t[j] = that i; step 0
    # and the steps past a sequence's end leave its score as it is
    s = b.sub()
    score, e_t, m_t = s.name("score"), s.name("e_t"), s.name("m_t")
    cand = s.op(  # [B, K(from), K(to)]
        "Add", [s.op("Unsqueeze", [score, s.ints([2])]), s.const(trans, np.float64)]
    )
    best = s.op("ReduceMax", [cand], axes=[1], keepdims=0)
    back_t, score_out = s.name("back_t"), s.name("score_out")
    s.op_to("ArgMax", [cand], [back_t], axis=1, keepdims=0)
    m2 = s.op("Unsqueeze", [m_t, s.ints([1])])
    s.op_to("Where", [m2, s.op("Add", [best, e_t]), score], [score_out])
    fwd = s.helper.make_graph(
        s.nodes,
        s.name("viterbi_forward"),
        [
            s.value_info(score, DOUBLE, [None, K]),
            s.value_info(e_t, DOUBLE, [None, K]),
            s.value_info(m_t, BOOL, [None]),
        ],
        [s.value_info(score_out, DOUBLE, [None, K]), s.value_info(back_t, INT64, [None, K])],
    )
    final, back = b.op("Scan", [score0, e, moves], n_out=2, body=fwd, num_scan_inputs=2)
    last = b.op("ArgMax", [b.op("Add", [final, b.const(end, np.float64)])], axis=1, keepdims=0)

    # backtracking from T-1 down to 0: a valid step writes the current tag (else -100), a
    # transition step then moves to its back pointer
    s = b.sub()
    cur, bk, valid, mv = s.name("cur"), s.name("back_t"), s.name("valid_t"), s.name("move_t")
    prev = s.op(
        "Squeeze",
        [s.op("GatherElements", [bk, s.op("Unsqueeze", [cur, s.ints([1])])], axis=1), s.ints([1])],
    )
    cur_out, tag_t = s.name("cur_out"), s.name("tag_t")
    s.op_to("Where", [mv, prev, cur], [cur_out])
    s.op_to("Where", [valid, cur, s.const(_IGNORE, np.int64)], [tag_t])
    bwd = s.helper.make_graph(
        s.nodes,
        s.name("viterbi_backtrack"),
        [
            s.value_info(cur, INT64, [None]),
            s.value_info(bk, INT64, [None, K]),
            s.value_info(valid, BOOL, [None]),
            s.value_info(mv, BOOL, [None]),
        ],
        [s.value_info(cur_out, INT64, [None]), s.value_info(tag_t, INT64, [None])],
    )
    _, tags = b.op(
        "Scan",
        [last, back, mask, moves],
        n_out=2,
        body=bwd,
        num_scan_inputs=3,
        scan_input_directions=[1, 1, 1],
        scan_output_directions=[1],
    )
    return tags


def _forecaster(model: Any) -> list[_Graph]:
    """Forecaster: x [T, B, I] -> forecast [B, h] (and predictions [T, B, h], many_to_many)."""
    g = _Graph("rnncore Forecaster: the next horizon values of windows x [T, B, I]")
    b = g.b
    x = g.input("x", "FLOAT", ["T", "B", model.input_size])
    y, hn, _ = _recurrent(b, model.rnn, x, None, where="Forecaster")
    h = model.horizon
    if model.mode == "many_to_one":
        top = b.op("Gather", [hn, b.const(-1, np.int64)], axis=0)  # top layer's final h [B, H]
        g.output(b.linear(top, model.head, "head"), "forecast", "FLOAT", ["B", h])
        return [g]
    pred = b.linear(y, model.head, "head")
    g.output(b.op("Gather", [pred, b.const(-1, np.int64)], axis=0), "forecast", "FLOAT", ["B", h])
    g.output(pred, "predictions", "FLOAT", ["T", "B", h])
    return [g]


def _sequence_regressor(model: Any) -> list[_Graph]:
    """SequenceRegressor: x [T, B, I] (ids int64 [T, B] with an embedding), lengths [B] ->
    outputs [B, O] (readout "last") or [T, B, O] (readout "all")."""
    g = _Graph("rnncore SequenceRegressor: outputs of x [T, B, I] (or ids) with lengths [B]")
    b = g.b
    if model.embedding is not None:
        x = b.embedding(g.input("x", "INT64", ["T", "B"]), model.embedding, "embedding")
    else:
        x = g.input("x", "FLOAT", ["T", "B", model.rnn.input_size])
    lengths = g.input("lengths", "INT64", ["B"])
    y, hn, _ = _recurrent(b, model.rnn, x, lengths, where="SequenceRegressor")
    O = model.head.out_features
    if model.readout == "last":
        top = b.op("Gather", [hn, b.const(-1, np.int64)], axis=0)  # top layer's final h [B, H]
        g.output(b.linear(top, model.head, "head"), "outputs", "FLOAT", ["B", O])
    else:
        g.output(b.linear(y, model.head, "head"), "outputs", "FLOAT", ["T", "B", O])
    return [g]


def _seq2seq(model: Any) -> list[_Graph]:
    """Seq2Seq: an encoder graph and a one-step decoder graph (see the module docstring)."""
    H, L, D = model.H, model.L, model.D
    has_c = model.is_lstm
    enc = _Graph("rnncore Seq2Seq encoder: src [S, B], src_lengths [B] -> the decoder's inputs")
    b = enc.b
    src = enc.input("src", "INT64", ["S", "B"])
    src_lengths = enc.input("src_lengths", "INT64", ["B"])
    if model.reverse_source:
        src = b.op("ReverseSequence", [src, src_lengths], time_axis=0, batch_axis=1)
    x = b.embedding(src, model.src_embedding, "src_embedding")
    out, hn, cn = _recurrent(b, model.encoder, x, src_lengths, where="Seq2Seq")
    if D == 2:
        halves = b.op("Split", [out, b.ints([H, H])], n_out=2, axis=-1)
        memory = b.op("Add", halves)

        def bridge(state: str, layer: Any, tanh: bool) -> str:
            s4 = b.op("Reshape", [state, b.ints([L, 2, -1, H])])  # [L, D, B, H]
            if layer is None:  # "sum"
                return b.op("ReduceSum", [s4, b.ints([1])], keepdims=0)
            cat = b.op("Reshape", [b.op("Transpose", [s4], perm=[0, 2, 1, 3]), b.ints([0, 0, -1])])
            y = b.linear(cat, layer, "bridge")  # [L, B, 2H] = [h_fwd; h_bwd] -> [L, B, H]
            return b.op("Tanh", [y]) if tanh else y

        h0 = bridge(hn, model.bridge, True)
        c0 = bridge(cn, model.bridge_c, False) if has_c else None
    else:
        memory, h0, c0 = out, hn, cn
    enc.output(h0, "h0", "FLOAT", [L, "B", H])
    if has_c:
        enc.output(c0, "c0", "FLOAT", [L, "B", H])
    if model.use_context:
        context = b.op("Gather", [h0, b.const(-1, np.int64)], axis=0)  # top layer [B, H]
        enc.output(context, "context", "FLOAT", ["B", H])
    if model.attention is not None:
        enc.output(memory, "memory", "FLOAT", ["S", "B", H])

    dec = _Graph("rnncore Seq2Seq decoder step: log-probabilities of the next token, new state")
    b = dec.b
    tokens = dec.input("tokens", "INT64", ["B"])
    h0 = dec.input("h0", "FLOAT", [L, "B", H])
    c0 = dec.input("c0", "FLOAT", [L, "B", H]) if has_c else None
    x = b.op("Unsqueeze", [b.embedding(tokens, model.tgt_embedding, "tgt_embedding"), b.ints([0])])
    if model.use_context:
        context = dec.input("context", "FLOAT", ["B", H])
        x = b.op("Concat", [x, b.op("Unsqueeze", [context, b.ints([0])])], axis=-1)
    y, hn, cn = _recurrent(b, model.decoder, x, None, h0=h0, c0=c0, where="Seq2Seq")
    top = b.op("Squeeze", [y, b.ints([0])])  # [B, H]
    if model.attention is not None:
        memory = dec.input("memory", "FLOAT", ["S", "B", H])
        lengths = dec.input("src_lengths", "INT64", ["B"])
        mb = b.op("Transpose", [memory], perm=[1, 0, 2])  # [B, S, H]
        keys = mb if model.attention == "dot" else b.linear(mb, model.attn, "attn")
        q = b.op("Unsqueeze", [top, b.ints([1])])  # [B, 1, H]
        scores = b.op("MatMul", [q, b.op("Transpose", [keys], perm=[0, 2, 1])])  # [B, 1, S]
        valid = b.op("Transpose", [b.time_mask(memory, lengths)], perm=[1, 2, 0])  # [B, 1, S]
        weights = b.op("Softmax", [b.op("Where", [valid, scores, b.scalar(-np.inf)])], axis=-1)
        ctx = b.op("MatMul", [weights, mb])  # [B, 1, H]
        cat = b.op("Squeeze", [b.op("Concat", [ctx, q], axis=-1), b.ints([1])])  # [c; h]
        top = b.op("Tanh", [b.linear(cat, model.attn_combine, "attn_combine")])
    logits = b.linear(top, model.output, "output")
    V = model.output.out_features
    dec.output(b.op("LogSoftmax", [logits], axis=-1), "log_probs", "FLOAT", ["B", V])
    dec.output(hn, "hn", "FLOAT", [L, "B", H])
    if has_c:
        dec.output(cn, "cn", "FLOAT", [L, "B", H])
    return [enc, dec]


def _exporter(model: Any) -> Any:
    """The graph builder of a model's class, or TypeError naming the supported ones."""
    from .models import (
        Forecaster,
        KimCNN,
        LanguageModel,
        Seq2Seq,
        SequenceClassifier,
        SequenceRegressor,
        SequenceTagger,
    )

    table = [
        (SequenceClassifier, _classifier),
        (KimCNN, _kim_cnn),
        (LanguageModel, _language_model),
        (SequenceTagger, _tagger),
        (Forecaster, _forecaster),
        (SequenceRegressor, _sequence_regressor),
        (Seq2Seq, _seq2seq),
    ]
    for cls, fn in table:
        if isinstance(model, cls):
            return fn
    names = ", ".join(cls.__name__ for cls, _ in table)
    raise TypeError(
        f"rnncore.onnx.export: cannot export a {type(model).__name__}; supported models: {names}"
    )


def _metadata(model: Any, part: str | None) -> dict[str, str]:
    """The file's metadata_props: rnncore version, model type and config, and the names and
    vocabularies a deployment needs (labels, tag_names, vocab, char_vocab: JSON lists)."""
    from . import __version__

    meta = {
        "rnncore_version": __version__,
        "model_type": str(getattr(model, "MODEL_TYPE", type(model).__name__)),
        "config": json.dumps(model.config(), default=str) if hasattr(model, "config") else "{}",
    }
    if part:
        meta["part"] = part
    for attr in ("labels", "tag_names"):
        names = getattr(model, attr, None)
        if names:
            meta[attr] = json.dumps([str(n) for n in names])
    # what turns text into ids, where the model carries it (load_checkpoint sets it)
    for attr in ("vocab", "char_vocab"):
        itos = getattr(getattr(model, attr, None), "itos", None)
        if itos:
            meta[attr] = json.dumps(list(itos))
    if hasattr(model, "lowercase") and getattr(model, "vocab", None) is not None:
        meta["lowercase"] = json.dumps(bool(model.lowercase))
    return meta


def _used_names(nodes: list[Any]) -> set[str]:
    """Every value name the nodes read, Scan bodies included."""
    used: set[str] = set()
    for node in nodes:
        used.update(node.input)
        for attr in node.attribute:
            if attr.HasField("g"):
                used |= _used_names(list(attr.g.node))
    return used


def _host_model(model: Any) -> Any:
    """``model``, or a CPU copy of it (its config and state_dict) when its parameters live on a
    GPU (a language model moved there whole): the graphs are built from host arrays."""
    if all(isinstance(p.data, np.ndarray) for p in model.parameters()):
        return model
    twin = type(model)(**model.config())
    twin.load_state_dict(model.state_dict())
    twin.char_level = getattr(model, "char_level", False)
    return twin


def to_onnx(model: Any) -> list[Any]:
    """The model's ONNX graphs as ``onnx.ModelProto`` objects, checked, not written.

    Args:
        model: a SequenceClassifier, KimCNN, LanguageModel, SequenceTagger, Forecaster,
            SequenceRegressor or Seq2Seq (any dtype; the graphs compute in float32).

    Returns:
        one ModelProto, or two for a Seq2Seq (encoder, then one-step decoder). Inputs and
        outputs and their shapes: see the module docstring.

    Raises:
        TypeError: another model type. ImportError: the onnx package is missing.
    """
    onnx = _onnx()
    build = _exporter(model)
    graphs = build(_host_model(model))
    parts = ["encoder", "decoder"] if len(graphs) == 2 else [None]
    protos = []
    for g, part in zip(graphs, parts, strict=True):
        used = _used_names(g.b.nodes)
        inits = [t for t in g.b.inits if t.name in used]  # constants a cell did not need
        graph = onnx.helper.make_graph(
            g.b.nodes, g.title, g.inputs, g.outputs, inits, doc_string=g.title
        )
        proto = onnx.helper.make_model(
            graph,
            opset_imports=[onnx.helper.make_opsetid("", OPSET)],
            producer_name="rnncore",
            doc_string=g.title,
        )
        proto.ir_version = IR_VERSION
        onnx.helper.set_model_props(proto, _metadata(model, part))
        onnx.checker.check_model(proto, full_check=True)
        protos.append(proto)
    return protos


def _output_paths(path: Any, parts: int) -> list[Path]:
    """PATH itself, or for an encoder-decoder NAME.encoder.onnx and NAME.decoder.onnx beside it
    (the suffix of PATH, ".onnx" if it has none)."""
    p = Path(os.fspath(path))
    if parts == 1:
        return [p]
    suffix = p.suffix or ".onnx"
    stem = p.name[: -len(p.suffix)] if p.suffix else p.name
    return [p.with_name(f"{stem}.encoder{suffix}"), p.with_name(f"{stem}.decoder{suffix}")]


def _check_writable(p: Path) -> None:
    where = "rnncore.onnx.export"
    if p.is_dir():
        raise IsADirectoryError(f"{where}: path {str(p)!r} is a directory; give a file name")
    parent = p.parent
    if not parent.is_dir():
        raise FileNotFoundError(
            f"{where}: cannot write {str(p)!r}: directory {str(parent)!r} does not exist"
        )
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise PermissionError(f"{where}: cannot write {str(p)!r}: permission denied")


def export(model: Any, path: str | os.PathLike[str]) -> list[Path]:
    """Write the model as ONNX: recurrent layers as ONNX RNN/LSTM/GRU operators (see the module
    docstring for each model's graph inputs and outputs).

    Args:
        model: a SequenceClassifier, KimCNN, LanguageModel, SequenceTagger, Forecaster,
            SequenceRegressor or Seq2Seq (e.g. ``load_checkpoint(dir).model``).
        path: the .onnx file to write. A Seq2Seq writes two files beside it: for
            ``"m.onnx"``, ``"m.encoder.onnx"`` and ``"m.decoder.onnx"``.

    Returns:
        the paths written (one, or encoder and decoder).

    Raises:
        TypeError: a model type without an exporter. OSError (FileNotFoundError,
        IsADirectoryError, PermissionError): path cannot be written, checked before any work.
        ImportError: the onnx package is missing (``pip install "rnncore[onnx]"``).

    Example::

        ckpt = load_checkpoint("runs/sst2")
        rnncore.onnx.export(ckpt.model, "sst2.onnx")
        sess = onnxruntime.InferenceSession("sst2.onnx")
        logits, = sess.run(None, {"ids": ids, "lengths": lengths})  # ids int64 [T, B]
    """
    onnx = _onnx()
    build = _exporter(model)  # the model type first: its error is the one that matters
    paths = _output_paths(path, 2 if build is _seq2seq else 1)
    for p in paths:
        _check_writable(p)
    for p, proto in zip(paths, to_onnx(model), strict=True):
        onnx.save_model(proto, str(p))
    return paths
