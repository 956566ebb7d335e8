"""`rnncore eval LM_DIR --interpolate NGRAM_DIR`: the per-token mix of an RNN language model and
a Kneser-Ney n-gram, on a tiny PTB-format folder written here, checked against a brute-force
token-by-token computation with each model's own single-prediction API. (Real PTB:
bench/ptb_table.py.)"""

import json
import math

import numpy as np
import pytest
from rnncore.cli import main
from rnncore.data import read_ptb
from rnncore.ngram import KneserNeyLM
from rnncore.tasks.lm import WEIGHT_GRID, stream_logprobs
from rnncore.train import load_checkpoint

WORDS = [f"w{i}" for i in range(12)]


def _write_ptb(d, seed, words):
    """ptb.{train,valid,test}.txt of short sentences: a word is often followed by the next one
    (something both models can learn), the rest drawn at random."""
    d.mkdir()
    rng = np.random.default_rng(seed)
    for split, n in (("train", 240), ("valid", 30), ("test", 30)):
        lines = []
        for _ in range(n):
            w = [int(rng.integers(len(words)))]
            for _ in range(int(rng.integers(1, 8))):
                nxt = w[-1] + 1 if rng.random() < 0.6 else int(rng.integers(len(words)))
                w.append(nxt % len(words))
            lines.append(" ".join(words[i] for i in w))
        (d / f"ptb.{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(ptb folder, lm run, ngram run): a 1-epoch tiny LSTM and a trigram on the same data."""
    root = tmp_path_factory.mktemp("interp")
    ptb = _write_ptb(root / "ptb", 0, WORDS)
    lm, ng = root / "lm", root / "ng"
    fast = "--no-progress --epochs 1 --hidden 16 --embed 16 --layers 1 --batch-size 4 --bptt 8"
    argv = ["train", "lm", "--data", ptb, "--out", lm, *fast.split(), "--eval-batch-size", "2"]
    assert main([str(a) for a in [*argv, "--optimizer", "adam", "--lr", "0.02"]]) == 0
    assert main(["train", "ngram", "--data", str(ptb), "--out", str(ng), "--order", "3"]) == 0
    return ptb, lm, ng


def _brute_force(ptb, lm, ng, split, weight):
    """log p_mix of every token of the split, one prediction at a time: the RNN fed the stream
    <eos> w1 w2 ... step by step, the n-gram asked with the stream's history (it keeps only
    the current sentence's words)."""
    ckpt = load_checkpoint(lm / "checkpoint")
    ngram = KneserNeyLM.load(ng / "model")
    ids = ckpt.vocab.encode(t for s in read_ptb(ptb / f"ptb.{split}.txt") for t in s)
    eos = ckpt.vocab.eos_id
    model = ckpt.model
    model.eval()
    lp, state = model._next_log_probs(np.array([eos]), None)
    out = []
    for i, tok in enumerate(ids):
        p_rnn = math.exp(float(lp[tok]))
        p_ng = math.exp(ngram.logprob(ids[:i], int(tok)))
        out.append(math.log(weight * p_rnn + (1 - weight) * p_ng))
        lp, state = model._next_log_probs(ids[i : i + 1], state)
    return np.array(out)


def test_mix_is_no_worse_than_either_model_and_its_ends_are_the_models(runs, capsys, tmp_path):
    ptb, lm, ng = runs
    code, out, err = _cli(capsys, "eval", lm, "--data", ptb, "--interpolate", ng)
    assert code == 0, err
    r = json.loads(out)
    assert json.loads((lm / "interpolation.json").read_text()) == r
    grid = {g["weight"]: g["loss"] for g in r["valid_by_weight"]}
    assert list(grid) == list(WEIGHT_GRID) and r["weight"] in grid
    valid = r["valid"]
    # the ends are the models alone (the n-gram exactly as its own task scored it)
    ng_metrics = json.loads((ng / "metrics.json").read_text())
    for split in ("valid", "test"):
        assert r[split]["ngram"]["loss"] == pytest.approx(ng_metrics[split]["loss"], abs=1e-12)
    n = valid["tokens"]
    assert abs(grid[0.0] - valid["ngram"]["loss"]) * n <= 1e-9  # log-likelihoods
    assert abs(grid[1.0] - valid["rnn"]["loss"]) * n <= 1e-9
    assert valid["mix"]["loss"] == grid[r["weight"]] <= min(grid[0.0], grid[1.0])
    assert valid["mix"]["loss"] == min(grid.values())
    assert r["weight_from"].startswith("valid")
    for split in ("valid", "test"):
        assert r[split]["mix"]["ppl"] == pytest.approx(math.exp(r[split]["mix"]["loss"]))

    # a given weight, written where --out says
    out_file = tmp_path / "mix.json"
    code, out, err = _cli(
        capsys, "eval", lm, "--data", ptb, "--interpolate", ng, "--weight", 0.3, "--out", out_file
    )
    assert code == 0, err
    r3 = json.loads(out_file.read_text())
    assert r3["weight"] == 0.3 and "valid_by_weight" not in r3
    assert r3["valid"]["rnn"] == valid["rnn"] and r3["valid"]["ngram"] == valid["ngram"]


def test_every_token_counts_once_for_both_models(runs, capsys, tmp_path):
    ptb, lm, ng = runs
    out_file = tmp_path / "mix.json"
    argv = ["eval", lm, "--data", ptb, "--interpolate", ng, "--weight", 0.3, "--out", out_file]
    assert _cli(capsys, *argv)[0] == 0
    r = json.loads(out_file.read_text())
    for split in ("valid", "test"):
        lines = (ptb / f"ptb.{split}.txt").read_text().splitlines()
        assert r[split]["tokens"] == sum(len(line.split()) + 1 for line in lines)  # + <eos>
        # the same tokens, aligned: one prediction at a time through each model's own API
        brute = _brute_force(ptb, lm, ng, split, 0.3)
        assert brute.size == r[split]["tokens"]
        assert -brute.mean() == pytest.approx(r[split]["mix"]["loss"], rel=1e-5)


def test_rnn_scores_match_its_own_eval_at_batch_size_one(runs, capsys):
    """stream_logprobs on a file's stream scores what `rnncore eval --batch-size 1` scores."""
    ptb, lm, _ = runs
    code, out, err = _cli(capsys, "eval", lm, "--data", ptb, "--batch-size", 1)
    assert code == 0, err
    ckpt = load_checkpoint(lm / "checkpoint")
    for split in ("valid", "test"):
        ids = ckpt.vocab.encode(t for s in read_ptb(ptb / f"ptb.{split}.txt") for t in s)
        for window in (1, 8, 1000):  # the window changes nothing but rounding
            lp = stream_logprobs(ckpt.model, ids, window)
            assert -lp.mean() == pytest.approx(json.loads(out)[split]["loss"], rel=1e-5)


def test_refuses_an_ngram_of_another_vocabulary_naming_both(runs, capsys, tmp_path):
    ptb, lm, _ = runs
    other = _write_ptb(tmp_path / "other", 1, [f"v{i}" for i in range(12)])
    ng2 = tmp_path / "ng2"
    assert main(["train", "ngram", "--data", str(other), "--out", str(ng2), "--order", "2"]) == 0
    capsys.readouterr()
    code, out, err = _cli(capsys, "eval", lm, "--data", ptb, "--interpolate", ng2)
    assert code == 2 and out == ""
    assert "vocabularies differ" in err and str(lm) in err and str(ng2) in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--weight", "1.5"], "--weight must be in [0, 1]"),
        (["--weight", "-0.1"], "--weight must be in [0, 1]"),
        (["--weight", "nan"], "--weight must be in [0, 1]"),
        (["--batch-size", "4"], "--batch-size does not apply with --interpolate"),
    ],
)
def test_bad_weight_and_options_exit_2(runs, capsys, extra, message):
    ptb, lm, ng = runs
    code, _, err = _cli(capsys, "eval", lm, "--data", ptb, "--interpolate", ng, *extra)
    assert code == 2 and message in err and "Traceback" not in err


def test_bad_directories_and_data_exit_2(runs, capsys, tmp_path):
    ptb, lm, ng = runs
    code, _, err = _cli(capsys, "eval", lm, "--data", ptb, "--interpolate", lm)
    assert code == 2 and "not an `rnncore train ngram` run" in err
    code, _, err = _cli(capsys, "eval", lm, "--data", ptb, "--interpolate", tmp_path / "nope")
    assert code == 2 and "no such directory" in err
    code, _, err = _cli(capsys, "eval", lm, "--data", ptb, "--weight", 0.5)
    assert code == 2 and "--weight applies only with --interpolate" in err
    test_file = ptb / "ptb.test.txt"
    code, _, err = _cli(capsys, "eval", lm, "--data", test_file, "--interpolate", ng)
    assert code == 2 and "chooses the weight on validation data" in err
    argv = ["--interpolate", ng, "--weight", 0.5, "--out", tmp_path / "one.json"]
    code, out, err = _cli(capsys, "eval", lm, "--data", test_file, *argv)
    assert code == 0, err
    assert json.loads(out)["ptb.test.txt"]["tokens"] > 0
    with pytest.raises(SystemExit) as e:  # not a number: argparse's usage error
        main(["eval", str(lm), "--data", str(ptb), "--interpolate", str(ng), "--weight", "x"])
    assert e.value.code == 2


def test_eval_on_an_ngram_run_gives_its_own_metrics(runs, capsys, tmp_path):
    """`rnncore eval NGRAM_DIR --data PATH` scores the saved counts again: the run's own valid and
    test numbers on its folder, one file by its name; the rest of the use commands say what does
    apply (it once failed with "no checkpoint")."""
    ptb, _, ng = runs
    code, out, err = _cli(capsys, "eval", ng, "--data", ptb)
    assert code == 0, err
    got, saved = json.loads(out), json.loads((ng / "metrics.json").read_text())
    for split in ("valid", "test"):
        assert got[split]["ppl"] == pytest.approx(saved[split]["ppl"], rel=1e-12)
    code, out, err = _cli(capsys, "eval", ng / "model", "--data", ptb / "ptb.test.txt")
    assert code == 0, err
    assert json.loads(out)["ptb.test.txt"]["ppl"] == pytest.approx(saved["test"]["ppl"], rel=1e-12)
    for argv, message in (
        (["eval", ng, "--data", ptb, "--batch-size", 4], "--batch-size does not apply"),
        (["eval", ng, "--data", ptb, "--interpolate", ng], "is an n-gram run: --interpolate"),
        (["eval", ng, "--data", tmp_path], "no file"),
        (["sample", ng], "`rnncore sample` does not apply to an n-gram model"),
        (["predict", ng, "w1 w2"], "`rnncore predict` does not apply to an n-gram model"),
    ):
        code, _, err = _cli(capsys, *argv)
        assert code == 2 and message in err and "Traceback" not in err, (argv, err)
