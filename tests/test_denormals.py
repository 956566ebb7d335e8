"""Denormal flushing (FTZ/DAZ) in the engine: on by default, switchable, invisible outside it."""

import numpy as np
import pytest
import rnncore

TINY = np.finfo(np.float32).tiny  # the smallest normal float32, 1.2e-38


@pytest.fixture(autouse=True)
def _restore_setting():
    before = rnncore.flush_denormals()
    yield
    rnncore.set_flush_denormals(before)


def _decaying_backward(seed=0):
    """A tanh RNN whose gradient, from a loss at the last step only, shrinks ~0.3x per step:
    after ~80 of its 300 steps it is below float32's normal range."""
    rnn = rnncore.nn.RNN(4, 8, seed=seed)
    params = dict(rnn.named_parameters())
    params["weight_hh_l0"].data[...] = 0.3 * np.eye(8, dtype=np.float32)
    x = np.random.default_rng(seed).standard_normal((300, 2, 4)).astype(np.float32)
    y, _ = rnn(x)
    dy = np.zeros_like(y)
    dy[-1] = 1.0
    dx, dh0 = rnn.backward(dy)
    return dx, dh0, params["weight_ih_l0"].grad.copy()


def _denormal(a):
    return (a != 0) & (np.abs(a) < TINY)


def test_default_on_and_the_switch_returns_the_previous_setting():
    assert rnncore.flush_denormals() is True
    assert rnncore.set_flush_denormals(False) is True
    assert rnncore.flush_denormals() is False
    assert rnncore.set_flush_denormals(True) is False
    with pytest.raises(TypeError, match="True or False"):
        rnncore.set_flush_denormals(1)


def test_a_decaying_gradient_holds_no_denormals_when_flushed():
    rnncore.set_flush_denormals(False)
    dx_ieee, _, g_ieee = _decaying_backward()
    assert _denormal(dx_ieee).any()  # IEEE arithmetic produces them here
    rnncore.set_flush_denormals(True)
    dx, dh0, g = _decaying_backward()
    assert not _denormal(dx).any() and not _denormal(dh0).any()
    # Values well inside the normal range are untouched (those near it lost denormal terms);
    # the denormal tail became zero.
    normal = np.abs(dx_ieee) >= 1e6 * TINY
    assert normal.sum() > dx.size // 10
    np.testing.assert_allclose(dx[normal], dx_ieee[normal], rtol=1e-6, atol=0)
    assert np.all(dx[_denormal(dx_ieee)] == 0)
    np.testing.assert_allclose(g, g_ieee, rtol=1e-6, atol=0)


def test_results_without_denormals_are_bitwise_the_same():
    lstm = rnncore.nn.LSTM(5, 7, num_layers=2, bidirectional=True, seed=1)
    x = np.random.default_rng(1).standard_normal((6, 3, 5)).astype(np.float32)
    out = []
    for flush in (True, False):
        rnncore.set_flush_denormals(flush)
        lstm.zero_grad()
        y, _ = lstm(x)
        dx, _ = lstm.backward(np.ones_like(y))
        out.append((y, dx, lstm.flat_gradients.copy()))
    for a, b in zip(out[0], out[1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_callers_thread_keeps_ieee_arithmetic():
    rnncore.set_flush_denormals(True)
    _decaying_backward()
    tiny = np.array([TINY / 8], dtype=np.float32)  # a denormal
    assert (tiny * np.float32(1.0))[0] != 0  # numpy, after engine calls: not flushed
    assert (tiny + np.float32(0.0))[0] == tiny[0]
