"""Pure-NumPy float64 reference of the RNN/LSTM/GRU layers: their equations, and the test oracle."""

# Forward only, float64, slow on purpose: one plain loop over time per layer
# and direction, every equation written out. The native engine must give the
# same numbers (tests/test_gradcheck.py), and this module must give the same
# numbers as torch.nn.RNN/LSTM/GRU (tests/test_reference.py).
#
# Layout legend (the same as the engine and PyTorch):
#   T steps, B batch, I input size, H hidden size, L layers, D directions (1 or 2),
#   G gates: RNN 1, LSTM 4 (order i, f, g, o), GRU 3 (order r, z, n).
#   x  [T, B, I] time-major; y [T, B, D*H]; h0, hn, c0, cn [L*D, B, H],
#   where index l*D + d is layer l, direction d (d = 1 is the reverse one).
#
# Parameters use PyTorch's names, for layer l (suffix "_reverse" for d = 1):
#   weight_ih_l{l} [G*H, I_l]  (I_0 = I, I_l = D*H for l > 0)
#   weight_hh_l{l} [G*H, H]
#   bias_ih_l{l}   [G*H]       (absent when bias=False: taken as zero)
#   bias_hh_l{l}   [G*H]
# and with layer norm (LSTM, reset-after GRU; see layer_norm_lstm_cell):
#   ln_weight_ih_l{l}, ln_weight_hh_l{l} [G*H];  LSTM: ln_weight_c_l{l}, ln_bias_c_l{l} [H]
# Row block k of a [G*H, .] matrix (rows k*H .. (k+1)*H-1) belongs to gate k.
#
# Dropout between layers is not modelled (the oracle is for p = 0 or eval mode).

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = [
    "CELLS",
    "GATES",
    "gated_cell",
    "gru_cell",
    "layer_norm",
    "layer_norm_gru_cell",
    "layer_norm_lstm_cell",
    "lstm_cell",
    "param_names",
    "param_shapes",
    "random_weights",
    "reference_cell_forward",
    "reference_forward",
    "rnn_cell",
    "sigmoid",
]

GATES = {"RNN": 1, "LSTM": 4, "GRU": 3, "GATED0": 1, "GATED1": 2, "GATED2": 3}
"""Number of gate blocks G per cell kind (GATEDk: the lecture's gated cell with k sigmoid gates,
see gated_cell)."""


def sigmoid(a: np.ndarray) -> np.ndarray:
    """Logistic function 1 / (1 + exp(-a)), computed without overflow for large |a|."""
    return np.exp(-np.logaddexp(0.0, -a))


def rnn_cell(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh"):
    """One Elman RNN step.

    a  = W_ih x + b_ih + W_hh h + b_hh
    h' = tanh(a)   or   max(a, 0)  (nonlinearity "relu")

    Shapes: x [B, I], h [B, H], w_ih [H, I], w_hh [H, H], b_ih, b_hh [H].
    Returns (h' [B, H], a [B, H]).
    """
    a = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    if nonlinearity == "tanh":
        return np.tanh(a), a
    return np.maximum(a, 0.0), a


def lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One LSTM step (Hochreiter & Schmidhuber, with forget gate; PyTorch's form).

    a          = W_ih x + b_ih + W_hh h + b_hh, split into blocks [a_i, a_f, a_g, a_o]
    i = sigmoid(a_i)    input gate
    f = sigmoid(a_f)    forget gate
    g = tanh(a_g)       candidate cell
    o = sigmoid(a_o)    output gate
    c' = f * c + i * g
    h' = o * tanh(c')

    Shapes: x [B, I], h, c [B, H], w_ih [4H, I], w_hh [4H, H], b_ih, b_hh [4H].
    Returns (h' [B, H], c' [B, H], a [B, 4H]).
    """
    a = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    a_i, a_f, a_g, a_o = np.split(a, 4, axis=1)
    i, f, g, o = sigmoid(a_i), sigmoid(a_f), np.tanh(a_g), sigmoid(a_o)
    c_new = f * c + i * g
    return o * np.tanh(c_new), c_new, a


def gru_cell(x, h, w_ih, w_hh, b_ih, b_hh, reset_after=True):
    """One GRU step (Cho et al. 2014), in either of its two published forms.

    With W_ih = [W_ir; W_iz; W_in], W_hh = [W_hr; W_hz; W_hn] (same for the biases):
    r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)             reset gate
    z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)             update gate
    reset_after=True  (PyTorch, cuDNN, Keras default):
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    reset_after=False (Cho et al.'s original form):
        n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)
    h' = (1 - z) * n + z * h

    Shapes: x [B, I], h [B, H], w_ih [3H, I], w_hh [3H, H], b_ih, b_hh [3H].
    Returns (h' [B, H], a [B, 3H]) where a holds the pre-activations of r, z and n.
    """
    hidden = h.shape[1]
    gx = x @ w_ih.T + b_ih  # [B, 3H]
    w_hrz, w_hn = w_hh[: 2 * hidden], w_hh[2 * hidden :]
    b_hrz, b_hn = b_hh[: 2 * hidden], b_hh[2 * hidden :]
    a_rz = gx[:, : 2 * hidden] + h @ w_hrz.T + b_hrz
    r = sigmoid(a_rz[:, :hidden])
    z = sigmoid(a_rz[:, hidden:])
    if reset_after:
        a_n = gx[:, 2 * hidden :] + r * (h @ w_hn.T + b_hn)
    else:
        a_n = gx[:, 2 * hidden :] + (r * h) @ w_hn.T + b_hn
    n = np.tanh(a_n)
    return (1.0 - z) * n + z * h, np.concatenate([a_rz, a_n], axis=1)


LAYER_NORM_EPS = 1e-5
"""ε of every layer norm (PyTorch's LayerNorm default)."""


def layer_norm(a):
    """(a - mean(a)) / sqrt(var(a) + ε) over the last axis (biased variance, as Ba et al.)."""
    mean = a.mean(axis=-1, keepdims=True)
    return (a - mean) / np.sqrt(a.var(axis=-1, keepdims=True) + LAYER_NORM_EPS)


def layer_norm_lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh, g_ih, g_hh, g_c, b_c):
    """One layer-normalised LSTM step (Ba et al. 2016; haste's LayerNormLSTM):

    a  = g_ih * LN(W_ih x) + g_hh * LN(W_hh h) + b_ih + b_hh   (each LN over all 4H)
    i, f, g, o as lstm_cell;  c' = f * c + i * g;  h' = o * tanh(g_c * LN(c') + b_c)

    Shapes: as lstm_cell, and g_ih, g_hh [4H], g_c, b_c [H].
    Returns (h' [B, H], c' [B, H], a [B, 4H]).
    """
    a = g_ih * layer_norm(x @ w_ih.T) + g_hh * layer_norm(h @ w_hh.T) + b_ih + b_hh
    a_i, a_f, a_g, a_o = np.split(a, 4, axis=1)
    c_new = sigmoid(a_f) * c + sigmoid(a_i) * np.tanh(a_g)
    return sigmoid(a_o) * np.tanh(g_c * layer_norm(c_new) + b_c), c_new, a


def layer_norm_gru_cell(x, h, w_ih, w_hh, b_ih, b_hh, g_ih, g_hh):
    """One layer-normalised GRU step (reset-after form): gru_cell with W_ih x replaced by
    g_ih * LN(W_ih x) and W_hh h by g_hh * LN(W_hh h), each LN over all 3H.

    Shapes: as gru_cell, and g_ih, g_hh [3H]. Returns (h' [B, H], a [B, 3H]).
    """
    hidden = h.shape[1]
    gx = g_ih * layer_norm(x @ w_ih.T) + b_ih
    gh = g_hh * layer_norm(h @ w_hh.T) + b_hh
    a_rz = gx[:, : 2 * hidden] + gh[:, : 2 * hidden]
    r = sigmoid(a_rz[:, :hidden])
    z = sigmoid(a_rz[:, hidden:])
    a_n = gx[:, 2 * hidden :] + r * gh[:, 2 * hidden :]
    n = np.tanh(a_n)
    return (1.0 - z) * n + z * h, np.concatenate([a_rz, a_n], axis=1)


def gated_cell(x, s, w_ih, w_hh, b_ih, b_hh, gates):
    """One step of the lecture's gated cell with ``gates`` sigmoid gates (0, 1 or 2).

    Blocks in the order (input, forget, candidate), restricted to those present:
    r = tanh(U_r x + V_r s + b_r); 0 gates: s' = s + r; 1: s' = s + i * r; 2: s' = f * s + i * r
    with i, f = sigmoid(U x + V s + b). The state s is also the output.

    Returns (s' [B, H], pre-activations [B, G*H]).
    """
    pre = x @ w_ih.T + b_ih + s @ w_hh.T + b_hh
    H = s.shape[1]
    r = np.tanh(pre[:, gates * H :])
    if gates == 0:
        return s + r, pre
    i = sigmoid(pre[:, :H])
    f = sigmoid(pre[:, H : 2 * H]) if gates == 2 else 1.0
    return f * s + i * r, pre


def _gated_step(gates):
    def step(x, state, w_ih, w_hh, b_ih, b_hh):
        s, pre = gated_cell(x, state[0], w_ih, w_hh, b_ih, b_hh, gates)
        return (s,), pre

    return step


# One step of each registered cell (the engine's registry names, rnncore.nn.CELLS), in one form:
# (x [B, I], state tuple of [B, H] arrays, w_ih, w_hh, b_ih, b_hh) -> (new state, pre [B, G*H]).
# A new cell adds its step function above and one line in CELLS.
def _rnn_step(nonlinearity):
    def step(x, state, w_ih, w_hh, b_ih, b_hh):
        h, pre = rnn_cell(x, state[0], w_ih, w_hh, b_ih, b_hh, nonlinearity)
        return (h,), pre

    return step


def _lstm_step(x, state, w_ih, w_hh, b_ih, b_hh):
    h, c, pre = lstm_cell(x, state[0], state[1], w_ih, w_hh, b_ih, b_hh)
    return (h, c), pre


def _gru_step(reset_after):
    def step(x, state, w_ih, w_hh, b_ih, b_hh):
        h, pre = gru_cell(x, state[0], w_ih, w_hh, b_ih, b_hh, reset_after)
        return (h,), pre

    return step


CELLS = {
    "rnn": ("RNN", _rnn_step("tanh")),
    "rnn_relu": ("RNN", _rnn_step("relu")),
    "lstm": ("LSTM", _lstm_step),
    "gru": ("GRU", _gru_step(True)),
    "gru_v1": ("GRU", _gru_step(False)),
    "gated-residual": ("GATED0", _gated_step(0)),
    "gated-input": ("GATED1", _gated_step(1)),
    "gated-forget": ("GATED2", _gated_step(2)),
}
"""Registry name -> (PyTorch-style mode of its weights, one step of the cell)."""


def _ln_lstm_step(x, state, w_ih, w_hh, b_ih, b_hh, *ln):
    h, c, pre = layer_norm_lstm_cell(x, state[0], state[1], w_ih, w_hh, b_ih, b_hh, *ln)
    return (h, c), pre


def _ln_gru_step(x, state, w_ih, w_hh, b_ih, b_hh, *ln):
    h, pre = layer_norm_gru_cell(x, state[0], w_ih, w_hh, b_ih, b_hh, *ln)
    return (h,), pre


LAYER_NORM_STEPS = {"lstm": _ln_lstm_step, "gru": _ln_gru_step}
"""The cells with a layer-normalised form, and its step (the extra arguments are the lane's
layer-norm parameters in param_names order)."""


def _cell_name(mode, nonlinearity, reset_after):
    if mode == "RNN":
        return "rnn" if nonlinearity == "tanh" else "rnn_relu"
    if mode == "GRU":
        return "gru" if reset_after else "gru_v1"
    return "lstm"


def _ln_names(sfx, cell_state):
    names = [f"ln_weight_ih{sfx}", f"ln_weight_hh{sfx}"]
    return names + ([f"ln_weight_c{sfx}", f"ln_bias_c{sfx}"] if cell_state else [])


def param_names(num_layers=1, bidirectional=False, bias=True, proj=False, layer_norm=None):
    """PyTorch's parameter names in PyTorch's order: layer, direction, ih/hh weights, biases,
    and with ``proj`` (an LSTM's proj_size) the projection weight_hr. ``layer_norm`` "LSTM" or
    "GRU" appends each lane's layer-norm parameters (rnncore's names; PyTorch has none)."""
    names = []
    for layer in range(num_layers):
        for d in range(2 if bidirectional else 1):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            names += [f"weight_ih{sfx}", f"weight_hh{sfx}"]
            if bias:
                names += [f"bias_ih{sfx}", f"bias_hh{sfx}"]
            if proj:
                names.append(f"weight_hr{sfx}")
            if layer_norm:
                names += _ln_names(sfx, layer_norm == "LSTM")
    return names


def param_shapes(
    mode,
    input_size,
    hidden_size,
    num_layers=1,
    bidirectional=False,
    bias=True,
    proj_size=0,
    layer_norm=False,
):
    """{name: shape} for a layer stack, with PyTorch's names and shapes (see the module legend).

    With proj_size P (LSTM only): weight_hh [4H, P], weight_ih above layer 0 [4H, D*P] and
    weight_hr [P, H]. With layer_norm: ln_weight_ih, ln_weight_hh [G*H], and for the LSTM
    ln_weight_c, ln_bias_c [H].
    """
    gh = _gates(mode) * hidden_size
    dirs = 2 if bidirectional else 1
    state = proj_size or hidden_size
    shapes = {}
    names = param_names(
        num_layers, bidirectional, bias, proj=proj_size > 0, layer_norm=mode if layer_norm else None
    )
    for name in names:
        layer = int(name.rsplit("_l", 1)[1].split("_")[0])
        if name.startswith(("ln_weight_c", "ln_bias_c")):
            shapes[name] = (hidden_size,)
        elif name.startswith("weight_ih"):
            shapes[name] = (gh, input_size if layer == 0 else dirs * state)
        elif name.startswith("weight_hh"):
            shapes[name] = (gh, state)
        elif name.startswith("weight_hr"):
            shapes[name] = (state, hidden_size)
        else:
            shapes[name] = (gh,)
    return shapes


def random_weights(
    mode,
    input_size,
    hidden_size,
    num_layers=1,
    bidirectional=False,
    bias=True,
    rng=None,
    scale=None,
):
    """Random float64 parameters {name: array}, each entry U(-scale, scale).

    scale defaults to 1/sqrt(hidden_size), PyTorch's default initialisation.
    rng: a numpy Generator or a seed.
    """
    rng = np.random.default_rng(rng)
    scale = 1.0 / np.sqrt(hidden_size) if scale is None else scale
    shapes = param_shapes(mode, input_size, hidden_size, num_layers, bidirectional, bias)
    return {k: rng.uniform(-scale, scale, size=s) for k, s in shapes.items()}


def reference_forward(
    mode,
    x,
    weights,
    *,
    num_layers=1,
    bidirectional=False,
    lengths=None,
    h0=None,
    c0=None,
    nonlinearity="tanh",
    reset_after=True,
    trace=None,
):
    """Run a stacked, optionally bidirectional RNN/LSTM/GRU over a batch of sequences.

    mode: "RNN", "LSTM" or "GRU".
    x: [T, B, I] time-major input (converted to float64).
    weights: {name: array} with PyTorch's names and shapes (module legend); bias
        entries may be absent (bias=False), and are then zero.
    lengths: None (every sequence has T steps) or B integers in [1, T].
    h0, c0: [L*D, B, H] initial states, or None for zeros; c0 only for LSTM.
    nonlinearity: "tanh" or "relu" (RNN only).
    reset_after: GRU form, see gru_cell.
    trace: optional list; for every layer, direction and step, appends a tuple
        (layer, direction, t, active [B] bool, pre-activations [B, G*H]) so that
        tests can see how close a ReLU pre-activation comes to its kink.

    Variable lengths follow PyTorch's packed sequences: sequence b runs over its
    own steps 0..lengths[b]-1 only. The forward direction's final state is its
    state after step lengths[b]-1; the reverse direction starts at step
    lengths[b]-1 from h0 and ends after step 0. Outputs at t >= lengths[b] are zero.
    Layer l > 0 takes layer l-1's output [T, B, D*H] as its input.

    Returns (y [T, B, D*H], hn [L*D, B, H], cn [L*D, B, H] for LSTM else None),
    all float64. An LSTM whose weights include weight_hr (proj_size P) gives y [T, B, D*P] and
    hn [L*D, B, P] (h0 likewise), cn [L*D, B, H].
    """
    _gates(mode)
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(
            f"reference_forward: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}"
        )
    return reference_cell_forward(
        _cell_name(mode, nonlinearity, reset_after),
        x,
        weights,
        num_layers=num_layers,
        bidirectional=bidirectional,
        lengths=lengths,
        h0=h0,
        c0=c0,
        trace=trace,
    )


def reference_cell_forward(
    cell,
    x,
    weights,
    *,
    num_layers=1,
    bidirectional=False,
    lengths=None,
    h0=None,
    c0=None,
    trace=None,
):
    """reference_forward for a registered cell name ("rnn", "rnn_relu", "lstm", "gru", "gru_v1").

    Arguments and result as reference_forward (which names the cell by mode and options).
    """
    if cell not in CELLS:
        raise ValueError(f"reference_forward: cell must be one of {sorted(CELLS)}, got {cell!r}")
    mode, step = CELLS[cell]
    if num_layers < 1:
        raise ValueError(f"reference_forward: num_layers must be >= 1, got {num_layers}")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"reference_forward: x must be [T, B, I], got shape {x.shape}")
    steps, batch, _ = x.shape
    dirs = 2 if bidirectional else 1
    if "weight_hh_l0" not in weights:
        raise ValueError("reference_forward: weights has no 'weight_hh_l0'")
    # An LSTM with projections (proj_size P) has weight_hr [P, H]: h = W_hr (o * tanh(c)).
    proj_size = np.shape(weights["weight_hr_l0"])[0] if "weight_hr_l0" in weights else 0
    if proj_size and mode != "LSTM":
        raise ValueError(f"reference_forward: weight_hr (proj_size) is for LSTM only, not {mode}")
    hidden = np.shape(weights["weight_hr_l0" if proj_size else "weight_hh_l0"])[1]
    size = proj_size or hidden  # R: the width of h
    # Layer norm: the lane's ln_* parameters are present (layer_norm_lstm_cell).
    ln = "ln_weight_ih_l0" in weights
    if ln:
        if cell not in LAYER_NORM_STEPS:
            raise ValueError(
                f"reference_forward: layer norm is for the cells {sorted(LAYER_NORM_STEPS)}, "
                f"not {cell!r}"
            )
        step = LAYER_NORM_STEPS[cell]
    w = _check_weights(
        weights, mode, x.shape[2], hidden, num_layers, bidirectional, proj_size, layer_norm=ln
    )
    lengths = _check_lengths(lengths, steps, batch)
    state_shape = (num_layers * dirs, batch, size)
    cell_shape = (num_layers * dirs, batch, hidden)
    h0 = _check_state("h0", h0, state_shape)
    if mode == "LSTM":
        c0 = _check_state("c0", c0, cell_shape)
    elif c0 is not None:
        raise ValueError(f"reference_forward: c0 is for LSTM only, got it for {mode}")

    hn = np.zeros(state_shape)
    cn = np.zeros(cell_shape) if mode == "LSTM" else None
    inp = x
    with np.errstate(all="ignore"):  # NaN/inf inputs are allowed; they propagate quietly
        for layer in range(num_layers):
            outs = []
            for d in range(dirs):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                w_ih, w_hh = w[f"weight_ih{sfx}"], w[f"weight_hh{sfx}"]
                b_ih, b_hh = w[f"bias_ih{sfx}"], w[f"bias_hh{sfx}"]
                w_hr = w.get(f"weight_hr{sfx}")
                extra = [w[n] for n in _ln_names(sfx, mode == "LSTM")] if ln else []
                k = layer * dirs + d
                state = (h0[k].copy(),) + ((c0[k].copy(),) if mode == "LSTM" else ())
                out = np.zeros((steps, batch, size))
                for t in range(steps - 1, -1, -1) if d else range(steps):
                    active = t < lengths  # [B]: step t belongs to sequence b
                    new, pre = step(inp[t], state, w_ih, w_hh, b_ih, b_hh, *extra)
                    if w_hr is not None:  # LSTMP: h = W_hr (o * tanh(c))
                        new = (new[0] @ w_hr.T,) + new[1:]
                    # a finished (or not yet started) sequence keeps its state
                    state = tuple(
                        np.where(active[:, None], a, b) for a, b in zip(new, state, strict=True)
                    )
                    out[t] = np.where(active[:, None], state[0], 0.0)
                    if trace is not None:
                        trace.append((layer, d, t, active.copy(), pre))
                hn[k] = state[0]
                if mode == "LSTM":
                    cn[k] = state[1]
                outs.append(out)
            inp = np.concatenate(outs, axis=2)
    return inp, hn, cn


def _gates(mode):
    if mode not in GATES:
        raise ValueError(f"mode must be one of {sorted(GATES)}, got {mode!r}")
    return GATES[mode]


def _check_weights(
    weights: Mapping,
    mode,
    input_size,
    hidden,
    num_layers,
    bidirectional,
    proj_size=0,
    layer_norm=False,
):
    """float64 copies of the parameters, zeros for absent biases; ValueError on a wrong shape."""
    has_bias = "bias_ih_l0" in weights
    shapes = param_shapes(
        mode,
        input_size,
        hidden,
        num_layers,
        bidirectional,
        bias=True,
        proj_size=proj_size,
        layer_norm=layer_norm,
    )
    out = {}
    for name, shape in shapes.items():
        if name not in weights:
            if name.startswith("bias") and not has_bias:
                out[name] = np.zeros(shape)
                continue
            raise ValueError(f"reference_forward: weights has no {name!r}")
        arr = np.asarray(weights[name], dtype=np.float64)
        if arr.shape != shape:
            raise ValueError(
                f"reference_forward: weights[{name!r}] must have shape {shape}, got {arr.shape}"
            )
        out[name] = arr
    return out


def _check_lengths(lengths, steps, batch):
    if lengths is None:
        return np.full(batch, steps, dtype=np.int64)
    arr = np.asarray(lengths)
    if arr.shape != (batch,):
        raise ValueError(
            f"reference_forward: lengths must have {batch} entries, got shape {arr.shape}"
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"reference_forward: lengths must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 1 or arr.max() > steps):
        raise ValueError(f"reference_forward: lengths must be in [1, {steps}], got {arr.tolist()}")
    return arr


def _check_state(name, state, shape):
    if state is None:
        return np.zeros(shape)
    arr = np.asarray(state, dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"reference_forward: {name} must have shape {shape}, got {arr.shape}")
    return arr
