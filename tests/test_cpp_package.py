"""C++ use of rnncore: find_package(rnncore) after `cmake --install` and from the pip-installed
package, the example programs built standalone, and the same outputs in C++ as in Python for
models trained and saved in Python.

One engine build and install (plain CMake, no Python module) and one consumer build are shared by
the tests of this module (about a minute and a half on two cores); the pip-package half builds a
second, small consumer.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rnncore
from rnncore.models import LanguageModel, SequenceClassifier, SequenceTagger
from rnncore.models.classifier import ClassifierBatch
from rnncore.models.tagger import TaggerBatch

ROOT = Path(__file__).resolve().parents[1]
CONSUMER = ROOT / "tests" / "cpp" / "consumer"
EXAMPLES = ROOT / "cpp" / "examples"

# The tools of the test extras (cmake, ninja) live next to the interpreter in a virtual
# environment, which need not be on PATH.
ENV = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))

pytestmark = pytest.mark.skipif(
    shutil.which("cmake", path=ENV["PATH"]) is None, reason="cmake is not installed"
)


# ---- building ---------------------------------------------------------------------------------
def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Runs cmd; on failure, fails the test with the command's output."""
    result = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, env=ENV, **kwargs
    )
    if result.returncode != 0:
        out = (result.stdout + "\n" + result.stderr)[-6000:]
        pytest.fail(f"command failed ({result.returncode}): {' '.join(map(str, cmd))}\n{out}")
    return result


def _generator() -> list[str]:
    return ["-G", "Ninja"] if shutil.which("ninja", path=ENV["PATH"]) else []


def _build_consumer(build: Path, find_args: list[str], examples: bool) -> Path:
    _run(
        [
            "cmake",
            "-S",
            CONSUMER,
            "-B",
            build,
            *_generator(),
            "-DCMAKE_BUILD_TYPE=Release",
            *find_args,
            *([f"-DRNNCORE_EXAMPLES_DIR={EXAMPLES}"] if examples else []),
        ]
    )
    _run(["cmake", "--build", build, "--parallel", "2"])
    return build


@pytest.fixture(scope="module")
def prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The engine built with plain CMake (no Python module, no tests) and installed."""
    tmp = tmp_path_factory.mktemp("engine")
    build, prefix = tmp / "build", tmp / "prefix"
    _run(
        [
            "cmake",
            "-S",
            ROOT,
            "-B",
            build,
            *_generator(),
            "-DRNNCORE_BUILD_TESTS=OFF",
            "-DRNNCORE_BUILD_PYTHON=OFF",
            f"-DCMAKE_INSTALL_PREFIX={prefix}",
            f"-DPython_EXECUTABLE={sys.executable}",  # finds cmeel-eigen's Eigen
        ]
    )
    _run(["cmake", "--build", build, "--parallel", "2"])
    _run(["cmake", "--install", build])
    return prefix


@pytest.fixture(scope="module")
def consumer(prefix: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build folder of tests/cpp/consumer (+ the examples) against the installed prefix."""
    build = tmp_path_factory.mktemp("consumer") / "build"
    return _build_consumer(build, [f"-DCMAKE_PREFIX_PATH={prefix}"], examples=True)


# ---- checkpoints written per the contract -------------------------------------------------------
_ST_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.int64): "I64"}


def _save_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """safetensors file; through the `safetensors` package when it is installed."""
    try:
        from safetensors.numpy import save_file
    except ImportError:
        save_file = None
    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    if save_file is not None:
        save_file(arrays, str(path), metadata={"format": "rnncore"})
        return
    header: dict = {"__metadata__": {"format": "rnncore"}}
    offset = 0
    for name, a in arrays.items():
        header[name] = {
            "dtype": _ST_DTYPES[a.dtype],
            "shape": list(a.shape),
            "data_offsets": [offset, offset + a.nbytes],
        }
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for a in arrays.values():
            f.write(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())


def _write_checkpoint(directory: Path, model, vocab: dict | None = None) -> Path:
    """A checkpoint directory exactly as the checkpoint contract describes it."""
    directory.mkdir(parents=True)
    _save_safetensors(directory / "model.safetensors", model.state_dict())
    meta = {
        "format": "rnncore.checkpoint",
        "version": 1,
        "model_type": model.MODEL_TYPE,
        "model_config": model.config(),
        "dtype": model.config()["dtype"],
        "vocab": vocab,
        "extra": {"labels": ["neg", "neutral", "pos"]},
        "epoch": 1,
        "step": 3,
        "metrics": {"loss": 1.0},
    }
    (directory / "checkpoint.json").write_text(json.dumps(meta))
    return directory


def _trained_lm(
    cell: str,
    layers: int,
    tie: bool,
    seed: int,
    dtype: str = "float32",
    proj: int = 0,
    **options: Any,
) -> LanguageModel:
    V, E = 11, 8
    model = LanguageModel(
        V,
        E,
        proj + 3 if proj else 8 if tie else 6,
        num_layers=layers,
        cell=cell,
        tie_weights=tie,
        dtype=dtype,
        seed=seed,
        proj_size=proj,
        **options,
    )
    opt = rnncore.optim.Adam(model.parameters(), lr=0.05)
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(3):  # a few real training steps, so that the weights are not the initial ones
        x = rng.integers(0, V, size=(7, 3))
        y = rng.integers(0, V, size=(7, 3))
        model.zero_grad()
        model.training_step((x, y))
        opt.step()
    model.on_epoch_start(True)
    model.eval()
    return model


def _trained_classifier(cell: str, layers: int, bidir: bool, pooling: str, seed: int):
    V = 13
    model = SequenceClassifier(
        V, 6, 5, 3, num_layers=layers, cell=cell, bidirectional=bidir, pooling=pooling, seed=seed
    )
    opt = rnncore.optim.Adam(model.parameters(), lr=0.05)
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(3):
        lengths = rng.integers(1, 8, size=4)
        ids = rng.integers(1, V, size=(7, 4))
        ids[np.arange(7)[:, None] >= lengths[None, :]] = 0
        model.zero_grad()
        model.training_step(ClassifierBatch(ids, lengths, rng.integers(0, 3, size=4)))
        opt.step()
    model.eval()
    return model


def _dump(consumer: Path, *args) -> dict[str, np.ndarray]:
    out = _run([consumer / "inference_dump", *args]).stdout
    rows = {}
    for line in out.splitlines():
        name, *values = line.split()
        rows[name] = np.array([float(v) for v in values])
    return rows


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


# ---- the installed package ----------------------------------------------------------------------
def test_install_layout_needs_no_eigen(prefix: Path) -> None:
    headers = sorted(p.name for p in (prefix / "include" / "rnncore").glob("*.h"))
    for h in (
        "rnncore.h",
        "recurrent.h",
        "ops.h",
        "backend.h",
        "inference.h",
        "safetensors.h",
        "version.h",
    ):
        assert h in headers
    cmake_files = list(prefix.glob("lib*/cmake/rnncore/rnncoreConfig.cmake"))
    assert len(cmake_files) == 1
    assert list(prefix.glob("lib*/librnncore.*"))
    # Consumers get no Eigen dependency: no installed header includes it.
    for h in (prefix / "include" / "rnncore").glob("*.h"):
        assert "Eigen" not in "".join(
            line for line in h.read_text().splitlines() if line.startswith("#include")
        ), h


def test_examples_build_standalone_and_run(consumer: Path, tmp_path: Path) -> None:
    lm = _trained_lm("lstm", 2, False, seed=1)
    tokens = ["<eos>", *"abcdefghij"]
    vocab = {
        "format": "rnncore.data.Vocab",
        "version": 1,
        "tokens": tokens,
        "specials": {"eos": "<eos>"},
    }
    lm_dir = _write_checkpoint(tmp_path / "lm", lm, vocab)
    out = _run(
        [
            consumer / "examples" / "rnncore_lm_sample",
            lm_dir,
            "--prompt",
            "abc",
            "--tokens",
            "20",
            "--seed",
            "3",
            "--threads",
            "1",
        ]
    ).stdout
    assert "character vocabulary" in out and "# next 1: p=" in out
    assert "\nabc" in out  # the prompt, then its continuation
    clf = _trained_classifier("gru", 1, True, "last", seed=2)
    clf_dir = _write_checkpoint(tmp_path / "clf", clf)
    out = _run(
        [consumer / "examples" / "rnncore_classify", clf_dir, "--ids", "1 2 3", "4 5"]
    ).stdout
    lines = [line for line in out.splitlines() if not line.startswith("#")]
    assert len(lines) == 2 and lines[0].split()[0] in ("neg", "neutral", "pos")
    # A checkpoint of another cell than asked for: a clear error, exit status 1.
    bad = subprocess.run(
        [consumer / "examples" / "rnncore_lm_sample", lm_dir, "--cell", "gru"],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert bad.returncode == 1
    assert "the cell is 'lstm' but the program expects 'gru'" in bad.stderr


# ---- Python <-> C++ parity -------------------------------------------------------------------
# float64 weights are converted to float32 on load: still the same outputs to float rounding.
LM_CASES = [
    ("lstm", 2, False, "float32", 0, {}),
    ("gru", 1, True, "float32", 0, {}),
    ("gru_v1", 2, False, "float32", 0, {}),
    ("rnn_relu", 1, False, "float32", 0, {}),
    ("rnn", 2, False, "float32", 0, {}),
    ("lstm", 1, False, "float64", 0, {}),
    ("lstm", 2, False, "float32", 4, {}),  # LSTM with projections (proj_size)
    ("lstm", 1, True, "float32", 8, {}),  # ... tied: embed_dim == proj_size
    ("gated-forget", 2, False, "float32", 0, {}),  # the lecture's gated cells
    ("gated-residual", 1, False, "float64", 0, {}),
    ("lstm", 2, False, "float32", 0, {"zoneout": 0.3}),  # inference takes the expectation
    ("lstm", 2, False, "float32", 0, {"layer_norm": True}),  # layer norm, every step
    ("gru", 1, False, "float32", 0, {"layer_norm": True, "zoneout": 0.2}),
]


@pytest.mark.parametrize(("cell", "layers", "tie", "dtype", "proj", "options"), LM_CASES)
def test_language_model_same_in_cpp(
    consumer: Path, tmp_path: Path, cell, layers, tie, dtype, proj, options
) -> None:
    model = _trained_lm(
        cell, layers, tie, seed=layers + len(cell), dtype=dtype, proj=proj, **options
    )
    ckpt = _write_checkpoint(tmp_path / "ckpt", model)
    T, B, V = 6, 3, model.vocab_size
    ids = np.random.default_rng(7).integers(0, V, size=(T, B))
    rows = _dump(consumer, "lm", ckpt, T, B, *ids.reshape(-1))
    logits, _ = model.forward(ids)
    ref = _log_softmax(logits)  # [T, B, V]
    np.testing.assert_allclose(rows["log_probs"].reshape(T, B, V), ref, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(rows["step_log_probs"].reshape(T, B, V), ref, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(rows["next"], ref[-1, 0], rtol=1e-4, atol=2e-5)
    # Greedy continuation of sequence 0, followed in Python one token at a time (stopping the
    # comparison at a near-tie, where float rounding may legitimately pick the other token).
    greedy = rows["greedy"].astype(np.int64)
    _, state = model.forward(ids[:, :1])
    lp = ref[-1, 0]
    for tok in greedy:
        top2 = np.sort(lp)[-2:]
        if top2[1] - top2[0] < 1e-4:
            break
        assert tok == int(np.argmax(lp))
        logits, state = model.forward(np.array([[tok]]), state)
        lp = _log_softmax(logits)[0, 0]
    assert len(rows["sample"]) == 10 and rows["sample"].min() >= 0 and rows["sample"].max() < V
    if dtype == "float32":  # one sampler and the same floats: the same tokens for the same seed
        drawn = model.sample(ids[:, 0], 10, temperature=0.9, top_k=4, seed=42)
        np.testing.assert_array_equal(drawn, rows["sample"].astype(np.int64))
        np.testing.assert_array_equal(model.sample(ids[:, 0], 10, temperature=0), greedy)


CLF_CASES = [
    ("lstm", 1, True, "last"),
    ("gru", 2, True, "mean"),
    ("gru_v1", 1, False, "max"),
    ("rnn", 2, True, "last"),
    ("lstm", 2, False, "mean"),
    ("gated-input", 1, True, "mean"),
]


@pytest.mark.parametrize(("cell", "layers", "bidir", "pooling"), CLF_CASES)
def test_classifier_same_in_cpp(consumer: Path, tmp_path: Path, cell, layers, bidir, pooling):
    model = _trained_classifier(cell, layers, bidir, pooling, seed=layers * 10 + len(pooling))
    ckpt = _write_checkpoint(tmp_path / "ckpt", model)
    rng = np.random.default_rng(3)
    T, B = 8, 5
    lengths = np.array([8, 3, 1, 6, 8])
    ids = rng.integers(1, 13, size=(T, B))
    ids[np.arange(T)[:, None] >= lengths[None, :]] = 0
    rows = _dump(consumer, "clf", ckpt, T, B, *ids.reshape(-1), *lengths)
    logits = model.forward(ids, lengths)
    ref = np.exp(_log_softmax(logits))
    np.testing.assert_allclose(rows["probs"].reshape(B, 3), ref, rtol=1e-4, atol=1e-6)


# ---- the tagger --------------------------------------------------------------------------------
TAG_WORDS = ["the", "cat", "sat", "on", "mat", "Paris", "John", "lives", "in", "a", "house"]
TAG_NAMES = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _trained_tagger(cell: str, bidir: bool, chars: bool, crf: bool, seed: int, tags=TAG_NAMES):
    """A SequenceTagger after a few steps, with its word and character vocabularies."""
    from rnncore.data import Vocab

    vocab = Vocab.build([[w.lower() for w in TAG_WORDS]])
    char_vocab = Vocab.build([list("".join(TAG_WORDS) + "é")]) if chars else None
    model = SequenceTagger(
        len(vocab),
        6,
        5,
        len(tags),
        num_layers=2,
        cell=cell,
        bidirectional=bidir,
        tag_names=tags,
        char_vocab_size=len(char_vocab) if chars else None,
        char_embed_dim=4,
        char_hidden_size=3,
        char_padding_idx=char_vocab.pad_id if chars else None,
        crf=crf,
        seed=seed,
    )
    opt = rnncore.optim.Adam(model.parameters(), lr=0.05)
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(3):
        batch = _tagger_batch(rng, vocab, char_vocab)
        model.zero_grad()
        model.training_step(batch)
        opt.step()
    model.eval()
    return model, vocab, char_vocab


def _tagger_batch(rng, vocab, char_vocab, T: int = 6, lengths=None) -> TaggerBatch:
    lengths = rng.integers(1, T + 1, size=4) if lengths is None else np.asarray(lengths)
    B = len(lengths)
    ids = rng.integers(2, len(vocab), size=(T, B))
    valid = np.arange(T)[:, None] < lengths[None, :]
    ids[~valid] = 0
    # O and B- tags only (ids 0, 1, 3): a gold path a BIO-constrained CRF allows.
    tags = np.where(valid, rng.choice([0, 1, 3], size=(T, B)), -100)
    chars = char_lengths = None
    if char_vocab is not None:
        words = [vocab.itos[ids[t, b]] for b in range(B) for t in range(lengths[b])]
        from rnncore.data import pad_sequences

        chars, char_lengths = pad_sequences(
            [char_vocab.encode(list(w)) for w in words], pad_id=char_vocab.pad_id
        )
    return TaggerBatch(ids, lengths, tags, chars, char_lengths)


TAGGER_CASES = [
    ("lstm", True, False, False),
    ("gru", True, True, False),
    ("lstm", True, True, True),
    ("gru_v1", False, False, True),
    ("rnn", True, False, False),
]


@pytest.mark.parametrize(("cell", "bidir", "chars", "crf"), TAGGER_CASES)
def test_tagger_same_in_cpp(consumer: Path, tmp_path: Path, cell, bidir, chars, crf):
    """Logits, decoded tags (CRF Viterbi or argmax + BIO repair) and the text API."""
    from rnncore.train.checkpoint import save_checkpoint

    model, vocab, char_vocab = _trained_tagger(cell, bidir, chars, crf, seed=len(cell) + chars)
    vocabs = {"chars": char_vocab} if chars else None
    ckpt = save_checkpoint(
        tmp_path / "ckpt", model, vocab=vocab, vocabs=vocabs, extra={"lowercase": True}
    )
    rng = np.random.default_rng(4)
    b = _tagger_batch(rng, vocab, char_vocab, lengths=[6, 2, 1, 5])
    T, B = b.ids.shape
    args = [*b.ids.reshape(-1), *b.lengths]
    if chars:
        args += [b.chars.shape[0], *b.chars.reshape(-1), *b.char_lengths]
    rows = _dump(consumer, "tag", ckpt, T, B, *args)
    logits = model.forward(b.ids, b.lengths, b.chars, b.char_lengths)
    np.testing.assert_allclose(rows["logits"].reshape(T, B, -1), logits, rtol=1e-4, atol=1e-5)
    want = model.decode(logits, b.lengths)
    np.testing.assert_array_equal(rows["tags"].reshape(T, B), want)

    sentences = [["John", "lives", "in", "Paris"], ["The", "cat", "sat", "on", "a", "mat", "é"]]
    words = [vocab.encode([w.lower() for w in s]) for s in sentences]
    from rnncore.data import pad_sequences

    ids, lengths = pad_sequences(words, pad_id=0)
    ch = chl = None
    if chars:
        ch, chl = pad_sequences(
            [char_vocab.encode(list(w)) for s in sentences for w in s], pad_id=char_vocab.pad_id
        )
    expected = model.to_tags(model.predict(ids, lengths, ch, chl), lengths)
    out = _run(
        [consumer / "inference_dump", "tagtext", ckpt, 0, 0, *sentences[0], "|", *sentences[1]]
    ).stdout
    got = [line.split()[1:] for line in out.splitlines()]
    assert got == expected


def test_tagger_checkpoint_errors_in_cpp(consumer: Path, tmp_path: Path) -> None:
    from rnncore.train.checkpoint import save_checkpoint

    model, vocab, _ = _trained_tagger("lstm", True, False, True, seed=1)
    ckpt = save_checkpoint(tmp_path / "ckpt", model, vocab=vocab)
    meta = json.loads((ckpt / "checkpoint.json").read_text())
    meta["model_config"]["tag_names"] = ["O", "B-PER"]
    (ckpt / "checkpoint.json").write_text(json.dumps(meta))
    r = subprocess.run(
        [str(consumer / "inference_dump"), "tag", str(ckpt), "1", "1", "2", "1"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "tag_names has 2 tags but num_tags is 5" in r.stderr


# ---- the forecaster ----------------------------------------------------------------------------
FORECAST_CASES = [
    ("lstm", "many_to_one", False, 0, False),
    ("gru", "many_to_many", True, 1, False),
    ("rnn", "many_to_one", True, 12, True),
]


@pytest.mark.parametrize(("cell", "mode", "log", "lag", "cov"), FORECAST_CASES)
def test_forecaster_same_in_cpp(consumer: Path, tmp_path: Path, cell, mode, log, lag, cov):
    """Windows in the transformed space, and forecast() from original-scale histories with the
    run's log / differencing / scaling (and covariates) applied and undone."""
    from rnncore.data.timeseries import Scaler, SeriesTransform
    from rnncore.models import Forecaster
    from rnncore.train.checkpoint import save_checkpoint

    L, h, N, B = 8, 3, 30, 2
    I = 2 if cov else 1  # noqa: E741 - the layout legend's name
    model = Forecaster(I, 5, horizon=h, num_layers=2, cell=cell, mode=mode, seed=3)
    t = np.arange(120, dtype=np.float64)
    series = 50 + 10 * np.sin(t / 4) + 0.3 * t  # > 0, for the log
    cov_series = np.cos(t / 3) * 5 + 2
    tf = SeriesTransform(log=log, difference=lag, scaler="minmax").fit(series[:80])
    cs = Scaler("standard").fit(cov_series[:80])
    extra = {
        "input_len": L,
        "horizon": h,
        "transform": tf.to_dict(),
        "covariate_scalers": [cs.to_dict()] if cov else [],
    }
    ckpt = save_checkpoint(tmp_path / "ckpt", model, extra=extra)

    x = np.random.default_rng(0).standard_normal((L, B, I)).astype(np.float32)
    rows = _dump(consumer, "fc", ckpt, L, B, *x.reshape(-1))
    np.testing.assert_allclose(rows["predict"].reshape(B, h), model.predict(x), atol=1e-5)

    ends = [N + lag, N + lag + 17]  # two histories of N + lag values ending at different times
    hists = np.stack([series[e - N - lag : e] for e in ends])
    covs = np.stack([cov_series[e - N - lag : e] for e in ends])
    want = []
    for b in range(B):
        z = tf.transform(hists[b])[-L:]
        parts = [z[:, None]]
        if cov:
            parts.append(cs.transform(covs[b][-L:])[:, None])
        xb = np.concatenate(parts, axis=1)[:, None, :].astype(np.float32)
        pred = model.predict(xb)[0].astype(np.float64)
        want.append(tf.inverse_transform(pred[None], hists[b][None, -lag:] if lag else None)[0])
    args = [*hists.reshape(-1)] + ([*covs.reshape(-1)] if cov else [])
    rows = _dump(consumer, "fcast", ckpt, N + lag, B, *[repr(float(v)) for v in args])
    np.testing.assert_allclose(rows["forecast"].reshape(B, h), np.array(want), rtol=1e-5)


# ---- the translator ----------------------------------------------------------------------------
TOKEN_TEXTS = [
    "Il a dit : « Je ne l'aime pas ! » — Pourquoi ?",
    "ÉCOLE, Ça VA? Ἀθῆναι ΣΟΦΊΑ Москва ĲSSEL Đặng Thị Ngọc",
    "déjà vu<br />NFD  táb̃ l'homme's 3,5 km²",
    "under_score x2 don't 'quoted'  nbsp	TAB",
    "日本語のテキスト、句読点。 \ud55c\uad6d\uc5b4",
]


@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("strip", [False, True])
def test_translation_tokens_same_in_cpp(consumer: Path, lower: bool, strip: bool) -> None:
    """The C++ text pipeline = normalize_text + tokenize of `rnncore translate`."""
    from rnncore.data.text import tokenize
    from rnncore.data.translation import normalize_text

    out = _run([consumer / "inference_dump", "tokens", int(lower), int(strip), *TOKEN_TEXTS]).stdout
    got = [line.split("\x01") if line else [] for line in out.split("\n")[:-1]]
    want = [
        tokenize(normalize_text(t, lower=lower, strip_accents=strip), lower=False)
        for t in TOKEN_TEXTS
    ]
    # Beyond Latin, Greek and Cyrillic (the CJK line) C++ does not case-fold or split as Python's
    # \w does: compare the scripts it is exact for.
    assert got[:4] == want[:4]


S2S_PAIRS = [
    ("I am cold .", "J'ai froid ."),
    ("I am hungry .", "J'ai faim ."),
    ("He is tall .", "Il est grand ."),
    ("She is here .", "Elle est ici ."),
    ("We are late .", "Nous sommes en retard ."),
    ("They are happy .", "Ils sont heureux ."),
    ("I like tea .", "J'aime le thé ."),
    ("I like coffee .", "J'aime le café ."),
    ("He likes school .", "Il aime l'école ."),
    ("Where is the station ?", "Où est la gare ?"),
]


@pytest.mark.parametrize(
    "options",
    [
        ["--attention", "dot", "--bidirectional", "--cell", "lstm"],
        ["--attention", "general", "--context", "--cell", "gru", "--reverse-source"],
        ["--bidirectional", "--bridge", "sum", "--cell", "gru_v1", "--layers", "2"],
        ["--cell", "rnn", "--strip-accents", "--reverse-pair"],
    ],
    ids=["lstm-dot-bi", "gru-general-context", "gruv1-sum-2layers", "rnn-plain-strip"],
)
def test_seq2seq_same_in_cpp(consumer: Path, tmp_path: Path, options: list[str]) -> None:
    """A `rnncore train seq2seq` run: greedy batches and beam search (ids and scores) and
    `rnncore translate`'s text path, token for token."""
    from rnncore.cli import main
    from rnncore.tasks._common import open_model_dir
    from rnncore.tasks.seq2seq import translate_text

    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{a}\t{b}\n" for a, b in S2S_PAIRS * 3), encoding="utf-8")
    out = tmp_path / "run"
    argv = ["train", "seq2seq", "--data", str(data), "--out", str(out), "--threads", "1"]
    argv += ["--epochs", "3", "--hidden", "12", "--embed", "8", "--batch-size", "8"]
    argv += ["--test-fraction", "0.1", "--valid-fraction", "0.1", "--no-progress", "--lr", "0.02"]
    assert main(argv + options) == 0
    ckpt, _ = open_model_dir(str(out))
    model, vocabs = ckpt.model, ckpt.vocabs
    rng = np.random.default_rng(0)
    V = len(vocabs["src"])
    sources = [list(rng.integers(4, V, size=n)) for n in (5, 2, 7, 1)]
    flat = [str(t) for s in sources for t in [*s, "|"]][:-1]
    ckpt_dir = out / "checkpoint" / "best"
    rows = _dump_lines(consumer, "s2s", ckpt_dir, 1, 9, *flat)
    assert rows["ids"] == [list(map(int, r)) for r in model.translate(sources, max_len=9)]
    rows = _dump_lines(consumer, "s2s", ckpt_dir, 3, 9, *flat)
    want = [model.beam_search(s, 3, 9, 1.0) for s in sources]
    assert rows["ids"] == [list(map(int, ids)) for ids, _ in want]
    np.testing.assert_allclose([r[0] for r in rows["score"]], [sc for _, sc in want], rtol=1e-5)
    texts = ["I am cold.", "Where is the café?", "He likes UNKNOWN words !", "élève"]
    for beam in (1, 2):
        got = _run([consumer / "inference_dump", "s2stext", ckpt_dir, beam, 0, *texts]).stdout
        assert got.split("\n")[:-1] == [translate_text(ckpt, t, beam=beam) for t in texts]


def test_rnncore_serve_answers_json_lines(prefix: Path, tmp_path: Path) -> None:
    """The installed rnncore_serve: a tagger and a forecaster answering batched requests as
    Python does, ids echoed, a bad request answered with an error and the server going on."""
    from rnncore.data.timeseries import SeriesTransform
    from rnncore.models import Forecaster
    from rnncore.train.checkpoint import save_checkpoint

    exe = prefix / "bin" / "rnncore_serve"
    assert exe.is_file()
    model, vocab, char_vocab = _trained_tagger("lstm", True, True, True, seed=3)
    tagger = save_checkpoint(
        tmp_path / "tagger", model, vocab=vocab, vocabs={"chars": char_vocab}, extra={}
    )
    sentences = [["John", "lives", "in", "Paris"], ["the", "cat"]]
    from rnncore.data import pad_sequences

    ids, lengths = pad_sequences([vocab.encode([w.lower() for w in s]) for s in sentences])
    ch, chl = pad_sequences(
        [char_vocab.encode(list(w)) for s in sentences for w in s], pad_id=char_vocab.pad_id
    )
    want_tags = model.to_tags(model.predict(ids, lengths, ch, chl), lengths)
    requests = [
        {"id": "a", "tokens": sentences},
        {"id": 7, "tokens": "not a list"},
        {"tokens": [sentences[1]]},
    ]
    lines = "".join(json.dumps(r) + "\n" for r in requests) + "{broken json\n"
    r = subprocess.run(
        [str(exe), str(tagger), "--threads", "1"], input=lines, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert "engine built for baseline" in r.stderr  # a plain CMake build has no ISA variants
    answers = [json.loads(line) for line in r.stdout.splitlines()]
    assert answers[0] == {"id": "a", "tags": want_tags}
    assert answers[1]["id"] == 7 and "tokens must be a list" in answers[1]["error"]
    assert answers[2] == {"id": None, "tags": [want_tags[1]]}
    assert "invalid JSON" in answers[3]["error"]
    # --int8: the tags Python's model gives with int8 inference
    model.int8_inference_()
    want8 = model.to_tags(model.predict(ids, lengths, ch, chl), lengths)
    r = subprocess.run(
        [str(exe), str(tagger), "--int8"],
        input=json.dumps(requests[0]) + "\n",
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"id": "a", "tags": want8}

    fc = Forecaster(1, 5, horizon=2, seed=1)
    series = 20 + np.sin(np.arange(60) / 3) * 5
    tf = SeriesTransform(difference=1).fit(series[:40])
    extra = {"input_len": 6, "transform": tf.to_dict(), "covariate_scalers": []}
    fdir = save_checkpoint(tmp_path / "fc", fc, extra=extra)
    hist = [list(series[:20]), list(series[10:40])]
    r = subprocess.run(
        [str(exe), str(fdir)],
        input=json.dumps({"history": hist}) + "\n",
        capture_output=True,
        text=True,
    )
    got = np.array(json.loads(r.stdout)["forecast"])
    r = subprocess.run([str(exe), str(fdir), "--int8"], input="", capture_output=True, text=True)
    assert r.returncode == 1 and "--int8 is for classifier and tagger models" in r.stderr
    for b, h in enumerate(hist):
        z = tf.transform(np.array(h))[-6:].astype(np.float32)[:, None, None]
        want = tf.inverse_transform(fc.predict(z)[0].astype(np.float64)[None], np.array(h)[None])
        np.testing.assert_allclose(got[b], want[0], rtol=1e-5)

    # A request for 10^12 tokens would hold the server for good: refused, the next one answered.
    from rnncore.models import LanguageModel

    lm_dir = save_checkpoint(tmp_path / "lm", LanguageModel(10, 4, 4, seed=0))
    requests = [{"prefix": [1], "max_tokens": 10**12}, {"prefix": [1], "max_tokens": 3}]
    r = subprocess.run(
        [str(exe), str(lm_dir)],
        input="".join(json.dumps(q) + "\n" for q in requests),
        capture_output=True,
        text=True,
        timeout=60,
    )
    answers = [json.loads(line) for line in r.stdout.splitlines()]
    assert "max_tokens must be in [0, 4096]" in answers[0]["error"]
    assert len(answers[1]["ids"]) == 3


def test_cli_serve_runs_the_installed_binary(tmp_path: Path) -> None:
    """`rnncore serve DIR` of a pip-installed rnncore (the wheel ships bin/rnncore_serve)."""
    from rnncore.cli import serve_binary
    from rnncore.models import Forecaster
    from rnncore.train.checkpoint import save_checkpoint

    if serve_binary() is None:
        pytest.skip("this rnncore installation has no bin/rnncore_serve (a source tree)")
    fc = Forecaster(1, 4, horizon=1, seed=2)
    fdir = save_checkpoint(tmp_path / "fc", fc, extra={"input_len": 3})
    x = np.array([[1.0], [2.0], [3.0]], dtype=np.float32)[:, :, None]
    r = _run(
        [sys.executable, "-m", "rnncore", "serve", fdir, "--threads", "1"],
        input=json.dumps({"id": 1, "history": [[1.0, 2.0, 3.0]]}) + "\n",
    )
    got = json.loads(r.stdout)
    assert got["id"] == 1
    np.testing.assert_allclose(got["forecast"][0], fc.predict(x)[0], rtol=1e-5)
    # the portable program hands over to the variant Python picked for this CPU (avx2/avx512
    # engines ship beside it), unless RNNCORE_ISA says otherwise
    from rnncore import _native

    assert f"engine built for {_native.variant}" in r.stderr, r.stderr
    r = subprocess.run(
        [serve_binary(), str(fdir)],
        input=json.dumps({"history": [[1.0, 2.0, 3.0]]}) + "\n",
        capture_output=True,
        text=True,
        env={**ENV, "RNNCORE_ISA": "baseline"},
    )
    assert "engine built for baseline" in r.stderr, r.stderr
    np.testing.assert_allclose(json.loads(r.stdout)["forecast"][0], fc.predict(x)[0], rtol=1e-5)


@pytest.mark.parametrize(("cell", "layers", "feed"), [("lstm", 2, False), ("gru", 1, True)])
def test_captioner_same_in_cpp(consumer: Path, tmp_path: Path, cell, layers, feed) -> None:
    """Greedy captions of a batch and beam search, id for id with Python's."""
    from rnncore.models import Captioner
    from rnncore.train.checkpoint import save_checkpoint

    F, V = 6, 12
    model = Captioner(F, V, 5, 7, num_layers=layers, cell=cell, feed_features=feed, seed=4)
    rng = np.random.default_rng(4)
    opt = rnncore.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(5):  # a few steps on a fixed feature -> caption map, so captions differ
        feats = rng.standard_normal((8, F)).astype(np.float32)
        caps = [list(4 + (np.arange(3) + int(f[0] > 0) * 3) % (V - 4)) for f in feats]
        model.zero_grad()
        model.training_step(model.make_batch(feats, caps))
        opt.step()
    ckpt = save_checkpoint(tmp_path / "cap", model, extra={"beam": 1, "max_decode_len": 8})
    feats = rng.standard_normal((4, F)).astype(np.float32)
    args = [repr(float(v)) for v in feats.reshape(-1)]
    rows = _dump_lines(consumer, "cap", ckpt, 1, 8, *args)
    assert rows["ids"] == [list(map(float, c)) for c in model.caption(feats, max_len=8)]
    rows = _dump_lines(consumer, "cap", ckpt, 3, 8, *args)
    want = model.caption(feats, beam_width=3, max_len=8)
    assert rows["ids"] == [list(map(float, c)) for c in want]


def _dump_lines(consumer: Path, *args) -> dict[str, list[list[float]]]:
    """inference_dump rows by name, every row kept (a name may repeat)."""
    rows: dict[str, list[list[float]]] = {}
    for line in _run([consumer / "inference_dump", *args]).stdout.splitlines():
        name, *values = line.split()
        rows.setdefault(name, []).append([float(v) for v in values])
    return rows


def test_checkpoint_from_save_checkpoint(consumer: Path, tmp_path: Path) -> None:
    """A checkpoint written by the training toolkit itself loads in C++ with the same outputs."""
    checkpoint = pytest.importorskip("rnncore.train.checkpoint")
    model = _trained_lm("lstm", 1, True, seed=5)
    checkpoint.save_checkpoint(tmp_path / "ckpt", model, epoch=1)
    ids = np.arange(8).reshape(4, 2) % model.vocab_size
    rows = _dump(consumer, "lm", tmp_path / "ckpt", 4, 2, *ids.reshape(-1))
    logits, _ = model.forward(ids)
    np.testing.assert_allclose(
        rows["log_probs"].reshape(4, 2, -1), _log_softmax(logits), rtol=1e-4, atol=2e-5
    )


# ---- the pip-installed package ----------------------------------------------------------------
def test_pip_package_cmake_dir(tmp_path: Path) -> None:
    try:
        cmake_dir = rnncore.cmake_dir()
    except FileNotFoundError as exc:
        pytest.skip(f"the installed rnncore has no CMake package files ({exc})")
    cli = _run([sys.executable, "-m", "rnncore", "--cmake-dir"]).stdout.strip()
    assert cli == cmake_dir
    build = _build_consumer(tmp_path / "build", [f"-Drnncore_DIR={cmake_dir}"], examples=False)
    model = _trained_lm("gru", 1, False, seed=9)
    ckpt = _write_checkpoint(tmp_path / "ckpt", model)
    ids = np.array([[1, 2], [3, 4], [5, 6]])
    rows = _dump(build, "lm", ckpt, 3, 2, *ids.reshape(-1))
    logits, _ = model.forward(ids)
    np.testing.assert_allclose(
        rows["log_probs"].reshape(3, 2, -1), _log_softmax(logits), rtol=1e-4, atol=2e-5
    )


def test_damaged_checkpoints_fail_cleanly_in_cpp(consumer: Path) -> None:
    """The C++ loaders on 300 mutants of the fuzz corpus (tests/fuzz): exit 0 or a one-line error
    (exit 1), never a signal, under a 2 GB address-space limit (no huge allocation) and 20 s."""
    import resource

    sys.path.insert(0, str(ROOT / "tests" / "fuzz"))
    import checkpoint_fuzz

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    args = {  # model kind and a batch: T=3, B=2, ids (and lengths for the classifier)
        "classifier": ["clf", "3", "2", "1", "2", "3", "4", "5", "6", "3", "2"],
        "lm_tied": ["lm", "3", "2", "1", "2", "3", "4", "5", "6"],
        "lm_rnn": ["lm", "3", "2", "1", "2", "3", "4", "5", "6"],
    }
    outcomes = {0: 0, 1: 0}
    with tempfile.TemporaryDirectory() as tmp:
        for path, what in checkpoint_fuzz.mutants(seed=7, n=300, workdir=Path(tmp)):
            kind = args[what.split("/")[0]]
            r = subprocess.run(
                [str(consumer / "inference_dump"), kind[0], str(path), *kind[1:]],
                capture_output=True,
                text=True,
                errors="replace",  # messages quote the damaged bytes
                timeout=20,
                preexec_fn=limit,
            )
            assert r.returncode in (0, 1), f"{what}: exit {r.returncode}\n{r.stderr[-2000:]}"
            if r.returncode == 1:
                assert r.stderr.strip(), f"{what}: failed without a message"
            outcomes[r.returncode] += 1
    assert outcomes[1] > 100 and outcomes[0] > 10, outcomes
