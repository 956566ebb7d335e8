"""Issue 14, point 1: the lecture's gated cells through GatedRNN (the parametrized suites over
rnn_helpers.CELLS check their gradients, reference and layer API; here what is GatedRNN's own)."""

from __future__ import annotations

import numpy as np
import pytest
from rnncore import nn
from rnncore.models import LanguageModel
from rnncore.reference import gated_cell
from rnncore.train import load_checkpoint, save_checkpoint


def test_all_three_gates_is_the_lstm_given_its_state_dict():
    rng = np.random.default_rng(0)
    lstm = nn.LSTM(3, 5, num_layers=2, bidirectional=True, dtype="float64", seed=1)
    gated = nn.GatedRNN(
        3, 5, gates=("input", "forget", "output"), num_layers=2, bidirectional=True, dtype="float64"
    )
    gated.load_state_dict(lstm.state_dict())
    x = rng.standard_normal((6, 3, 3))
    y1, (h1, c1) = lstm(x, lengths=[6, 2, 4])
    y2, (h2, c2) = gated(x, lengths=[6, 2, 4])
    np.testing.assert_allclose(y2, y1, atol=1e-12)
    np.testing.assert_allclose(c2, c1, atol=1e-12)
    dy = rng.standard_normal(y1.shape)
    dx1, _ = lstm.backward(dy)
    dx2, _ = gated.backward(dy)
    np.testing.assert_allclose(dx2, dx1, atol=1e-12)
    np.testing.assert_allclose(gated.flat_gradients, lstm.flat_gradients, atol=1e-12)


@pytest.mark.parametrize("gates", [(), ("input",), ("input", "forget")])
def test_gate_blocks_are_stacked_input_forget_candidate(gates):
    H, I = 4, 3
    layer = nn.GatedRNN(I, H, gates=gates, dtype="float64", seed=2)
    w = dict(layer.named_parameters())
    assert w["weight_ih_l0"].shape == ((len(gates) + 1) * H, I)
    assert w["weight_hh_l0"].shape == ((len(gates) + 1) * H, H)
    rng = np.random.default_rng(3)
    x, s0 = rng.standard_normal((1, 2, I)), rng.standard_normal((1, 2, H))
    y, s1 = layer(x, s0)
    want, _ = gated_cell(
        x[0],
        s0[0],
        w["weight_ih_l0"].data,
        w["weight_hh_l0"].data,
        w["bias_ih_l0"].data,
        w["bias_hh_l0"].data,
        len(gates),
    )
    np.testing.assert_allclose(y[0], want, atol=1e-12)
    np.testing.assert_allclose(s1[0], want, atol=1e-12)  # the output is the state


def test_the_residual_cell_keeps_its_state_when_the_candidate_is_zero():
    layer = nn.GatedRNN(2, 3, gates=(), bias=False, dtype="float64")
    layer.flat_parameters[...] = 0.0  # r = tanh(0) = 0: s' = s
    s0 = np.array([[[0.5, -1.0, 2.0]]])
    y, s = layer(np.ones((4, 1, 2)), s0)
    np.testing.assert_array_equal(y[-1], s0[0])
    np.testing.assert_array_equal(s, s0)


def test_bad_gates_are_clear_errors():
    with pytest.raises(ValueError, match=r"gates must be one of .*\('input', 'forget'\)"):
        nn.GatedRNN(2, 3, gates=("forget",))
    with pytest.raises(TypeError, match="gates must be a tuple"):
        nn.GatedRNN(2, 3, gates="input")
    layer = nn.recurrent_layer("gated-input", 2, 3)
    assert isinstance(layer, nn.GatedRNN) and layer.gates == ("input",)
    assert nn.CELLS["gated-forget"]["gates"] == 3 and nn.CELLS["gated-forget"]["states"] == 1


@pytest.mark.parametrize("cell", ["gated-residual", "gated-input", "gated-forget"])
def test_language_model_of_a_gated_cell_round_trips_a_checkpoint(tmp_path, cell):
    model = LanguageModel(11, 6, 5, num_layers=2, cell=cell, seed=0)
    rng = np.random.default_rng(4)
    x, y = rng.integers(0, 11, size=(7, 3)), rng.integers(0, 11, size=(7, 3))
    loss = model.training_step((x, y))["loss"]
    assert np.isfinite(loss)
    path = save_checkpoint(tmp_path / cell, model)
    loaded = load_checkpoint(path).model
    model.eval()
    np.testing.assert_array_equal(loaded(x)[0], model(x)[0])
