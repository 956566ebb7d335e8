"""Issue 18, point 9: every task's `--help` says what its defaults were measured on, and the
sentiment task's defaults are the ones bench/sentiment_defaults.py chose (on sentences and on
documents)."""

import argparse

import pytest
from rnncore import cli, data, tasks
from rnncore.cli import main
from rnncore.tasks import sentiment


def _task_parser(name):
    ns = argparse.Namespace(command="train", task=name)
    return cli._subcommand_parser(cli.build_parser(), ns)


@pytest.mark.parametrize("name", sorted(tasks.TASK_MODULES))
def test_every_task_help_says_what_its_defaults_were_measured_on(name):
    text = _task_parser(name).format_help()
    assert "measured" in text
    assert "bench/" in text


def test_sentiment_defaults_and_their_help(capsys):
    args = _task_parser("sentiment").parse_args(["--data", "d", "--out", "o"])
    sentiment.fill_model_defaults(args)  # the shared options' defaults depend on --model
    assert args.pooling == sentiment.POOLING
    assert args.max_len == sentiment.MAX_LEN
    assert args.batch_size == sentiment.DEFAULTS["batch_size"]
    assert args.lr == sentiment.DEFAULTS["lr"]
    assert args.epochs == sentiment.DEFAULTS["epochs"]
    cnn = _task_parser("sentiment").parse_args(["--data", "d", "--out", "o", "--model", "cnn"])
    cnn_lr = _task_parser("sentiment").parse_args(
        ["--data", "d", "--out", "o", "--model", "cnn", "--lr", "0.5"]
    )
    for a in (cnn, cnn_lr):
        sentiment.fill_model_defaults(a)
    assert (cnn.embed, cnn.batch_size, cnn.lr) == (300, 50, 1e-3)
    assert cnn_lr.lr == 0.5 and cnn_lr.batch_size == 50  # given options win
    with pytest.raises(SystemExit):
        main(["train", "sentiment", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "bench/results/sentiment_defaults.md" in out
    assert "SST-2" in out and "pseudo-reviews" in out


def test_sentiment_max_len_caps_documents(tmp_path):
    """--max-len keeps the first N tokens of each text, for training and evaluation alike."""
    ex = data.synthetic_sentiment(40, seed=0)
    vocab = data.Vocab.build(t for t, _ in ex)
    long = [(toks * 10, y) for toks, y in ex]
    capped = sentiment.make_batches(long, vocab, 8, shuffle=False, max_len=5)
    full = sentiment.make_batches(long, vocab, 8, shuffle=False)
    assert max(b.lengths.max() for b in capped) == 5
    assert max(b.lengths.max() for b in full) > 5
