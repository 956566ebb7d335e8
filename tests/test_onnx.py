"""rnncore.onnx: every exported graph runs in onnxruntime and gives rnncore's numbers on ragged
batches (max abs 1e-5); `rnncore export` on a trained run; refusals and bad arguments."""

import json
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import rnncore  # noqa: E402
from rnncore import data, models  # noqa: E402
from rnncore import onnx as rnncore_onnx  # noqa: E402
from rnncore.cli import main  # noqa: E402
from rnncore.models.classifier import POOLINGS  # noqa: E402
from rnncore.nn import Linear  # noqa: E402
from rnncore.train import load_checkpoint  # noqa: E402

TOL = 1e-5
NATIVE = {"rnn": "RNN", "rnn_relu": "RNN", "lstm": "LSTM", "gru": "GRU", "gru_v1": "GRU"}
GATED = ("gated-residual", "gated-input", "gated-forget")
V = 23  # vocabulary of the tiny models


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny graphs: one engine thread, deterministic, never waiting on a busy core."""
    before = rnncore.set_num_threads(1)
    yield
    rnncore.set_num_threads(before)


def _session(proto):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _named(sess, **feeds):
    """{output name: array} of a session on the feeds."""
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))


def _run(proto, **feeds):
    """{output name: array} of the graph on the feeds."""
    return _named(_session(proto), **feeds)


def _ops(proto):
    return {n.op_type for n in proto.graph.node}


def _ragged(seed=0, T=7, B=5):
    """ids int64 [T, B] (0 = padding past each length), lengths [B] with T and 1 among them."""
    rng = np.random.default_rng(seed)
    lengths = np.array([T, 3, 1, T - 1, 4][:B], dtype=np.int64)
    ids = rng.integers(1, V, size=(T, B))
    ids[np.arange(T)[:, None] >= lengths[None, :]] = 0
    return ids, lengths


def _diff(got, want, what):
    d = float(np.max(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))))
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert d <= TOL, f"{what}: max abs diff {d:.3g} > {TOL}"
    return d


def _one(model):
    (proto,) = rnncore_onnx.to_onnx(model)
    return proto


# ---- classifiers: every cell, both directions, 2 layers, every pooling --------------------------
@pytest.mark.parametrize("cell", sorted(NATIVE))
@pytest.mark.parametrize(
    "pooling, bidirectional", [(p, True) for p in POOLINGS] + [("last", False), ("mean", False)]
)
def test_classifier_cells_become_onnx_operators(cell, pooling, bidirectional):
    m = models.SequenceClassifier(
        V, 6, 5, 3, num_layers=2, cell=cell, bidirectional=bidirectional, pooling=pooling, seed=1
    )
    m.eval()
    ids, lengths = _ragged()
    proto = _one(m)
    assert NATIVE[cell] in _ops(proto) and "Scan" not in _ops(proto)
    assert [i.name for i in proto.graph.input] == ["ids", "lengths"]
    got = _run(proto, ids=ids, lengths=lengths)["logits"]
    _diff(got, m.forward(ids, lengths), f"{cell} {pooling} D={1 + bidirectional}")


@pytest.mark.parametrize(
    "cell, option",
    [(c, {"zoneout": 0.3}) for c in NATIVE]
    + [("lstm", {"layer_norm": True}), ("gru", {"layer_norm": True})]
    + [(c, {}) for c in GATED]
    + [("gated-forget", {"zoneout": 0.2})],
)
def test_options_onnx_lacks_are_unrolled_exactly(cell, option):
    """zoneout (its inference-time expectation), layer_norm and the GatedRNN cells: one Scan per
    layer and direction, ragged and bidirectional like the operators."""
    ids, lengths = _ragged(1)
    for pooling in ("last", "mean"):
        m = models.SequenceClassifier(
            V, 6, 5, 3, num_layers=2, cell=cell, pooling=pooling, seed=2, **option
        )
        m.eval()
        proto = _one(m)
        assert "Scan" in _ops(proto) and not {"RNN", "LSTM", "GRU"} & _ops(proto)
        got = _run(proto, ids=ids, lengths=lengths)["logits"]
        _diff(got, m.forward(ids, lengths), f"{cell} {option} {pooling}")


def test_a_float64_model_exports_float32_graphs():
    m = models.SequenceClassifier(V, 6, 5, 3, num_layers=2, cell="lstm", dtype="float64", seed=3)
    m.eval()
    ids, lengths = _ragged(2)
    got = _run(_one(m), ids=ids, lengths=lengths)["logits"]
    assert got.dtype == np.float32
    _diff(got, m.forward(ids, lengths), "float64 model")


def test_kim_cnn():
    m = models.KimCNN(V, 6, 3, widths=(1, 2, 4), maps=5, seed=4)
    m.eval()
    ids, lengths = _ragged(3)
    proto = _one(m)
    assert "Conv" in _ops(proto)
    _diff(_run(proto, ids=ids, lengths=lengths)["logits"], m.forward(ids, lengths), "KimCNN")


# ---- language model: state in and out ----------------------------------------------------------
@pytest.mark.parametrize(
    "cell, option",
    [(c, {}) for c in NATIVE]
    + [("lstm", {"tie_weights": True}), ("gru", {"tie_weights": True})]
    + [("lstm", {"proj_size": 4}), ("rnn", {"zoneout": 0.2})],
)
def test_language_model_logits_and_state(cell, option):
    embed = 4 if option.get("proj_size") else 7
    m = models.LanguageModel(V, embed, 7, num_layers=2, cell=cell, seed=5, **option)
    m.eval()
    ids, _ = _ragged(4)
    rng = np.random.default_rng(0)
    zero = m.rnn.zero_state(ids.shape[1])
    if isinstance(zero, tuple):
        state = tuple(rng.normal(size=z.shape).astype(np.float32) for z in zero)
    else:
        state = rng.normal(size=zero.shape).astype(np.float32)
    logits, final = m.forward(ids, state)
    proto = _one(m)
    feeds = {"ids": ids}
    if cell == "lstm":
        feeds.update(h0=state[0], c0=state[1])
        want = {"logits": logits, "hn": final[0], "cn": final[1]}
    else:
        feeds.update(h0=state)
        want = {"logits": logits, "hn": final}
    got = _run(proto, **feeds)
    assert set(got) == set(want)
    for k in want:
        _diff(got[k], want[k], f"LM {cell} {option} {k}")


# ---- tagger: logits and decoded tags -----------------------------------------------------------
TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


@pytest.mark.parametrize(
    "option",
    [
        {},
        {"tag_names": TAGS},
        {"crf": True},
        {"crf": True, "tag_names": TAGS},
        {"char_vocab_size": 11, "char_embed_dim": 3, "char_hidden_size": 4},
        {"bidirectional": False, "cell": "gru_v1"},
        {"cell": "gru", "zoneout": 0.1},
    ],
)
def test_tagger_logits_and_tags(option):
    m = models.SequenceTagger(V, 6, 5, len(TAGS), num_layers=2, seed=6, **option)
    m.eval()
    m.classifier.weight.data[...] *= 4  # varied argmax tags
    m.classifier.bias.data[[2, 4]] += 0.5  # I- tags the BIO repair must fix
    if m.crf is not None:
        m.crf.transitions.data[:, 2] -= 3.0  # a Viterbi path unlike the argmax
    ids, lengths = _ragged(5)
    feeds = {"ids": ids, "lengths": lengths}
    chars = char_lengths = None
    if m.use_chars:
        n_words = int(lengths.sum())
        rng = np.random.default_rng(1)
        char_lengths = rng.integers(1, 5, size=n_words)
        chars = rng.integers(1, 11, size=(4, n_words))
        feeds.update(chars=chars, char_lengths=char_lengths)
    proto = _one(m)
    got = _run(proto, **feeds)
    logits = m.forward(ids, lengths, chars, char_lengths)
    _diff(got["logits"], logits, f"tagger {option}")
    tags = m.predict(ids, lengths, chars, char_lengths)
    assert got["tags"].dtype == np.int64
    np.testing.assert_array_equal(got["tags"], tags)
    valid = tags != -100
    if m.crf is not None or m.bio is not None:  # the decoding did more than argmax
        assert (tags[valid] != logits.argmax(-1)[valid]).any()
    if m.crf is not None:  # one step: no transition at all
        one = {"ids": ids[:1], "lengths": np.ones_like(lengths)}
        np.testing.assert_array_equal(
            _run(proto, **one)["tags"], m.predict(ids[:1], one["lengths"])
        )


# ---- forecaster and the long-range tasks' regressor --------------------------------------------
@pytest.mark.parametrize("mode", ["many_to_one", "many_to_many"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_relu"])
def test_forecaster(mode, cell):
    m = models.Forecaster(3, 6, horizon=2, num_layers=2, cell=cell, mode=mode, seed=7)
    m.eval()
    x = np.random.default_rng(2).normal(size=(7, 4, 3)).astype(np.float32)
    got = _run(_one(m), x=x)
    _diff(got["forecast"], m.predict(x), f"forecast {mode} {cell}")
    if mode == "many_to_many":
        _diff(got["predictions"], m.forward(x), f"predictions {cell}")


@pytest.mark.parametrize("readout, vocab", [("last", None), ("all", V)])
def test_sequence_regressor(readout, vocab):
    m = models.SequenceRegressor(4, 6, 3, num_layers=2, readout=readout, vocab_size=vocab, seed=8)
    m.eval()
    ids, lengths = _ragged(6)
    x = ids if vocab else np.random.default_rng(3).normal(size=ids.shape + (4,)).astype("f4")
    got = _run(_one(m), x=x, lengths=lengths)["outputs"]
    _diff(got, m.predict(x, lengths), f"regressor {readout}")


# ---- seq2seq: encoder graph + one-step decoder graph -------------------------------------------
@pytest.mark.parametrize(
    "config",
    [
        dict(
            cell="lstm", bidirectional=True, attention="general", context=True, reverse_source=True
        ),
        dict(cell="gru", bidirectional=True, bridge="sum", attention="dot"),
        dict(cell="gru_v1", bidirectional=True, context=True),
        dict(cell="rnn"),
    ],
)
def test_seq2seq_encoder_and_decoder_step(config):
    m = models.Seq2Seq(V, 17, embed_dim=5, hidden_size=6, num_layers=2, seed=9, **config)
    m.eval()
    src, lengths = _ragged(7)
    src[src > 0] += 3  # no specials in the source
    src = np.minimum(src, V - 1)
    enc, dec = (_session(p) for p in rnncore_onnx.to_onnx(m))
    enc_out = _named(enc, src=src, src_lengths=lengths)
    setup = m._decode_setup(src, lengths)
    state = setup["state"]
    _diff(enc_out["h0"], state[0] if m.is_lstm else state, "encoder h0")
    if "memory" in enc_out:
        _diff(enc_out["memory"].transpose(1, 0, 2), setup["memory"], "encoder memory")
    # greedy decoding with the two graphs: the decoder's inputs carry the encoder's output names
    dec_inputs = {i.name for i in dec.get_inputs()}
    feeds = {k: v for k, v in enc_out.items() if k in dec_inputs}
    if "src_lengths" in dec_inputs:
        feeds["src_lengths"] = lengths
    tokens = np.full(src.shape[1], m.bos_id, dtype=np.int64)
    for _ in range(6):
        out = _named(dec, **feeds, tokens=tokens)
        logp, state = m._step(tokens, state, setup)
        _diff(out["log_probs"], logp.astype(np.float32), f"decoder step {config}")
        tokens = logp.argmax(-1)
        feeds["h0"] = out["hn"]
        if m.is_lstm:
            feeds["c0"] = out["cn"]


# ---- files, the command line, refusals ---------------------------------------------------------
def test_export_writes_checked_files_with_metadata(tmp_path):
    m = models.SequenceClassifier(V, 6, 5, 2, num_layers=2, cell="gru", seed=10)
    m.labels = ["negative", "positive"]
    paths = rnncore_onnx.export(m, tmp_path / "clf.onnx")
    assert paths == [tmp_path / "clf.onnx"]
    proto = onnx.load(str(paths[0]))
    onnx.checker.check_model(proto, full_check=True)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["model_type"] == "sequence_classifier" and "positive" in meta["labels"]
    dims = [[d.dim_param for d in i.type.tensor_type.shape.dim] for i in proto.graph.input]
    assert dims == [["T", "B"], ["B"]]  # dynamic time and batch axes
    assert proto.opset_import[0].version == rnncore_onnx.OPSET

    s2s = models.Seq2Seq(V, 9, embed_dim=4, hidden_size=5, seed=11)
    written = rnncore_onnx.export(s2s, str(tmp_path / "tr.onnx"))
    assert written == [tmp_path / "tr.encoder.onnx", tmp_path / "tr.decoder.onnx"]
    assert rnncore_onnx.export(s2s, tmp_path / "bare")[0] == tmp_path / "bare.encoder.onnx"
    assert all(p.is_file() for p in written)


def test_bad_arguments_are_named(tmp_path):
    m = models.SequenceClassifier(V, 6, 5, 2, seed=12)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        rnncore_onnx.export(m, tmp_path / "missing" / "m.onnx")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        rnncore_onnx.export(m, tmp_path)
    with pytest.raises(TypeError, match="cannot export a Captioner; supported models: .*Seq2Seq"):
        rnncore_onnx.export(models.Captioner(4, V, 4, 5), tmp_path / "c.onnx")
    with pytest.raises(TypeError, match="cannot export a Linear"):
        rnncore_onnx.to_onnx(Linear(3, 2))
    assert list(tmp_path.iterdir()) == []  # nothing written by a refused call


def test_a_cell_without_an_export_is_refused_by_name(monkeypatch):
    m = models.SequenceClassifier(V, 6, 5, 2, seed=13)
    monkeypatch.setattr(m.rnn, "cell", "brand-new-cell")
    with pytest.raises(ValueError, match="cell 'brand-new-cell' has no ONNX export"):
        rnncore_onnx.to_onnx(m)


def test_without_onnx_the_error_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    m = models.SequenceClassifier(V, 6, 5, 2, seed=14)
    with pytest.raises(ImportError, match=r'pip install "rnncore\[onnx\]"'):
        rnncore_onnx.export(m, tmp_path / "m.onnx")


def test_rnncore_imports_without_onnx():
    code = (
        "import sys; sys.modules['onnx'] = sys.modules['onnxruntime'] = None\n"
        "import rnncore, rnncore.cli, rnncore.onnx\n"
        "print(rnncore.onnx.OPSET)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "17", r.stderr


def test_cli_export_of_a_trained_run(capsys, tmp_path):
    d = tmp_path / "sst"
    d.mkdir()
    for i, split in enumerate(("train", "dev", "test")):
        ex = data.synthetic_sentiment(60 if split == "train" else 20, seed=i)
        lines = [f"{y} {' '.join(t)}" for t, y in ex]
        (d / f"stsa.binary.{split}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    opts = "--no-progress --epochs 1 --hidden 8 --embed 8 --layers 2 --cell gru --pooling max"
    argv = ["train", "sentiment", *opts.split(), "--data", str(d), "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()

    target = tmp_path / "sst.onnx"
    assert main(["export", str(out), "--onnx", str(target)]) == 0
    assert capsys.readouterr().out.split() == [str(target)]
    model = load_checkpoint(out / "checkpoint").model
    model.eval()
    ids, lengths = _ragged(8)
    ids = np.minimum(ids, model.embedding.num_embeddings - 1)
    proto = onnx.load(str(target))
    _diff(_run(proto, ids=ids, lengths=lengths)["logits"], model.forward(ids, lengths), "CLI")
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["vocab"]) == model.vocab.itos  # text -> ids without rnncore
    assert json.loads(meta["labels"]) == model.labels

    code = main(["export", str(out), "--onnx", str(tmp_path / "no" / "m.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("rnncore: error:") and "does not exist" in err
    code = main(["export", str(tmp_path / "nothing"), "--onnx", str(target)])
    assert code == 2 and "not found" in capsys.readouterr().err
