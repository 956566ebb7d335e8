"""Issue 18, point 5: a loaded model is ready to predict, from raw texts or from ids whose layout
is explicit and checked."""

from __future__ import annotations

import numpy as np
import pytest
from rnncore.data import Vocab
from rnncore.models import SequenceClassifier, SequenceTagger
from rnncore.train import load_checkpoint, save_checkpoint

TEXTS = ["a great film", "dull and far too long", "great fun"]


@pytest.fixture
def classifier_dir(tmp_path):
    vocab = Vocab.build([t.split() for t in TEXTS])
    model = SequenceClassifier(len(vocab), 8, 6, 2, dropout=0.3, seed=0)
    return save_checkpoint(
        tmp_path / "clf", model, vocab=vocab, extra={"labels": ["negative", "positive"]}
    )


def test_loaded_model_is_in_inference_mode_with_its_vocab(classifier_dir):
    model = load_checkpoint(classifier_dir).model
    assert not model.training  # dropout off for a plain forward
    assert model.labels == ["negative", "positive"] and model.vocab is not None
    p1 = model.predict_proba(["a great film"])
    p2 = model.predict_proba(["a great film"])
    assert p1.shape == (1, 2)
    np.testing.assert_array_equal(p1, p2)


def test_predict_from_texts_ids_and_arrays_agree(classifier_dir):
    model = load_checkpoint(classifier_dir).model
    vocab = model.vocab
    texts = ["a great film", "dull and far too long"]
    by_text = model.predict_proba(texts)
    # the call that used to classify every word as a sentence: a list of id sequences
    by_ids = model.predict_proba([vocab.encode(t.split()) for t in texts])
    np.testing.assert_allclose(by_ids, by_text, atol=1e-12)
    one = model.predict_proba(vocab.encode("a great film".split()))  # one 1-d sequence
    np.testing.assert_allclose(one[0], by_text[0], atol=1e-12)
    ids = np.zeros((5, 2), dtype=np.int64)
    ids[:3, 0] = vocab.encode(texts[0].split())
    ids[:, 1] = vocab.encode(texts[1].split())
    np.testing.assert_allclose(model.predict_proba(ids, [3, 5]), by_text, atol=1e-12)
    np.testing.assert_allclose(
        model.predict_proba(ids.T, [3, 5], batch_first=True), by_text, atol=1e-12
    )
    assert model.predict(texts).tolist() == by_text.argmax(axis=1).tolist()


def test_id_layout_mistakes_are_errors(classifier_dir):
    model = load_checkpoint(classifier_dir).model
    ids = np.ones((2, 5), dtype=np.int64)  # meant as [B, T]
    with pytest.raises(ValueError, match=r"lengths must be 5 integers.*read as \[T, B\]"):
        model.predict_proba(ids, [3, 5])
    with pytest.raises(ValueError, match=r"lengths must be in \[1, T=2\]"):
        model.predict_proba(ids[:, :2], [3, 5])
    with pytest.raises(ValueError, match="only for a 2-d id array"):
        model.predict_proba(["a great film"], [3])
    with pytest.raises(ValueError, match="has no tokens"):
        model.predict_proba(["  "])
    with pytest.raises(ValueError, match=r"lengths must be \[B=2\]"):
        model.forward(np.ones((4, 2), dtype=np.int64), [4, 4, 4])
    fresh = SequenceClassifier(10, 4, 4, 2)
    with pytest.raises(ValueError, match="texts need the model's vocabulary"):
        fresh.predict_proba(["a great film"])


def test_a_model_passed_to_load_checkpoint_keeps_its_mode(classifier_dir):
    model = SequenceClassifier(11, 8, 6, 2, dropout=0.3, seed=1)
    assert load_checkpoint(classifier_dir, model=model).model.training


def test_tagger_predicts_tags_of_raw_text(tmp_path):
    sents = [["John", "lives", "in", "Paris", "."], ["Mary", "left", "."]]
    tags = ["O", "B-PER", "B-LOC"]
    vocab = Vocab.build([[w.lower() for w in s] for s in sents])
    chars = Vocab.build(["".join(w for s in sents for w in s)])
    model = SequenceTagger(
        len(vocab), 6, 5, len(tags), tag_names=tags, char_vocab_size=len(chars), seed=0
    )
    path = save_checkpoint(
        tmp_path / "tag", model, vocab=vocab, vocabs={"tags": Vocab(tags), "chars": chars}
    )
    loaded = load_checkpoint(path).model
    out = loaded.predict_tags(["John lives in Paris.", "Mary left"])
    assert [w for w, _ in out[0]] == ["John", "lives", "in", "Paris", "."]
    assert len(out[1]) == 2 and all(t in tags for s in out for _, t in s)
    # the same as the id-level call with the same batch
    one = loaded.predict_tags("Mary left")[0]
    assert one == out[1]
    with pytest.raises(TypeError, match="texts must be a str or a list of str"):
        loaded.predict_tags(np.array([[1, 2]]))
