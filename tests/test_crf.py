"""Issue 22, part 3: the linear-chain CRF against brute-force enumeration of every tag path
(log-likelihood, gradients, Viterbi), its BIO constraints, and the tagger's --crf."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from rnncore import nn

NAMES = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _brute(crf, e, lens, tags=None):
    """(Σ_b NLL, best paths) by enumerating all K^n paths of each sequence."""
    tr, st, en = crf.transitions.data, crf.start_transitions.data, crf.end_transitions.data
    allowed = crf.allowed if crf.allowed is not None else np.ones(tr.shape, bool)
    allowed_start = crf.allowed_start if crf.allowed_start is not None else np.ones(len(st), bool)
    K = tr.shape[0]
    total, best = 0.0, []
    for b, n in enumerate(lens):

        def score(path, b=b):
            if not allowed_start[path[0]] or any(
                not allowed[i, j] for i, j in zip(path, path[1:], strict=False)
            ):
                return -np.inf
            s = st[path[0]] + en[path[-1]] + sum(e[t, b, y] for t, y in enumerate(path))
            return s + sum(tr[i, j] for i, j in zip(path, path[1:], strict=False))

        paths = list(itertools.product(range(K), repeat=int(n)))
        scores = np.array([score(p) for p in paths])
        logz = np.logaddexp.reduce(scores)
        if tags is not None:
            total += logz - score(tuple(int(v) for v in tags[:n, b]))
        best.append(paths[int(np.argmax(scores))])
    return total, best


def _case(seed, constrained):
    rng = np.random.default_rng(seed)
    K = len(NAMES)
    crf = nn.CRF(
        K,
        constraints=nn.bio_constraints(NAMES) if constrained else None,
        dtype="float64",
        seed=seed,
    )
    crf.reset_parameters()
    for p in crf.parameters():
        p.data[...] = rng.normal(0, 1, p.shape)
    T, lens = 4, np.array([4, 2, 1, 3])
    e = rng.normal(0, 1, (T, len(lens), K))
    # gold paths the constraints allow: O / B- anywhere
    tags = rng.choice([0, 1, 3], size=(T, len(lens)))
    tags[1, 0] = 2 if tags[0, 0] == 1 else tags[1, 0]  # an I- after its B- now and then
    tags[2:, 1:2] = -100  # padding targets, as the taggers give them
    return crf, e, lens, tags


@pytest.mark.parametrize("constrained", [False, True])
def test_nll_and_viterbi_equal_brute_force(constrained):
    for seed in range(3):
        crf, e, lens, tags = _case(seed, constrained)
        crf.eval()
        nll = crf(e, tags, lens)
        want, best = _brute(crf, e, lens, tags)
        assert nll == pytest.approx(want, abs=1e-10)
        path = crf.decode(e, lens)
        for b, n in enumerate(lens):
            assert tuple(path[:n, b]) == best[b]
            assert (path[n:, b] == -1).all()


@pytest.mark.parametrize("constrained", [False, True])
def test_gradients_by_finite_differences(constrained):
    crf, e, lens, tags = _case(7, constrained)
    crf.train()
    crf.zero_grad()
    crf(e, tags, lens)
    de = crf.backward(0.5)
    crf.eval()
    eps = 1e-6

    def numeric(array, idx):
        old = array[idx]
        array[idx] = old + eps
        up = crf(e, tags, lens)
        array[idx] = old - eps
        down = crf(e, tags, lens)
        array[idx] = old
        return 0.5 * (up - down) / (2 * eps)

    for idx in np.ndindex(e.shape):
        want = numeric(e, idx) if idx[0] < lens[idx[1]] else 0.0
        assert de[idx] == pytest.approx(want, abs=1e-7), f"emissions{idx}"
    for p in crf.parameters():
        for idx in np.ndindex(p.shape):
            if constrained and p.name == "transitions" and not crf.allowed[idx]:
                assert p.grad[idx] == 0.0  # a forbidden transition has no probability to move
                continue
            if constrained and p.name == "start_transitions" and not crf.allowed_start[idx]:
                assert p.grad[idx] == 0.0
                continue
            assert p.grad[idx] == pytest.approx(numeric(p.data, idx), abs=1e-7), (p.name, idx)


def test_bio_constraints_and_refusals():
    allowed, start = nn.bio_constraints(NAMES)
    assert not start[2] and not start[4] and start[[0, 1, 3]].all()
    assert allowed[1, 2] and allowed[2, 2] and not allowed[0, 2] and not allowed[3, 2]
    crf = nn.CRF(5, constraints=(allowed, start), dtype="float64", seed=0)
    rng = np.random.default_rng(1)
    e = rng.normal(0, 3, (12, 6, 5))
    e[:, :, 2] += 4.0  # the emissions push hard for I-PER everywhere
    path = crf.decode(e)
    for b in range(6):
        assert path[0, b] not in (2, 4)
        for t in range(1, 12):
            assert allowed[path[t - 1, b], path[t, b]]
    bad = np.zeros((3, 1), np.int64)
    bad[0, 0] = 2  # a sentence that starts inside an entity
    with pytest.raises(ValueError, match="gold tags of sequence 0"):
        crf(e[:3, :1], bad)
    with pytest.raises(ValueError, match=r"emissions must be \[T, B, K=5\]"):
        crf(np.zeros((3, 1, 4)), bad)
    with pytest.raises(ValueError, match="lengths"):
        crf.decode(e, [0, 1, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="constraints must be"):
        nn.CRF(5, constraints=(allowed[:4], start))


def _conll_folder(tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    people, places, words = ["john", "mary", "anna"], ["paris", "rome"], ["lives", "in", "went"]
    for split, n in (("train", 80), ("valid", 20), ("test", 20)):
        lines = ["-DOCSTART- -X- -X- O", ""]
        for _ in range(n):
            first, last = rng.choice(people), rng.choice(people)
            sent = [(first, "B-PER"), (last.title(), "I-PER"), (rng.choice(words), "O")]
            sent += [("in", "O"), (rng.choice(places), "B-LOC"), (".", "O")]
            lines += [f"{w} NN O {t}" for w, t in sent] + [""]
        (tmp_path / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_tagger_trains_with_a_crf(tmp_path, capsys):
    import json

    from rnncore.cli import main
    from rnncore.train import load_checkpoint

    data = _conll_folder(tmp_path / "conll")
    out = tmp_path / "crf"
    argv = ["train", "tagger", "--data", str(data), "--out", str(out), "--no-progress", "--crf"]
    argv += ["--epochs", "6", "--hidden", "16", "--embed", "16", "--lr", "0.02"]
    assert main(argv) == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["f1"] >= 0.9
    model = load_checkpoint(out / "checkpoint").model
    assert model.crf is not None and model.config()["crf"] is True
    tagged = model.predict_tags("mary Anna went in rome .")[0]
    assert [t for _, t in tagged] == ["B-PER", "I-PER", "O", "O", "B-LOC", "O"]
