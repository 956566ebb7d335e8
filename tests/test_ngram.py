"""The Kneser-Ney n-gram model (rnncore.ngram) against a brute-force implementation of Chen &
Goodman's formulas written here, its distributions, save/load of untrusted files, and the
`rnncore train ngram` task on a tiny PTB-format folder. (Real PTB: bench/ngram_ptb.py.)"""

import json
import math
from collections import Counter, defaultdict

import numpy as np
import pytest
from rnncore.cli import main
from rnncore.data import Vocab
from rnncore.ngram import FALLBACK_DISCOUNTS, KneserNeyLM, split_sentences

WORDS = list("abcdef")


def _corpus(n_sentences=60, seed=0):
    """Random sentences over a-f (skewed frequencies, lengths 1-6, each ending with <eos>) and
    a vocabulary that also holds a word the corpus never uses ("g")."""
    rng = np.random.default_rng(seed)
    freq = [0.35, 0.25, 0.15, 0.12, 0.08, 0.05]
    sents = [
        [*rng.choice(WORDS, size=rng.integers(1, 7), p=freq).tolist(), "<eos>"]
        for _ in range(n_sentences)
    ]
    vocab = Vocab(["<unk>", "<eos>", *WORDS, "g"], unk="<unk>", eos="<eos>")
    return [vocab.encode(s).tolist() for s in sents], vocab


def reference_kn(sentences, V, eos, order):
    """Interpolated modified Kneser-Ney straight from the formulas, one sentence at a time with
    dicts of tuples (no code shared with rnncore.ngram).

    Each sentence is read as ``<eos> w1 ... wL`` (wL = <eos>); the leading <eos> is only a
    context. Counts: raw at the highest order and for n-grams at the start of a sentence,
    otherwise the number of distinct tokens seen before the n-gram.

    Returns:
        (prob(history, w) -> float, {order: (D1, D2, D3+)}).
    """
    raw, before, at_start = Counter(), defaultdict(set), set()
    for s in sentences:
        seq = [eos, *s]
        for end in range(1, len(seq)):
            for k in range(1, order + 1):
                begin = end - k + 1
                if begin < 0:
                    break
                gram = tuple(seq[begin : end + 1])
                raw[gram] += 1
                if begin == 0:
                    at_start.add(gram)
                else:
                    before[gram].add(seq[begin - 1])

    def count(gram):
        return raw[gram] if len(gram) == order or gram in at_start else len(before[gram])

    discounts = {}
    for k in range(1, order + 1):
        cs = [count(g) for g in raw if len(g) == k]
        n1, n2, n3, n4 = (cs.count(r) for r in (1, 2, 3, 4))
        d = FALLBACK_DISCOUNTS
        if n1 and n2 and n3:
            y = n1 / (n1 + 2 * n2)
            est = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
            if all(0 <= est[r - 1] <= r for r in (1, 2, 3)):
                d = est
        discounts[k] = d

    def p(k, h, w):  # p_k(w | h), len(h) == k - 1
        if k == 0:
            return 1.0 / V
        lower = p(k - 1, h[1:], w)
        followers = {g[-1]: count(g) for g in raw if len(g) == k and g[:-1] == h}
        total = sum(followers.values())
        if total == 0:
            return lower
        disc = discounts[k]
        gamma = sum(disc[min(c, 3) - 1] for c in followers.values()) / total
        c = followers.get(w, 0)
        return (c - disc[min(c, 3) - 1] if c else 0.0) / total + gamma * lower

    def prob(history, w):
        history = list(history)
        if eos in history:  # a new sentence starts after the last <eos>
            history = history[len(history) - history[::-1].index(eos) :]
        hist = [eos, *history]
        k = min(order, len(hist) + 1)
        return p(k, tuple(hist[len(hist) - (k - 1) :]), w)

    return prob, discounts


def _contexts(sentences, vocab):
    """Seen contexts (every prefix of a few training sentences) and unseen ones."""
    ids = {w: vocab.index(w) for w in [*WORDS, "g", "<eos>"]}
    seen = [s[:i] for s in sentences[:4] for i in range(len(s))]
    unseen = [
        [ids["g"]],
        [ids["a"], ids["g"], ids["b"]],
        [ids["f"], ids["f"], ids["f"], ids["f"]],
        [ids["c"], ids["<eos>"], ids["a"]],  # the sentence restarts after <eos>
        [ids["<eos>"]],
        [ids["a"]] * 9,
    ]
    return seen + unseen


@pytest.mark.parametrize("order", [1, 2, 3, 4, 9])  # 9: the top order has no n-grams at all
def test_every_distribution_sums_to_one(order):
    sentences, vocab = _corpus()
    model = KneserNeyLM(order).fit(sentences, vocab)
    for context in _contexts(sentences, vocab):
        p = np.exp(model.log_probs(context))
        assert p.shape == (len(vocab),)
        assert abs(math.fsum(p) - 1.0) < 1e-12, context
        assert np.all(p > 0)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_matches_a_brute_force_implementation_of_the_formulas(order):
    sentences, vocab = _corpus()
    model = KneserNeyLM(order).fit(sentences, vocab)
    prob, discounts = reference_kn(sentences, len(vocab), vocab.eos_id, order)
    np.testing.assert_allclose(model.discounts, [discounts[k] for k in range(1, order + 1)])
    for context in _contexts(sentences, vocab):
        want = [prob(context, w) for w in range(len(vocab))]
        np.testing.assert_allclose(np.exp(model.log_probs(context)), want, rtol=1e-12)
    if order >= 2:  # the corpus exercises the estimated discounts, not only the fallback
        assert not np.allclose(model.discounts[1], FALLBACK_DISCOUNTS)


def test_unigram_case_computed_by_hand():
    """Tokens a a a b <eos>: raw counts a 3, b 1, <eos> 1 over V = 5 (<unk>, <eos>, a, b, c).
    No count is 2, so the fallback discounts (0.5, 1, 1.5) apply; the mass they free is
    gamma = (0.5 * 2 + 1.5 * 1) / 5 = 0.5, spread uniformly (0.1 each):
    p(a) = (3 - 1.5) / 5 + 0.1 = 0.4, p(b) = p(<eos>) = 0.5 / 5 + 0.1 = 0.2,
    p(<unk>) = p(c) = 0.1."""
    vocab = Vocab(["<unk>", "<eos>", "a", "b", "c"], unk="<unk>", eos="<eos>")
    model = KneserNeyLM(1).fit([vocab.encode("a a a b <eos>".split())], vocab)
    np.testing.assert_allclose(np.exp(model.log_probs([])), [0.1, 0.2, 0.4, 0.2, 0.1])
    np.testing.assert_allclose(model.discounts, [FALLBACK_DISCOUNTS])


def test_bigram_case_computed_by_hand():
    """Sentences "a b" and "a a" (<eos> ends each). Bigram raw counts: <eos>a 2, ab 1, b<eos> 1,
    aa 1, a<eos> 1. Unigram continuation counts: a 2 (after <eos> and a), b 1, <eos> 2 (after a
    and b). Neither order has a count of 3, so both use the fallback discounts (0.5, 1, 1.5).
    Unigram: total 5, gamma = (1 + 0.5 + 1) / 5 = 0.5, uniform share 0.5 / 4 (V = 4: <unk>,
    <eos>, a, b), so p1(a) = 1/5 + 1/8 = 0.325, p1(b) = 0.5/5 + 1/8 = 0.225, p1(<eos>) = 0.325,
    p1(<unk>) = 0.125. After "a": followers b, a, <eos> once each, total 3, gamma = 1.5 / 3 =
    0.5, so p(b | a) = 0.5/3 + 0.5 * 0.225 = 0.279166..."""
    vocab = Vocab(["<unk>", "<eos>", "a", "b"], unk="<unk>", eos="<eos>")
    sents = [vocab.encode(s.split()) for s in ("a b <eos>", "a a <eos>")]
    model = KneserNeyLM(2).fit(sents, vocab)
    a, b = vocab.index("a"), vocab.index("b")
    assert model.logprob([a], b) == pytest.approx(math.log(0.5 / 3 + 0.5 * 0.225), rel=1e-12)
    # at the start of a sentence: <eos> a seen twice (raw count 2 -> D2 = 1), gamma = 1 / 2
    assert model.logprob([], a) == pytest.approx(math.log(1 / 2 + 0.5 * 0.325), rel=1e-12)
    assert model.logprob([], b) == pytest.approx(math.log(0.5 * 0.225), rel=1e-12)


def test_logprob_log_probs_and_token_logprobs_agree():
    sentences, vocab = _corpus()
    model = KneserNeyLM(3).fit(sentences, vocab)
    held_out = _corpus(10, seed=1)[0]
    per_token = model.token_logprobs(held_out)
    assert per_token.shape == (sum(map(len, held_out)),)
    i = 0
    for s in held_out:
        for t in range(len(s)):
            assert model.logprob(s[:t], s[t]) == pytest.approx(per_token[i], abs=1e-13)
            assert model.log_probs(s[:t])[s[t]] == pytest.approx(per_token[i], abs=1e-13)
            i += 1
    assert model.perplexity(held_out) == pytest.approx(math.exp(-per_token.mean()))


def test_perplexity_is_finite_with_unseen_words_as_unk():
    train = [s.split() + ["<eos>"] for s in ["the cat sat", "the dog sat", "a cat ran"] * 5]
    vocab = Vocab.build(train, pad=False, unk=True, eos=True)
    model = KneserNeyLM(3).fit([vocab.encode(s) for s in train], vocab)
    test = [s.split() + ["<eos>"] for s in ["the zebra sat", "a quokka ran away"]]
    ids = [vocab.encode(s) for s in test]
    assert sum(int((s == vocab.unk_id).sum()) for s in ids) == 3  # zebra, quokka, away
    ppl = model.perplexity(ids)
    assert math.isfinite(ppl) and 1.0 < ppl < len(vocab) * 10
    assert model.perplexity([vocab.encode(s) for s in train]) < ppl


def test_fit_and_scoring_reject_bad_input():
    sentences, vocab = _corpus(5)
    unfitted = KneserNeyLM(2)
    with pytest.raises(ValueError, match="sentence 1 does not end with <eos>"):
        unfitted.fit([sentences[0], sentences[1][:-1]], vocab)
    with pytest.raises(RuntimeError, match="not fitted"):  # a failed fit leaves no half model
        unfitted.log_probs([])
    with pytest.raises(ValueError, match="sentence 0 has id 99"):
        KneserNeyLM(2).fit([[99, vocab.eos_id]], vocab)
    with pytest.raises(ValueError, match="sentence 0 must be a non-empty"):
        KneserNeyLM(2).fit([[]], vocab)
    with pytest.raises(ValueError, match="order must be an integer >= 1"):
        KneserNeyLM(0)
    with pytest.raises(RuntimeError, match="not fitted"):
        KneserNeyLM(2).log_probs([])
    model = KneserNeyLM(2).fit(sentences, vocab)
    with pytest.raises(ValueError, match="outside"):
        model.logprob([], len(vocab))
    with pytest.raises(ValueError, match="context ids"):
        model.log_probs([-1])


def test_split_sentences_cuts_after_each_eos():
    parts = split_sentences(np.array([3, 4, 1, 1, 5, 1]), eos_id=1)
    assert [p.tolist() for p in parts] == [[3, 4, 1], [1], [5, 1]]
    with pytest.raises(ValueError, match="does not end with <eos>"):
        split_sentences(np.array([3, 1, 4]), eos_id=1)


# ---- save / load ------------------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    sentences, vocab = _corpus()
    model = KneserNeyLM(3).fit(sentences, vocab)
    model.save(tmp_path / "m")
    return model, tmp_path / "m", sentences


def test_save_load_round_trip_gives_identical_log_probs(saved):
    model, path, sentences = saved
    back = KneserNeyLM.load(path)
    assert back.order == 3 and back.vocab == model.vocab and back.ngrams == model.ngrams
    np.testing.assert_array_equal(back.discounts, model.discounts)
    np.testing.assert_array_equal(back.token_logprobs(sentences), model.token_logprobs(sentences))
    for context in _contexts(sentences, model.vocab):
        np.testing.assert_array_equal(back.log_probs(context), model.log_probs(context))


def _edit_meta(path, **changes):
    meta = json.loads((path / "ngram.json").read_text())
    meta.update(changes)
    (path / "ngram.json").write_text(json.dumps(meta))


def _edit_arrays(path, edit):
    with np.load(path / "ngram.npz") as z:
        arrays = {k: z[k] for k in z.files}
    edit(arrays)
    np.savez(path / "ngram.npz", **arrays)


def _unsorted(a):
    a["keys_2"] = a["keys_2"][::-1].copy()


def _zero_count(a):
    a["counts_2"][0] = 0


def _float_keys(a):
    a["keys_1"] = a["keys_1"].astype(np.float64)


def _key_out_of_range(a):
    a["keys_3"][-1] = 10**12


def _missing_array(a):
    del a["counts_3"]


def _pickled(a):
    a["keys_1"] = np.array([object()], dtype=object)


CORRUPTIONS = {
    "meta not json": (lambda p: (p / "ngram.json").write_text("{oops"), "ngram.json"),
    "meta format": (lambda p: _edit_meta(p, format="arpa"), "ngram.json: field 'format'"),
    "meta order": (lambda p: _edit_meta(p, order="3"), "ngram.json: field 'order'"),
    "meta eos": (lambda p: _edit_meta(p, eos_id=999), "ngram.json: field 'eos_id'"),
    "meta ngrams": (lambda p: _edit_meta(p, ngrams=[1, 2]), "ngram.json: field 'ngrams'"),
    "ngram count": (lambda p: _edit_meta(p, ngrams=[8, 5, 5]), "ngram.npz: field 'keys_1'"),
    "vocab size": (lambda p: _edit_meta(p, vocab_size=20), "vocab.json"),
    "vocab json": (lambda p: (p / "vocab.json").write_text("[]"), "vocab.json"),
    "npz truncated": (
        lambda p: (p / "ngram.npz").write_bytes((p / "ngram.npz").read_bytes()[:100]),
        "ngram.npz",
    ),
    "npz garbage": (lambda p: (p / "ngram.npz").write_bytes(b"\x00" * 64), "ngram.npz"),
    "keys unsorted": (lambda p: _edit_arrays(p, _unsorted), "ngram.npz: field 'keys_2'"),
    "count zero": (lambda p: _edit_arrays(p, _zero_count), "ngram.npz: field 'counts_2'"),
    "float keys": (lambda p: _edit_arrays(p, _float_keys), "ngram.npz: field 'keys_1'"),
    "key range": (lambda p: _edit_arrays(p, _key_out_of_range), "ngram.npz: field 'keys_3'"),
    "array missing": (lambda p: _edit_arrays(p, _missing_array), "ngram.npz: arrays"),
    "pickled array": (lambda p: _edit_arrays(p, _pickled), "ngram.npz"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_load_rejects_corrupted_files_naming_file_and_field(saved, name):
    _, path, _ = saved
    corrupt, where = CORRUPTIONS[name]
    corrupt(path)
    with pytest.raises(ValueError, match=where.replace(".", r"\.")):
        KneserNeyLM.load(path)


def test_a_huge_tampered_array_is_refused_before_it_is_decompressed(saved, monkeypatch):
    _, path, _ = saved
    with np.load(path / "ngram.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["keys_1"] = np.zeros(20_000_000, dtype=np.int64)  # 160 MB inflated, ~160 kB stored
    np.savez_compressed(path / "ngram.npz", **arrays)
    real = np.lib.npyio.NpzFile.__getitem__

    def getitem(self, key):
        assert key != "keys_1", "keys_1 was decompressed before its header was checked"
        return real(self, key)

    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", getitem)
    with pytest.raises(ValueError, match=r"ngram\.npz: field 'keys_1' must be integers of shape"):
        KneserNeyLM.load(path)


def test_load_names_a_missing_file(saved):
    _, path, _ = saved
    (path / "ngram.npz").unlink()
    with pytest.raises(FileNotFoundError, match="ngram.npz"):
        KneserNeyLM.load(path)


# ---- the CLI task -----------------------------------------------------------------------------
@pytest.fixture
def ptb_dir(tmp_path):
    d = tmp_path / "ptb"
    d.mkdir()
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(30)]
    for split, n in (("train", 200), ("valid", 30), ("test", 30)):
        extra = ["unseen", "words"] if split != "train" else []
        lines = [
            " ".join(rng.choice(words[:25] + extra, size=rng.integers(2, 9)).tolist())
            for _ in range(n)
        ]
        (d / f"ptb.{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d


def test_cli_task_writes_metrics_and_a_loadable_model(ptb_dir, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "ngram", "--data", str(ptb_dir), "--out", str(out), "--order", "3"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "valid: loss" in printed and "test:  loss" in printed
    m = json.loads((out / "metrics.json").read_text())
    assert m["task"] == "ngram" and m["model_type"] == "KneserNeyLM"
    for split in ("valid", "test"):
        assert set(m[split]) == {"loss", "ppl"}
        assert math.isfinite(m[split]["ppl"]) and m[split]["ppl"] > 1
        assert m[split]["ppl"] == pytest.approx(math.exp(m[split]["loss"]))
    assert m["model_config"]["order"] == 3 and m["options"]["order"] == 3
    assert m["data"]["vocab_size"] == 27  # <unk>, <eos> and the 25 training words
    model = KneserNeyLM.load(m["checkpoint"])
    valid = [
        line.split() + ["<eos>"] for line in (ptb_dir / "ptb.valid.txt").read_text().splitlines()
    ]
    assert model.perplexity([model.vocab.encode(s) for s in valid]) == pytest.approx(
        m["valid"]["ppl"], rel=1e-12
    )
    assert "valid: loss" in (out / "train.log").read_text()

    assert main(argv) == 2  # the folder holds a run now
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


def test_cli_task_rejects_bad_options_and_data(ptb_dir, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "ngram", "--data", str(ptb_dir), "--out", out, "--order", "0"]) == 2
    assert "--order must be >= 1" in capsys.readouterr().err
    assert main(["train", "ngram", "--data", str(tmp_path / "nope"), "--out", out]) == 2
    assert "rnncore: error:" in capsys.readouterr().err
    (ptb_dir / "ptb.valid.txt").write_text("")
    assert main(["train", "ngram", "--data", str(ptb_dir), "--out", out]) == 2
    assert "ptb.valid.txt: file is empty" in capsys.readouterr().err
