"""`rnncore train charlm`: a character-level language model on one plain-text file.

The file (e.g. tiny Shakespeare's ``input.txt``) is cut into contiguous train/valid/test parts
(90/5/5 % by default); the vocabulary is the file's characters. Reports loss in nats, perplexity
and bits per character.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..data import load_char_corpus
from ._common import TaskError, add_common_arguments, evaluate_splits, warn
from .lm import add_lm_arguments, check_lm, eval_batch_size, stream_batches, train_lm

NAME = "charlm"
HELP = "character-level language model on a plain-text file (e.g. tiny Shakespeare)"
DEFAULTS: dict[str, Any] = dict(
    cell="lstm",
    layers=2,
    hidden=512,
    embed=64,
    dropout=0.2,
    zoneout=0.0,
    recurrent_dropout=0.0,
    epochs=10,
    batch_size=32,
    optimizer="adam",
    lr=2e-3,
    clip=5.0,
)
#: what the defaults were measured on (the end of `rnncore train charlm --help`)
MEASURED = (
    "Defaults measured on tiny Shakespeare (1.1M characters) with --bptt 50 and 8 epochs (the "
    "defaults are 100 and 10): validation loss 1.371 nats/char, about 500 s per epoch at 1 "
    "thread on a 2-core VM (bench/quality_tasks1.py, bench/results/quality.md). The default "
    "--bptt 100 and --epochs 10 have not been measured."
)


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected three numbers like 0.9,0.05,0.05: {text!r}"
        ) from None
    if len(parts) != 3 or any(x < 0 for x in parts) or abs(sum(parts) - 1) > 1e-6:
        raise argparse.ArgumentTypeError(f"expected three fractions >= 0 summing to 1: {text!r}")
    return parts  # type: ignore[return-value]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = MEASURED
    p.description = (
        "Train a character-level language model (Karpathy's char-rnn setting) on a UTF-8 text "
        "file and report validation/test loss (nats per character), perplexity and bits per "
        "character."
    )
    add_common_arguments(
        p,
        DEFAULTS,
        data_help="a UTF-8 text file (or a folder holding input.txt)",
    )
    add_lm_arguments(p, bptt=100, eval_batch_size=32, init_range=0.0, lr_decay=1.0, decay_after=0)
    p.add_argument(
        "--split",
        type=_fractions,
        default=(0.9, 0.05, 0.05),
        metavar="F,F,F",
        help="train,valid,test fractions of the file (contiguous parts, in that order)",
    )


def _text_file(data: str) -> Path:
    p = Path(data)
    return p / "input.txt" if p.is_dir() else p


def run(args: argparse.Namespace) -> dict[str, Any]:
    check_lm(args)
    path = _text_file(args.data)
    corpus = load_char_corpus(path, args.split)
    names = tuple(f"{path} ({part} part)" for part in ("train", "valid", "test"))
    extra = {"task": NAME, "split": list(args.split)}
    return train_lm(args, corpus, char_level=True, extra=extra, names=names)


def evaluate(ckpt: Any, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Loss, perplexity and bpc on the valid and test parts of a text file (the training split)."""
    path = _text_file(args.data)
    fractions = tuple(ckpt.extra.get("split", (0.9, 0.05, 0.05)))
    try:
        corpus = load_char_corpus(path, fractions, vocab=ckpt.vocab)
    except ValueError as e:
        if isinstance(e, TaskError) or "not in the vocabulary" not in str(e):
            raise
        raise TaskError(f"{path}: {e}") from None
    bs, bptt = eval_batch_size(ckpt, args), int(ckpt.extra.get("bptt", 100))
    ckpt.model.char_level = True  # not part of the config: report bits per character again
    splits = {
        "valid": stream_batches(corpus.valid, bs, bptt, f"{path} (valid part)"),
        "test": stream_batches(corpus.test, bs, bptt, f"{path} (test part)"),
    }
    return evaluate_splits(ckpt.model, splits)


def sample(ckpt: Any, args: argparse.Namespace) -> str:
    """The prompt and its sampled continuation, character by character."""
    vocab = ckpt.vocab
    known = [c for c in args.prompt if c in vocab]
    if len(known) < len(args.prompt):
        missing = sorted({c for c in args.prompt if c not in vocab})
        warn(f"characters not in the model's vocabulary are left out of the prompt: {missing}")
    ids = [vocab.index(c) for c in known]
    start = ids if ids else [vocab.index("\n") if "\n" in vocab else 0]
    out = ckpt.model.sample(
        start, args.length, temperature=args.temperature, top_k=args.top_k, seed=args.seed
    )
    return "".join(known) + "".join(vocab.decode(out))
