"""`rnncore train ngram`: a Kneser-Ney n-gram language model on Penn Treebank-format files.

Counting, not training: one pass over the training file (:class:`rnncore.ngram.KneserNeyLM`),
then validation and test perplexity, per token with ``<eos>`` included as `rnncore train lm`
reports them, so the two tasks' numbers compare. Writes ``DIR/metrics.json`` (the lm task's
layout where it applies: ``task``, ``valid`` and ``test`` as ``{"loss", "ppl"}``,
``wall_seconds``, ``train_seconds`` (counting), ``model_type``, ``model_config``, ``data``,
``options``, ``checkpoint``), ``DIR/train.log`` and the model in ``DIR/model/``
(:meth:`KneserNeyLM.save`'s format; reopen it with ``KneserNeyLM.load``). ``rnncore eval DIR
--data PATH`` scores the saved model again (:func:`evaluate_run`).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from ..data import load_ptb, read_ptb
from ..ngram import META_FILE, KneserNeyLM, split_sentences
from ._common import (
    HelpFormatter,
    TaskError,
    add_threads_argument,
    log_line,
    options,
    write_json,
)

NAME = "ngram"
HELP = "Kneser-Ney n-gram language model on a PTB-format folder (counts, no training loop)"
#: what the default was measured on (the end of `rnncore train ngram --help`)
MEASURED = (
    "Default measured on PTB (Mikolov's split, 930k training tokens, 10k words): order 5 gives "
    "validation perplexity 148.0 and test 141.2 (Mikolov et al. 2011 report 141.2 for KN5) in "
    "about 3 s on a 2-core VM (reading, counting, scoring, saving); orders 3 and 4 give test "
    "148.3 and 142.7 (bench/ngram_ptb.py, bench/results/ngram_ptb.md)."
)
MODEL_DIR = "model"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = HelpFormatter
    p.description = (
        "Count an n-gram language model with interpolated modified Kneser-Ney smoothing (Chen & "
        "Goodman 1998) on Penn Treebank-format text (one sentence per line, <eos> appended to "
        "each; words outside the training vocabulary are <unk>) and report validation/test "
        "perplexity, comparable with `rnncore train lm`'s."
    )
    p.epilog = MEASURED
    io = p.add_argument_group("data and output")
    io.add_argument(
        "--data",
        required=True,
        metavar="PATH",
        help="folder with ptb.train.txt, ptb.valid.txt and ptb.test.txt",
    )
    io.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help=f"output directory: metrics.json, train.log and the model in {MODEL_DIR}/",
    )
    io.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier run's files in DIR (without it a DIR that holds a run is refused)",
    )
    m = p.add_argument_group("model")
    m.add_argument(
        "--order",
        type=int,
        default=5,
        metavar="N",
        help="longest n-gram: the next word is predicted from the N-1 words before it",
    )
    add_threads_argument(io)  # every subcommand takes it; counting itself runs on one core


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.order < 1:
        raise TaskError(f"--order must be >= 1, got {args.order}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise TaskError(f"--out {out} exists and is not a directory")
    start = time.perf_counter()
    corpus = load_ptb(args.data)  # an empty or unreadable file: DataFormatError naming it
    eos = corpus.vocab.eos_id
    splits = {
        name: split_sentences(ids, eos)
        for name, ids in (("train", corpus.train), ("valid", corpus.valid), ("test", corpus.test))
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.log").unlink(missing_ok=True)  # a fresh run starts a fresh log
    fit_start = time.perf_counter()
    model = KneserNeyLM(args.order).fit(splits["train"], corpus.vocab)
    train_seconds = time.perf_counter() - fit_start
    log_line(
        out,
        f"counted {corpus.train.size} tokens, vocabulary {len(corpus.vocab)}: "
        f"{', '.join(f'{g} {k}-grams' for k, g in enumerate(model.ngrams, 1))} "
        f"({train_seconds:.1f} s)",
    )
    valid, test = model.evaluate(splits["valid"]), model.evaluate(splits["test"])
    model.save(out / MODEL_DIR)
    result = {
        "task": NAME,
        "valid": valid,
        "test": test,
        "wall_seconds": time.perf_counter() - start,
        "train_seconds": train_seconds,
        "model_type": type(model).__name__,
        "model_config": model.config(),
        "data": {
            "vocab_size": len(corpus.vocab),
            "train_tokens": int(corpus.train.size),
            "valid_tokens": int(corpus.valid.size),
            "test_tokens": int(corpus.test.size),
        },
        "options": options(args),
        "checkpoint": os.fspath(out / MODEL_DIR),
    }
    write_json(out / "metrics.json", result)
    for name, metrics in (("valid", valid), ("test", test)):
        log_line(out, f"{name + ':':6s} loss {metrics['loss']:.4f}  ppl {metrics['ppl']:.4f}")
    log_line(out, f"wrote {out / 'metrics.json'} and {out / MODEL_DIR}")
    return result


def is_run(path: str | os.PathLike[str]) -> bool:
    """True for an `rnncore train ngram` output directory or its model folder (which hold no
    checkpoint: `rnncore eval` reads them here rather than as a trained network)."""
    p = Path(path)
    return (p / MODEL_DIR / META_FILE).is_file() or (p / META_FILE).is_file()


def evaluate_run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """`rnncore eval DIR --data PATH` on an n-gram run: ``{split: {"loss", "ppl"}}`` on a PTB
    folder's valid and test files, or on the one file given (named by its file name), per token
    with ``<eos>`` included and unknown words as ``<unk>``: the numbers the run's metrics.json
    holds for its own data."""
    from .lm import eval_files, load_ngram_run

    if args.interpolate is not None:
        raise TaskError(
            f"{args.dir} is an n-gram run: --interpolate mixes an RNN language model (DIR, an "
            "`rnncore train lm` run) with an n-gram (NGRAM_DIR)"
        )
    if args.batch_size is not None:
        raise TaskError("--batch-size does not apply to an n-gram model (it reads no batches)")
    model, _ = load_ngram_run(args.dir, what="")
    eos = model.vocab.eos_id
    out = {}
    for name, f in eval_files(args.data).items():
        if not f.is_file():
            raise TaskError(f"--data {args.data}: no file {f}")
        ids = model.vocab.encode(tok for sent in read_ptb(f) for tok in sent)
        out[name] = model.evaluate(split_sentences(ids, eos))
    return out
