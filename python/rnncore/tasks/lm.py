"""`rnncore train lm`: a word-level language model on Penn Treebank-format files.

The defaults are the "small" model of Zaremba et al. (2014): 2 × 200 LSTM, truncated BPTT over 20
steps, batch 20, plain SGD halved every epoch after the 4th, 13 epochs, weights initialised
U(-0.1, 0.1), no dropout (test perplexity 114.5 in the paper). Their lr 1 and gradient-norm clip 5
apply to a loss summed over the 20 steps of a window (and averaged over the batch); rnncore's
loss is the mean over every token, 20 times smaller, so the same updates are lr 20 and clip 0.25
here (PyTorch's word_language_model example uses the same pair for the same reason).
The code here is shared with ``charlm``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from ..data import BPTTBatches, LMCorpus, Vocab, batchify, load_ptb, read_ptb
from ..models import LanguageModel
from ._common import (
    DecayAfter,
    TaskError,
    add_common_arguments,
    check_common,
    evaluate_splits,
    make_optimizer,
    train_and_report,
)

NAME = "lm"
HELP = "word-level language model on a PTB-format folder (ptb.{train,valid,test}.txt)"
DEFAULTS: dict[str, Any] = dict(
    cell="lstm",
    layers=2,
    hidden=200,
    embed=200,
    dropout=0.0,
    zoneout=0.0,
    recurrent_dropout=0.0,
    epochs=13,
    batch_size=20,
    optimizer="sgd",
    lr=20.0,  # = Zaremba's lr 1 on a loss summed over the BPTT window (see the module docstring)
    clip=0.25,  # = their clip 5, likewise
)
#: what the defaults were measured on (the end of `rnncore train lm --help`)
MEASURED = (
    "Defaults measured on PTB (Mikolov's split, 930k training tokens): test perplexity 111.3 "
    "after the 13 default epochs (Zaremba et al. report 114.5), about 590 s per epoch at 1 "
    "thread on a 2-core VM, measured with --eval-batch-size 1 (bench/quality_tasks1.py, "
    "bench/results/quality.md). Not measured on other corpora."
)


def add_lm_arguments(
    p: argparse.ArgumentParser,
    *,
    bptt: int,
    eval_batch_size: int,
    init_range: float,
    lr_decay: float,
    decay_after: int,
) -> None:
    """The options of both language-model tasks."""
    g = p.add_argument_group("language model")
    g.add_argument(
        "--bptt",
        type=int,
        default=bptt,
        metavar="N",
        help="truncated-BPTT window: steps per batch; the state carries over to the next window",
    )
    g.add_argument(
        "--eval-batch-size",
        type=int,
        default=eval_batch_size,
        metavar="N",
        help="columns of the validation/test streams",
    )
    g.add_argument(
        "--tie-weights",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="the output layer reuses the embedding matrix (needs --embed == --hidden)",
    )
    g.add_argument(
        "--init-range",
        type=float,
        default=init_range,
        metavar="X",
        help="initialise every weight U(-X, X) (0: the layers' own defaults)",
    )
    g.add_argument(
        "--lr-decay",
        type=float,
        default=lr_decay,
        metavar="X",
        help="multiply the learning rate by X every epoch after --decay-after (1: constant)",
    )
    g.add_argument(
        "--decay-after",
        type=int,
        default=decay_after,
        metavar="N",
        help="epochs at the initial learning rate before --lr-decay applies",
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = MEASURED
    p.description = (
        "Train a word-level LSTM/GRU/RNN language model on Penn Treebank-format text (one "
        "sentence per line, <eos> appended to each; words outside the training vocabulary are "
        "<unk>) and report validation/test perplexity. The defaults are Zaremba et al.'s (2014) "
        "small model."
    )
    add_common_arguments(
        p,
        DEFAULTS,
        data_help="folder with ptb.train.txt, ptb.valid.txt and ptb.test.txt",
    )
    add_lm_arguments(p, bptt=20, eval_batch_size=10, init_range=0.1, lr_decay=0.5, decay_after=4)


def check_lm(args: argparse.Namespace) -> None:
    check_common(args)
    for name in ("bptt", "eval_batch_size"):
        if getattr(args, name) < 1:
            raise TaskError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.tie_weights and args.embed != args.hidden:
        raise TaskError(
            f"--tie-weights needs --embed == --hidden, got {args.embed} and {args.hidden}"
        )
    if args.init_range < 0 or args.lr_decay <= 0 or args.decay_after < 0:
        raise TaskError("--init-range and --decay-after must be >= 0, --lr-decay > 0")


def stream_batches(ids: np.ndarray, batch_size: int, bptt: int, what: str) -> BPTTBatches:
    """BPTT windows over ``ids`` cut into ``batch_size`` columns; TaskError when too short."""
    if ids.size < 2 * batch_size:
        raise TaskError(
            f"{what} has {ids.size} tokens: too few for {batch_size} columns (batch size); "
            "use a smaller batch size"
        )
    return BPTTBatches(batchify(ids, batch_size), bptt)


def train_lm(
    args: argparse.Namespace,
    corpus: LMCorpus,
    *,
    char_level: bool,
    extra: dict[str, Any],
    names: tuple[str, str, str],
) -> dict[str, Any]:
    """Build, train and report a LanguageModel on ``corpus`` (both LM tasks)."""
    vocab = corpus.vocab
    model = LanguageModel(
        len(vocab),
        args.embed,
        args.hidden,
        num_layers=args.layers,
        cell=args.cell,
        dropout=args.dropout,
        tie_weights=args.tie_weights,
        seed=args.seed,
        zoneout=args.zoneout,
        recurrent_dropout=args.recurrent_dropout,
        layer_norm=args.layer_norm,
    )
    model.char_level = char_level
    if args.init_range > 0:
        model.init_uniform(args.init_range, seed=args.seed)
    train = stream_batches(corpus.train, args.batch_size, args.bptt, names[0])
    valid = stream_batches(corpus.valid, args.eval_batch_size, args.bptt, names[1])
    test = stream_batches(corpus.test, args.eval_batch_size, args.bptt, names[2])
    opt = make_optimizer(args, model.parameters())
    sched = None if args.lr_decay == 1.0 else DecayAfter(opt, args.decay_after, args.lr_decay)
    extra = dict(extra, bptt=args.bptt, eval_batch_size=args.eval_batch_size)
    info = {
        "vocab_size": len(vocab),
        "train_tokens": int(corpus.train.size),
        "valid_tokens": int(corpus.valid.size),
        "test_tokens": int(corpus.test.size),
    }
    return train_and_report(
        args,
        model,
        train,
        valid,
        test,
        optimizer=opt,
        scheduler=sched,
        monitor="loss",
        mode="min",
        vocab=vocab,
        extra=extra,
        data_info=info,
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    check_lm(args)
    corpus = load_ptb(args.data)
    root = Path(args.data)
    names = tuple(str(root / f"ptb.{s}.txt") for s in ("train", "valid", "test"))
    return train_lm(args, corpus, char_level=False, extra={"task": NAME}, names=names)


# ---- eval / sample -----------------------------------------------------------------------------
def eval_batch_size(ckpt: Any, args: argparse.Namespace) -> int:
    """--batch-size of `rnncore eval` if given, else the one the model was validated with."""
    given = getattr(args, "batch_size", None)
    return given if given is not None else int(ckpt.extra.get("eval_batch_size", 10))


def evaluate(ckpt: Any, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Perplexity on a PTB folder's valid and test files, or on one file of that format."""
    path = Path(args.data)
    files = (
        {s: path / f"ptb.{s}.txt" for s in ("valid", "test")}
        if path.is_dir()
        else {path.name: path}
    )
    bs, bptt = eval_batch_size(ckpt, args), int(ckpt.extra.get("bptt", 35))
    splits = {}
    for name, f in files.items():
        ids = ckpt.vocab.encode(tok for sent in read_ptb(f) for tok in sent)
        splits[name] = stream_batches(ids, bs, bptt, str(f))
    return evaluate_splits(ckpt.model, splits)


def _word_id(vocab: Vocab, word: str) -> int:
    """A prompt word's id: as written, else lower-cased (PTB is lower-case), else <unk>."""
    if word in vocab:
        return vocab.index(word)
    return vocab.index(word.lower()) if word.lower() in vocab else vocab.index(word)


def sample(ckpt: Any, args: argparse.Namespace) -> str:
    """The prompt and its sampled continuation; each <eos> becomes a line break."""
    vocab = ckpt.vocab
    words = args.prompt.split()
    ids = [_word_id(vocab, w) for w in words]
    start = ids if ids else [vocab.eos_id if vocab.eos_id is not None else 0]
    out = ckpt.model.sample(
        start, args.length, temperature=args.temperature, top_k=args.top_k, seed=args.seed
    )
    tokens = vocab.decode(ids) + vocab.decode(out)
    eos = vocab.specials.get("eos")
    text = " ".join(tokens)
    if eos is not None:
        text = text.replace(f" {eos} ", "\n").replace(eos, "\n").strip(" ")
    return text
