"""The NumPy reference (rnncore.reference) against torch.nn.RNN/LSTM/GRU and hand-derived steps."""

import itertools
import math

import numpy as np
import pytest
from rnncore.reference import (
    gru_cell,
    param_names,
    param_shapes,
    random_weights,
    reference_forward,
    sigmoid,
)

# (mode, nonlinearity) pairs that torch implements
TORCH_CELLS = [("RNN", "tanh"), ("RNN", "relu"), ("LSTM", "tanh"), ("GRU", "tanh")]


def _torch_layer(
    torch, mode, nonlinearity, input_size, hidden_size, num_layers, bidirectional, bias
):
    kw = dict(num_layers=num_layers, bias=bias, bidirectional=bidirectional, dtype=torch.float64)
    if mode == "RNN":
        return torch.nn.RNN(input_size, hidden_size, nonlinearity=nonlinearity, **kw)
    return getattr(torch.nn, mode)(input_size, hidden_size, **kw)


def _torch_forward(torch, net, x, lengths, h0, c0):
    """torch forward in packed-sequence semantics; returns numpy (y, hn, cn or None)."""
    steps = x.shape[0]
    xt = torch.from_numpy(x)
    state = None
    if h0 is not None:
        state = (
            (torch.from_numpy(h0), torch.from_numpy(c0)) if c0 is not None else torch.from_numpy(h0)
        )
    with torch.no_grad():
        if lengths is None:
            y, st = net(xt, state)
        else:
            packed = torch.nn.utils.rnn.pack_padded_sequence(
                xt, torch.as_tensor(lengths, dtype=torch.int64), enforce_sorted=False
            )
            yp, st = net(packed, state)
            y, _ = torch.nn.utils.rnn.pad_packed_sequence(yp, total_length=steps)
    if isinstance(st, tuple):
        return y.numpy(), st[0].numpy(), st[1].numpy()
    return y.numpy(), st.numpy(), None


@pytest.mark.parametrize(
    "cell,num_layers,bidirectional,use_lengths,use_state,bias",
    [
        (c, n, bi, ln, st, b)
        for c, n, bi, ln, st, b in itertools.product(
            TORCH_CELLS, [1, 2], [False, True], [False, True], [False, True], [True, False]
        )
        # bias=False is rare: check it on the plain stacked case only
        if b or (n == 2 and not st)
    ],
    ids=lambda v: "-".join(v) if isinstance(v, tuple) else str(v),
)
def test_reference_matches_torch(cell, num_layers, bidirectional, use_lengths, use_state, bias):
    torch = pytest.importorskip("torch")
    mode, nonlinearity = cell
    steps, batch, input_size, hidden = 6, 4, 3, 5
    dirs = 2 if bidirectional else 1
    rng = np.random.default_rng(12345)
    weights = random_weights(mode, input_size, hidden, num_layers, bidirectional, bias, rng)
    x = rng.standard_normal((steps, batch, input_size))
    # includes a full-length sequence, a length-1 one, and max(lengths) < T is covered
    # by the second batch entry order being shuffled (enforce_sorted=False)
    lengths = np.array([3, steps, 1, 5]) if use_lengths else None
    h0 = c0 = None
    if use_state:
        h0 = rng.standard_normal((num_layers * dirs, batch, hidden))
        c0 = rng.standard_normal(h0.shape) if mode == "LSTM" else None

    net = _torch_layer(
        torch, mode, nonlinearity, input_size, hidden, num_layers, bidirectional, bias
    )
    assert [k for k, _ in net.named_parameters()] == param_names(num_layers, bidirectional, bias)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    want_y, want_h, want_c = _torch_forward(torch, net, x, lengths, h0, c0)

    y, hn, cn = reference_forward(
        mode, x, weights, num_layers=num_layers, bidirectional=bidirectional,
        lengths=lengths, h0=h0, c0=c0, nonlinearity=nonlinearity,
    )  # fmt: skip
    assert y.shape == (steps, batch, dirs * hidden) and y.dtype == np.float64
    assert hn.shape == (num_layers * dirs, batch, hidden)
    np.testing.assert_allclose(y, want_y, rtol=0, atol=1e-12)
    np.testing.assert_allclose(hn, want_h, rtol=0, atol=1e-12)
    if mode == "LSTM":
        np.testing.assert_allclose(cn, want_c, rtol=0, atol=1e-12)
    else:
        assert cn is None
    if use_lengths:
        for b, n in enumerate(lengths):
            assert not y[n:, b].any(), "outputs past a sequence's end must be zero"


def test_reference_all_lengths_below_total_length():
    """max(lengths) < T: the last steps are all padding, zero output, states from each own end."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    weights = random_weights("LSTM", 2, 3, 2, True, True, rng)
    x = rng.standard_normal((7, 3, 2))
    lengths = np.array([2, 4, 1])
    net = _torch_layer(torch, "LSTM", "tanh", 2, 3, 2, True, True)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    want = _torch_forward(torch, net, x, lengths, None, None)
    got = reference_forward("LSTM", x, weights, num_layers=2, bidirectional=True, lengths=lengths)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-12)
    assert not got[0][4:].any()


def test_param_shapes_match_torch():
    torch = pytest.importorskip("torch")
    for mode, bias in itertools.product(["RNN", "LSTM", "GRU"], [True, False]):
        net = _torch_layer(torch, mode, "tanh", 3, 5, 3, True, bias)
        want = {k: tuple(v.shape) for k, v in net.named_parameters()}
        assert param_shapes(mode, 3, 5, 3, True, bias) == want


def _sig(a):
    return 1.0 / (1.0 + math.exp(-a))


@pytest.mark.parametrize("reset_after", [False, True])
def test_gru_single_step_by_hand(reset_after):
    """One GRU step, I=1, H=2, written out scalar by scalar from Cho et al.'s equations."""
    x = 0.7
    h = [0.3, -0.5]
    # rows of [3H, I] and [3H, H] as plain lists: gates r (rows 0,1), z (2,3), n (4,5)
    w_ih = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6]
    w_hh = [
        [0.2, -0.1],
        [0.05, 0.3],
        [-0.4, 0.25],
        [0.15, -0.35],
        [0.6, -0.7],
        [0.45, 0.8],
    ]
    b_ih = [0.01, -0.02, 0.03, -0.04, 0.05, -0.06]
    b_hh = [-0.11, 0.12, -0.13, 0.14, -0.15, 0.16]

    def lin_h(row, v):
        return w_hh[row][0] * v[0] + w_hh[row][1] * v[1]

    r = [_sig(w_ih[j] * x + b_ih[j] + lin_h(j, h) + b_hh[j]) for j in range(2)]
    z = [_sig(w_ih[2 + j] * x + b_ih[2 + j] + lin_h(2 + j, h) + b_hh[2 + j]) for j in range(2)]
    rh = [r[0] * h[0], r[1] * h[1]]
    n = []
    for j in range(2):
        a = w_ih[4 + j] * x + b_ih[4 + j]
        if reset_after:
            a += r[j] * (lin_h(4 + j, h) + b_hh[4 + j])
        else:
            a += lin_h(4 + j, rh) + b_hh[4 + j]
        n.append(math.tanh(a))
    want = [(1 - z[j]) * n[j] + z[j] * h[j] for j in range(2)]

    weights = {
        "weight_ih_l0": np.array(w_ih).reshape(6, 1),
        "weight_hh_l0": np.array(w_hh),
        "bias_ih_l0": np.array(b_ih),
        "bias_hh_l0": np.array(b_hh),
    }
    x_arr = np.full((1, 1, 1), x)
    h0 = np.array(h).reshape(1, 1, 2)
    y, hn, cn = reference_forward("GRU", x_arr, weights, h0=h0, reset_after=reset_after)
    np.testing.assert_allclose(y[0, 0], want, rtol=0, atol=1e-15)
    np.testing.assert_allclose(hn[0, 0], want, rtol=0, atol=1e-15)
    assert cn is None


def test_gru_forms_differ_and_agree_where_they_must():
    """reset_after False == True when W_hn is diagonal and b_hn = 0; they differ otherwise."""
    rng = np.random.default_rng(3)
    hid = 4
    w = random_weights("GRU", 3, hid, 2, True, True, rng)
    x = rng.standard_normal((5, 2, 3))
    h0 = rng.standard_normal((4, 2, hid))
    y_after, _, _ = reference_forward("GRU", x, w, num_layers=2, bidirectional=True, h0=h0)
    y_before, _, _ = reference_forward(
        "GRU", x, w, num_layers=2, bidirectional=True, h0=h0, reset_after=False
    )
    assert np.abs(y_after - y_before).max() > 1e-3
    for name in w:
        if name.startswith("weight_hh"):
            w[name][2 * hid :] = np.diag(rng.uniform(-1, 1, hid))
        if name.startswith("bias_hh"):
            w[name][2 * hid :] = 0.0
    y_after, h_after, _ = reference_forward("GRU", x, w, num_layers=2, bidirectional=True, h0=h0)
    y_before, h_before, _ = reference_forward(
        "GRU", x, w, num_layers=2, bidirectional=True, h0=h0, reset_after=False
    )
    np.testing.assert_allclose(y_before, y_after, rtol=0, atol=1e-14)
    np.testing.assert_allclose(h_before, h_after, rtol=0, atol=1e-14)


def test_gru_cell_reset_after_false_hand_matrix_form():
    """gru_cell's reset_after=False equals the Cho et al. formula written with explicit matrices."""
    rng = np.random.default_rng(11)
    x, h = rng.standard_normal((3, 2)), rng.standard_normal((3, 4))
    w_ih, w_hh = rng.standard_normal((12, 2)), rng.standard_normal((12, 4))
    b_ih, b_hh = rng.standard_normal(12), rng.standard_normal(12)
    w_ir, w_iz, w_in = w_ih[:4], w_ih[4:8], w_ih[8:]
    w_hr, w_hz, w_hn = w_hh[:4], w_hh[4:8], w_hh[8:]
    r = 1 / (1 + np.exp(-(x @ w_ir.T + b_ih[:4] + h @ w_hr.T + b_hh[:4])))
    z = 1 / (1 + np.exp(-(x @ w_iz.T + b_ih[4:8] + h @ w_hz.T + b_hh[4:8])))
    n = np.tanh(x @ w_in.T + b_ih[8:] + (r * h) @ w_hn.T + b_hh[8:])
    got, _ = gru_cell(x, h, w_ih, w_hh, b_ih, b_hh, reset_after=False)
    np.testing.assert_allclose(got, (1 - z) * n + z * h, rtol=0, atol=1e-14)


def test_sigmoid_is_stable_and_exact():
    a = np.array([-1000.0, -40.0, -1.0, 0.0, 2.5, 1000.0, np.inf, -np.inf])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = sigmoid(a)
    np.testing.assert_allclose(s[1:5], 1 / (1 + np.exp(-a[1:5])), rtol=1e-15)
    assert s[0] == 0.0 and s[5] == 1.0 and s[6] == 1.0 and s[7] == 0.0


def test_relu_trace_records_preactivations():
    rng = np.random.default_rng(5)
    w = random_weights("RNN", 2, 3, 2, True, True, rng)
    x = rng.standard_normal((4, 2, 2))
    trace = []
    y, hn, _ = reference_forward(
        "RNN", x, w, num_layers=2, bidirectional=True, lengths=[4, 2], nonlinearity="relu",
        trace=trace,
    )  # fmt: skip
    assert len(trace) == 2 * 2 * 4
    for layer, d, t, active, pre in trace:
        if layer == 1:
            np.testing.assert_array_equal(
                y[t, active, d * 3 : (d + 1) * 3], np.maximum(pre, 0)[active]
            )
    assert (y >= 0).all() and (hn >= 0).all()


def test_empty_time_or_batch():
    w = random_weights("LSTM", 2, 3, 2, True, True, 0)
    h0 = np.ones((4, 2, 3))
    y, hn, cn = reference_forward(
        "LSTM", np.zeros((0, 2, 2)), w, num_layers=2, bidirectional=True, h0=h0, c0=2 * h0
    )
    assert y.shape == (0, 2, 6)
    np.testing.assert_array_equal(hn, h0)
    np.testing.assert_array_equal(cn, 2 * h0)
    y, hn, cn = reference_forward("LSTM", np.zeros((3, 0, 2)), w, num_layers=2, bidirectional=True)
    assert y.shape == (3, 0, 6) and hn.shape == (4, 0, 3) and cn.shape == (4, 0, 3)


def test_missing_bias_is_zero_bias():
    rng = np.random.default_rng(9)
    w = random_weights("GRU", 2, 3, 1, False, True, rng)
    x = rng.standard_normal((3, 2, 2))
    no_bias = {k: v for k, v in w.items() if k.startswith("weight")}
    zero_bias = {k: (v if k.startswith("weight") else np.zeros_like(v)) for k, v in w.items()}
    np.testing.assert_array_equal(
        reference_forward("GRU", x, no_bias)[0], reference_forward("GRU", x, zero_bias)[0]
    )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(lengths=[1, 2, 3]), "lengths"),
        (dict(lengths=[0, 2]), "lengths"),
        (dict(lengths=[4, 2]), "lengths"),
        (dict(lengths=[1.5, 2.0]), "lengths"),
        (dict(h0=np.zeros((1, 2, 4))), "h0"),
        (dict(c0=np.zeros((1, 2, 3))), "c0"),
        (dict(nonlinearity="sigmoid"), "nonlinearity"),
    ],
)
def test_reference_rejects_bad_arguments(kwargs, match):
    w = random_weights("RNN", 2, 3, 1, False, True, 0)
    with pytest.raises(ValueError, match=match):
        reference_forward("RNN", np.zeros((3, 2, 2)), w, **kwargs)


def test_reference_rejects_bad_weights():
    w = random_weights("LSTM", 2, 3, 1, False, True, 0)
    with pytest.raises(ValueError, match="weight_ih_l0"):
        reference_forward("LSTM", np.zeros((3, 2, 5)), w)
    with pytest.raises(ValueError, match="mode"):
        reference_forward("MGU", np.zeros((3, 2, 2)), w)
    with pytest.raises(ValueError, match="weight_ih_l1"):
        reference_forward("LSTM", np.zeros((3, 2, 2)), w, num_layers=2)
