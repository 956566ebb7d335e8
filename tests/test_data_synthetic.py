"""Tests of the synthetic generators: shapes, the rule each task encodes, determinism per seed."""

import numpy as np
import pytest
from rnncore.data import (
    adding_problem,
    anbn,
    copy_task,
    is_anbn,
    synthetic_sentiment,
    synthetic_tagging,
)
from rnncore.data.synthetic import NEGATIVE_WORDS, POSITIVE_WORDS
from rnncore.metrics import extract_chunks


def test_adding_problem():
    x, y = adding_problem(500, 20, seed=1)
    assert x.shape == (20, 500, 2) and y.shape == (500,) and x.dtype == np.float32
    markers = x[:, :, 1]
    assert np.all(markers.sum(axis=0) == 2)
    assert np.all(markers[:10].sum(axis=0) == 1) and np.all(markers[10:].sum(axis=0) == 1)
    np.testing.assert_allclose(y, (x[:, :, 0] * markers).sum(axis=0), rtol=1e-6)
    assert 0.0 <= x[:, :, 0].min() and x[:, :, 0].max() < 1.0
    assert np.mean((1.0 - y) ** 2) == pytest.approx(1 / 6, abs=0.03)
    x2, _ = adding_problem(500, 20, seed=1)
    assert np.array_equal(x, x2)
    x64, _ = adding_problem(2, 4, seed=np.random.default_rng(0), dtype=np.float64)
    assert x64.dtype == np.float64
    with pytest.raises(ValueError, match="steps"):
        adding_problem(3, 1)


def test_copy_task():
    x, y = copy_task(50, seq_len=5, delay=7, num_symbols=4, seed=0)
    assert x.shape == y.shape == (17, 50) and x.dtype == np.int64
    assert np.all((x[:5] >= 1) & (x[:5] <= 4))
    assert np.all(x[5:11] == 0) and np.all(x[11] == 5) and np.all(x[12:] == 0)
    assert np.all(y[:12] == 0) and np.array_equal(y[12:], x[:5])


def test_anbn():
    strings = anbn(200, min_n=2, max_n=4, seed=0)
    assert all(is_anbn(s) for s in strings)
    assert {len(s) // 2 for s in strings} == {2, 3, 4}
    assert not is_anbn(["a", "b", "b"]) and not is_anbn(["b", "a"]) and not is_anbn([])
    assert anbn(5, seed=3) == anbn(5, seed=3)
    with pytest.raises(ValueError, match="max_n"):
        anbn(3, min_n=4, max_n=2)


def test_synthetic_sentiment_label_follows_the_words():
    data = synthetic_sentiment(400, seed=0)
    labels = [label for _, label in data]
    assert 0.35 < np.mean(labels) < 0.65
    for tokens, label in data:
        pos = sum(t in POSITIVE_WORDS for t in tokens)
        neg = sum(t in NEGATIVE_WORDS for t in tokens)
        assert label == int(pos > neg) and pos != neg
        assert 4 <= len(tokens) <= 12
    assert synthetic_sentiment(10, seed=5) == synthetic_sentiment(10, seed=5)


def test_synthetic_tagging_is_valid_bio():
    data = synthetic_tagging(300, seed=0)
    n_multi = 0
    for tokens, tags in data:
        assert len(tokens) == len(tags) and len(tokens) >= 4
        for i, tag in enumerate(tags):
            assert tag == "O" or tag[:2] in ("B-", "I-")
            if tag.startswith("I-"):
                assert tags[i - 1][2:] == tag[2:] and tags[i - 1] != "O"
        n_multi += sum(end - start > 1 for _, start, end in extract_chunks(tags))
    assert n_multi > 50
    types = {t[2:] for _, tags in data for t in tags if t != "O"}
    assert types == {"PER", "LOC", "ORG"}
    assert synthetic_tagging(5, seed=1) == synthetic_tagging(5, seed=1)
