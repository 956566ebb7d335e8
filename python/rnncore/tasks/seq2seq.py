"""`rnncore train seq2seq`: sentence translation with an encoder-decoder, scored by BLEU.

Data: a tab-separated pairs file (Tatoeba / manythings.org ``fra.txt``: ``English<TAB>French``
per line, further columns ignored; ``--reverse-pair`` translates the second column into the
first), or two line-aligned files (``--data train.en --target train.de``, plain or .gz). Pairs
longer than ``--max-words`` on either side are dropped; a fixed ``--test-fraction`` of the pairs
(a permutation with a fixed seed, independent of ``--seed``) is held out for BLEU, and
``--valid-fraction`` more for choosing the best epoch. A corpus's official splits replace them:
``--valid-data`` / ``--test-data`` (a pairs file, or with ``--valid-target`` / ``--test-target``
two parallel files), read as the training data but never length-filtered. BLEU is sacreBLEU's
corpus BLEU (:func:`rnncore.metrics.corpus_bleu`) of the decoded test sentences.

``rnncore translate DIR TEXT`` (and ``rnncore predict DIR TEXT``) translate with the result.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import distributed as dist
from ..data import (
    DataFormatError,
    build_translation_vocabs,
    normalize_text,
    read_parallel,
    read_tatoeba,
    tokenize,
)
from ..data._io import read_lines
from ..metrics import corpus_bleu
from ..models import Seq2Seq
from ._common import (
    SampledBatches,
    TaskError,
    add_common_arguments,
    add_embeddings_arguments,
    bleu_note,
    check_common,
    load_embeddings,
    make_optimizer,
    say,
    train_and_report,
    use_embeddings,
    write_json,
)

NAME = "seq2seq"
HELP = "translation with an encoder-decoder (Tatoeba TSV pairs or parallel files), BLEU"
DEFAULTS: dict[str, Any] = dict(
    cell="lstm",
    layers=1,
    hidden=256,
    embed=128,
    bidirectional=False,
    dropout=0.0,
    epochs=10,
    batch_size=64,
    optimizer="adam",
    lr=2e-3,
    clip=5.0,
)
#: what the defaults were measured on (the end of `rnncore train seq2seq --help`)
MEASURED = (
    "Defaults measured on Tatoeba English-French (pairs of at most 10 words, 10% held out, 98.5k"
    " training pairs) with --min-freq 2 and 2 epochs (the default is 10): test BLEU 19.9 with "
    "the default --attention none and 27.3 with --attention general, 680 and 900 s per epoch at"
    " 1 thread on a 2-core VM (bench/quality_tasks2.py, bench/results/quality.md). The default "
    "10 epochs have not been measured (2 to 2.5 hours on that data at 1 thread)."
)
SPLIT_SEED = 12345  # the held-out sentences depend on the data only

Pair = tuple[list[str], list[str]]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = MEASURED
    p.description = (
        "Train an encoder-decoder (optionally with Luong attention) on sentence pairs and "
        "report the BLEU of its translations of held-out sentences."
    )
    add_common_arguments(
        p,
        DEFAULTS,
        data_help="tab-separated pairs file (Tatoeba fra.txt format), or with --target the "
        "source side of two line-aligned files",
        bidirectional=True,
    )
    add_embeddings_arguments(p, target=True)
    d = p.add_argument_group("translation data")
    d.add_argument(
        "--target", default=None, metavar="FILE", help="target-language file aligned with --data"
    )
    d.add_argument(
        "--reverse-pair",
        action="store_true",
        help="translate the second column (or --target) into the first (--data)",
    )
    d.add_argument(
        "--max-words",
        type=int,
        default=10,
        metavar="N",
        help="keep pairs with at most N tokens on both sides (0: no limit)",
    )
    d.add_argument(
        "--max-pairs",
        type=int,
        default=None,
        metavar="N",
        help="use only the first N pairs after filtering (quick trials)",
    )
    d.add_argument(
        "--min-freq",
        type=int,
        default=1,
        metavar="N",
        help="words seen fewer times in training become <unk>",
    )
    d.add_argument(
        "--lower",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="lower-case the sentences",
    )
    d.add_argument("--strip-accents", action="store_true", help="remove accents (é -> e)")
    d.add_argument(
        "--skip-empty",
        action="store_true",
        help="drop pairs with an empty side instead of stopping with an error",
    )
    d.add_argument(
        "--test-fraction",
        type=float,
        default=0.1,
        metavar="F",
        help="held-out pairs for BLEU (fixed, whatever --seed)",
    )
    d.add_argument(
        "--valid-fraction",
        type=float,
        default=0.05,
        metavar="F",
        help="held-out pairs for choosing the best epoch",
    )
    for split, use in (("valid", "choosing the best epoch"), ("test", "the test loss and BLEU")):
        d.add_argument(
            f"--{split}-data",
            default=None,
            metavar="FILE",
            help=f"the corpus's {split} split for {use} instead of --{split}-fraction of --data: "
            f"a pairs file, or with --{split}-target the source side of two parallel files "
            "(normalised as --data, all its pairs: --max-words and --max-pairs do not apply)",
        )
        d.add_argument(
            f"--{split}-target",
            default=None,
            metavar="FILE",
            help=f"target-language file aligned with --{split}-data",
        )
    m = p.add_argument_group("encoder-decoder")
    m.add_argument(
        "--attention",
        choices=("none", "dot", "general"),
        default="none",
        help="Luong attention over the encoder outputs",
    )
    m.add_argument(
        "--context",
        action="store_true",
        help="feed the encoder's summary vector to every decoder step",
    )
    m.add_argument(
        "--reverse-source",
        action="store_true",
        help="read the source backwards (Sutskever et al. 2014)",
    )
    m.add_argument(
        "--bridge",
        choices=("linear", "sum"),
        default="linear",
        help="how a bidirectional encoder's two final states become the decoder's",
    )
    g = p.add_argument_group("decoding")
    g.add_argument("--beam", type=int, default=1, metavar="K", help="beam width (1: greedy)")
    g.add_argument(
        "--max-decode-len", type=int, default=30, metavar="N", help="at most N decoding steps"
    )
    g.add_argument(
        "--length-penalty",
        type=float,
        default=1.0,
        metavar="A",
        help="beam search ranks by log P / length^A",
    )
    g.add_argument(
        "--bleu-sentences",
        type=int,
        default=None,
        metavar="N",
        help="decode only the first N held-out sentences for BLEU (default: all)",
    )


# ---- data -------------------------------------------------------------------------------------
def check_pairs_file(path: str, skip_empty: bool) -> None:
    """Every non-blank line has two tab-separated non-empty sentences (DataFormatError naming
    the file and line otherwise, unless ``skip_empty``)."""
    for n, line in enumerate(read_lines(path, "seq2seq"), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise DataFormatError(
                path, n, f"expected at least 2 tab-separated columns, got {len(fields)}"
            )
        for col in (0, 1):
            if not fields[col].strip() and not skip_empty:
                raise DataFormatError(
                    path,
                    n,
                    f"empty {'source' if col == 0 else 'target'} sentence (column "
                    f"{col + 1}); fix the line or pass --skip-empty",
                )


def check_parallel_files(src: str, tgt: str, skip_empty: bool) -> None:
    """Equal line counts (TaskError naming both files) and no empty line (DataFormatError naming
    the file and line, unless ``skip_empty``)."""
    a, b = read_lines(src, "seq2seq"), read_lines(tgt, "seq2seq")
    if len(a) != len(b):
        raise TaskError(
            f"the parallel files are not aligned: {src} has {len(a)} lines but {tgt} has {len(b)}"
        )
    if skip_empty:
        return
    for path, lines in ((src, a), (tgt, b)):
        for n, line in enumerate(lines, 1):
            if not line.strip():
                raise DataFormatError(path, n, "empty sentence; fix the line or pass --skip-empty")


def load_pairs(args: argparse.Namespace, *, minimum: int = 3) -> list[Pair]:
    """The filtered (source, target) token pairs of the options' data (at least ``minimum``)."""
    max_len = args.max_words or None
    kw = dict(lower=args.lower, strip_accents=args.strip_accents, min_len=1, max_len=max_len)
    if args.target is None:
        check_pairs_file(args.data, args.skip_empty)
        pairs = read_tatoeba(args.data, reverse=args.reverse_pair, **kw)
    else:
        check_parallel_files(args.data, args.target, args.skip_empty)
        pairs = read_parallel(args.data, args.target, **kw)
        if args.reverse_pair:
            pairs = [(t, s) for s, t in pairs]
    if args.max_pairs is not None:
        pairs = pairs[: args.max_pairs]
    if len(pairs) < minimum:
        limit = f" with at most --max-words {args.max_words} tokens" if args.max_words else ""
        raise TaskError(
            f"{args.data}: only {len(pairs)} sentence pairs{limit}; need at least {minimum}"
        )
    return pairs


def load_split(args: argparse.Namespace, split: str) -> list[Pair] | None:
    """The pairs of ``--{split}-data`` (and ``--{split}-target``), or None when not given.

    Read as ``--data`` is (normalisation, --reverse-pair, --skip-empty), keeping every pair
    whatever its length: an official split is scored whole.
    """
    data, target = getattr(args, f"{split}_data", None), getattr(args, f"{split}_target", None)
    if data is None:
        if target is not None:
            raise TaskError(f"--{split}-target needs --{split}-data (the source side)")
        return None
    ns = argparse.Namespace(**{**vars(args), "data": data, "target": target, "max_words": 0})
    ns.max_pairs = None
    return load_pairs(ns, minimum=1)


def split_pairs(
    pairs: list[Pair], test_fraction: float, valid_fraction: float
) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """(train, valid, test) by a permutation with a fixed seed (a fraction of 0 holds out
    nothing for that split)."""
    n = len(pairs)
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    k_test = max(1, int(round(n * test_fraction))) if test_fraction > 0 else 0
    k_valid = max(1, int(round(n * valid_fraction))) if valid_fraction > 0 else 0
    if k_test + k_valid >= n:
        raise TaskError(f"--test-fraction and --valid-fraction leave no training pairs of {n}")
    test = [pairs[i] for i in np.sort(perm[:k_test])]
    valid = [pairs[i] for i in np.sort(perm[k_test : k_test + k_valid])]
    train = [pairs[i] for i in np.sort(perm[k_test + k_valid :])]
    return train, valid, test


def make_batches(
    model: Seq2Seq,
    pairs: list[Pair],
    src_vocab: Any,
    tgt_vocab: Any,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
) -> SampledBatches:
    """Batches of similar source length, as :meth:`Seq2Seq.make_batch` makes them."""
    src = [src_vocab.encode(s) for s, _ in pairs]
    tgt = [tgt_vocab.encode(t) for _, t in pairs]

    def collate(idx: np.ndarray) -> Any:
        return model.make_batch([src[i] for i in idx], [tgt[i] for i in idx])

    return SampledBatches([len(s) for s in src], batch_size, collate, shuffle=shuffle, seed=seed)


def detokenize(tokens: list[str]) -> str:
    """Tokens joined by spaces, without the space before , . ! ? ; :"""
    text = " ".join(tokens)
    for p in (" ,", " .", " !", " ?", " ;", " :"):
        text = text.replace(p, p[1:])
    return text


def bleu_of(
    model: Seq2Seq,
    pairs: list[Pair],
    src_vocab: Any,
    tgt_vocab: Any,
    *,
    beam: int,
    max_len: int,
    length_penalty: float,
) -> dict[str, Any]:
    """Corpus BLEU (sacreBLEU's definition) of the model's translations of ``pairs``."""
    start = time.perf_counter()
    sources = [src_vocab.encode(s) for s, _ in pairs]
    outputs = dist.map_slices(  # each rank decodes its part of the test set
        lambda part: model.translate(
            part, beam_width=beam, max_len=max_len, length_penalty=length_penalty, batch_size=256
        ),
        sources,
    )
    hyps = [" ".join(tgt_vocab.decode(o)) for o in outputs]
    refs = [" ".join(t) for _, t in pairs]
    score = corpus_bleu(hyps, refs)
    examples = [
        {"source": " ".join(s), "reference": r, "translation": h}
        for (s, _), r, h in list(zip(pairs, refs, hyps, strict=True))[:10]
    ]
    return {
        "bleu": score.score,
        "bleu_backend": score.backend,
        "bleu_signature": score.signature,
        "sentences": len(pairs),
        "beam": beam,
        "decode_seconds": time.perf_counter() - start,
        "examples": examples,
    }


# ---- the command ------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    check_common(args)
    for name in ("beam", "max_decode_len", "min_freq"):
        if getattr(args, name) < 1:
            raise TaskError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.max_words < 0:
        raise TaskError(f"--max-words must be >= 0, got {args.max_words}")
    for name in ("max_pairs", "bleu_sentences"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise TaskError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if not math.isfinite(args.length_penalty):
        raise TaskError(f"--length-penalty must be a finite number, got {args.length_penalty}")
    if not 0 < args.test_fraction < 1 or not 0 <= args.valid_fraction < 1:
        raise TaskError("--test-fraction must be in (0, 1) and --valid-fraction in [0, 1)")
    given = {split: load_split(args, split) for split in ("valid", "test")}
    pairs = load_pairs(args)
    train_pairs, valid_pairs, test_pairs = split_pairs(
        pairs,
        args.test_fraction if given["test"] is None else 0.0,
        args.valid_fraction if given["valid"] is None else 0.0,
    )
    valid_pairs = given["valid"] if given["valid"] is not None else valid_pairs
    test_pairs = given["test"] if given["test"] is not None else test_pairs
    src_vocab, tgt_vocab = build_translation_vocabs(train_pairs, min_freq=args.min_freq)
    src_vectors = load_embeddings(args, src_vocab)  # these two set args.embed to the files' size
    tgt_vectors = load_embeddings(args, tgt_vocab, "target_embeddings")
    model = Seq2Seq(
        len(src_vocab),
        len(tgt_vocab),
        embed_dim=args.embed,
        hidden_size=args.hidden,
        num_layers=args.layers,
        cell=args.cell,
        bidirectional=args.bidirectional,
        attention=None if args.attention == "none" else args.attention,
        context=args.context,
        bridge=args.bridge,
        reverse_source=args.reverse_source,
        dropout=args.dropout,
        padding_idx=tgt_vocab.pad_id,
        bos_id=tgt_vocab.bos_id,
        eos_id=tgt_vocab.eos_id,
        seed=args.seed,
    )
    use_embeddings(args, model.src_embedding, src_vectors)
    use_embeddings(args, model.tgt_embedding, tgt_vectors)
    bs = args.batch_size
    train = make_batches(model, train_pairs, src_vocab, tgt_vocab, bs, shuffle=True, seed=args.seed)
    valid = (
        make_batches(model, valid_pairs, src_vocab, tgt_vocab, bs, shuffle=False)
        if valid_pairs
        else None
    )
    test = make_batches(model, test_pairs, src_vocab, tgt_vocab, bs, shuffle=False)
    extra = {
        "task": NAME,
        "lower": args.lower,
        "strip_accents": args.strip_accents,
        "reverse_pair": args.reverse_pair,
        "max_words": args.max_words,
        "max_decode_len": args.max_decode_len,
        "beam": args.beam,
        "length_penalty": args.length_penalty,
    }
    result = train_and_report(
        args,
        model,
        train,
        valid,
        test,
        optimizer=make_optimizer(args, model),
        vocabs={"src": src_vocab, "tgt": tgt_vocab},
        extra=extra,
        data_info={
            "source": str(Path(args.data)) + ("" if args.target is None else f" + {args.target}"),
            "pairs": len(pairs),
            "train_pairs": len(train_pairs),
            "valid_pairs": len(valid_pairs),
            "test_pairs": len(test_pairs),
            **{
                f"{split}_source": _split_source(args, split)
                for split in ("valid", "test")
                if given[split] is not None
            },
            "src_vocab": len(src_vocab),
            "tgt_vocab": len(tgt_vocab),
        },
    )
    bleu_pairs = test_pairs[: args.bleu_sentences] if args.bleu_sentences else test_pairs
    bleu = bleu_of(
        model,
        bleu_pairs,
        src_vocab,
        tgt_vocab,
        beam=args.beam,
        max_len=args.max_decode_len,
        length_penalty=args.length_penalty,
    )
    say(
        args,
        f"test BLEU {bleu['bleu']:.2f} on {bleu['sentences']} "
        f"{'held-out' if given['test'] is None else 'test'} sentences "
        f"({'greedy' if args.beam == 1 else f'beam {args.beam}'}; {bleu_note(bleu)})",
    )
    for ex in bleu["examples"][:3]:
        say(args, f"  {ex['source']}  ->  {ex['translation']}   (ref: {ex['reference']})")
    result["test_bleu"] = bleu["bleu"]
    result["bleu"] = bleu
    write_json(Path(args.out) / "metrics.json", result)
    return result


def _split_source(args: argparse.Namespace, split: str) -> str:
    target = getattr(args, f"{split}_target")
    return str(getattr(args, f"{split}_data")) + ("" if target is None else f" + {target}")


def translate_text(
    ckpt: Any, text: str, *, beam: int | None = None, max_len: int | None = None
) -> str:
    """Translate one sentence with a checkpoint of this task (normalised as the training data)."""
    extra = ckpt.extra or {}
    vocabs = ckpt.vocabs or {}
    if "src" not in vocabs or "tgt" not in vocabs:
        raise TaskError(f"{ckpt.path}: the checkpoint has no source/target vocabularies")
    norm = normalize_text(
        text, lower=bool(extra.get("lower", True)), strip_accents=bool(extra.get("strip_accents"))
    )
    tokens = tokenize(norm, lower=False)
    if not tokens:
        raise TaskError("translate: TEXT has no words to translate")
    src = vocabs["src"].encode(tokens)
    beam = beam or int(extra.get("beam", 1))
    max_len = max_len or int(extra.get("max_decode_len", 30))
    out = ckpt.model.translate(
        [src],
        beam_width=beam,
        max_len=max_len,
        length_penalty=float(extra.get("length_penalty", 1.0)),
    )[0]
    return detokenize(vocabs["tgt"].decode(out))


def evaluate(ckpt: Any, args: argparse.Namespace) -> dict[str, Any]:
    """``rnncore eval DIR --data PAIRS``: loss, perplexity and BLEU on every pair of a
    tab-separated file (normalised and length-filtered as the training data)."""
    from ._common import evaluate_splits

    extra = ckpt.extra or {}
    vocabs = ckpt.vocabs or {}
    if "src" not in vocabs or "tgt" not in vocabs:
        raise TaskError(f"{ckpt.path}: the checkpoint has no source/target vocabularies")
    ns = argparse.Namespace(
        data=args.data,
        target=None,
        reverse_pair=bool(extra.get("reverse_pair", False)),
        max_words=int(extra.get("max_words", 0) or 0),
        max_pairs=None,
        lower=bool(extra.get("lower", True)),
        strip_accents=bool(extra.get("strip_accents", False)),
        skip_empty=False,
    )
    pairs = load_pairs(ns)
    src, tgt = vocabs["src"], vocabs["tgt"]
    batches = make_batches(ckpt.model, pairs, src, tgt, args.batch_size or 64, shuffle=False)
    metrics: dict[str, Any] = evaluate_splits(ckpt.model, {"data": batches})["data"]
    bleu = bleu_of(
        ckpt.model,
        pairs,
        src,
        tgt,
        beam=int(extra.get("beam", 1)),
        max_len=int(extra.get("max_decode_len", 30)),
        length_penalty=float(extra.get("length_penalty", 1.0)),
    )
    metrics.update(bleu=bleu["bleu"], sentences=bleu["sentences"], examples=bleu["examples"][:3])
    return metrics


def predict(ckpt: Any, args: argparse.Namespace) -> str:
    """``rnncore predict DIR TEXT`` on a translation model: the translation."""
    return translate_text(ckpt, args.text)
