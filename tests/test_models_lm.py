"""LanguageModel: finite-difference gradients, truncated-BPTT state, sampling, learning a^n b^n."""

import math

import numpy as np
import pytest
from model_helpers import check_model_gradients, evaluate, train
from rnncore import data, models
from rnncore.models import LanguageModel
from rnncore.nn import CrossEntropyLoss


def _state(model, batch, rng):
    L, H = model.rnn.num_layers, model.rnn.hidden_size
    h = rng.standard_normal((L, batch, H)) * 0.5
    if model.config()["cell"] == "lstm":
        return h, rng.standard_normal((L, batch, H)) * 0.5
    return h


@pytest.mark.parametrize(
    "cell,tie", [("lstm", False), ("gru", True), ("rnn", False), ("gru_v1", False)]
)
def test_gradients_match_finite_differences(cell, tie):
    """training_step's gradients (from a carried initial state) = central differences."""
    rng = np.random.default_rng(1)
    V, T, B = 7, 4, 3
    lm = LanguageModel(V, 5, 5, num_layers=2, cell=cell, tie_weights=tie, dtype="float64", seed=3)
    x = rng.integers(0, V, size=(T, B))
    y = rng.integers(0, V, size=(T, B))
    state = _state(lm, B, rng)
    crit = CrossEntropyLoss()
    crit.eval()

    def loss_fn():
        logits, _ = lm.forward(x, state)
        return crit(logits, y)

    def analytic():
        lm._train_state = state
        lm.training_step((x, y))

    n = check_model_gradients(lm, loss_fn, analytic)
    assert n == sum(p.data.size for p in lm.parameters())


def test_tied_weights_share_the_embedding():
    lm = LanguageModel(11, 6, 6, tie_weights=True, seed=0)
    names = [n for n, _ in lm.named_parameters()]
    assert "decoder.weight" not in names and "decoder.bias" in names
    assert names.count("embedding.weight") == 1
    with pytest.raises(ValueError, match="embed_dim == hidden_size"):
        LanguageModel(11, 6, 8, tie_weights=True)


def test_one_engine_call_per_layer_per_batch(monkeypatch):
    lm = LanguageModel(9, 4, 6, dropout=0.2, seed=0)
    calls = []
    for name in ("embedding", "rnn", "decoder"):
        layer = getattr(lm, name)
        for method in ("forward", "backward"):
            orig = getattr(layer, method)

            def wrapped(*a, _orig=orig, _tag=f"{name}.{method}", **k):
                calls.append(_tag)
                return _orig(*a, **k)

            monkeypatch.setattr(layer, method, wrapped)
    x = np.zeros((20, 4), dtype=np.int64)
    lm.training_step((x, x))
    assert sorted(calls) == sorted(
        f"{n}.{m}" for n in ("embedding", "rnn", "decoder") for m in ("forward", "backward")
    )


def test_truncated_bptt_carries_state_across_windows():
    """Two consecutive windows with the carried state = one window over both (float64)."""
    rng = np.random.default_rng(0)
    lm = LanguageModel(8, 4, 5, cell="lstm", dtype="float64", seed=1)
    stream = rng.integers(0, 8, size=(9, 2))
    whole = evaluate(lm, [(stream[:-1], stream[1:])])
    windows = list(data.BPTTBatches(stream, 3))
    assert len(windows) == 3
    carried = evaluate(lm, windows)
    assert carried["loss"] == pytest.approx(whole["loss"], rel=1e-12)
    assert carried["ppl"] == pytest.approx(math.exp(whole["loss"]))

    lm.train()
    lm.training_step(windows[0])
    h, c = lm._train_state
    assert h.shape == (2, 2, 5) and np.any(h != 0)
    lm.on_epoch_start(True)
    assert lm._train_state is None
    # a batch of another size starts from zeros instead of failing
    lm.training_step(windows[0])
    lm.training_step((stream[:3, :1], stream[1:4, :1]))


def _anbn_stream(n, seed):
    strings = data.anbn(n, min_n=1, max_n=6, seed=seed)
    return [tok for s in strings for tok in s + ["<eos>"]]


def test_learns_anbn():
    """A 1-layer LSTM LM learns a^k b^k (k in 1..6): validation perplexity <= 1.30 (the ideal is
    exp(ln 6 / 8) = 1.25: only k is random), and
    strings sampled at temperature 1 are (almost all) valid."""
    vocab = data.Vocab.build([["a", "b"]], pad=False, unk=False, eos=True)
    train_ids = vocab.encode(_anbn_stream(600, 0))
    valid_ids = vocab.encode(_anbn_stream(100, 1))
    lm = LanguageModel(len(vocab), 8, 24, num_layers=1, cell="lstm", seed=0)
    batches = list(data.BPTTBatches(data.batchify(train_ids, 16), 25))
    train(lm, batches, epochs=12, lr=2e-2, clip=5.0)
    metrics = evaluate(lm, list(data.BPTTBatches(data.batchify(valid_ids, 4), 25)))
    assert metrics["ppl"] <= 1.30, metrics
    out = lm.sample([vocab.eos_id], 200, temperature=1.0, seed=0)
    text = vocab.decode(out)
    strings = " ".join(text).split("<eos>")[:-1]
    valid = [data.is_anbn(s.split()) for s in strings]
    assert len(valid) >= 10 and np.mean(valid) >= 0.8, strings


def test_sample_arguments():
    lm = LanguageModel(10, 4, 4, seed=0)
    a = lm.sample([1, 2, 3], 15, seed=7)
    assert a.shape == (15,) and a.dtype == np.int64 and np.all((a >= 0) & (a < 10))
    np.testing.assert_array_equal(a, lm.sample([1, 2, 3], 15, seed=7))
    np.testing.assert_array_equal(lm.sample([1], 6, temperature=0), lm.sample([1], 6, top_k=1))
    assert lm.sample([4], 0).shape == (0,)
    assert lm.training  # sampling restores the mode
    with pytest.raises(ValueError, match="prompt_ids is empty"):
        lm.sample([], 3)
    with pytest.raises(ValueError, match="temperature"):
        lm.sample([1], 3, temperature=-1.0)
    with pytest.raises(ValueError, match="top_k"):
        lm.sample([1], 3, top_k=0)


def test_config_rebuilds_the_model():
    lm = LanguageModel(12, 6, 6, num_layers=2, cell="gru", dropout=0.1, tie_weights=True, seed=4)
    other = models.build(LanguageModel.MODEL_TYPE, lm.config())
    other.load_state_dict(lm.state_dict())
    lm.eval()
    other.eval()
    x = np.arange(12).reshape(4, 3)
    np.testing.assert_array_equal(lm(x)[0], other(x)[0])
    assert models.MODEL_REGISTRY["language_model"] is LanguageModel
    with pytest.raises(ValueError, match="cell must be one of"):
        LanguageModel(5, 2, 2, cell="transformer")


def test_char_level_reports_bits_per_character():
    lm = LanguageModel(5, 3, 3, seed=0)
    sums = {"loss_sum": 2.0 * math.log(2.0), "count": 2.0}
    assert "bpc" not in lm.epoch_metrics(sums)
    lm.char_level = True
    assert lm.epoch_metrics(sums)["bpc"] == pytest.approx(1.0)


def test_lstm_projection_language_model():
    """proj_size: gradients by finite differences (untied), shapes, config rebuild, tie checks."""
    rng = np.random.default_rng(4)
    V, T, B = 7, 4, 3
    lm = LanguageModel(V, 5, 6, num_layers=2, proj_size=3, dtype="float64", seed=2)
    assert lm.rnn.proj_size == 3 and lm.decoder.weight.shape == (V, 3)
    assert lm.config()["proj_size"] == 3
    x = rng.integers(0, V, size=(T, B))
    y = rng.integers(0, V, size=(T, B))
    state = (rng.standard_normal((2, B, 3)) * 0.5, rng.standard_normal((2, B, 6)) * 0.5)
    logits, (h, c) = lm.forward(x, state)
    assert logits.shape == (T, B, V) and h.shape == (2, B, 3) and c.shape == (2, B, 6)
    crit = CrossEntropyLoss()
    crit.eval()

    def loss_fn():
        return crit(lm.forward(x, state)[0], y)

    def analytic():
        lm._train_state = state
        lm.training_step((x, y))

    assert check_model_gradients(lm, loss_fn, analytic) == sum(p.data.size for p in lm.parameters())
    other = models.build(LanguageModel.MODEL_TYPE, lm.config())
    other.load_state_dict(lm.state_dict())
    np.testing.assert_array_equal(lm(x)[0], other(x)[0])
    assert "proj_size" not in LanguageModel(5, 2, 3).config()  # older readers see no new key
    LanguageModel(11, 4, 6, proj_size=4, tie_weights=True)
    with pytest.raises(ValueError, match="embed_dim == proj_size"):
        LanguageModel(11, 6, 8, proj_size=4, tie_weights=True)
    with pytest.raises(ValueError, match="proj_size is for the lstm cell only"):
        LanguageModel(11, 6, 8, cell="gru", proj_size=4)
