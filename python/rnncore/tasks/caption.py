"""`rnncore train caption`: one-to-many generation, a caption from one feature vector.

Data: without ``--data``, synthetic scenes generated on the spot (small images of two coloured
shapes, captions such as "a red circle above a blue square"; see
:mod:`rnncore.data.scenes`), so the task runs with no download. With ``--data DIR``: files
``train.features.npy`` [N, F] and ``train.captions.txt`` (one caption per line, aligned by line),
optionally ``valid.*`` and ``test.*`` (else held out from train). ``--write-scenes DIR`` writes the
generated scenes in that format. Reported: loss, and on the test set the exact-match rate and
BLEU of the decoded captions.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import distributed as dist
from ..data import Vocab, read_caption_data, synthetic_scenes, write_caption_data
from ..metrics import corpus_bleu
from ..models import Captioner
from ._common import (
    TaskError,
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
from .adding import ArrayBatches, add_long_range_arguments, check_sizes

NAME = "caption"
HELP = "captioning (one-to-many): synthetic scenes, or features .npy + captions text"
DEFAULTS: dict[str, Any] = dict(
    cell="lstm",
    layers=1,
    hidden=128,
    embed=32,
    dropout=0.0,
    epochs=5,
    batch_size=64,
    optimizer="adam",
    lr=3e-3,
    clip=5.0,
)
#: what the defaults were measured on (the end of `rnncore train caption --help`)
MEASURED = (
    "Defaults measured on the default synthetic scenes (6,000 for training): every caption of "
    "600 held-out scenes exactly right after the 5 default epochs, about 2 s per epoch at 1 "
    "thread (bench/quality_tasks2.py, bench/results/quality.md). Not measured on real image "
    "features."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = MEASURED
    p.description = (
        "Train a caption decoder whose initial state comes from each example's feature vector, "
        "and report the exact-match rate and BLEU of its greedy (or beam) captions on held-out "
        "examples. Without --data it generates synthetic scenes."
    )
    add_long_range_arguments(p, DEFAULTS, long_range=False)
    d = p.add_argument_group("data")
    d.add_argument(
        "--data",
        default=None,
        metavar="DIR",
        help="folder with train.features.npy + train.captions.txt (and valid.*, test.*); "
        "default: synthetic scenes",
    )
    d.add_argument(
        "--scenes",
        type=int,
        default=6000,
        metavar="N",
        help="synthetic training scenes (validation and test: N/10 each)",
    )
    d.add_argument(
        "--features",
        choices=("pixels", "pooled"),
        default="pixels",
        help="features of the synthetic scenes: flattened pixels or 2x2-pooled",
    )
    d.add_argument(
        "--write-scenes",
        default=None,
        metavar="DIR",
        help="also write the synthetic scenes there as .npy + captions files",
    )
    d.add_argument(
        "--holdout-fraction",
        type=float,
        default=0.1,
        metavar="F",
        help="--data without valid/test files: fraction held out for each",
    )
    add_embeddings_arguments(p)
    m = p.add_argument_group("captioner")
    m.add_argument(
        "--feed-features", action="store_true", help="also feed the features to every decoder step"
    )
    m.add_argument("--beam", type=int, default=1, metavar="K", help="beam width (1: greedy)")
    m.add_argument(
        "--max-decode-len", type=int, default=30, metavar="N", help="at most N decoding steps"
    )


Split = tuple[np.ndarray, list[list[str]]]


def load_splits(args: argparse.Namespace) -> tuple[dict[str, Split], str]:
    """{"train", "valid", "test"} -> (features [N, F], captions) and a description."""
    if args.data is None:
        n = args.scenes
        parts = {"train": (n, 1), "valid": (max(1, n // 10), 2), "test": (max(1, n // 10), 3)}
        splits = {}
        for name, (size, seed_offset) in parts.items():
            sc = synthetic_scenes(size, seed=args.seed * 10 + seed_offset)
            splits[name] = (sc.features(args.features), sc.captions)
            if args.write_scenes:
                write_caption_data(args.write_scenes, splits[name][0], sc.captions, prefix=name)
        return splits, f"synthetic scenes ({args.features} features)"
    root = Path(args.data)
    if not root.is_dir():
        raise TaskError(
            f"--data {root}: not a folder (expected train.features.npy and "
            "train.captions.txt in it)"
        )
    splits = {}
    for name in ("train", "valid", "test"):
        f, c = root / f"{name}.features.npy", root / f"{name}.captions.txt"
        if f.is_file() or c.is_file() or name == "train":
            splits[name] = read_caption_data(f, c)
    feats, caps = splits["train"]
    missing = [s for s in ("valid", "test") if s not in splits]
    if missing:
        perm = np.random.default_rng([args.seed, 777]).permutation(len(caps))
        k = max(1, int(round(len(caps) * args.holdout_fraction)))
        if k * len(missing) >= len(caps):
            raise TaskError(
                f"{root}: too few training examples ({len(caps)}) to hold out {', '.join(missing)}"
            )
        for j, name in enumerate(missing):
            idx = np.sort(perm[j * k : (j + 1) * k])
            splits[name] = (feats[idx], [caps[i] for i in idx])
        keep = np.sort(perm[len(missing) * k :])
        splits["train"] = (feats[keep], [caps[i] for i in keep])
    dims = {s: v[0].shape[1] for s, v in splits.items()}
    if len(set(dims.values())) != 1:
        raise TaskError(f"{root}: the feature sizes of the splits differ: {dims}")
    return splits, f"features + captions in {root}"


def caption_batches(
    model: Captioner, split: Split, vocab: Vocab, batch_size: int, *, shuffle: bool, seed: int = 0
) -> ArrayBatches:
    feats, caps = split
    ids = [vocab.encode(c) for c in caps]

    def collate(idx: np.ndarray) -> Any:
        return model.make_batch(feats[idx], [ids[i] for i in idx])

    return ArrayBatches(len(caps), batch_size, collate, shuffle=shuffle, seed=seed)


def caption_scores(
    model: Captioner, split: Split, vocab: Vocab, *, beam: int, max_len: int
) -> dict[str, Any]:
    """Exact-match rate and BLEU of the decoded captions of a split."""
    start = time.perf_counter()
    feats, caps = split
    out = dist.map_slices(  # each rank decodes its part of the split
        lambda part: model.caption(part, beam_width=beam, max_len=max_len), feats
    )
    hyps = [vocab.decode(o) for o in out]
    exact = float(np.mean([h == c for h, c in zip(hyps, caps, strict=True)]))
    bleu = corpus_bleu([" ".join(h) for h in hyps], [" ".join(c) for c in caps])
    return {
        "exact_match": exact,
        "bleu": bleu.score,
        "bleu_backend": bleu.backend,
        "bleu_signature": bleu.signature,
        "examples": [
            {"reference": " ".join(c), "caption": " ".join(h)}
            for h, c in list(zip(hyps, caps, strict=True))[:10]
        ],
        "decode_seconds": time.perf_counter() - start,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    check_common(args)
    check_sizes(args, "embed", "scenes", "beam", "max_decode_len")
    if not 0 < args.holdout_fraction < 0.5:
        raise TaskError(f"--holdout-fraction must be in (0, 0.5), got {args.holdout_fraction}")
    splits, source = load_splits(args)
    vocab = Vocab.build(splits["train"][1], bos=True, eos=True)
    vectors = load_embeddings(args, vocab)  # sets args.embed to the file's size
    model = Captioner(
        splits["train"][0].shape[1],
        len(vocab),
        embed_dim=args.embed,
        hidden_size=args.hidden,
        num_layers=args.layers,
        cell=args.cell,
        feed_features=args.feed_features,
        dropout=args.dropout,
        padding_idx=vocab.pad_id,
        bos_id=vocab.bos_id,
        eos_id=vocab.eos_id,
        seed=args.seed,
    )
    use_embeddings(args, model.embedding, vectors)
    bs = args.batch_size
    train = caption_batches(model, splits["train"], vocab, bs, shuffle=True, seed=args.seed)
    valid = caption_batches(model, splits["valid"], vocab, bs, shuffle=False)
    test = caption_batches(model, splits["test"], vocab, bs, shuffle=False)
    result = train_and_report(
        args,
        model,
        train,
        valid,
        test,
        optimizer=make_optimizer(args, model),
        vocab=vocab,
        extra={"task": NAME, "max_decode_len": args.max_decode_len, "beam": args.beam},
        data_info={
            "source": source,
            **{f"{k}_examples": len(v[1]) for k, v in splits.items()},
            "features": int(splits["train"][0].shape[1]),
            "vocab_size": len(vocab),
        },
    )
    scores = caption_scores(
        model, splits["test"], vocab, beam=args.beam, max_len=args.max_decode_len
    )
    say(
        args,
        f"test captions: exact match {scores['exact_match']:.3f}, BLEU {scores['bleu']:.2f} "
        f"({len(splits['test'][1])} examples; {bleu_note(scores)})",
    )
    for ex in scores["examples"][:3]:
        say(args, f"  {ex['caption']}   (ref: {ex['reference']})")
    result["test_exact_match"] = scores["exact_match"]
    result["test_bleu"] = scores["bleu"]
    result["captions"] = scores
    write_json(Path(args.out) / "metrics.json", result)
    return result
