"""Seq2Seq: exact gradients through attention, bridge and the encoder-decoder state; greedy and
beam decoding; a toy translation learned; the seq2seq task's loaders, errors, BLEU and CLI."""

import gzip
import json

import numpy as np
import pytest
import rnncore
from rnncore import optim
from rnncore.cli import main as cli_main
from rnncore.data import DataFormatError
from rnncore.metrics import corpus_bleu
from rnncore.models import Seq2Seq, build
from rnncore.models.seq2seq import reverse_padded, teacher_forcing_batch
from rnncore.tasks import seq2seq as task

EPS, ATOL, RTOL = 1e-6, 1e-7, 1e-5

SOURCES = [[4, 5, 6], [5, 6], [6, 4, 5, 5], [7]]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks: one engine thread is as fast, deterministic, and never waits on a busy
    core."""
    before = rnncore.set_num_threads(1)
    yield
    rnncore.set_num_threads(before)


TARGETS = [[4, 5], [6, 7, 8], [8], []]


def gradcheck(model, batch, per_param=5, seed=0):
    """Central differences in float64 against the accumulated analytic gradient."""
    model.zero_grad()
    model.training_step(batch)
    rng = np.random.default_rng(seed)

    def loss():
        model.eval()
        value = model._loss(batch)[0]
        model.train()
        return value

    for name, p in model.named_parameters():
        flat = p.data.reshape(-1)
        grad = p.grad.reshape(-1).copy()
        for i in rng.choice(flat.size, size=min(per_param, flat.size), replace=False):
            old = flat[i]
            flat[i] = old + EPS
            up = loss()
            flat[i] = old - EPS
            down = loss()
            flat[i] = old
            numeric = (up - down) / (2 * EPS)
            assert abs(numeric - grad[i]) <= ATOL + RTOL * abs(grad[i]), (name, i, numeric, grad[i])


CONFIGS = [
    dict(cell="lstm"),
    dict(cell="gru", num_layers=2, reverse_source=True),
    dict(cell="lstm", bidirectional=True, attention="general", context=True, num_layers=2),
    dict(cell="gru", bidirectional=True, bridge="sum", attention="dot"),
    dict(cell="rnn", attention="dot", context=True),
    dict(cell="lstm", bidirectional=True, bridge="sum", context=True),
]


@pytest.mark.parametrize(
    "config", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items())
)
def test_gradients_match_finite_differences(config):
    model = Seq2Seq(9, 10, embed_dim=3, hidden_size=4, dtype="float64", seed=1, **config)
    gradcheck(model, model.make_batch(SOURCES, TARGETS))


def test_encoder_gets_the_decoder_initial_state_gradient():
    # without attention or context, the encoder reaches the loss only through the decoder's
    # initial state: its gradient must be non-zero and exact
    model = Seq2Seq(9, 10, embed_dim=3, hidden_size=4, dtype="float64", seed=2)
    batch = model.make_batch(SOURCES, TARGETS)
    model.zero_grad()
    model.training_step(batch)
    assert np.abs(model.encoder.flat_gradients).max() > 1e-4
    assert np.abs(model.src_embedding.weight.grad).max() > 1e-4
    gradcheck(model, batch, per_param=8, seed=3)


def test_teacher_forcing_batch_and_source_reversal():
    tin, tout, lengths = teacher_forcing_batch([[5, 6], []], bos_id=2, eos_id=3, pad_id=0)
    assert tin.T.tolist() == [[2, 5, 6], [2, 0, 0]]
    assert tout.T.tolist() == [[5, 6, 3], [3, 0, 0]]
    assert lengths.tolist() == [3, 1]
    ids = np.array([[1, 4], [2, 5], [3, 0]])
    assert reverse_padded(ids, np.array([3, 2])).T.tolist() == [[3, 2, 1], [5, 4, 0]]


def test_make_batch_rejects_bad_input():
    model = Seq2Seq(9, 10, embed_dim=3, hidden_size=4, seed=0)
    with pytest.raises(ValueError, match="2 sources but 1 targets"):
        model.make_batch([[4], [5]], [[4]])
    with pytest.raises(ValueError, match="source 1 is empty"):
        model.make_batch([[4], []], [[4], [5]])
    with pytest.raises(ValueError, match="attention must be one of"):
        Seq2Seq(9, 10, attention="bahdanau")


def toy_data(n, rng):
    """Translate a symbol sequence: reverse it and shift every symbol by one."""
    src = [list(rng.integers(4, 12, size=rng.integers(2, 7))) for _ in range(n)]
    tgt = [[(x - 4 + 1) % 8 + 4 for x in s[::-1]] for s in src]
    return src, tgt


@pytest.fixture(scope="module")
def trained():
    """A small attention model trained on the toy translation (about 2 s)."""
    rng = np.random.default_rng(0)
    src, tgt = toy_data(1500, rng)
    model = Seq2Seq(12, 12, embed_dim=16, hidden_size=48, attention="dot", seed=0)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    order = np.random.default_rng(1)
    for _ in range(6):
        perm = order.permutation(len(src))
        for i in range(0, len(perm), 32):
            idx = perm[i : i + 32]
            opt.zero_grad()
            model.training_step(model.make_batch([src[j] for j in idx], [tgt[j] for j in idx]))
            optim.clip_grad_norm(model.parameters(), 5.0)
            opt.step()
    return model


def test_small_attention_model_learns_the_toy_translation(trained):
    src, tgt = toy_data(200, np.random.default_rng(5))
    out = trained.translate(src)
    exact = np.mean([o == t for o, t in zip(out, tgt, strict=True)])
    assert exact >= 0.9, exact  # stated level: 90% of held-out sentences exactly right
    beam = trained.translate(src[:50], beam_width=4)
    assert np.mean([o == t for o, t in zip(beam, tgt[:50], strict=True)]) >= 0.9


@pytest.mark.parametrize(
    "config", [dict(), dict(attention="general", bidirectional=True, context=True, cell="gru")]
)
def test_beam_width_one_equals_greedy(config):
    model = Seq2Seq(12, 12, embed_dim=8, hidden_size=16, seed=4, **config)
    src, _ = toy_data(30, np.random.default_rng(6))
    greedy = model.translate(src, max_len=12)
    beam = [model.beam_search(s, beam_width=1, max_len=12)[0] for s in src]
    assert beam == greedy
    # no step allowed: nothing decoded, as greedy decoding
    assert model.beam_search(src[0], beam_width=3, max_len=0) == ([], 0.0)
    assert model.translate(src[:2], beam_width=2, max_len=0) == model.translate(src[:2], max_len=0)
    with pytest.raises(TypeError, match="Seq2Seq: src_lengths must be integers"):
        model.greedy_decode(np.array([[4], [5]]), np.array([2.0]))
    with pytest.raises(ValueError, match=r"tgt_in \[T, B\] ids with the same B"):
        model(np.array([[4], [5]]), np.array([2]), np.array([[2, 2]]))
    assert not model.encoder._core.has_saved_forward  # refused before the encoder ran


def test_beam_width_one_equals_greedy_on_the_trained_model(trained):
    src, _ = toy_data(40, np.random.default_rng(7))
    assert [trained.beam_search(s, 1)[0] for s in src] == trained.translate(src)


def test_beam_search_finds_at_least_the_greedy_likelihood(trained):
    src, _ = toy_data(20, np.random.default_rng(8))
    for s in src:
        g = trained.beam_search(s, 1, length_penalty=0.0)[1]
        b = trained.beam_search(s, 4, length_penalty=0.0)[1]
        # Beam 4 scores its hypotheses in batches of 4, greedy in batches of 1: the same sequence
        # can differ by float32 rounding (seen: 2e-9 with MKL's GEMM), never by more.
        assert b >= g - 1e-6 * (1.0 + abs(g))


def test_config_rebuilds_the_model():
    model = Seq2Seq(
        9, 10, embed_dim=3, hidden_size=4, attention="general", bidirectional=True, seed=0
    )
    twin = build("seq2seq", model.config())
    twin.load_state_dict(model.state_dict())
    names = [n for n, _ in model.named_parameters()]
    assert "encoder.weight_hh_l0_reverse" in names and "attn.weight" in names
    assert "bridge.weight" in names and "bridge_c.weight" in names
    src = [[4, 5, 6]]
    assert twin.translate(src, max_len=5) == model.translate(src, max_len=5)


# ---- the task: loaders, errors, BLEU, command line --------------------------------------------
PAIRS = "".join(
    f"{a}\t{b}\tCC-BY attribution\n"
    for a, b in [
        ("I am cold.", "J'ai froid."),
        ("I am tall.", "Je suis grand."),
        ("You are tall.", "Tu es grand."),
        ("I am here.", "Je suis ici."),
        ("You are here.", "Tu es ici."),
        ("I am cold and tall.", "J'ai froid et je suis grand."),
    ]
    * 6
)


def args_for(tmp_path, *extra):
    from rnncore.cli import build_parser

    return build_parser().parse_args(
        [
            "train",
            "seq2seq",
            "--data",
            str(tmp_path / "fra.txt"),
            "--out",
            str(tmp_path / "out"),
            *extra,
        ]
    )


def test_loaders_parse_pairs_and_parallel_files(tmp_path):
    (tmp_path / "fra.txt").write_text(PAIRS, encoding="utf-8")
    pairs = task.load_pairs(args_for(tmp_path))
    assert pairs[0] == (["i", "am", "cold", "."], ["j'ai", "froid", "."])
    assert len(pairs) == 36
    rev = task.load_pairs(args_for(tmp_path, "--reverse-pair", "--max-words", "4"))
    assert rev[0] == (["j'ai", "froid", "."], ["i", "am", "cold", "."])
    assert all(len(s) <= 4 and len(t) <= 4 for s, t in rev)
    with gzip.open(tmp_path / "train.en.gz", "wt", encoding="utf-8") as f:
        f.write("A dog runs.\nTwo cats sleep.\nA bird sings.\n")
    (tmp_path / "train.de").write_text("Ein Hund rennt.\nZwei Katzen schlafen.\nEin Vogel singt.\n")
    from rnncore.cli import build_parser

    a = build_parser().parse_args(
        [
            "train",
            "seq2seq",
            "--data",
            str(tmp_path / "train.en.gz"),
            "--target",
            str(tmp_path / "train.de"),
            "--out",
            "x",
        ]
    )
    assert task.load_pairs(a)[1] == (
        ["two", "cats", "sleep", "."],
        ["zwei", "katzen", "schlafen", "."],
    )


def test_bad_input_names_the_file_and_line(tmp_path):
    (tmp_path / "fra.txt").write_text("Hi.\tSalut.\n\tVide.\nGo.\tVa !\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"fra\.txt, line 2: empty source sentence"):
        task.load_pairs(args_for(tmp_path))
    (tmp_path / "fra.txt").write_text("Hi.\tSalut.\nGo.\t \n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"line 2: empty target sentence"):
        task.load_pairs(args_for(tmp_path))
    (tmp_path / "fra.txt").write_text("Hi.\tSalut.\nno tab here\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"line 2: expected at least 2 tab-separated"):
        task.load_pairs(args_for(tmp_path))
    (tmp_path / "a.en").write_text("one\ntwo\nthree\n")
    (tmp_path / "a.fr").write_text("un\ndeux\n")
    with pytest.raises(task.TaskError, match=r"a\.en has 3 lines but .*a\.fr has 2"):
        task.check_parallel_files(str(tmp_path / "a.en"), str(tmp_path / "a.fr"), False)
    (tmp_path / "a.fr").write_text("un\n\ntrois\n")
    with pytest.raises(DataFormatError, match=r"a\.fr, line 2: empty sentence"):
        task.check_parallel_files(str(tmp_path / "a.en"), str(tmp_path / "a.fr"), False)
    task.check_parallel_files(str(tmp_path / "a.en"), str(tmp_path / "a.fr"), True)


def test_task_bleu_is_the_metrics_modules_bleu():
    class Fixed:
        def translate(self, sources, **kw):
            return [[4, 5, 6, 7], [4, 8], [9, 5, 6]]

    from rnncore.data import Vocab

    tgt = Vocab(
        ["<pad>", "<unk>", "<bos>", "<eos>", "the", "cat", "sat", "down", "dog", "a"],
        pad="<pad>",
        unk="<unk>",
        bos="<bos>",
        eos="<eos>",
    )
    src = tgt
    pairs = [
        (["x"], "the cat sat down".split()),
        (["y"], "the dog barks".split()),
        (["z"], "a cat sat".split()),
    ]
    got = task.bleu_of(Fixed(), pairs, src, tgt, beam=1, max_len=10, length_penalty=1.0)
    hyps = ["the cat sat down", "the dog", "a cat sat"]
    refs = ["the cat sat down", "the dog barks", "a cat sat"]
    assert got["bleu"] == pytest.approx(corpus_bleu(hyps, refs).score, abs=1e-9)
    assert got["bleu"] == pytest.approx(corpus_bleu(hyps, refs, backend="builtin").score, abs=1e-9)


def test_cli_trains_writes_metrics_and_translates(tmp_path, capsys):
    (tmp_path / "fra.txt").write_text(PAIRS, encoding="utf-8")
    out = tmp_path / "out"
    rc = cli_main(
        [
            "--threads",
            "1",
            "train",
            "seq2seq",
            "--data",
            str(tmp_path / "fra.txt"),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--hidden",
            "16",
            "--embed",
            "8",
            "--attention",
            "general",
            "--bidirectional",
            "--no-progress",
        ]
    )
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "seq2seq" and 0.0 <= metrics["test_bleu"] <= 100.0
    assert metrics["data"]["test_pairs"] == 4  # a fixed 10% of 36
    assert (out / "checkpoint" / "best" / "model.safetensors").is_file()
    printed = capsys.readouterr().out
    assert "BLEU signature nrefs:1|case:mixed" in printed  # how the score was computed
    assert metrics["bleu"]["bleu_signature"].startswith("nrefs:1")
    assert cli_main(["translate", str(out), "I am cold.", "--beam", "2"]) == 0
    assert capsys.readouterr().out.strip() != ""
    assert cli_main(["predict", str(out), "You are here."]) == 0
    capsys.readouterr()
    assert cli_main(["eval", str(out), "--data", str(tmp_path / "fra.txt")]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["sentences"] == 36 and 0.0 <= evaluated["bleu"] <= 100.0
    assert evaluated["loss"] > 0 and "ppl" in evaluated
    (tmp_path / "bad.txt").write_text("Hi.\tSalut.\n\tVide.\n" * 3, encoding="utf-8")
    rc = cli_main(
        ["train", "seq2seq", "--data", str(tmp_path / "bad.txt"), "--out", str(tmp_path / "o2")]
    )
    assert rc == 2
    assert "bad.txt, line 2: empty source sentence" in capsys.readouterr().err


def test_attention_weights_are_distributions_over_each_source():
    model = Seq2Seq(9, 10, embed_dim=3, hidden_size=4, attention="general", dropout=0.3, seed=5)
    src, src_len, tgt_in, _ = model.make_batch([[3, 4, 5, 6], [7, 8]], [[1, 2, 3], [4]])
    model.train()
    w = model.attention_weights(src, src_len, tgt_in)
    assert model.training  # the mode is left as it was
    assert w.shape == (2, tgt_in.shape[0], src.shape[0])
    np.testing.assert_allclose(w.sum(axis=-1), 1.0, rtol=1e-5)
    assert np.all(w[1, :, int(src_len[1]) :] == 0)  # never past a source's end
    np.testing.assert_array_equal(model.attention_weights(src, src_len, tgt_in), w)  # no dropout
    with pytest.raises(ValueError, match="no attention"):
        Seq2Seq(9, 10, seed=0).attention_weights(src, src_len, tgt_in)
