"""Language-model corpora: a simple tokenizer, Penn Treebank (Mikolov's split), char corpora."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._io import PathLike, existing_dir, read_lines, read_text
from .sources import ensure_files
from .vocab import EOS, Vocab

_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
# a word (letters/digits/underscore, with inner apostrophes: "don't", "l'homme") or one symbol
_TOKEN = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def tokenize(text: str, *, lower: bool = True) -> list[str]:
    """Simple word tokenizer for raw text (reviews, sentences).

    HTML line breaks (``<br />``, as in IMDB) become spaces; with ``lower`` the text is
    lower-cased; then a token is a run of word characters (Unicode letters, digits, ``_``) that may
    contain inner apostrophes (``don't``, ``l'homme`` stay whole), or any single other
    non-space character (punctuation: ``"end."`` -> ``["end", "."]``).

    Returns:
        list of str tokens.
    """
    if "<" in text:  # the check is much faster than a regex pass over every sentence
        text = _BR.sub(" ", text)
    if lower:
        text = text.lower()
    return _TOKEN.findall(text)


@dataclass
class LMCorpus:
    """A language-model corpus as three id streams and their vocabulary.

    Attributes:
        train, valid, test: int64 arrays [N_split] of token ids (the stream, sentences joined).
        vocab: the :class:`Vocab` that made them.
    """

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    vocab: Vocab


def read_ptb(path: PathLike) -> list[list[str]]:
    """Sentences of one file of Mikolov's PTB (``ptb.train.txt`` etc.).

    One sentence per line, tokens separated by spaces; each sentence gets ``<eos>`` appended
    (the classic recipe, so an empty line is a sentence of just ``<eos>``).

    Returns:
        list of sentences, each a list of str ending with "<eos>".
    """
    return [line.split() + [EOS] for line in read_lines(path, "read_ptb")]


def load_ptb(root: PathLike, *, vocab: Vocab | None = None, download: bool = False) -> LMCorpus:
    """Penn Treebank word-level LM data from ``root/ptb.{train,valid,test}.txt``.

    The vocabulary (unless given) is built from the training file: ``<unk>`` (id 0) and
    ``<eos>`` (id 1), then words by decreasing count -- 10,000 entries on the standard files,
    no ``<pad>`` (LM batches are never padded). Valid/test words unknown to it become ``<unk>``.

    Args:
        root: folder holding the three files.
        vocab: reuse this vocabulary (e.g. from a checkpoint) instead of building one.
        download: fetch missing files from the official copy first (checked by SHA-256).
    Returns:
        LMCorpus with int64 id streams.
    """
    root = Path(root)
    if download:
        ensure_files("ptb", root)
    existing_dir(root, "load_ptb")
    sents = {s: read_ptb(root / f"ptb.{s}.txt") for s in ("train", "valid", "test")}
    if vocab is None:
        vocab = Vocab.build(sents["train"], pad=False, unk=True, eos=True)
    ids = {s: vocab.encode(_flatten(v)) for s, v in sents.items()}
    return LMCorpus(ids["train"], ids["valid"], ids["test"], vocab)


def _flatten(sentences: list[list[str]]) -> list[str]:
    return [tok for sent in sentences for tok in sent]


def split_by_fractions(n: int, fractions: Sequence[float]) -> list[tuple[int, int]]:
    """Contiguous [start, stop) ranges cutting n items by fractions (the last takes the rest).

    Args:
        n: number of items.
        fractions: non-negative numbers summing to 1 (within 1e-6).
    Returns:
        one (start, stop) per fraction; sizes are floor(n * f) except the last.
    """
    fr = [float(f) for f in fractions]
    if not fr or any(not math.isfinite(f) or f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {tuple(fractions)}")
    bounds, start = [], 0
    for i, f in enumerate(fr):
        stop = n if i == len(fr) - 1 else min(n, start + int(math.floor(n * f)))
        bounds.append((start, stop))
        start = stop
    return bounds


def load_char_corpus(
    path: PathLike,
    fractions: Sequence[float] = (0.9, 0.05, 0.05),
    *,
    vocab: Vocab | None = None,
) -> LMCorpus:
    """A plain-text file as a character-level LM corpus (e.g. tiny Shakespeare).

    The text (UTF-8) is split into contiguous train/valid/test parts by ``fractions`` (in that
    order, sizes floor(N * f), the test part takes the rest), so the split is deterministic.
    The vocabulary (unless given) holds exactly the distinct characters of the whole file, by
    decreasing count (ties: first occurrence), with no special tokens: every character of every
    split is known.

    Args:
        path: the text file.
        fractions: (train, valid, test), summing to 1.
        vocab: reuse this vocabulary; characters outside it need its ``<unk>``.
    Returns:
        LMCorpus of int64 character-id streams.
    """
    if len(fractions) != 3:
        raise ValueError(f"load_char_corpus: fractions must be 3 numbers, got {tuple(fractions)}")
    text = read_text(path, "load_char_corpus")
    if vocab is None:
        vocab = Vocab.build([text], pad=False, unk=False)
    ids = vocab.encode(text)
    (a, b), (c, d), (e, f) = split_by_fractions(len(ids), fractions)
    return LMCorpus(ids[a:b].copy(), ids[c:d].copy(), ids[e:f].copy(), vocab)


def load_tiny_shakespeare(
    root: PathLike,
    fractions: Sequence[float] = (0.9, 0.05, 0.05),
    *,
    download: bool = False,
) -> LMCorpus:
    """Tiny Shakespeare (``root/input.txt``, 1,115,394 characters, 65 distinct) as a char corpus.

    Args:
        root: folder holding ``input.txt``.
        fractions: (train, valid, test) as in :func:`load_char_corpus`.
        download: fetch ``input.txt`` from karpathy/char-rnn first if missing (SHA-256 checked).
    """
    root = Path(root)
    if download:
        ensure_files("tinyshakespeare", root)
    return load_char_corpus(root / "input.txt", fractions)
