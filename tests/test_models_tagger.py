"""SequenceTagger: gradients (with character features), BIO repair, learning synthetic NER."""

import numpy as np
import pytest
from model_helpers import check_model_gradients, evaluate, train
from rnncore import data, metrics, models
from rnncore.models import SequenceTagger
from rnncore.models.tagger import IGNORE, BIORepair, TaggerBatch, is_bio
from rnncore.nn import CrossEntropyLoss

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _char_batch(words, char_vocab):
    """chars [Lc, N], char_lengths [N] for a flat list of N words."""
    return data.pad_sequences([char_vocab.encode(w) for w in words], pad_id=char_vocab.pad_id)


def _batches(sentences, vocab, tag_vocab, char_vocab, batch_size, shuffle):
    ids = [vocab.encode(toks) for toks, _ in sentences]
    sampler = data.BucketBatchSampler([len(s) for s in ids], batch_size, shuffle=shuffle)
    out = []
    for idx in sampler:
        x, lengths = data.pad_sequences([ids[i] for i in idx], pad_id=vocab.pad_id)
        tags, _ = data.pad_sequences(
            [tag_vocab.encode(sentences[i][1]) for i in idx], pad_id=IGNORE
        )
        chars = char_lengths = None
        if char_vocab is not None:
            words = [w for i in idx for w in sentences[i][0]]
            chars, char_lengths = _char_batch(words, char_vocab)
        out.append(TaggerBatch(x, lengths, tags, chars, char_lengths))
    return out


@pytest.mark.parametrize("cell,chars", [("lstm", True), ("gru", False), ("lstm", False)])
def test_gradients_match_finite_differences(cell, chars):
    rng = np.random.default_rng(3)
    V, T = 8, 5
    lengths = np.array([5, 2, 3])
    model = SequenceTagger(
        V,
        3,
        3,
        len(TAGS),
        num_layers=2,
        cell=cell,
        tag_names=TAGS,
        char_vocab_size=6 if chars else None,
        char_embed_dim=3,
        char_hidden_size=2,
        dtype="float64",
        seed=1,
    )
    ids = rng.integers(1, V, size=(T, 3))
    tags = rng.integers(0, len(TAGS), size=(T, 3))
    tags[np.arange(T)[:, None] >= lengths[None, :]] = IGNORE
    c = cl = None
    if chars:
        n = int(lengths.sum())
        cl = rng.integers(1, 5, size=n)
        c = rng.integers(1, 6, size=(4, n))
        c[np.arange(4)[:, None] >= cl[None, :]] = 0
    batch = TaggerBatch(ids, lengths, tags, c, cl)
    crit = CrossEntropyLoss(ignore_index=IGNORE)
    crit.eval()
    checked = check_model_gradients(
        model,
        lambda: crit(model.forward(ids, lengths, c, cl), tags),
        lambda: model.training_step(batch),
    )
    assert checked == sum(p.data.size for p in model.parameters())


def test_bio_repair_follows_conlleval():
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG"]
    repair = BIORepair(names)
    seqs = [
        ["I-PER", "I-PER", "O", "I-LOC", "B-PER", "I-LOC", "I-LOC"],
        ["O", "B-LOC", "I-LOC", "I-PER", "I-ORG", "O", "O"],
    ]
    ids = np.array([[names.index(t) for t in s] for s in seqs]).T  # [T, B]
    fixed = [[names[i] for i in col] for col in repair(ids).T]
    assert fixed[0] == ["B-PER", "I-PER", "O", "B-LOC", "B-PER", "B-LOC", "I-LOC"]
    assert fixed[1] == ["O", "B-LOC", "I-LOC", "B-PER", "I-ORG", "O", "O"]  # no B-ORG: kept
    for s, f in zip(seqs, fixed, strict=True):  # the chunks conlleval reads do not change
        assert metrics.extract_chunks(s) == metrics.extract_chunks(f)
    assert is_bio(TAGS) and not is_bio(["NN", "VB"]) and not is_bio(["O"])


def test_learns_synthetic_ner():
    """BiLSTM tagger with character features: held-out entity F1 >= 0.9 on synthetic_tagging."""
    train_set = data.synthetic_tagging(400, seed=0)
    test_set = data.synthetic_tagging(150, seed=1)
    vocab = data.Vocab.build(toks for toks, _ in train_set)
    tag_vocab = data.build_label_vocab((tags for _, tags in train_set), pad=False)
    char_vocab = data.Vocab.build(w for toks, _ in train_set for w in toks)
    model = SequenceTagger(
        len(vocab),
        16,
        16,
        len(tag_vocab),
        cell="lstm",
        tag_names=tag_vocab.itos,
        char_vocab_size=len(char_vocab),
        char_embed_dim=8,
        char_hidden_size=8,
        seed=0,
    )
    batches = _batches(train_set, vocab, tag_vocab, char_vocab, 16, True)
    train(model, batches, epochs=5, lr=1e-2, clip=5.0)
    test_batches = _batches(test_set, vocab, tag_vocab, char_vocab, 50, False)
    m = evaluate(model, test_batches)
    assert m["f1"] >= 0.9 and m["accuracy"] >= 0.95, m
    # the summed chunk counts agree with scoring all sentences at once
    b = test_batches[0]
    pred = model.predict(b.ids, b.lengths, b.chars, b.char_lengths)
    assert (pred[np.arange(pred.shape[0])[:, None] >= b.lengths[None, :]] == IGNORE).all()
    direct = metrics.chunk_scores(model.to_tags(b.tags, b.lengths), model.to_tags(pred, b.lengths))
    sums = model.validation_step(b)
    assert sums["chunks_correct"] == direct.n_correct and sums["chunks_pred"] == direct.n_pred


def test_without_chars_and_config():
    model = SequenceTagger(10, 4, 4, 3, tag_names=["NN", "VB", "DT"], seed=0)
    assert model.bio is None
    other = models.build("sequence_tagger", model.config())
    other.load_state_dict(model.state_dict())
    ids = np.array([[1, 2], [3, 0]])
    np.testing.assert_array_equal(model.predict(ids, [2, 1]), other.predict(ids, [2, 1]))
    sums = model.validation_step(TaggerBatch(ids, np.array([2, 1]), np.array([[0, 1], [2, -100]])))
    assert "chunks_true" not in sums and sums["count"] == 3.0
    assert "f1" not in model.epoch_metrics(sums)
    with pytest.raises(ValueError, match="tag_names has 2 tags"):
        SequenceTagger(10, 4, 4, 3, tag_names=["O", "B-X"])
    chars_model = SequenceTagger(10, 4, 4, 3, char_vocab_size=5)
    with pytest.raises(ValueError, match="character features"):
        chars_model(ids, [2, 1])
