"""SequenceClassifier: gradients by finite differences, pooling over lengths, learning sentiment."""

import numpy as np
import pytest
from model_helpers import check_model_gradients, evaluate, train
from rnncore import data, models
from rnncore.models import SequenceClassifier
from rnncore.models.classifier import ClassifierBatch
from rnncore.nn import CrossEntropyLoss


@pytest.mark.parametrize(
    "cell,pooling,bidirectional",
    [("lstm", "last", True), ("gru", "mean", True), ("lstm", "max", True), ("rnn", "last", False)],
)
def test_gradients_match_finite_differences(cell, pooling, bidirectional):
    rng = np.random.default_rng(2)
    V, T, B = 9, 5, 3
    model = SequenceClassifier(
        V,
        4,
        3,
        3,
        num_layers=2,
        cell=cell,
        bidirectional=bidirectional,
        pooling=pooling,
        dtype="float64",
        seed=5,
    )
    lengths = np.array([5, 2, 4])
    ids = rng.integers(1, V, size=(T, B))
    ids[np.arange(T)[:, None] >= lengths[None, :]] = 0
    labels = np.array([0, 2, 1])
    crit = CrossEntropyLoss()
    crit.eval()
    batch = ClassifierBatch(ids, lengths, labels)
    n = check_model_gradients(
        model,
        lambda: crit(model.forward(ids, lengths), labels),
        lambda: model.training_step(batch),
    )
    assert n == sum(p.data.size for p in model.parameters())


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_padding_does_not_change_the_result(pooling):
    """A padded batch gives each sequence the logits it gets alone (lengths reach the engine)."""
    rng = np.random.default_rng(0)
    model = SequenceClassifier(20, 6, 5, 2, num_layers=2, pooling=pooling, dtype="float64", seed=1)
    model.eval()
    seqs = [rng.integers(1, 20, size=n) for n in (7, 3, 5)]
    ids, lengths = data.pad_sequences(seqs, pad_id=0)
    batched = model(ids, lengths)
    for b, s in enumerate(seqs):
        alone = model(s[:, None], np.array([s.size]))
        np.testing.assert_allclose(batched[b], alone[0], rtol=1e-12, atol=1e-12)


def test_last_pooling_is_the_top_layer_final_states():
    model = SequenceClassifier(10, 4, 3, 2, num_layers=2, pooling="last", dtype="float64", seed=0)
    model.eval()
    ids = np.array([[1, 2], [3, 0], [4, 0]])
    lengths = np.array([3, 1])
    y, (h, _) = model.rnn(model.embedding(ids), lengths=lengths)
    pooled, _ = model._pool(y, (h, None), lengths)
    np.testing.assert_array_equal(pooled[:, :3], h[2])  # forward direction of the top layer
    np.testing.assert_array_equal(pooled[:, 3:], h[3])  # its reverse direction
    np.testing.assert_array_equal(pooled[1, :3], y[0, 1, :3])  # state at the sequence's own end


def _batches(examples, vocab, batch_size, shuffle, seed=0):
    ids = [vocab.encode(toks) for toks, _ in examples]
    labels = np.array([y for _, y in examples])
    sampler = data.BucketBatchSampler([len(s) for s in ids], batch_size, shuffle=shuffle, seed=seed)
    out = []
    for idx in sampler:
        x, lengths = data.pad_sequences([ids[i] for i in idx], pad_id=vocab.pad_id)
        out.append(ClassifierBatch(x, lengths, labels[idx]))
    return out


def test_learns_synthetic_sentiment():
    """2-layer bidirectional GRU with clipping: held-out accuracy >= 90% on synthetic_sentiment."""
    train_set = data.synthetic_sentiment(800, seed=0)
    test_set = data.synthetic_sentiment(300, seed=1)
    vocab = data.Vocab.build(toks for toks, _ in train_set)
    model = SequenceClassifier(
        len(vocab), 16, 16, 2, num_layers=2, cell="gru", bidirectional=True, seed=0
    )
    train(model, _batches(train_set, vocab, 32, True), epochs=6, lr=1e-2, clip=5.0)
    metrics = evaluate(model, _batches(test_set, vocab, 64, False))
    assert metrics["accuracy"] >= 0.9, metrics
    probs = model.predict_proba(*_batches(test_set[:5], vocab, 5, False)[0][:2])
    assert probs.shape == (5, 2) and np.allclose(probs.sum(axis=1), 1.0)


def test_config_and_errors():
    model = SequenceClassifier(15, 4, 4, 3, num_layers=2, cell="gru", pooling="mean", seed=2)
    other = models.build("sequence_classifier", model.config())
    other.load_state_dict(model.state_dict())
    ids = np.array([[1, 2], [3, 0]])
    np.testing.assert_array_equal(model.predict(ids, [2, 1]), other.predict(ids, [2, 1]))
    assert model.embedding.weight.data[0].tolist() == [0.0] * 4  # padding row
    with pytest.raises(ValueError, match="pooling must be one of"):
        SequenceClassifier(5, 2, 2, 2, pooling="attention")
    with pytest.raises(ValueError, match="ids must be"):
        model(np.array([1, 2, 3]))
    with pytest.raises(TypeError, match="forward: lengths must be integers, got dtype float64"):
        model(ids, [2.5, 1.0])  # never silently truncated
    with pytest.raises(ValueError, match=r"lengths must be \[B=2\]"):
        model(ids, [2, 1, 1])
    with pytest.raises(RuntimeError, match="training-mode forward"):
        model.backward(np.zeros((2, 3), dtype=np.float32))
