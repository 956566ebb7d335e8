"""Truncated BPTT: a carried state continues the sequence exactly, gradients stop at the window
boundary, and states reset at epoch starts, batch-size changes and document ends."""

from __future__ import annotations

import numpy as np
import pytest
from rnncore import nn
from rnncore.train import (
    StateCarrier,
    detach_state,
    reset_state_columns,
    state_batch_size,
    zero_state,
)
from train_helpers import TinyLM


def _layer(cell, **kw):
    cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]
    return cls(3, 5, num_layers=2, dtype="float64", seed=0, **kw)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_carried_state_equals_one_call_on_the_concatenated_sequence(cell):
    layer = _layer(cell)
    x = np.random.default_rng(0).standard_normal((12, 4, 3))
    y_full, s_full = layer(x)
    carrier = StateCarrier()
    outs = []
    for lo, hi in ((0, 5), (5, 9), (9, 12)):  # three windows of different lengths
        y, final = layer(x[lo:hi], state=carrier.get(4))
        carrier.update(final)
        outs.append(y)
    np.testing.assert_array_equal(np.concatenate(outs), y_full)
    as_tuple = (lambda s: s) if cell == "lstm" else (lambda s: (s,))
    for a, b in zip(as_tuple(carrier.state), as_tuple(s_full), strict=True):
        np.testing.assert_array_equal(a, b)


def test_gradients_stop_at_the_window_boundary():
    """The second window's gradients are those of a run that starts from the carried state as a
    constant; they differ from full BPTT through both windows, and tokens seen only in the first
    window get no gradient from the second window's loss."""
    model = TinyLM(vocab_size=6, embed_dim=4, hidden_size=8, dtype="float64", seed=0)
    x1 = np.array([[0, 1], [1, 0], [0, 0]])  # tokens 0, 1 only in window 1
    y1 = np.array([[2, 3], [3, 2], [2, 2]])
    x2 = np.array([[2, 3], [4, 5], [3, 2]])
    y2 = np.array([[4, 5], [3, 2], [5, 4]])

    model.zero_grad()
    model.training_step((x1, y1))
    carried = detach_state(model.carrier.state)
    model.zero_grad()
    model.training_step((x2, y2))
    truncated = {k: p.grad.copy() for k, p in model.named_parameters()}
    np.testing.assert_array_equal(truncated["embedding.weight"][:2], 0.0)

    # Same window, the carried state given explicitly as data: identical gradients.
    model.zero_grad()
    model.carrier.reset()
    model.carrier.update(carried)
    model.training_step((x2, y2))
    for k, p in model.named_parameters():
        np.testing.assert_array_equal(p.grad, truncated[k], err_msg=k)

    # Full BPTT of window 2's loss through both windows: gradient reaches window 1.
    model.zero_grad()
    x = np.concatenate([x1, x2])
    logits, _ = model(x)
    model.crit(logits[3:], y2)
    dlogits = np.zeros_like(logits)
    dlogits[3:] = model.crit.backward()
    dx, _ = model.rnn.backward(model.drop.backward(model.decoder.backward(dlogits)))
    model.embedding.backward(dx)
    full = {k: p.grad.copy() for k, p in model.named_parameters()}
    assert np.abs(full["embedding.weight"][:2]).max() > 1e-8
    assert not np.allclose(full["rnn.weight_hh_l0"], truncated["rnn.weight_hh_l0"])
    # The decoder sees only window 2's outputs, whose forward values are the same either way.
    np.testing.assert_allclose(full["decoder.bias"], truncated["decoder.bias"], rtol=1e-12)


def test_reset_at_epoch_start_batch_size_change_and_explicit_reset():
    layer = _layer("lstm")
    carrier = StateCarrier()
    assert carrier.get(4) is None
    _, final = layer(np.ones((3, 4, 3)))
    carrier.update(final)
    assert state_batch_size(carrier.get(4)) == 4
    assert carrier.get(3) is None and carrier.state is None  # a smaller last batch: fresh start
    carrier.update(final)
    carrier.reset()
    assert carrier.get(4) is None


def test_update_keeps_a_copy_and_reset_columns_zeroes_only_those():
    layer = _layer("lstm")
    _, (h, c) = layer(np.ones((3, 4, 3)))
    carrier = StateCarrier()
    carrier.update((h, c))
    h[...] = 7.0  # the caller reusing its arrays does not change the carried state
    assert not np.any(carrier.state[0] == 7.0)
    mask = np.array([False, True, False, True])
    carrier.reset_columns(mask)
    ch, cc = carrier.get(4)
    assert np.all(ch[:, mask] == 0) and np.all(cc[:, mask] == 0)
    assert np.all(ch[:, ~mask] != 0) and np.all(cc[:, ~mask] != 0)


def test_reset_token_restarts_the_columns_whose_document_ended():
    """With reset_token = <eos>, a column whose window ended with <eos> continues exactly like a
    fresh sequence; the other columns carry on."""
    layer = _layer("gru")
    eos = 9
    carrier = StateCarrier(reset_token=eos)
    x1 = np.random.default_rng(1).standard_normal((4, 3, 3))
    last_tokens = np.array([eos, 1, eos])
    _, final = layer(x1)
    carrier.update(final, last_tokens=last_tokens)
    x2 = np.random.default_rng(2).standard_normal((5, 3, 3))
    y2, _ = layer(x2, state=carrier.get(3))
    fresh, _ = layer(x2)
    carried, _ = layer(x2, state=final)
    for b, restarted in enumerate(last_tokens == eos):
        expected = fresh if restarted else carried
        np.testing.assert_array_equal(y2[:, b], expected[:, b])


def test_state_helpers():
    lstm = _layer("lstm", bidirectional=True)
    h, c = zero_state(lstm, 3)
    assert h.shape == (4, 3, 5) and c.shape == (4, 3, 5) and h.dtype == np.float64
    g = zero_state(_layer("gru"), 2)
    assert isinstance(g, np.ndarray) and g.shape == (2, 2, 5)
    s = np.ones((2, 3, 4))
    r = reset_state_columns(s, [True, False, False])
    assert r[:, 0].sum() == 0 and r[:, 1:].sum() == 16 and s.sum() == 24
    with pytest.raises(ValueError, match=r"mask must have shape \[B=3\]"):
        reset_state_columns(s, [True, False])
    assert detach_state(None) is None and state_batch_size(None) is None
