"""Issue 14, point 4: manual_seed makes the random draws of every layer repeat, so stochastic
layers can be checked by finite differences in training mode."""

from __future__ import annotations

import numpy as np
import pytest
from rnncore import nn
from rnncore.models import LanguageModel


def _loss(model, x, y, seed):
    model.manual_seed(seed)
    logits, _ = model(x)
    loss = model.criterion(logits, y)
    return loss, logits


def test_finite_differences_agree_in_training_mode_after_manual_seed():
    model = LanguageModel(9, 5, 6, num_layers=2, dropout=0.4, dtype="float64", seed=0)
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 9, size=(5, 3)), rng.integers(0, 9, size=(5, 3))
    model.zero_grad()
    _loss(model, x, y, seed=7)
    model.backward(model.criterion.backward())
    params = dict(model.named_parameters())
    eps = 1e-6
    for name in ("rnn.weight_hh_l1", "rnn.weight_ih_l0", "decoder.weight", "embedding.weight"):
        p = params[name]
        for idx in list(np.ndindex(p.shape))[:: max(1, p.data.size // 6)]:
            old = p.data[idx]
            p.data[idx] = old + eps
            up, _ = _loss(model, x, y, seed=7)
            p.data[idx] = old - eps
            down, _ = _loss(model, x, y, seed=7)
            p.data[idx] = old
            model.discard_saved()  # the probes' forwards get no backward
            assert (up - down) / (2 * eps) == pytest.approx(p.grad[idx], abs=1e-7), (name, idx)


def test_same_seed_same_masks_other_seed_other_masks():
    layer = nn.LSTM(3, 4, num_layers=3, dropout=0.5, dtype="float64", seed=0)
    drop = nn.Dropout(0.5)
    x = np.ones((4, 2, 3))
    outs = []
    for s in (1, 2, 1):
        layer.manual_seed(s)
        drop.manual_seed(s)
        outs.append((layer(x)[0], drop(x)))
    layer.discard_saved()
    drop.discard_saved()
    np.testing.assert_array_equal(outs[0][0], outs[2][0])
    np.testing.assert_array_equal(outs[0][1], outs[2][1])
    assert not np.array_equal(outs[0][0], outs[1][0])
    assert not np.array_equal(outs[0][1], outs[1][1])
    with pytest.raises(TypeError, match="seed must be an integer"):
        layer.manual_seed(1.5)
    cell = nn.GRUCell(2, 3)
    assert cell.manual_seed(3) is cell
