"""The command line as a user calls it (issue 18, points 6 and 7): --threads after the task and
$RNNCORE_NUM_THREADS, --out folders that hold a run, progress lines off a terminal, --plot,
`predict DIR -`, the task's usage for a misspelled option, and real corpora's shapes (a tagger
folder without dev file, tags only the test file has, seq2seq's official splits, a forecast CSV
without --value-column)."""

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rnncore import cli, data, tasks
from rnncore.cli import main
from rnncore.metrics import chunk_scores

TINY = ["--no-progress", "--epochs", "1", "--hidden", "8", "--embed", "8", "--layers", "1"]


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _metrics(out):
    return json.loads((Path(out) / "metrics.json").read_text())


@pytest.fixture(scope="module")
def sst(tmp_path_factory):
    d = tmp_path_factory.mktemp("sst")
    for i, split in enumerate(("train", "dev", "test")):
        ex = data.synthetic_sentiment(120 if split == "train" else 30, seed=i)
        _write(d / f"stsa.binary.{split}", [f"{y} {' '.join(t)}" for t, y in ex])
    return d


@pytest.fixture(scope="module")
def sentiment_model(tmp_path_factory, sst):
    """A sentiment model trained once for the commands that use one."""
    out = tmp_path_factory.mktemp("runs") / "sst"
    assert main(["train", "sentiment", "--data", str(sst), "--out", str(out), *TINY]) == 0
    return out


@pytest.fixture
def threads_calls(monkeypatch):
    """The values the command passes to rnncore.set_num_threads (not applied: the engine's
    setting is process-wide)."""
    calls = []
    monkeypatch.setattr(cli, "set_num_threads", calls.append)
    monkeypatch.delenv("RNNCORE_NUM_THREADS", raising=False)
    return calls


# ---- threads ----------------------------------------------------------------------------------
def test_threads_after_the_task_and_from_the_environment(
    tmp_path, sst, threads_calls, monkeypatch, capsys
):
    out = tmp_path / "a"
    argv = ["train", "sentiment", "--data", str(sst), "--out", str(out), *TINY]
    assert main([*argv, "--threads", "1"]) == 0
    assert threads_calls == [1]
    assert _metrics(out)["options"]["threads"] == 1

    monkeypatch.setenv("RNNCORE_NUM_THREADS", "3")
    assert main(["eval", str(out), "--data", str(sst)]) == 0
    assert threads_calls == [1, 3]  # the variable applies to any command
    assert main(["eval", str(out), "--data", str(sst), "--threads", "2"]) == 0
    assert main(["--threads", "4", "eval", str(out), "--data", str(sst)]) == 0
    assert threads_calls == [1, 3, 2, 4]  # the flag wins over the variable
    capsys.readouterr()

    monkeypatch.setenv("RNNCORE_NUM_THREADS", "two")
    assert main(["eval", str(out), "--data", str(sst)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnncore: error:") and "RNNCORE_NUM_THREADS" in err and "'two'" in err
    monkeypatch.setenv("RNNCORE_NUM_THREADS", "")  # empty: as if unset
    assert main(["eval", str(out), "--data", str(sst)]) == 0
    assert threads_calls == [1, 3, 2, 4]
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--threads", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --threads: expected an integer >= 1, got '0'" in err


# ---- --out ------------------------------------------------------------------------------------
def test_a_second_run_into_the_same_out_is_refused_unless_resume_or_overwrite(
    tmp_path, sst, capsys
):
    out = tmp_path / "run"
    out.mkdir()  # an empty folder is fine
    argv = ["train", "sentiment", "--data", str(sst), "--out", str(out), *TINY]
    assert main(argv) == 0
    first = (out / "metrics.json").read_bytes()
    capsys.readouterr()

    assert main([*argv, "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rnncore: error: --out ")
    assert str(out) in err and "--resume" in err and "--overwrite" in err
    assert (out / "metrics.json").read_bytes() == first  # nothing replaced

    assert main([*argv, "--resume", "--overwrite"]) == 2
    assert "exclude each other" in capsys.readouterr().err
    # --resume keeps the run's options: one that changes what it trains is refused by name
    assert main([*argv, "--epochs", "2", "--resume", "--lr", "0.5", "--hidden", "12"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnncore: error: --resume continues the run with its own options")
    assert "--hidden 12 (the run's: 8)" in err and "--lr 0.5" in err
    assert main([*argv, "--epochs", "2", "--resume"]) == 0
    assert [h["epoch"] for h in _metrics(out)["history"]] == [1, 2]
    (out / "notes.txt").write_text("mine")
    # A replacing run that fails before it starts (here: a wrong --data) keeps the earlier one.
    kept = sorted(p.name for p in out.iterdir())
    second = (out / "metrics.json").read_bytes()
    bad = ["train", "sentiment", "--data", str(tmp_path / "absent"), "--out", str(out), *TINY]
    assert main([*bad, "--overwrite"]) == 2
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == kept
    assert (out / "metrics.json").read_bytes() == second
    assert (out / "checkpoint").is_dir()
    assert main([*argv, "--seed", "1", "--overwrite"]) == 0
    assert not [p for p in out.iterdir() if p.name.startswith(".replaced-run-")]
    m = _metrics(out)
    assert m["options"]["seed"] == 1 and [h["epoch"] for h in m["history"]] == [1]
    assert (out / "notes.txt").read_text() == "mine"  # only the run's own files are replaced
    log = (out / "train.log").read_text()
    assert log.count("epoch 1/1") == 1 and "epoch 2/2" not in log  # a fresh log


def test_every_train_task_has_the_run_options():
    parser = cli.build_parser()
    for name in tasks.TASK_MODULES:
        task_parser = cli._subcommand_parser(parser, argparse.Namespace(command="train", task=name))
        options = {o for a in task_parser._actions for o in a.option_strings}
        wanted = {"--overwrite", "--threads"}
        if name != "ngram":  # counting, not a training loop: nothing to resume, log or plot
            wanted |= {"--plot", "--resume", "--log-every", "--log-interval"}
        assert wanted <= options, (name, wanted - options)


# ---- progress lines, train.log, --plot ---------------------------------------------------------
def test_progress_lines_reach_a_pipe_and_train_log(tmp_path):
    text = _write(tmp_path / "input.txt", ["the cat sat on the mat."] * 80)
    out = tmp_path / "charlm"
    argv = ["train", "charlm", "--data", str(text), "--out", str(out), "--epochs", "1"]
    argv += ["--hidden", "8", "--embed", "8", "--batch-size", "4", "--bptt", "8"]
    argv += ["--log-every", "5", "--threads", "1"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.run(
        [sys.executable, "-m", "rnncore", *argv],
        capture_output=True,  # stdout is a pipe, not a terminal
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    steps = [ln for ln in proc.stdout.splitlines() if "  step " in ln]
    assert len(steps) >= 3, proc.stdout
    first = steps[0].split("  ")
    assert first[:2] == ["epoch 1/1", "step 5/" + first[1].split("/")[1]]
    assert first[2].startswith("loss ") and first[3].endswith("items/s")
    assert first[4].startswith("ETA ")
    log = (out / "train.log").read_text().splitlines()
    assert [ln for ln in log if "  step " in ln] == steps
    assert any(ln.startswith("test:") for ln in log)  # the results too


class _Pipe(io.StringIO):
    """A stdout that is not a terminal and records the most lines ever waiting for a flush."""

    def __init__(self):
        super().__init__()
        self.waiting = self.most_waiting = 0

    def write(self, s):
        self.waiting += s.count("\n")
        self.most_waiting = max(self.most_waiting, self.waiting)
        return super().write(s)

    def flush(self):
        self.waiting = 0


def test_progress_lines_by_time_are_flushed(tmp_path, sst, monkeypatch, capsys):
    out = tmp_path / "t"
    argv = ["train", "sentiment", "--data", str(sst), "--out", str(out), *TINY]
    pipe = _Pipe()
    monkeypatch.setattr(sys, "stdout", pipe)
    assert main([*argv, "--batch-size", "8", "--log-interval", "1e-9"]) == 0
    monkeypatch.undo()
    steps = [ln for ln in pipe.getvalue().splitlines() if "  step " in ln]
    assert len(steps) == 14  # 15 batches: a line before each but the first
    assert pipe.most_waiting == 1  # every line flushed as it is written
    assert main([*argv, "--overwrite", "--log-interval", "0"]) == 0  # 0: never by time
    assert "  step " not in capsys.readouterr().out
    assert main([*argv, "--overwrite", "--log-every", "0"]) == 2
    assert "--log-every must be >= 1" in capsys.readouterr().err


def test_plot_draws_the_learning_curves(tmp_path, sst, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "p"
    argv = ["train", "sentiment", "--data", str(sst), "--out", str(out), *TINY]
    assert main([*argv, "--plot"]) == 0
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert main([*argv, "--plot", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnncore: error: --plot needs matplotlib")
    assert (out / "metrics.json").is_file()  # refused before anything was replaced


# ---- predict -, misspelled options -----------------------------------------------------------
def test_predict_dash_reads_lines_from_stdin(sentiment_model, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("a wonderful superb film\n\nawful, boring\n"))
    assert main(["predict", str(sentiment_model), "-"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[1] == ""
    assert all("positive=" in lines[i] for i in (0, 2))
    assert main(["predict", str(sentiment_model), "a wonderful superb film"]) == 0
    assert capsys.readouterr().out.splitlines() == lines[:1]


def test_a_misspelled_option_prints_the_tasks_usage(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "sentiment", "--data", "d", "--out", str(tmp_path), "--hiden", "32"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: rnncore train sentiment")
    assert "rnncore train sentiment: error: unrecognized arguments: --hiden 32" in err
    assert "(did you mean --hidden?)" in err
    with pytest.raises(SystemExit):
        main(["predict", "DIR", "TEXT", "--bem"])
    err = capsys.readouterr().err
    assert err.startswith("usage: rnncore predict") and "--bem" in err
    assert not (tmp_path / "metrics.json").exists()


# ---- real corpora: tagger ---------------------------------------------------------------------
def _conll(sentences):
    lines = []
    for toks, tags in sentences:
        lines += [f"{w} NN {t}" for w, t in zip(toks, tags, strict=True)] + [""]
    return lines


def test_tagger_without_dev_file_and_a_tag_only_the_test_file_has(tmp_path, capsys):
    d = tmp_path / "corpus"
    d.mkdir()
    train = data.synthetic_tagging(120, seed=0)
    _write(d / "train.txt", _conll(train))
    test = data.synthetic_tagging(30, seed=1)
    toks, tags = test[0]
    test[0] = (toks + ["Euro", "Cup"], tags + ["B-MISC", "I-MISC"])  # MISC: not in train.txt
    _write(d / "test.txt", _conll(test))
    out = tmp_path / "ner"
    opts = ["--char-embed", "4", "--char-hidden", "4", "--valid-fraction", "0.25"]
    code = main(["train", "tagger", "--data", str(d), "--out", str(out), *TINY, *opts])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "rnncore: warning: tags not in the training data" in err and "B-MISC, I-MISC" in err
    m = _metrics(out)
    assert m["data"]["valid_held_out"] == 0.25
    assert m["data"]["train_sentences"] == 90 and m["data"]["valid_sentences"] == 30
    assert m["data"]["tags_not_in_training"] == ["B-MISC", "I-MISC"]

    # conlleval: the MISC entity is a gold entity the model never finds
    from rnncore.tasks.tagger import TaggingData
    from rnncore.train import load_checkpoint

    ckpt = load_checkpoint(out / "checkpoint")
    tag_vocab, char_vocab = ckpt.vocabs["tags"], ckpt.vocabs["chars"]
    td = TaggingData(test, ckpt.vocab, tag_vocab, char_vocab, True)
    gold, pred = [], []
    for b in td.batches(8, shuffle=False):
        ids = ckpt.model.predict(b.ids, b.lengths, b.chars, b.char_lengths)
        gold += ckpt.model.to_tags(b.tags, b.lengths)
        pred += ckpt.model.to_tags(ids, b.lengths)
    assert not any(t.endswith("MISC") for s in pred for t in s)
    scores = chunk_scores(gold, pred)
    assert scores.per_type["MISC"].n_true == 1 and scores.per_type["MISC"].n_pred == 0
    assert m["test"]["f1"] == pytest.approx(scores.f1)
    assert m["test"]["recall"] == pytest.approx(scores.recall)
    assert np.isfinite(m["test"]["loss"])
    capsys.readouterr()
    assert main(["eval", str(out), "--data", str(d)]) == 0  # a folder without valid.txt
    assert json.loads(capsys.readouterr().out)["test"]["f1"] == pytest.approx(m["test"]["f1"])


# ---- real corpora: seq2seq --------------------------------------------------------------------
PAIRS = [
    ("I am cold.", "J'ai froid."),
    ("You are tall.", "Tu es grand."),
    ("I am here.", "Je suis ici."),
    ("You are here.", "Tu es ici."),
    ("I am tall.", "Je suis grand."),
    ("You are cold.", "Tu as froid."),
]
LONG = ("I am here and you are here and I am cold and you are tall.", "Je suis ici et tu es ici.")


def test_seq2seq_takes_the_corpus_splits(tmp_path, capsys):
    _write(tmp_path / "train.tsv", [f"{s}\t{t}" for s, t in PAIRS * 5])
    _write(tmp_path / "valid.tsv", [f"{s}\t{t}" for s, t in PAIRS[:3]])
    _write(tmp_path / "test.en", [s for s, _ in PAIRS[3:]] + [LONG[0]])
    _write(tmp_path / "test.fr", [t for _, t in PAIRS[3:]] + [LONG[1]])
    out = tmp_path / "mt"
    argv = ["train", "seq2seq", "--data", str(tmp_path / "train.tsv"), "--out", str(out), *TINY]
    argv += ["--valid-data", str(tmp_path / "valid.tsv"), "--test-data", str(tmp_path / "test.en")]
    argv += ["--test-target", str(tmp_path / "test.fr")]
    code = main(argv)
    assert code == 0, capsys.readouterr().err
    m = _metrics(out)
    assert m["data"]["train_pairs"] == 30  # nothing held out of --data
    assert m["data"]["valid_pairs"] == 3
    assert m["data"]["test_pairs"] == 4 and m["bleu"]["sentences"] == 4  # longer than --max-words
    assert m["data"]["test_source"] == f"{tmp_path / 'test.en'} + {tmp_path / 'test.fr'}"
    assert "on 4 test sentences" in capsys.readouterr().out
    base = ["train", "seq2seq", "--data", str(tmp_path / "train.tsv"), *TINY]
    for flag, value, message in [
        ("--max-pairs", "0", "--max-pairs must be >= 1, got 0"),
        ("--bleu-sentences", "0", "--bleu-sentences must be >= 1, got 0"),
        ("--length-penalty", "nan", "--length-penalty must be a finite number"),
    ]:
        assert main([*base, "--out", str(tmp_path / "bad"), flag, value]) == 2
        assert message in capsys.readouterr().err

    code = main([*argv[:4], "--out", str(tmp_path / "o"), "--valid-target", str(tmp_path / "x")])
    assert code == 2
    assert "--valid-target needs --valid-data" in capsys.readouterr().err


# ---- real corpora: forecast -------------------------------------------------------------------
def test_forecast_defaults_to_the_only_value_column(tmp_path, capsys):
    v = 100 + 10 * np.sin(np.arange(60) * 2 * np.pi / 12)
    months = [f"{1949 + i // 12}-{i % 12 + 1:02d}" for i in range(60)]
    csv = _write(
        tmp_path / "a.csv",
        ["Month,Passengers"] + [f"{m},{x:.2f}" for m, x in zip(months, v, strict=True)],
    )
    out = tmp_path / "f"
    argv = ["train", "forecast", "--data", str(csv), "--out", str(out), "--no-progress"]
    argv += ["--epochs", "1", "--hidden", "8", "--season", "12"]
    assert main(argv) == 0
    m = _metrics(out)
    assert m["options"]["value_column"] == "Passengers" and m["data"]["values"] == 60
    capsys.readouterr()

    rows = ["Month,Passengers,Temp"] + [
        f"{m},{x:.2f},{x / 7:.2f}" for m, x in zip(months, v, strict=True)
    ]
    two = _write(tmp_path / "b.csv", rows)
    assert main([*argv[:3], str(two), "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnncore: error: --value-column is needed")
    assert "several numeric columns (Passengers, Temp)" in err
    argv_b = [*argv[:3], str(two), "--out", str(tmp_path / "g"), "--no-progress", "--epochs", "1"]
    assert main([*argv_b, "--extra-columns", "Temp", "--hidden", "8"]) == 0  # no longer ambiguous
    assert _metrics(tmp_path / "g")["options"]["value_column"] == "Passengers"


def test_forecast_options_are_checked_before_training(tmp_path, capsys):
    v = 100 + 10 * np.sin(np.arange(40) * 2 * np.pi / 12)
    csv = _write(tmp_path / "a.csv", ["y"] + [f"{x:.2f}" for x in v])
    out = tmp_path / "f"
    argv = ["train", "forecast", "--data", str(csv), "--out", str(out), "--no-progress"]
    argv += ["--epochs", "1", "--hidden", "8"]
    assert main([*argv, "--season", "500"]) == 2
    assert "--season 500 reaches before the start" in capsys.readouterr().err
    assert not (out / "metrics.json").exists()  # refused before training, not after
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--delimiter", "ab"])
    assert exc.value.code == 2
    assert "--delimiter: expected one character" in capsys.readouterr().err
    tsv = _write(tmp_path / "a.tsv", ["y"] + [f"{x:.2f}" for x in v])
    assert main([*argv[:3], str(tsv), "--out", str(out), *argv[6:], "--delimiter", "\\t"]) == 0


def test_cli_user_errors_are_one_line(tmp_path, sst, capsys):
    argv = ["train", "sentiment", "--data", str(sst), "--out", str(tmp_path / "r"), *TINY]
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--seed", "-1"])
    assert exc.value.code == 2
    assert "--seed: expected an integer >= 0, got '-1'" in capsys.readouterr().err
    # A diverging run: one line in the command line's terms, not a traceback with Python names.
    assert main([*argv, "--optimizer", "sgd", "--lr", "1e30", "--clip", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "training diverged" in err and "--clip" in err
    assert "clip_grad_norm" not in err
    for bad, message in [
        (["--steps", "1"], "--steps must be >= 2"),
        (["--cells", "foo"], "--cells must be a comma-separated list among rnn, lstm"),
        (["gates", "--cells", "gru"], "among rnn, residual, input, forget, lstm"),
    ]:
        assert main(["demo", *bad, "--no-plot", "--out", str(tmp_path / "d")]) == 2
        assert message in capsys.readouterr().err


def test_rnncore_num_threads_applies_at_import_too():
    code = "import rnncore; print(rnncore.get_num_threads())"
    env = dict(os.environ, RNNCORE_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "1"
    env["RNNCORE_NUM_THREADS"] = "lots"
    out = subprocess.run(
        [sys.executable, "-W", "always", "-c", code], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0 and "RNNCORE_NUM_THREADS must be an integer" in out.stderr
