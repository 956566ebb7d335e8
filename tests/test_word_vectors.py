"""Pretrained word vectors: the word2vec / GloVe loader (formats, coverage, bad files),
Embedding.from_pretrained against torch's, frozen parameters under every optimizer, and
`--embeddings` on a text task end to end."""

import gzip
import json

import numpy as np
import pytest
from rnncore import data, optim
from rnncore.cli import main
from rnncore.data import DataFormatError, Vocab, WordVectorsDimError, load_word_vectors
from rnncore.nn import Embedding, Linear, Module
from rnncore.train import load_checkpoint

# A GloVe-style file: lower-case words, no header. "zebra" is not in VOCAB.
GLOVE = ["the 0.1 0.2 0.3", "paris 1.0 -2.0 3.5", "film 4 5 6", "zebra 7 8 9"]
VOCAB = Vocab.build([["the", "film", "Paris", "movie", "the"]])  # <pad> <unk> the film Paris movie


def _write(path, lines, newline="\n"):
    path.write_bytes((newline.join(lines) + newline).encode("utf-8"))
    return path


def _row(vocab, word):
    return vocab.stoi[word]


# ---- the loader -----------------------------------------------------------------------------
def test_glove_rows_align_to_the_vocabulary(tmp_path):
    wv = load_word_vectors(_write(tmp_path / "g.txt", GLOVE), VOCAB)
    v = wv.vectors
    assert v.shape == (len(VOCAB), 3) and v.dtype == np.float32
    assert wv.format == "glove" and wv.file_words == 4 and wv.dim == 3
    np.testing.assert_array_equal(v[_row(VOCAB, "the")], np.float32([0.1, 0.2, 0.3]))
    np.testing.assert_array_equal(v[_row(VOCAB, "film")], [4, 5, 6])
    np.testing.assert_array_equal(v[_row(VOCAB, "Paris")], [1.0, -2.0, 3.5])  # ignoring case
    np.testing.assert_array_equal(v[VOCAB.pad_id], 0.0)
    # words: the, film, Paris, movie (specials not counted); movie is missing
    assert (wv.words, wv.found, wv.found_by_case, wv.missing) == (4, 3, 1, ("movie",))
    assert wv.coverage == pytest.approx(0.75)
    assert "3 of 4 vocabulary words (75.0%, 1 ignoring case)" in wv.summary()
    assert json.loads(json.dumps(wv.report()))["missing_examples"] == ["movie"]


def test_random_rows_are_seeded_and_take_the_vectors_scale(tmp_path):
    path = _write(tmp_path / "g.txt", GLOVE)
    a = load_word_vectors(path, VOCAB, seed=3)
    b = load_word_vectors(path, VOCAB, seed=3)
    c = load_word_vectors(path, VOCAB, seed=4)
    movie, unk = _row(VOCAB, "movie"), VOCAB.unk_id
    np.testing.assert_array_equal(a.vectors, b.vectors)
    assert not np.array_equal(a.vectors[movie], c.vectors[movie])
    assert np.all(a.vectors[[movie, unk]] != 0)  # <unk> is not in the file: random as well
    found = np.array([[0.1, 0.2, 0.3], [4, 5, 6], [1, -2, 3.5]])
    assert a.init_std == pytest.approx(found.std(), rel=1e-6)
    d = load_word_vectors(path, VOCAB, init_std=0.0, dtype="float64")
    assert d.vectors.dtype == np.float64 and np.all(d.vectors[[movie, unk]] == 0)


def test_word2vec_header_trailing_spaces_crlf_bom_and_blank_lines(tmp_path):
    lines = ["\ufeff4 3", "</s> 0 0 0 ", "the 0.1 0.2 0.3 ", "", "Paris 1 2 3 ", "film 4 5 6 "]
    wv = load_word_vectors(_write(tmp_path / "w.vec", lines, newline="\r\n"), VOCAB)
    assert wv.format == "word2vec" and wv.file_words == 4
    np.testing.assert_array_equal(wv.vectors[_row(VOCAB, "Paris")], [1, 2, 3])
    assert wv.found_by_case == 0  # "Paris" is an exact match here


def test_gzip_is_recognised_by_its_bytes(tmp_path):
    plain = load_word_vectors(_write(tmp_path / "g.txt", GLOVE), VOCAB).vectors
    for name in ("g.txt.gz", "g.bin"):
        with gzip.open(tmp_path / name, "wt", encoding="utf-8") as f:
            f.write("\n".join(GLOVE) + "\n")
        np.testing.assert_array_equal(load_word_vectors(tmp_path / name, VOCAB).vectors, plain)


def test_exact_matches_win_and_the_first_spelling_wins_ignoring_case(tmp_path):
    vocab = Vocab(["<pad>", "paris", "Paris", "Rome", "<unk>"], pad="<pad>", unk="<unk>")
    # word2vec files are cased and sorted by frequency: the first spelling is the commonest
    lines = ["Paris 1 1", "ROME 2 2", "rome 3 3", "paris 4 4", "<UNK> 5 5", "Paris 6 6"]
    wv = load_word_vectors(_write(tmp_path / "w.txt", lines), vocab, init_std=0.0)
    v = wv.vectors
    np.testing.assert_array_equal(v[1], [4, 4])  # "paris": its own entry, though "Paris" came first
    np.testing.assert_array_equal(v[2], [1, 1])  # "Paris": its first entry, not the duplicate
    np.testing.assert_array_equal(v[3], [2, 2])  # "Rome": the first spelling ignoring case
    np.testing.assert_array_equal(v[4], [0, 0])  # specials match only exactly
    assert (wv.found, wv.found_by_case) == (3, 1)
    off = load_word_vectors(tmp_path / "w.txt", vocab, init_std=0.0, lowercase_fallback=False)
    np.testing.assert_array_equal(off.vectors[3], [0, 0])
    assert off.missing == ("Rome",)


def test_specials_take_their_own_vector_and_the_padding_row_stays_zero(tmp_path):
    lines = ["<unk> 1 1", "<pad> 2 2", "a 3 3"]
    vocab = Vocab.build([["a", "b"]])
    v = load_word_vectors(_write(tmp_path / "g.txt", lines), vocab).vectors
    np.testing.assert_array_equal(v[vocab.unk_id], [1, 1])
    np.testing.assert_array_equal(v[vocab.pad_id], [0, 0])


def test_words_with_spaces_and_a_plain_token_list(tmp_path):
    lines = ["the 1 2", ". . . 3 4", "at name@domain.com 5 6", "film 7 8"]
    wv = load_word_vectors(_write(tmp_path / "g.txt", lines), ["film", ". . .", "the"])
    np.testing.assert_array_equal(wv.vectors, [[7, 8], [3, 4], [1, 2]])
    assert wv.file_words == 4 and wv.coverage == 1.0


def test_dim_asked_for_is_checked_at_the_first_line(tmp_path):
    path = _write(tmp_path / "g.txt", GLOVE)
    assert load_word_vectors(path, VOCAB, dim=3).dim == 3
    with pytest.raises(WordVectorsDimError, match=r"g.txt, line 1: .*3 dimensions, expected 5"):
        load_word_vectors(path, VOCAB, dim=5)


BAD_FILES = {
    "empty": ([], r"file is empty"),
    "blank": (["", "   "], r"file is empty"),
    "header only": (["2 3"], r"line 1: the first line announces 2 vectors, the file has 0"),
    "fewer than announced": (["3 2", "a 1 2", "b 1 2"], r"line 3: .*announces 3 vectors.*has 2"),
    "more than announced": (["1 2", "a 1 2", "b 1 2"], r"line 3: more vectors than the 1"),
    "no numbers": (["the"], r"line 1: expected 'count dim' \(word2vec\) or 'word x1 x2"),
    "too few numbers": (["the 1 2 3", "film 1 2"], r"line 2: expected a word and 3 numbers, got 2"),
    "a number too many": (["the 1 2", "film 1 2 3"], r"line 2: expected a word and 2 numbers"),
    "header then short": (["2 3", "the 1 2 3", "film 1"], r"line 3: expected a word and 3"),
    "not a number": (["the 1 2", "film 1 x2"], r"line 2: 'x2' is not a number"),
    "nan": (["the 1 nan"], r"line 1: value 2 \(nan\) is not a finite float32"),
    "inf": (["zebra 0 0", "film inf 1"], r"line 2: value 1 \(inf\) is not a finite"),
    "float32 overflow": (["the 1e39 1"], r"line 1: value 1 \(1e39\) is not a finite float32"),
    "tab separated": (["the\t1\t2"], r"line 1: expected 'count dim'"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_name_the_file_and_line(tmp_path, case):
    lines, message = BAD_FILES[case]
    path = _write(tmp_path / "bad.txt", lines) if lines else tmp_path / "bad.txt"
    if not lines:
        path.write_bytes(b"")
    with pytest.raises(DataFormatError, match=message) as e:
        load_word_vectors(path, VOCAB)
    assert str(path) in str(e.value)


def test_binary_gzip_and_long_lines_are_refused(tmp_path, monkeypatch):
    binary = tmp_path / "w2v.bin"  # word2vec's binary format: a text header, then raw floats
    binary.write_bytes(b"2 3\nthe " + np.float32([0.5, -1.0, 2e-38]).tobytes() + b"\xff\n")
    with pytest.raises(DataFormatError, match=r"w2v.bin, line 2: not valid UTF-8.*binary"):
        load_word_vectors(binary, VOCAB)
    broken = tmp_path / "g.gz"
    broken.write_bytes(gzip.compress(b"the 1 2\n" * 100)[:30])
    with pytest.raises(DataFormatError, match=r"g.gz: not a valid gzip file"):
        load_word_vectors(broken, VOCAB)
    monkeypatch.setattr(data.word_vectors, "MAX_LINE_BYTES", 16)
    with pytest.raises(DataFormatError, match=r"line 2: line longer than 16 bytes"):
        load_word_vectors(_write(tmp_path / "long.txt", ["a 1", "the " + "1 " * 20]), VOCAB)


def test_missing_paths_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"load_word_vectors: file not found: .*nope.txt"):
        load_word_vectors(tmp_path / "nope.txt", VOCAB)
    with pytest.raises(IsADirectoryError):
        load_word_vectors(tmp_path, VOCAB)
    path = _write(tmp_path / "g.txt", GLOVE)
    with pytest.raises(ValueError, match="dim must be"):
        load_word_vectors(path, VOCAB, dim=0)
    with pytest.raises(ValueError, match="init_std"):
        load_word_vectors(path, VOCAB, init_std=float("nan"))
    with pytest.raises(TypeError, match="dtype"):
        load_word_vectors(path, VOCAB, dtype="float16")
    with pytest.raises(TypeError, match="vocab"):
        load_word_vectors(path, "the film")


def test_only_vocabulary_lines_are_parsed(tmp_path):
    # Words outside the vocabulary are skipped after a field count: a million-word file costs
    # no memory beyond the vocabulary's rows, and their values are never read.
    lines = ["the 1 2"] + [f"w{i} 0.5 0.25" for i in range(2000)]
    wv = load_word_vectors(_write(tmp_path / "g.txt", lines), VOCAB)
    assert wv.file_words == 2001 and wv.vectors.shape == (len(VOCAB), 2)


# ---- Embedding.from_pretrained --------------------------------------------------------------
def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("freeze", [True, False])
@pytest.mark.parametrize("padding_idx", [None, 2, -1])
def test_from_pretrained_matches_torch(freeze, padding_idx):
    torch = _torch()
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 4))
    ids = np.array([[0, 2, 5], [2, 1, 5]])
    dout = rng.standard_normal((2, 3, 4))
    ours = Embedding.from_pretrained(w, freeze=freeze, padding_idx=padding_idx)
    ref = torch.nn.Embedding.from_pretrained(
        torch.tensor(w), freeze=freeze, padding_idx=padding_idx
    )
    assert ours.weight.requires_grad == ref.weight.requires_grad == (not freeze)
    assert ours.padding_idx == ref.padding_idx
    assert ours.dtype == np.float64
    np.testing.assert_array_equal(ours.weight.data, ref.weight.detach().numpy())  # row kept
    y = ours(ids)
    ty = ref(torch.tensor(ids))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    ours.backward(dout)
    if freeze:
        assert not ty.requires_grad
        assert not ours.weight.grad.any()
    else:
        (ty * torch.tensor(dout)).sum().backward()
        np.testing.assert_allclose(ours.weight.grad, ref.weight.grad.numpy(), atol=1e-12)


def test_from_pretrained_copies_checks_and_converts():
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    emb = Embedding.from_pretrained(w)
    w[0, 0] = 99.0
    assert emb.weight.data[0, 0] == 0.0 and emb.dtype == np.float32
    assert "freeze=True" in repr(emb) and "requires_grad=False" in repr(emb.weight)
    assert Embedding.from_pretrained(np.ones((2, 3), np.int64), dtype="float32").dtype == "float32"
    with pytest.raises(TypeError, match=r"dtype int64; pass dtype='float32'"):
        Embedding.from_pretrained(np.ones((2, 3), np.int64))
    with pytest.raises(ValueError, match=r"2-d \[V, E\], got shape \(3,\)"):
        Embedding.from_pretrained(np.ones(3))
    with pytest.raises(ValueError, match=r"got shape \(0, 3\)"):
        Embedding.from_pretrained(np.ones((0, 3)))
    bad = np.ones((3, 2))
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="row 2 is not finite"):
        Embedding.from_pretrained(bad)
    with pytest.raises(TypeError, match="freeze must be a bool"):
        Embedding.from_pretrained(w, freeze="yes")
    with pytest.raises(TypeError, match="real numbers"):
        Embedding.from_pretrained(np.array([["a"]]))


# ---- frozen parameters under the optimizers -------------------------------------------------
OPTIMIZERS = {
    "SGD": {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.1},
    "Adam": {"lr": 0.05, "weight_decay": 0.1, "amsgrad": True},
    "AdamW": {"lr": 0.05, "weight_decay": 0.1},
    "RMSprop": {"lr": 0.01, "momentum": 0.5, "centered": True, "weight_decay": 0.1},
    "Adagrad": {"lr": 0.1, "initial_accumulator_value": 0.5, "weight_decay": 0.1},
    "Adadelta": {"lr": 1.0, "weight_decay": 0.1},
}


class _Net(Module):
    """Embedding -> Linear -> Linear, loss 0.5·Σy² (float64)."""

    def __init__(self, w):
        super().__init__()
        self.emb = Embedding.from_pretrained(w, freeze=True)
        self.lin1 = Linear(w.shape[1], 5, dtype="float64", seed=1)
        self.lin2 = Linear(5, 3, dtype="float64", seed=2)

    def step(self, ids):
        y = self.lin2(self.lin1(self.emb(ids)))
        self.emb.backward(self.lin1.backward(self.lin2.backward(y)))


def _torch_net(torch, net):
    t = torch.nn.Sequential(
        torch.nn.Embedding.from_pretrained(torch.tensor(net.emb.weight.data), freeze=True),
        torch.nn.Linear(net.lin1.in_features, 5).double(),
        torch.nn.Linear(5, 3).double(),
    )
    for ours, ref in ((net.lin1, t[1]), (net.lin2, t[2])):
        ref.weight.data = torch.tensor(ours.weight.data.copy())
        ref.bias.data = torch.tensor(ours.bias.data.copy())
    return t


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_frozen_parameters_stay_bitwise_and_the_rest_trains_as_torch(name):
    """A frozen Embedding, and a frozen Linear weight that shares its flat buffer with a
    trainable bias, under weight decay, momentum, clipping and non-finite checks; the
    trainable parameters follow torch's with the same parameters frozen."""
    torch = _torch()
    w = np.random.default_rng(0).standard_normal((7, 4))
    ids = np.array([[1, 2, 3], [4, 5, 6]])
    net = _Net(w)
    net.lin1.weight.requires_grad = False
    ref = _torch_net(torch, net)
    ref[1].weight.requires_grad_(False)
    frozen = [p.data.copy() for p in (net.emb.weight, net.lin1.weight)]
    opt = getattr(optim, name)(net.parameters(), skip_nonfinite=True, **OPTIMIZERS[name])
    topt = getattr(torch.optim, name)(ref.parameters(), **OPTIMIZERS[name])
    for _ in range(4):
        opt.zero_grad()
        net.step(ids)
        assert net.lin1.weight.grad.any()  # the engine accumulated it: clipping must skip it
        norm = optim.clip_grad_norm(net.parameters(), 0.5)
        assert opt.step()
        topt.zero_grad()
        (0.5 * ref(torch.tensor(ids)).pow(2).sum()).backward()
        tnorm = torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
        topt.step()
        assert norm == pytest.approx(float(tnorm), rel=1e-10)
    for p, before in zip((net.emb.weight, net.lin1.weight), frozen, strict=True):
        assert p.data.tobytes() == before.tobytes()
    for ours, t in ((net.lin1.bias, ref[1].bias), (net.lin2.weight, ref[2].weight)):
        np.testing.assert_allclose(ours.data, t.detach().numpy(), rtol=1e-9, atol=1e-12)
    state = opt.state_dict()["state"]
    assert 0 not in state and 1 not in state and {2, 3, 4} <= set(state)  # emb, lin1.weight


def test_freezing_after_the_optimizer_is_built_keeps_each_parameters_state():
    """Freeze lin1.weight (sharing its buffer with the bias) for two steps, then unfreeze:
    Adam's per-parameter state and step count resume as torch's, and a state_dict saved while
    the states differ loads into a fresh optimizer."""
    torch = _torch()
    w = np.random.default_rng(1).standard_normal((7, 4))
    ids = np.array([[1, 2, 3], [4, 5, 6]])
    net = _Net(w)
    ref = _torch_net(torch, net)
    kwargs = {"lr": 0.05, "weight_decay": 0.1}
    opt = optim.Adam(net.parameters(), **kwargs)
    topt = torch.optim.Adam(ref.parameters(), **kwargs)
    saved = None
    for step in range(6):
        flag = not 2 <= step < 4
        net.lin1.weight.requires_grad = flag
        ref[1].weight.requires_grad_(flag)
        if step == 3:
            saved = (net.state_dict(), opt.state_dict())
        opt.zero_grad()
        net.step(ids)
        opt.step()
        topt.zero_grad()
        (0.5 * ref(torch.tensor(ids)).pow(2).sum()).backward()
        topt.step()
    assert opt.state_dict()["state"][1]["step"] == 4  # lin1.weight: 4 steps, the bias 6
    assert opt.state_dict()["state"][2]["step"] == 6
    for ours, t in zip(net.parameters()[1:], list(ref.parameters())[1:], strict=True):
        np.testing.assert_allclose(ours.data, t.detach().numpy(), rtol=1e-9, atol=1e-12)

    # the state of step 3 (lin1.weight at 2 steps, its bias at 3) into a fresh optimizer
    again = _Net(w)
    again.load_state_dict(saved[0])
    opt2 = optim.Adam(again.parameters(), **kwargs)
    opt2.load_state_dict(saved[1])
    for step in range(3, 6):
        again.lin1.weight.requires_grad = not 2 <= step < 4
        opt2.zero_grad()
        again.step(ids)
        opt2.step()
    for a, b in zip(again.parameters(), net.parameters(), strict=True):
        np.testing.assert_array_equal(a.data, b.data)


def test_requires_grad_flags_and_clipping():
    net = _Net(np.ones((3, 2)))
    assert [p.requires_grad for p in net.parameters()] == [False, True, True, True, True]
    assert net.requires_grad_(False) is net
    assert not any(p.requires_grad for p in net.parameters())
    net.lin2.requires_grad_()
    assert net.lin2.weight.requires_grad and not net.lin1.bias.requires_grad
    with pytest.raises(TypeError, match="requires_grad must be a bool"):
        net.lin1.weight.requires_grad = 1
    net.lin1.weight.grad[...] = 3.0  # frozen: left out of norms and clipping
    net.lin2.weight.grad[...] = 0.0
    net.lin2.weight.grad[0, 0] = 4.0
    assert optim.grad_norm(net.parameters()) == 4.0
    assert optim.clip_grad_norm(net.parameters(), 1.0) == 4.0
    assert np.all(net.lin1.weight.grad == 3.0)
    optim.clip_grad_value(net.parameters(), 0.5)
    assert np.all(net.lin1.weight.grad == 3.0) and net.lin2.weight.grad[0, 0] == 0.5
    net.requires_grad_(False)
    opt = optim.SGD(net.parameters(), lr=1.0)
    before = [p.data.copy() for p in net.parameters()]
    assert opt.step()  # nothing to train: nothing changes
    assert all(np.array_equal(a, p.data) for a, p in zip(before, net.parameters(), strict=True))


# ---- --embeddings on the command line -------------------------------------------------------
TINY = "--no-progress --threads 1 --epochs 1 --max-batches 4 --hidden 8 --layers 1 --cell gru"


@pytest.fixture
def sst_dir(tmp_path):
    d = tmp_path / "sst"
    d.mkdir()
    for i, split in enumerate(("train", "dev", "test")):
        ex = data.synthetic_sentiment(120 if split == "train" else 30, seed=i)
        _write(d / f"stsa.binary.{split}", [f"{y} {' '.join(t)}" for t, y in ex])
    return d


def _vectors_file(tmp_path, words, dim=6):
    """A GloVe file with a vector for each of ``words`` (and one unrelated word first).

    Returns:
        (path, {lower-cased word: its row as float32 [dim]}).
    """
    rng = np.random.default_rng(5)
    rows = {w: [f"{x:.5f}" for x in rng.standard_normal(dim)] for w in words}
    lines = ["unrelated " + " ".join(["1"] * dim)] + [f"{w} {' '.join(r)}" for w, r in rows.items()]
    path = _write(tmp_path / "vectors.txt", lines)
    return path, {w.lower(): np.float32([float(x) for x in r]) for w, r in rows.items()}


def _train(capsys, argv):
    code = main(argv.split() if isinstance(argv, str) else argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_sentiment_with_embeddings_frozen_then_fine_tuned(tmp_path, capsys, sst_dir):
    words = ["great", "bad", "film", "the", "GOOD"]  # "GOOD" matches "good" ignoring case
    vec, file_rows = _vectors_file(tmp_path, words)
    out = tmp_path / "frozen"
    base = f"train sentiment {TINY} --data {sst_dir} --embeddings {vec}"
    code, stdout, err = _train(capsys, f"{base} --out {out} --freeze-embeddings")
    assert code == 0, err
    assert "--embeddings: 5 of " in stdout and ", 1 ignoring case)" in stdout and "frozen" in stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["model_config"]["embed_dim"] == 6  # the file's size (the default is 128)
    info = m["data"]["embeddings"]
    assert info["found"] == 5 and info["dim"] == 6 and info["frozen"] is True
    assert "--embeddings:" in (out / "train.log").read_text()
    ckpt = load_checkpoint(out / "checkpoint" / "best")  # no vectors file needed
    vocab, weight = ckpt.vocab, ckpt.model.embedding.weight.data
    for word, row in file_rows.items():
        np.testing.assert_array_equal(weight[vocab.stoi[word]], row)
    vec.unlink()
    code, stdout, err = _train(capsys, ["eval", str(out), "--data", str(sst_dir)])
    assert code == 0, err
    assert 0.0 <= json.loads(stdout)["test"]["accuracy"] <= 1.0

    vec, _ = _vectors_file(tmp_path, words)
    out = tmp_path / "tuned"
    code, stdout, err = _train(capsys, f"{base} --out {out} --model cnn --maps 4")
    assert code == 0, err
    assert "fine-tuned" in stdout
    weight = load_checkpoint(out / "checkpoint" / "best").model.embedding.weight.data
    assert not np.allclose(weight[vocab.stoi["great"]], file_rows["great"])  # trained


def test_embeddings_option_errors(tmp_path, capsys, sst_dir):
    vec, _ = _vectors_file(tmp_path, ["great", "bad"])
    base = f"train sentiment {TINY} --data {sst_dir}"
    code, _, err = _train(capsys, f"{base} --out {tmp_path / 'a'} --embeddings {vec} --embed 16")
    assert code == 2
    assert "holds 6-dimensional vectors, but --embed 16 sets" in err
    assert "leave out --embed" in err
    code, _, err = _train(capsys, f"{base} --out {tmp_path / 'b'} --embeddings {vec} --embed 6")
    assert code == 0, err
    bad = _write(tmp_path / "bad.txt", ["great 1 2", "bad 1 x"])
    code, _, err = _train(capsys, f"{base} --out {tmp_path / 'c'} --embeddings {bad}")
    assert code == 2 and err.startswith("rnncore: error:") and "bad.txt, line 2:" in err
    none = _write(tmp_path / "none.txt", ["zzz 1 2"])
    code, _, err = _train(capsys, f"{base} --out {tmp_path / 'd'} --embeddings {none}")
    assert code == 2 and "none of the" in err
    code, _, err = _train(capsys, f"{base} --out {tmp_path / 'e'} --embeddings {tmp_path / 'x'}")
    assert code == 2 and "file not found" in err
    code, _, err = _train(capsys, f"{base} --out {tmp_path / 'f'} --freeze-embeddings")
    assert code == 2 and "--freeze-embeddings applies only with --embeddings" in err


def test_lm_takes_the_size_from_the_file_for_tied_weights(tmp_path, capsys):
    d = tmp_path / "ptb"
    d.mkdir()
    for i, split in enumerate(("train", "valid", "test")):
        _write(d / f"ptb.{split}.txt", [" ".join(s) for s in data.anbn(40, max_n=3, seed=i)])
    vec, _ = _vectors_file(tmp_path, ["a", "b", "<eos>"], dim=8)
    out = tmp_path / "lm"
    argv = f"train lm {TINY} --batch-size 4 --bptt 5 --data {d} --out {out} --embeddings {vec}"
    code, stdout, err = _train(capsys, f"{argv} --tie-weights")
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["model_config"]["embed_dim"] == 8 and m["data"]["embeddings"]["words"] == 2
    code, _, err = _train(capsys, f"{argv} --tie-weights --hidden 6 --overwrite")
    assert code == 2 and "--tie-weights needs --embed == --hidden, got 8 and 6" in err


PAIRS = [
    ("I am cold.", "J'ai froid."),
    ("You are tall.", "Tu es grand."),
    ("I am here.", "Je suis ici."),
    ("You are here.", "Tu es ici."),
]


def test_seq2seq_takes_vectors_for_each_side(tmp_path, capsys):
    pairs = _write(tmp_path / "pairs.tsv", [f"{s}\t{t}" for s, t in PAIRS * 5])
    src, src_rows = _vectors_file(tmp_path, ["i", "you", "am"])
    tgt = tmp_path / "fr.txt"
    tgt.write_text("je 1 2 3 4 5 6\ntu 6 5 4 3 2 1\n", encoding="utf-8")
    out = tmp_path / "mt"
    argv = f"train seq2seq {TINY} --data {pairs} --out {out} --embeddings {src}"
    code, stdout, err = _train(capsys, f"{argv} --target-embeddings {tgt} --freeze-embeddings")
    assert code == 0, err
    assert "--embeddings: 3 of" in stdout and "--target-embeddings: 2 of" in stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["data"]["target_embeddings"]["found"] == 2
    ckpt = load_checkpoint(out / "checkpoint" / "best")
    model, vocabs = ckpt.model, ckpt.vocabs
    row = model.src_embedding.weight.data[vocabs["src"].stoi["you"]]
    np.testing.assert_array_equal(row, src_rows["you"])
    row = model.tgt_embedding.weight.data[vocabs["tgt"].stoi["tu"]]
    np.testing.assert_array_equal(row, [6, 5, 4, 3, 2, 1])
    tgt.write_text("je 1 2 3 4\n", encoding="utf-8")
    code, _, err = _train(capsys, f"{argv} --target-embeddings {tgt} --overwrite")
    assert code == 2
    assert (
        f"holds 4-dimensional vectors, but --embeddings {src} sets the embedding size to 6" in err
    )
