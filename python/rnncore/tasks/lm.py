"""`rnncore train lm`: a word-level language model on Penn Treebank-format files.

The defaults are the "small" model of Zaremba et al. (2014): 2 × 200 LSTM, truncated BPTT over 20
steps, batch 20, plain SGD halved every epoch after the 4th, 13 epochs, weights initialised
U(-0.1, 0.1), no dropout (test perplexity 114.5 in the paper). Their lr 1 and gradient-norm clip 5
apply to a loss summed over the 20 steps of a window (and averaged over the batch); rnncore's
loss is the mean over every token, 20 times smaller, so the same updates are lr 20 and clip 0.25
here (PyTorch's word_language_model example uses the same pair for the same reason).
The code here is shared with ``charlm``. ``rnncore eval DIR --interpolate NGRAM_DIR`` mixes a
word model with an ``rnncore train ngram`` model per token (:func:`interpolate`).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..data import BPTTBatches, LMCorpus, Vocab, batchify, load_ptb, read_ptb
from ..models import LanguageModel
from ..nn import inference_mode
from ._common import (
    DecayAfter,
    TaskError,
    add_common_arguments,
    add_embeddings_arguments,
    check_common,
    evaluate_splits,
    given,
    load_embeddings,
    make_optimizer,
    train_and_report,
    use_embeddings,
    write_json,
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
    "bench/results/quality.md). Not measured on other corpora. These defaults are the LSTM's: "
    "with --cell rnn (tanh) lr 20 diverges on PTB; lr 4 was the best of 0.5-8 and reached test "
    "perplexity 154.6 in 6 epochs (bench/ptb_table.py, bench/results/ptb_table.md)."
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
    add_embeddings_arguments(p)


def check_lm(args: argparse.Namespace) -> None:
    check_common(args)
    for name in ("bptt", "eval_batch_size"):
        if getattr(args, name) < 1:
            raise TaskError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    # with --embeddings and no --embed, the file sets the size: checked in train_lm
    from_file = getattr(args, "embeddings", None) is not None and not given(args, "embed")
    if not from_file:
        _check_tie(args)
    if args.init_range < 0 or args.lr_decay <= 0 or args.decay_after < 0:
        raise TaskError("--init-range and --decay-after must be >= 0, --lr-decay > 0")


def _check_tie(args: argparse.Namespace) -> None:
    if args.tie_weights and args.embed != args.hidden:
        by = getattr(args, "_embed_fixed_by", None)  # vectors loaded by load_embeddings
        raise TaskError(
            f"--tie-weights needs --embed == --hidden, got {args.embed} and {args.hidden}"
            + (f" ({by} sets --embed)" if by else "")
        )


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
    vectors = load_embeddings(args, vocab)  # sets args.embed to the file's size
    _check_tie(args)
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
    use_embeddings(args, model.embedding, vectors)  # with --tie-weights, the output layer's too
    train = stream_batches(corpus.train, args.batch_size, args.bptt, names[0])
    valid = stream_batches(corpus.valid, args.eval_batch_size, args.bptt, names[1])
    test = stream_batches(corpus.test, args.eval_batch_size, args.bptt, names[2])
    opt = make_optimizer(args, model)
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
    files = eval_files(args.data)
    bs, bptt = eval_batch_size(ckpt, args), int(ckpt.extra.get("bptt", 35))
    splits = {}
    for name, f in files.items():
        ids = ckpt.vocab.encode(tok for sent in read_ptb(f) for tok in sent)
        splits[name] = stream_batches(ids, bs, bptt, str(f))
    return evaluate_splits(ckpt.model, splits)


def eval_files(data: str) -> dict[str, Path]:
    """{split name: file} that `rnncore eval` scores: a PTB folder's valid and test files, or
    the one file given."""
    path = Path(data)
    if path.is_dir():
        return {s: path / f"ptb.{s}.txt" for s in ("valid", "test")}
    return {path.name: path}


# ---- eval --interpolate: the RNN mixed with a Kneser-Ney n-gram -------------------------------
#: weights tried on the validation file when --weight is not given: 0, 0.05, ..., 1
WEIGHT_GRID = tuple(round(0.05 * i, 2) for i in range(21))


def stream_logprobs(model: Any, ids: np.ndarray, window: int) -> np.ndarray:
    """Natural log-probability of every token of ``ids`` but the first, each given all the
    tokens before it: the stream read as one column (batch size 1), ``window`` steps per call
    with the state carried across calls, as `rnncore eval --batch-size 1` reads it.

    Args:
        model: a LanguageModel.
        ids: int [N] token ids, N >= 2.
        window: steps per forward call (the result does not depend on it beyond rounding).
    Returns:
        float64 [N - 1]: log p(ids[i + 1] | ids[: i + 1]).
    """
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    out = np.empty(ids.size - 1)
    state = None
    with inference_mode(model):
        for i in range(0, ids.size - 1, window):
            n = min(window, ids.size - 1 - i)
            logits, state = model.forward(ids[i : i + n, None], state)
            # copies: the next call must not read a buffer the engine reuses
            state = tuple(s.copy() for s in state) if isinstance(state, tuple) else state.copy()
            z = logits[:, 0, :].astype(np.float64)  # [n, V]
            top = z.max(axis=1)
            lse = top + np.log(np.exp(z - top[:, None]).sum(axis=1))
            out[i : i + n] = z[np.arange(n), ids[i + 1 : i + 1 + n]] - lse
    return out


def mix_logprobs(rnn: np.ndarray, ngram: np.ndarray, weight: float) -> np.ndarray:
    """log(weight · p_rnn + (1 - weight) · p_ngram) per token, from the two models' natural
    log-probabilities (float64 [N] each); weight 0 and 1 give one model's values exactly."""
    if weight <= 0.0:
        return ngram.copy()
    if weight >= 1.0:
        return rnn.copy()
    return np.logaddexp(math.log(weight) + rnn, math.log1p(-weight) + ngram)


def _loss_ppl(logprobs: np.ndarray) -> dict[str, float]:
    loss = float(-np.mean(logprobs))
    return {"loss": loss, "ppl": math.exp(min(loss, 700.0))}


def load_ngram_run(path: str, what: str = "--interpolate") -> tuple[Any, Path]:
    """(KneserNeyLM, its model folder) of an `rnncore train ngram` output directory (or of the
    model folder itself); TaskError naming the directory (as ``what`` + path) when it is not
    one."""
    from ..ngram import META_FILE, KneserNeyLM
    from .ngram import MODEL_DIR

    p = Path(path)
    where = f"{what} {p}".strip()
    if not p.is_dir():
        raise TaskError(f"{where}: no such directory (give an `rnncore train ngram` run)")
    model_dir = p if (p / META_FILE).is_file() else p / MODEL_DIR
    if not (model_dir / META_FILE).is_file():
        raise TaskError(f"{where}: not an `rnncore train ngram` run (no {MODEL_DIR}/{META_FILE})")
    try:
        return KneserNeyLM.load(model_dir), model_dir
    except ValueError as e:
        raise TaskError(f"{where}: unreadable n-gram model: {e}") from None


def _vocab_difference(a: Vocab, b: Vocab) -> str:
    """What first differs between two vocabularies, for the mismatch error."""
    if len(a) != len(b):
        return f"{len(a)} tokens against {len(b)}"
    diff = [i for i, (x, y) in enumerate(zip(a.itos, b.itos, strict=True)) if x != y]
    if not diff:
        return "the same tokens with different special roles"
    return f"token {diff[0]} is {a.itos[diff[0]]!r} against {b.itos[diff[0]]!r}"


def interpolate(ckpt: Any, args: argparse.Namespace) -> dict[str, Any]:
    """`rnncore eval DIR --interpolate NGRAM_DIR [--weight L]`: per-token linear interpolation
    p = L·p_rnn + (1 - L)·p_ngram of this language model and a Kneser-Ney n-gram.

    Every token of each file counts, ``<eos>`` included, the same tokens for both models, each
    model read as it was trained: the RNN reads the file as one stream with batch size 1 (its
    state carried across sentences) after a start ``<eos>``, so that it also predicts the first
    token (its own `rnncore eval` skips the first token of each batch column); the n-gram
    predicts each sentence from the start marker ``<eos>`` as when it was fit. Without --weight,
    L is the weight of :data:`WEIGHT_GRID` with the highest validation likelihood (the first of
    equals), then applied to the test file. Writes the result as JSON to --out (default
    DIR/interpolation.json) and returns it.
    """
    from ..ngram import split_sentences

    ngram, ngram_dir = load_ngram_run(args.interpolate)
    vocab = ckpt.vocab
    if ngram.vocab != vocab:
        raise TaskError(
            f"the vocabularies differ: the language model in {args.dir} and the n-gram in "
            f"{args.interpolate} ({_vocab_difference(vocab, ngram.vocab)}); train both on the "
            "same training file"
        )
    files = eval_files(args.data)
    if args.weight is None and "valid" not in files:
        raise TaskError(
            f"--interpolate without --weight chooses the weight on validation data: --data must "
            f"be a PTB folder (ptb.valid.txt, ptb.test.txt), got the file {args.data}"
        )
    out = Path(args.out) if args.out else Path(args.dir) / "interpolation.json"
    if out.is_dir():
        raise TaskError(f"--out {out} is a directory; give a JSON file name")
    eos = vocab.eos_id
    window = int(ckpt.extra.get("bptt", 35))
    scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, f in files.items():
        ids = vocab.encode(tok for sent in read_ptb(f) for tok in sent)
        ng = ngram.token_logprobs(split_sentences(ids, eos))
        rnn = stream_logprobs(ckpt.model, np.concatenate([[eos], ids]), window)
        if rnn.shape != ng.shape:  # both score ids[0:], one value per token
            raise AssertionError(f"{f}: {rnn.size} RNN scores against {ng.size} n-gram scores")
        scores[name] = (rnn, ng)
    grid = []
    if args.weight is None:
        rnn, ng = scores["valid"]
        grid = [{"weight": w, **_loss_ppl(mix_logprobs(rnn, ng, w))} for w in WEIGHT_GRID]
        weight = min(grid, key=lambda r: r["loss"])["weight"]
    else:
        weight = float(args.weight)
    result: dict[str, Any] = {
        "lm": str(args.dir),
        "ngram": str(args.interpolate),
        "ngram_order": ngram.order,
        "data": str(args.data),
        "weight": weight,
        "weight_from": "given (--weight)" if args.weight is not None else "valid, grid step 0.05",
        "tokens_scored": (
            "every token of each file, <eos> included, the same for both models; RNN: the file "
            "as one stream, batch size 1, after a start <eos>; n-gram: each sentence from <eos>"
        ),
    }
    for name, (rnn, ng) in scores.items():
        result[name] = {
            "tokens": int(rnn.size),
            "rnn": _loss_ppl(rnn),
            "ngram": _loss_ppl(ng),
            "mix": _loss_ppl(mix_logprobs(rnn, ng, weight)),
        }
    if grid:
        result["valid_by_weight"] = grid
    write_json(out, result)
    return result


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
