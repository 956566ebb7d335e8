"""Central finite-difference gradient checks (float64) of every cell; engine forward = reference."""

import itertools

import numpy as np
import pytest
from rnn_helpers import (
    CELLS,
    assert_close,
    is_lstm,
    join_state,
    make_layer,
    param_by_name,
    random_state,
    reference,
    split_state,
    state_list,
    weights64,
)
from rnncore.reference import reference_forward

STEPS, BATCH, INPUT, HIDDEN = 5, 3, 3, 4
EPS = 1e-6
# |numeric - analytic| <= ATOL + RTOL * |analytic|, element by element. With EPS = 1e-6 the
# central difference has truncation error ~EPS^2 and rounding error ~1e-16 * |loss| / EPS ~ 1e-9.
ATOL, RTOL = 1e-7, 1e-6
# ReLU is not differentiable at 0: a finite difference that straddles the kink is wrong by
# O(1). We pick inputs whose every active pre-activation is at least RELU_MARGIN away from 0,
# so that a step of EPS (times a sensitivity of O(1)) never crosses it.
RELU_MARGIN = 1e-3

# (num_layers, bidirectional, lengths, with initial state, bias, batch_first)
CONFIGS = {
    "2layer-bi-lengths-state": (2, True, np.array([4, 5, 2]), True, True, False),
    "1layer-uni-full-state": (1, False, None, True, True, False),
    "2layer-bi-nobias-batchfirst": (2, True, np.array([3, 1, 5]), True, False, True),
}


def _make_case(cell, config, data_seed):
    """x (in the layer's layout), lengths, state, and the loss weights (r_y like y, r_h, r_c)."""
    num_layers, bidirectional, lengths, with_state, _, batch_first = CONFIGS[config]
    dirs = 2 if bidirectional else 1
    rng = np.random.default_rng(data_seed)
    x = rng.standard_normal((STEPS, BATCH, INPUT))
    state = (
        random_state(rng, cell, num_layers, dirs, BATCH, HIDDEN, np.float64) if with_state else None
    )
    r_y = rng.standard_normal((STEPS, BATCH, dirs * HIDDEN))
    r_h = rng.standard_normal((num_layers * dirs, BATCH, HIDDEN))
    r_c = rng.standard_normal(r_h.shape) if is_lstm(cell) else None
    if batch_first:
        x, r_y = (np.ascontiguousarray(a.transpose(1, 0, 2)) for a in (x, r_y))
    return x, lengths, state, (r_y, r_h, r_c)


def _relu_min_preactivation(cell, layer, config, x, lengths, state):
    num_layers, bidirectional, _, _, _, batch_first = CONFIGS[config]
    if batch_first:
        x = x.transpose(1, 0, 2)
    h0, c0 = split_state(cell, state)
    trace = []
    reference_forward(
        "RNN", x, weights64(layer), num_layers=num_layers, bidirectional=bidirectional,
        lengths=lengths, h0=h0, nonlinearity="relu", trace=trace,
    )  # fmt: skip
    return min(np.abs(pre[active]).min() for _, _, _, active, pre in trace if active.any())


def _loss(cell, layer, x, lengths, state, rs):
    r_y, r_h, r_c = rs
    y, st = layer(x, lengths=lengths, state=state)
    h, c = split_state(cell, st)
    total = np.sum(y * r_y) + np.sum(h * r_h)
    if c is not None:
        total += np.sum(c * r_c)
    return float(total)


def _numeric_grad(f, arr):
    """d f / d arr by central differences, perturbing arr in place (and restoring it)."""
    grad = np.zeros(arr.shape)
    for idx in np.ndindex(arr.shape):
        orig = arr[idx]
        arr[idx] = orig + EPS
        f_plus = f()
        arr[idx] = orig - EPS
        f_minus = f()
        arr[idx] = orig
        grad[idx] = (f_plus - f_minus) / (2 * EPS)
    return grad


def _assert_grad(numeric, analytic, what):
    analytic = np.asarray(analytic, dtype=np.float64)
    assert analytic.shape == numeric.shape, f"{what}: shape {analytic.shape} != {numeric.shape}"
    bad = np.abs(numeric - analytic) > ATOL + RTOL * np.abs(analytic)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())}/{bad.size} elements off, first at {idx}: "
            f"numeric {numeric[idx]:.10g} vs analytic {analytic[idx]:.10g}"
        )


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("cell", list(CELLS))
def test_gradcheck(cell, config):
    num_layers, bidirectional, lengths, _, bias, batch_first = CONFIGS[config]
    layer = make_layer(
        cell, INPUT, HIDDEN, num_layers, bidirectional, dtype="float64", seed=1, bias=bias,
        batch_first=batch_first,
    )  # fmt: skip
    data_seed = 0
    x, lengths, state, rs = _make_case(cell, config, data_seed)
    if cell == "rnn_relu":
        while _relu_min_preactivation(cell, layer, config, x, lengths, state) < RELU_MARGIN:
            data_seed += 1
            assert data_seed < 50, "no input found that keeps ReLU pre-activations off the kink"
            x, lengths, state, rs = _make_case(cell, config, data_seed)

    # analytic gradients
    layer.train()
    layer.zero_grad()
    r_y, r_h, r_c = rs
    layer(x, lengths=lengths, state=state)
    dx, dstate = layer.backward(r_y, dstate=join_state(cell, r_h, r_c))
    params = param_by_name(layer)
    analytic = {name: np.array(p.grad, dtype=np.float64) for name, p in params.items()}
    assert set(analytic) == set(layer.state_dict())

    # numeric gradients, forward only (eval mode keeps nothing)
    layer.eval()
    h0, c0 = split_state(cell, state)
    h0 = None if h0 is None else h0.copy()
    c0 = None if c0 is None else c0.copy()

    def loss():
        st = None if h0 is None else join_state(cell, h0, c0)
        return _loss(cell, layer, x, lengths, st, rs)

    for name, p in params.items():
        _assert_grad(_numeric_grad(loss, p.data), analytic[name], f"d{name}")
    _assert_grad(_numeric_grad(loss, x), dx, "dx")
    if lengths is not None:
        dx_tm = np.asarray(dx).transpose(1, 0, 2) if batch_first else np.asarray(dx)
        for b, n in enumerate(lengths):
            assert not dx_tm[n:, b].any(), "dx past a sequence's end must be zero"
    if h0 is not None:
        dh0, dc0 = split_state(cell, dstate)
        _assert_grad(_numeric_grad(loss, h0), dh0, "dh0")
        if c0 is not None:
            _assert_grad(_numeric_grad(loss, c0), dc0, "dc0")


@pytest.mark.parametrize("cell", list(CELLS))
def test_backward_without_initial_state_is_zero_state_gradient(cell):
    """state=None behaves as an all-zero initial state, in the forward and the backward pass."""
    rng = np.random.default_rng(4)
    layer = make_layer(cell, INPUT, HIDDEN, 2, True, dtype="float64", seed=2)
    x = rng.standard_normal((STEPS, BATCH, INPUT))
    lengths = np.array([2, 5, 3])
    dy = rng.standard_normal((STEPS, BATCH, 2 * HIDDEN))
    zeros = join_state(
        cell, np.zeros((4, BATCH, HIDDEN)), np.zeros((4, BATCH, HIDDEN)) if is_lstm(cell) else None
    )
    y1, s1 = layer(x, lengths=lengths)
    dx1, ds1 = layer.backward(dy)
    y0, s0 = layer(x, lengths=lengths, state=zeros)
    dx0, ds0 = layer.backward(dy)
    np.testing.assert_array_equal(y1, y0)
    for a, b in zip(state_list(cell, s1), state_list(cell, s0), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(dx1, dx0)
    if ds1 is not None:
        for a, b in zip(state_list(cell, ds1), state_list(cell, ds0), strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "cell,dtype,num_layers,bidirectional,use_lengths,use_state,batch_first",
    list(
        itertools.product(
            list(CELLS), ["float64", "float32"], [1, 2], [False, True], [False, True],
            [False, True], [False, True],
        )
    ),
)  # fmt: skip
def test_forward_matches_reference(
    cell, dtype, num_layers, bidirectional, use_lengths, use_state, batch_first
):
    steps, batch, input_size, hidden = 6, 4, 5, 7
    dirs = 2 if bidirectional else 1
    rng = np.random.default_rng(21)
    layer = make_layer(
        cell, input_size, hidden, num_layers, bidirectional, dtype=dtype, seed=3,
        batch_first=batch_first,
    )  # fmt: skip
    x = rng.standard_normal((steps, batch, input_size)).astype(dtype)
    lengths = np.array([6, 1, 4, 3]) if use_lengths else None
    state = random_state(rng, cell, num_layers, dirs, batch, hidden, dtype) if use_state else None
    x_in = np.ascontiguousarray(x.transpose(1, 0, 2)) if batch_first else x
    y, st = layer(x_in, lengths=lengths, state=state)
    assert y.dtype == np.dtype(dtype)
    if batch_first:
        assert y.shape == (batch, steps, dirs * hidden)
        y = y.transpose(1, 0, 2)
    want_y, want_h, want_c = reference(cell, layer, x, lengths, state, num_layers, bidirectional)
    assert_close(y, want_y, dtype, "y")
    h, c = split_state(cell, st)
    assert h.dtype == np.dtype(dtype)
    assert_close(h, want_h, dtype, "h_n")
    if is_lstm(cell):
        assert_close(c, want_c, dtype, "c_n")
    if use_lengths:
        for b, n in enumerate(lengths):
            assert not y[n:, b].any(), "outputs past a sequence's end must be exactly zero"
