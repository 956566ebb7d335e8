"""What training-mode forwards keep for their backward: predictions and validation in between do
not drop it (nor change its gradients), validation never keeps anything, and forwards whose
backward never comes warn before they fill the memory."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from rnncore import models, nn
from rnncore.nn import module


def grads(model):
    return {name: p.grad.copy() for name, p in model.named_parameters()}


def assert_same_grads(a, b):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_losses_and_layers_warn_by_bytes_once_and_count_them(monkeypatch):
    """A standalone loss in training mode (the default) keeps every call's gradient: a
    validation loop that forgets eval() warns at SAVED_BYTES_WARNING, not after 10,000 calls."""
    crit = nn.CrossEntropyLoss()
    z, y = np.zeros((8, 5), np.float32), np.zeros(8, np.int64)
    crit(z, y)
    one = crit._saved_bytes
    assert one >= z.nbytes
    monkeypatch.setattr(module, "SAVED_BYTES_WARNING", 3 * one)
    crit(z, y)
    crit(z, y)
    with pytest.warns(ResourceWarning, match="CrossEntropyLoss: 4 training-mode forwards"):
        crit(z, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        crit(z, y)  # once per module
    crit.backward()
    assert crit._saved_bytes == 4 * one and crit.saved_forwards == 4
    crit.eval()  # a mode change drops them; the next forward starts the count afresh
    crit.train()
    crit(z, y)
    assert crit._saved_bytes == one
    lin = nn.Linear(5, 3)
    lin(np.ones((4, 5), np.float32))
    assert lin._saved_bytes >= 4 * 5 * 4
    lin.discard_saved()
    lin(np.ones((2, 5), np.float32))
    assert lin._saved_bytes == module._array_bytes(lin._saved[-1][1])
    assert module._array_bytes(([np.zeros(3)], {"a": np.zeros(2, np.float32)}, 5)) == 32


def _forecaster_batch():
    rng = np.random.default_rng(0)
    return rng.standard_normal((10, 3, 1)).astype(np.float32)


@pytest.mark.parametrize(
    "make, run, between",
    [
        (
            lambda: models.Forecaster(input_size=1, hidden_size=8, horizon=2, dropout=0.0, seed=0),
            lambda m, x: m(x),
            lambda m, x: m.predict(x),
        ),
        (
            lambda: models.SequenceRegressor(1, 8, seed=0),
            lambda m, x: m(x),
            lambda m, x: m.predict(x),
        ),
    ],
    ids=["Forecaster.predict", "SequenceRegressor.predict"],
)
def test_predict_between_forward_and_backward_keeps_the_forward(make, run, between):
    x = _forecaster_batch()
    ref, m = make(), make()
    out = run(ref, x)
    ref.backward(np.ones_like(out))
    out = run(m, x)
    between(m, x)
    m.backward(np.ones_like(out))  # used to raise: predict() called eval() and dropped it
    assert_same_grads(grads(ref), grads(m))


def test_seq2seq_decoding_between_forward_and_backward_keeps_the_forward():
    rng = np.random.default_rng(1)
    src = rng.integers(4, 20, (6, 2))
    src_len = np.array([6, 4])
    tgt_in = rng.integers(4, 20, (5, 2))

    def make():
        return models.Seq2Seq(20, 20, embed_dim=8, hidden_size=8, attention="dot", seed=0)

    ref, m = make(), make()
    out = ref(src, src_len, tgt_in)
    ref.backward(np.ones_like(out))
    out = m(src, src_len, tgt_in)
    m.greedy_decode(src, src_len, max_len=4)
    m.beam_search(src[:, 0], beam_width=2, max_len=4)
    m.backward(np.ones_like(out))
    assert_same_grads(grads(ref), grads(m))


def test_validation_step_runs_in_inference_mode_whatever_the_mode():
    """A user's own loop calling validation_step in training mode gets the evaluation numbers
    (no dropout) and leaves nothing saved."""
    rng = np.random.default_rng(0)
    x = y = rng.integers(0, 50, (10, 4))
    lm = models.LanguageModel(50, 16, 16, dropout=0.5, seed=0)
    with nn.inference_mode(lm):
        expect = lm.validation_step((x, y))["loss_sum"]
    lm._eval_state = None
    got = [lm.validation_step((x, y))["loss_sum"] for _ in range(2)]
    assert lm.training
    assert got[0] == pytest.approx(expect, rel=1e-6)
    assert all(m.saved_forwards == 0 for m in lm.modules())
    clf = models.SequenceClassifier(50, 8, 8, 3, dropout=0.5, seed=0)
    ids, lengths, labels = (
        rng.integers(1, 50, (6, 4)),
        np.array([6, 5, 3, 2]),
        np.array([0, 1, 2, 1]),
    )
    a = clf.validation_step((ids, lengths, labels))
    b = clf.validation_step((ids, lengths, labels))
    assert a == b and clf.training
    assert all(m.saved_forwards == 0 for m in clf.modules())
