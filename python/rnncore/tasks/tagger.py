"""`rnncore train tagger`: a bidirectional sequence tagger on CoNLL column files (NER or POS).

Word embeddings (lower-cased words) plus a character BiLSTM over each word as written (it sees
capitals, suffixes and unknown words; Lample et al. 2016), a bidirectional LSTM, and a softmax per
token. For BIO tags (NER) the scores are conlleval's entity precision/recall/F1 and the best epoch
is the one with the best validation F1; otherwise (POS) token accuracy.

Without a valid.txt / dev.txt, ``--valid-fraction`` of the training sentences is held out. A tag
of the validation or test file that the training data never shows is scored as conlleval scores
it: its entities count as gold entities the model never finds (the tagger gets an output for it
that training never selects, with a bias of :data:`UNSEEN_TAG_BIAS`).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Vocab, build_label_vocab, pad_sequences, read_conll, tokenize
from ..models import SequenceTagger
from ..models.tagger import IGNORE, TaggerBatch, is_bio
from ..nn.keyed import keyed_uniform
from ._common import (
    SampledBatches,
    TaskError,
    add_common_arguments,
    add_embeddings_arguments,
    check_common,
    evaluate_splits,
    holdout_split,
    load_embeddings,
    make_optimizer,
    train_and_report,
    use_embeddings,
    warn,
)

NAME = "tagger"
HELP = "sequence tagger (NER or POS) on a CoNLL-2003-style folder (train/valid/test.txt)"
DEFAULTS: dict[str, Any] = dict(
    cell="lstm",
    layers=1,
    hidden=128,
    embed=100,
    bidirectional=True,
    dropout=0.5,
    zoneout=0.0,
    recurrent_dropout=0.0,
    epochs=20,
    batch_size=32,
    optimizer="adam",
    lr=2e-3,
    clip=5.0,
)
#: what the defaults were measured on (the end of `rnncore train tagger --help`)
MEASURED = (
    "Defaults measured on CoNLL-2003 English (14k news sentences) with --hidden 200 (the "
    "default is 128): NER test F1 81.6 after 15 epochs (about 120 s per epoch at 1 thread on a "
    "2-core VM) and POS test accuracy 94.5% after 10 epochs (93 s per epoch) "
    "(bench/quality_tasks1.py, bench/results/quality.md). With the defaults as they are "
    "(--hidden 128, 20 epochs: the CRF still gains from epoch 10 to 20), NER test F1 84.30 and "
    "84.35 (seeds 0, 1) with --crf; after 10 epochs 80.6 without and 82.7 with --crf "
    "(bench/ner_crf.py, bench/results/ner_crf.md); not measured on other languages or data."
)

Sentences = list[tuple[list[str], list[str]]]

#: classifier bias of a tag only the validation or test data has: e^-30 against the other tags'
#: scores, so the tagger never predicts it (and training only pushes it further down)
UNSEEN_TAG_BIAS = -30.0


def _label_column(text: str) -> int | str:
    if text in ("ner", "pos", "chunk"):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected ner, pos, chunk or a column index, got {text!r}"
        ) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = MEASURED
    p.description = (
        "Train a many-to-many bidirectional recurrent tagger on CoNLL column files (one token "
        "per line, blank lines between sentences, -DOCSTART- lines ignored) and report entity "
        "F1 (conlleval) for BIO tags, token accuracy otherwise."
    )
    add_common_arguments(
        p,
        DEFAULTS,
        data_help="folder with train.txt, valid.txt (or dev.txt) and test.txt in CoNLL format "
        "(without valid/dev, --valid-fraction of train.txt is held out; test.txt is optional)",
        bidirectional=True,
    )
    add_embeddings_arguments(p)
    g = p.add_argument_group("tagger")
    g.add_argument(
        "--valid-fraction",
        type=float,
        default=0.1,
        metavar="F",
        help="fraction of the training sentences held out for validation when the folder has "
        "no valid.txt or dev.txt",
    )
    g.add_argument(
        "--label-column",
        type=_label_column,
        default="ner",
        metavar="COL",
        help="the tags: ner (last column), pos (column 2), chunk (column 3) or a 0-based index",
    )
    g.add_argument(
        "--crf",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="a linear-chain CRF output layer (Lample et al. 2016): sentence log-likelihood in "
        "training, Viterbi decoding, BIO transitions constrained",
    )
    g.add_argument(
        "--char-features",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add a character BiLSTM's final states to each word's embedding",
    )
    g.add_argument(
        "--char-embed", type=int, default=25, metavar="N", help="character embedding size"
    )
    g.add_argument(
        "--char-hidden",
        type=int,
        default=25,
        metavar="N",
        help="hidden units per direction of the character BiLSTM",
    )
    g.add_argument(
        "--lowercase",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="look words up lower-cased (the character features still see the case)",
    )
    g.add_argument(
        "--min-freq",
        type=int,
        default=1,
        metavar="N",
        help="words seen fewer times in training become <unk>",
    )
    g.add_argument(
        "--unk-replace",
        type=float,
        default=0.5,
        metavar="P",
        help="in training, replace words seen once by <unk> with probability P (so that <unk> "
        "is learned)",
    )


def _split_files(root: Path) -> dict[str, Path]:
    if not root.is_dir():
        if root.exists():
            raise TaskError(f"--data must be a folder with train.txt, valid.txt, test.txt: {root}")
        raise FileNotFoundError(f"tagger data folder not found: {root}")
    valid = root / "valid.txt"
    if not valid.is_file() and (root / "dev.txt").is_file():
        valid = root / "dev.txt"
    files = {"train": root / "train.txt", "valid": valid, "test": root / "test.txt"}
    if not files["test"].is_file():
        del files["test"]
    return files


class TaggingData:
    """Sentences as id arrays (words, tags, and each word's characters) with their vocabularies.

    Args:
        sentences: (tokens, tags) pairs.
        vocab, tag_vocab, char_vocab: the vocabularies (char_vocab None: no character features).
        lowercase: look words up lower-cased.
    """

    def __init__(
        self,
        sentences: Sentences,
        vocab: Vocab,
        tag_vocab: Vocab | None,
        char_vocab: Vocab | None,
        lowercase: bool,
    ) -> None:
        self.words = [encode_words(toks, vocab, lowercase) for toks, _ in sentences]
        self.tags = None if tag_vocab is None else [tag_vocab.encode(tags) for _, tags in sentences]
        self.chars = (
            None
            if char_vocab is None
            else [[char_vocab.encode(w) for w in toks] for toks, _ in sentences]
        )
        self.pad = vocab.pad_id
        self.char_pad = None if char_vocab is None else char_vocab.pad_id

    def __len__(self) -> int:
        return len(self.words)

    def collate(self, idx: np.ndarray) -> TaggerBatch:
        """The batch of sentences ``idx`` (see :class:`rnncore.models.tagger.TaggerBatch`)."""
        x, lengths = pad_sequences([self.words[i] for i in idx], pad_id=self.pad)
        tags = None
        if self.tags is not None:
            tags, _ = pad_sequences([self.tags[i] for i in idx], pad_id=IGNORE)
        chars = char_lengths = None
        if self.chars is not None:
            chars, char_lengths = pad_sequences(
                [w for i in idx for w in self.chars[i]], pad_id=self.char_pad
            )
        return TaggerBatch(x, lengths, tags, chars, char_lengths)

    def batches(self, batch_size: int, *, shuffle: bool, seed: int = 0) -> SampledBatches:
        return SampledBatches(
            [len(w) for w in self.words], batch_size, self.collate, shuffle=shuffle, seed=seed
        )


def encode_words(tokens: list[str], vocab: Vocab, lowercase: bool) -> np.ndarray:
    return vocab.encode([t.lower() for t in tokens] if lowercase else tokens)


class UnkReplacing:
    """Training batches in which each word seen once in training becomes <unk> with
    probability p (a fresh draw per batch), so the <unk> embedding is trained.

    The draws are keyed by (seed, batch count, the sentence's index in the global batch, the
    word's position): a data-parallel rank replaces exactly the words one process would."""

    _rng_state_attrs = ("_seed", "_calls")  # the random state a checkpoint keeps

    def __init__(self, batches: SampledBatches, singleton: np.ndarray, unk: int, p: float, seed):
        self.batches = batches
        self.singleton = singleton
        self.unk = unk
        self.p = p
        self._seed = int(np.random.SeedSequence([int(seed), 7]).generate_state(1, np.uint64)[0])
        self._calls = 0

    def __len__(self) -> int:
        return len(self.batches)

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def __iter__(self):
        for b in self.batches:
            self._calls += 1  # empty slices too, so every rank's count stays the same
            if b is None:  # an empty slice of a global batch (data parallel)
                yield b
                continue
            u = keyed_uniform(self._seed + self._calls, b.ids.shape, batch_axis=1)
            drop = self.singleton[b.ids] & (u < self.p)
            yield b._replace(ids=np.where(drop, self.unk, b.ids))


def run(args: argparse.Namespace) -> dict[str, Any]:
    check_common(args)
    if args.min_freq < 1 or args.char_embed < 1 or args.char_hidden < 1:
        raise TaskError("--min-freq, --char-embed and --char-hidden must be >= 1")
    if not 0 <= args.unk_replace <= 1:
        raise TaskError(f"--unk-replace must be in [0, 1], got {args.unk_replace}")
    if not 0 < args.valid_fraction < 1:
        raise TaskError(f"--valid-fraction must be in (0, 1), got {args.valid_fraction}")
    files = _split_files(Path(args.data))
    col = args.label_column
    sets = {"train": read_conll(files["train"], label_column=col)}
    held_out = not files["valid"].is_file()
    if held_out:  # many CoNLL-style corpora ship train + test only
        del files["valid"]
        keep, held = holdout_split(len(sets["train"]), args.valid_fraction, args.seed)
        sets["valid"] = [sets["train"][i] for i in held]
        sets["train"] = [sets["train"][i] for i in keep]
    for name in ("valid", "test"):
        if name in files:
            sets[name] = read_conll(files[name], label_column=col)
    train_s = sets["train"]
    tag_vocab = build_label_vocab((tags for _, tags in train_s), pad=False)
    unseen = _unseen_tags(tag_vocab, [sets[k] for k in ("valid", "test") if k in sets])
    if unseen:
        warn(
            f"tags not in the training data, scored as gold tags the model never predicts: "
            f"{', '.join(unseen)}"
        )
        tag_vocab = Vocab(tag_vocab.itos + unseen)
    lower = args.lowercase
    words = [[t.lower() if lower else t for t in toks] for toks, _ in train_s]
    vocab = Vocab.build(words, min_freq=args.min_freq)
    char_vocab = Vocab.build(w for toks, _ in train_s for w in toks) if args.char_features else None
    data = {k: TaggingData(v, vocab, tag_vocab, char_vocab, lower) for k, v in sets.items()}
    vectors = load_embeddings(args, vocab)  # sets args.embed to the file's size
    model = SequenceTagger(
        len(vocab),
        args.embed,
        args.hidden,
        len(tag_vocab),
        num_layers=args.layers,
        cell=args.cell,
        bidirectional=args.bidirectional,
        dropout=args.dropout,
        padding_idx=vocab.pad_id,
        tag_names=tag_vocab.itos,
        char_vocab_size=None if char_vocab is None else len(char_vocab),
        char_embed_dim=args.char_embed,
        char_hidden_size=args.char_hidden,
        char_padding_idx=None if char_vocab is None else char_vocab.pad_id,
        seed=args.seed,
        zoneout=args.zoneout,
        recurrent_dropout=args.recurrent_dropout,
        layer_norm=args.layer_norm,
        crf=args.crf,
    )
    use_embeddings(args, model.embedding, vectors)
    if unseen:  # outputs the model never picks: conlleval counts these entities as missed
        rows = [tag_vocab[t] for t in unseen]
        model.classifier.weight.data[rows] = 0.0
        model.classifier.bias.data[rows] = UNSEEN_TAG_BIAS
    train: Any = data["train"].batches(args.batch_size, shuffle=True, seed=args.seed)
    if args.unk_replace > 0:
        counts = Counter(w for s in words for w in s)
        singleton = np.array([counts.get(t, 0) == 1 for t in vocab.itos], dtype=bool)
        train = UnkReplacing(train, singleton, vocab.unk_id, args.unk_replace, args.seed)
    valid = data["valid"].batches(args.batch_size, shuffle=False)
    test = data["test"].batches(args.batch_size, shuffle=False) if "test" in data else None
    bio = is_bio(tag_vocab.itos)
    vocabs = {"tags": tag_vocab}
    if char_vocab is not None:
        vocabs["chars"] = char_vocab
    info = {
        "files": {k: str(v) for k, v in files.items()},
        "valid_held_out": args.valid_fraction if held_out else None,
        "label_column": col,
        "vocab_size": len(vocab),
        "tags": tag_vocab.itos,
        "tags_not_in_training": unseen,
        **{f"{k}_sentences": len(v) for k, v in sets.items()},
    }
    return train_and_report(
        args,
        model,
        train,
        valid,
        test,
        optimizer=make_optimizer(args, model),
        monitor="f1" if bio else "accuracy",
        mode="max",
        vocab=vocab,
        vocabs=vocabs,
        extra={"task": NAME, "label_column": col, "lowercase": lower},
        data_info=info,
    )


def _unseen_tags(tag_vocab: Vocab, others: list[Sentences]) -> list[str]:
    """Tags of ``others`` that ``tag_vocab`` lacks, in order of first appearance."""
    known = set(tag_vocab.itos)
    unseen: dict[str, None] = {}
    for sentences in others:
        for _, tags in sentences:
            unseen.update((t, None) for t in tags if t not in known)
    return list(unseen)


def _vocabs(ckpt: Any) -> tuple[Vocab, Vocab | None]:
    vocabs = ckpt.vocabs or {}
    return vocabs["tags"], vocabs.get("chars")


def evaluate(ckpt: Any, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Entity F1 / token accuracy on a CoNLL folder's valid and test files, or on one file."""
    p = Path(args.data)
    if p.is_file():
        files = {p.name: p}
    else:
        files = {k: v for k, v in _split_files(p).items() if k != "train" and v.is_file()}
        if not files:
            raise TaskError(f"--data {p}: no valid.txt, dev.txt or test.txt to evaluate on")
    tag_vocab, char_vocab = _vocabs(ckpt)
    col = ckpt.extra.get("label_column", "ner")
    lower = bool(ckpt.extra.get("lowercase", True))
    bs = args.batch_size or 32
    splits = {}
    for name, f in files.items():
        sents = read_conll(f, label_column=col, labels=tag_vocab)
        data = TaggingData(sents, ckpt.vocab, tag_vocab, char_vocab, lower)
        splits[name] = data.batches(bs, shuffle=False)
    return evaluate_splits(ckpt.model, splits)


def predict(ckpt: Any, args: argparse.Namespace) -> str:
    """``token/TAG`` for every token of the text (punctuation split off, case kept)."""
    tokens = tokenize(args.text, lower=False)
    if not tokens:
        raise TaskError("predict: TEXT has no words to tag")
    _, char_vocab = _vocabs(ckpt)
    lower = bool(ckpt.extra.get("lowercase", True))
    data = TaggingData([(tokens, [])], ckpt.vocab, None, char_vocab, lower)
    b = data.collate(np.array([0]))
    pred = ckpt.model.predict(b.ids, b.lengths, b.chars, b.char_lengths)
    tags = ckpt.model.to_tags(pred, b.lengths)[0]
    return " ".join(f"{w}/{t}" for w, t in zip(tokens, tags, strict=True))
