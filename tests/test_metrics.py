"""Tests of rnncore.metrics against hand-computed values, seqeval and sacreBLEU (when installed)."""

import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from rnncore.metrics import (
    accuracy,
    bits_per_char,
    chunk_scores,
    corpus_bleu,
    entity_f1,
    extract_chunks,
    mae,
    perplexity,
    persistence_forecast,
    rmse,
    seasonal_naive_forecast,
    token_accuracy,
    tokenize_13a,
)

# ---- language modelling -------------------------------------------------------------------


def test_perplexity_and_bits_per_char():
    assert perplexity(math.log(100.0)) == pytest.approx(100.0)
    assert perplexity(0.0) == 1.0
    assert bits_per_char(math.log(2.0)) == pytest.approx(1.0)
    assert bits_per_char(math.log(65.0)) == pytest.approx(math.log2(65.0))
    with pytest.raises(ValueError, match="finite"):
        perplexity(float("nan"))


# ---- accuracy -----------------------------------------------------------------------------


def test_accuracy_ids_scores_and_mask():
    target = np.array([0, 1, 2, 1])
    assert accuracy(np.array([0, 1, 1, 1]), target) == 0.75
    logits = np.eye(3)[[0, 2, 2, 1]] * 5.0  # [4, 3] -> argmax [0, 2, 2, 1]
    assert accuracy(logits, target) == 0.75
    mask = np.array([True, True, False, False])
    assert accuracy(logits, target, mask) == 0.5
    with pytest.raises(ValueError, match="selects no positions"):
        accuracy(logits, target, np.zeros(4, dtype=bool))
    with pytest.raises(ValueError, match="mask must be bool"):
        accuracy(logits, target, np.ones(4))
    with pytest.raises(ValueError, match="shape"):
        accuracy(np.zeros(3), target)


def test_token_accuracy_ignores_padding():
    # [T=3, B=2]; sequence 0 has length 3, sequence 1 has length 1 (its padding predictions
    # are wrong on purpose)
    target = np.array([[1, 4], [2, 0], [3, 0]])
    pred = np.array([[1, 4], [2, 9], [0, 9]])
    assert token_accuracy(pred, target, [3, 1]) == 0.75
    assert token_accuracy(pred.T, target.T, [3, 1], batch_first=True) == 0.75
    assert token_accuracy(pred, target) == 0.5
    assert token_accuracy([[1, 2, 0], [4]], [[1, 2, 3], [4]]) == 0.75  # ragged lists
    with pytest.raises(ValueError, match="lengths must be 2 values"):
        token_accuracy(pred, target, [4, 1])


# ---- chunks (conlleval) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "chunks"),
    [
        (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 2), ("LOC", 3, 4)]),
        (["I-PER", "I-PER", "O"], [("PER", 0, 2)]),  # I- without B- starts a chunk
        (["O", "I-ORG", "B-ORG", "I-ORG"], [("ORG", 1, 2), ("ORG", 2, 4)]),
        (["B-PER", "I-LOC", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 3)]),  # a type change splits
        (["B-PER", "B-PER"], [("PER", 0, 1), ("PER", 1, 2)]),
        (["B-MISC", "I-MISC"], [("MISC", 0, 2)]),  # the chunk at the very end is closed
        (["O", "O"], []),
        (["S-PER", "B-LOC", "E-LOC", "O"], [("PER", 0, 1), ("LOC", 1, 3)]),  # IOBES
        (["I-PER", "B-PER", "I-PER"], [("PER", 0, 1), ("PER", 1, 3)]),  # IOB1 style
    ],
)
def test_extract_chunks_follows_conlleval(tags, chunks):
    assert extract_chunks(tags) == chunks


def test_chunk_scores_hand_computed():
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-PER"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["I-ORG", "O", "B-PER"]]
    # true chunks: PER(0,2), LOC(3,4) | ORG(0,1), PER(2,3)  -> 4
    # pred chunks: PER(0,2), ORG(3,4) | ORG(0,1), PER(2,3)  -> 4, correct: PER, ORG, PER = 3
    s = chunk_scores(true, pred)
    assert (s.n_true, s.n_pred, s.n_correct) == (4, 4, 3)
    assert s.precision == s.recall == s.f1 == 0.75
    assert s.per_type["PER"].f1 == 1.0
    assert s.per_type["LOC"].recall == 0.0 and s.per_type["LOC"].precision == 0.0
    assert s.per_type["ORG"].precision == 0.5 and s.per_type["ORG"].recall == 1.0
    assert s.per_type["ORG"].f1 == pytest.approx(2 / 3)
    assert entity_f1(true, pred) == 0.75
    # a boundary error makes both a false positive and a false negative
    s = chunk_scores(["B-PER", "I-PER", "I-PER"], ["B-PER", "I-PER", "O"])
    assert (s.precision, s.recall, s.f1) == (0.0, 0.0, 0.0)
    # chunks never continue across sentences
    assert chunk_scores([["B-PER"], ["I-PER"]], [["B-PER"], ["I-PER"]]).n_true == 2


def test_chunk_scores_errors():
    with pytest.raises(ValueError, match="sentence 1 has 2 true but 1 predicted"):
        chunk_scores([["O"], ["O", "O"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="2 true vs 1 predicted"):
        chunk_scores([["O"], ["O"]], [["O"]])


def _random_tags(rng, n):
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
    return [[tags[i] for i in rng.integers(len(tags), size=rng.integers(1, 12))] for _ in range(n)]


def test_chunk_scores_match_seqeval():
    seqeval = pytest.importorskip("seqeval.metrics")
    rng = np.random.default_rng(0)
    for _ in range(20):
        true = _random_tags(rng, 15)
        pred = [[t if rng.random() < 0.7 else "I-LOC" for t in s] for s in true]
        s = chunk_scores(true, pred)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert s.f1 == pytest.approx(seqeval.f1_score(true, pred), abs=1e-12)
            assert s.precision == pytest.approx(seqeval.precision_score(true, pred), abs=1e-12)
            assert s.recall == pytest.approx(seqeval.recall_score(true, pred), abs=1e-12)


# ---- BLEU ---------------------------------------------------------------------------------

HYPS = [
    "The cat sat on the mat.",
    "It costs $1,000.50 -- really?",
    'He said: "hello" &amp; left at 10-11 pm.',
    "Nothing matches here",
    "A short one",
]
REFS = [
    ["The cat is on the mat.", "There is a cat on the mat."],
    "It costs $1,000.50, really!",
    'He said "hello" & left at 10-11 pm.',
    ["Completely different words"],
    ["A much longer reference sentence than the hypothesis", "A short one indeed"],
]
# sacrebleu 2.6.0's corpus_bleu on (HYPS, REFS) and on a sentence with no 4-gram match
SACREBLEU = {
    "exp": 64.03538271417871,
    "add-k": 65.44465863822352,
}
SACREBLEU_CAT = {"exp": 37.99178428257963, "floor": 25.40663740773073, "none": 0.0,
                 "add-k": 48.54917717073236}  # fmt: skip


def test_tokenize_13a():
    assert tokenize_13a("It costs $1,000.50 -- really?") == "It costs $ 1,000.50 -- really ?"
    assert tokenize_13a('He said: "hi" &amp; left at 10-11 pm.') == (
        'He said : " hi " & left at 10 - 11 pm .'
    )
    assert tokenize_13a("  spaced\n out  ") == "spaced out"


def test_bleu_hand_computed():
    # 1-4-gram matches 5/6, 3/5, 1/4, 0/3; exp smoothing turns the last into 1 / (2 * 3)
    b = corpus_bleu(["the cat sat on the mat"], ["the cat is on the mat"], backend="builtin")
    want = 100 * (5 / 6 * 3 / 5 * 1 / 4 * 1 / 6) ** 0.25
    assert b.score == pytest.approx(want, rel=1e-12)
    assert b.counts == [5, 3, 1, 0] and b.totals == [6, 5, 4, 3] and b.bp == 1.0
    assert corpus_bleu(["a b c d"], [["a b c d"]], backend="builtin").score == pytest.approx(100)
    # brevity penalty: 4 hypothesis tokens against the closest reference (6 tokens)
    b = corpus_bleu(["a b c d"], [["a b c d e f", "a b c d e f g h"]], backend="builtin")
    assert (b.sys_len, b.ref_len) == (4, 6)
    assert b.score == pytest.approx(100 * math.exp(1 - 6 / 4), rel=1e-12)
    assert corpus_bleu(["x y"], ["a b"], backend="builtin").score == 0.0


@pytest.mark.parametrize("smooth", ["exp", "floor", "none", "add-k"])
def test_builtin_bleu_equals_recorded_sacrebleu(smooth):
    b = corpus_bleu(["the cat sat on the mat"], ["the cat is on the mat"], smooth=smooth,
                    backend="builtin")  # fmt: skip
    assert b.score == SACREBLEU_CAT[smooth]
    if smooth in SACREBLEU:
        assert corpus_bleu(HYPS, REFS, smooth=smooth, backend="builtin").score == SACREBLEU[smooth]


@pytest.mark.parametrize("smooth", ["exp", "floor", "none", "add-k"])
@pytest.mark.parametrize("lowercase", [False, True])
@pytest.mark.parametrize("tokenize", ["13a", "none"])
def test_builtin_bleu_equals_sacrebleu(smooth, lowercase, tokenize):
    pytest.importorskip("sacrebleu")
    rng = np.random.default_rng(1)
    words = ["The", "cat", "sat", "on", "the", "mat", ".", ",", "a", "dog", "1,000.5", "-"]
    hyps = [" ".join(rng.choice(words, size=rng.integers(1, 9))) for _ in range(30)]
    refs = [[" ".join(rng.choice(words, size=rng.integers(1, 9))) for _ in range(1 + i % 3)]
            for i in range(30)]  # fmt: skip
    for h, r in ((HYPS, REFS), (hyps, refs), (["the cat sat on the mat"], ["the cat is on"])):
        kw = dict(smooth=smooth, lowercase=lowercase, tokenize=tokenize)
        ours = corpus_bleu(h, r, backend="builtin", **kw)
        theirs = corpus_bleu(h, r, backend="sacrebleu", **kw)
        assert theirs.backend == "sacrebleu"
        for name in ("score", "precisions", "bp", "sys_len", "ref_len", "counts", "totals"):
            assert getattr(ours, name) == getattr(theirs, name), name
        # the same signature, but for the version field
        assert ours.signature.endswith("|version:rnncore-builtin")
        assert ours.signature.rsplit("|", 1)[0] == theirs.signature.rsplit("|", 1)[0]


def test_bleu_backend_choice(monkeypatch):
    monkeypatch.setitem(sys.modules, "sacrebleu", None)  # import fails as if not installed
    assert corpus_bleu(HYPS, REFS).backend == "builtin"
    with pytest.raises(ImportError, match=r"rnncore\[bleu\]"):
        corpus_bleu(HYPS, REFS, backend="sacrebleu")


def test_the_bleu_extra_and_the_test_extra_name_sacrebleu():
    # a fresh install computes BLEU with the built-in version; the "bleu" extra brings sacreBLEU,
    # and the "test" extra too, so that CI compares the two (the test above does not skip there)
    tomllib = pytest.importorskip("tomllib")
    with open(Path(__file__).resolve().parents[1] / "pyproject.toml", "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    assert any(d.startswith("sacrebleu") for d in extras["bleu"])
    assert any(d.startswith("sacrebleu") for d in extras["test"])


def test_bleu_errors():
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        corpus_bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no hypotheses"):
        corpus_bleu([], [])
    with pytest.raises(TypeError, match="not a str"):
        corpus_bleu("a b", "a b")
    with pytest.raises(TypeError, match="references of hypothesis 0"):
        corpus_bleu(["a"], [[]])
    with pytest.raises(ValueError, match="smooth"):
        corpus_bleu(["a"], ["a"], smooth="add-one")


# ---- forecasting --------------------------------------------------------------------------


def test_rmse_mae():
    assert rmse([1.0, 2.0, 3.0], [1.0, 2.0, 5.0]) == pytest.approx(math.sqrt(4 / 3))
    assert mae([1.0, 2.0, 3.0], [2.0, 2.0, 5.0]) == 1.0
    with pytest.raises(ValueError, match="must be equal"):
        rmse([1.0], [1.0, 2.0])


def test_naive_baselines():
    x = np.array([1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 20.0])
    assert persistence_forecast(x, 3).tolist() == [10.0, 11.0, 12.0]
    assert persistence_forecast(x, 3, horizon=2).tolist() == [3.0, 10.0, 11.0]
    assert seasonal_naive_forecast(x, 3, season=3).tolist() == [2.0, 3.0, 10.0]
    assert seasonal_naive_forecast(x, 2, season=2, horizon=3).tolist() == [2.0, 3.0]  # lag 4
    with pytest.raises(ValueError, match="exceeds the series length"):
        persistence_forecast(x, 7)
