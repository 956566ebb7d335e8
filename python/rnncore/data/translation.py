"""Translation pairs: Tatoeba/manythings TSV and parallel text files, normalised; vocabularies."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence

from ._io import DataFormatError, PathLike, decode_utf8, read_bytes, split_lines
from .text import tokenize
from .vocab import Vocab

Pair = tuple[list[str], list[str]]
_FORMS = ("NFC", "NFD", "NFKC", "NFKD")


def normalize_text(
    text: str, *, lower: bool = False, form: str = "NFC", strip_accents: bool = False
) -> str:
    """Unicode-normalise one sentence.

    Accented letters have two spellings in Unicode: composed (NFC: "é" is U+00E9) and decomposed
    (NFD: "e" + U+0301 COMBINING ACUTE ACCENT). Text from different sources mixes them, and the
    two spellings would be different vocabulary entries, so sentences are brought to one form.
    NFC (default) is what keyboards and most files produce. NFKC/NFKD also fold compatibility
    characters (ligatures, full-width forms).

    Args:
        text: the sentence.
        lower: lower-case it (``str.lower``).
        form: "NFC", "NFD", "NFKC" or "NFKD" -- the form of the returned text.
        strip_accents: remove combining marks (é -> e, ç -> c; lossy, as in the PyTorch
            seq2seq tutorial), applied before ``form``.
    Returns:
        the normalised str.
    """
    if form not in _FORMS:
        raise ValueError(f"normalize_text: form must be one of {_FORMS}, got {form!r}")
    if strip_accents:
        text = "".join(
            c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn"
        )
    if lower:
        text = text.lower()
    return unicodedata.normalize(form, text)


class _Pipeline:
    """Normalise then tokenize. Token boundaries are found on composed (NFC) text: in NFD a
    combining accent is not a word character and would split "é" off "e"; the tokens are then
    put in the requested form."""

    def __init__(
        self,
        lower: bool,
        form: str,
        strip_accents: bool,
        tokenizer: Callable[[str], list[str]] | None,
    ):
        if form not in _FORMS:
            raise ValueError(f"form must be one of {_FORMS}, got {form!r}")
        self.lower, self.form, self.strip_accents = lower, form, strip_accents
        self.split = tokenizer or (lambda s: tokenize(s, lower=False))

    def normalize(self, text: str) -> str:
        # whole files at once: one C call instead of one per sentence
        return normalize_text(text, lower=self.lower, form="NFC", strip_accents=self.strip_accents)

    def tokens(self, normalized: str) -> list[str]:
        toks = self.split(normalized)
        if self.form != "NFC":
            toks = [unicodedata.normalize(self.form, t) for t in toks]
        return toks


def _check_lens(min_len: int, max_len: int | None, who: str) -> None:
    if isinstance(min_len, bool) or not isinstance(min_len, int) or min_len < 0:
        raise ValueError(f"{who}: min_len must be an integer >= 0, got {min_len!r}")
    if max_len is not None and (
        isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < max(min_len, 1)
    ):
        raise ValueError(f"{who}: max_len must be None or an integer >= min_len, got {max_len!r}")


def _keep(src: list[str], tgt: list[str], min_len: int, max_len: int | None) -> bool:
    lo = min(len(src), len(tgt))
    hi = max(len(src), len(tgt))
    return lo >= min_len and (max_len is None or hi <= max_len)


def read_tatoeba(
    path: PathLike,
    *,
    lower: bool = False,
    form: str = "NFC",
    strip_accents: bool = False,
    min_len: int = 1,
    max_len: int | None = None,
    reverse: bool = False,
    tokenizer: Callable[[str], list[str]] | None = None,
) -> list[Pair]:
    """Sentence pairs from a Tatoeba / manythings.org file (e.g. ``fra.txt``).

    Each line is ``English<TAB>Other`` optionally followed by more tab-separated fields (newer
    files add an attribution), which are ignored. Sentences are normalised
    (:func:`normalize_text`) and tokenized (default: :func:`~rnncore.data.tokenize` without
    lower-casing: words with inner apostrophes, punctuation split off).

    Args:
        path: the file (UTF-8, .gz aware).
        lower, form, strip_accents: see :func:`normalize_text`.
        min_len, max_len: keep a pair only if both sides have at least ``min_len`` and at most
            ``max_len`` tokens (None: no upper limit).
        reverse: return (other, English) pairs instead of (English, other).
        tokenizer: str -> tokens, applied to the normalised text.
    Returns:
        list of (source tokens, target tokens).
    Raises:
        DataFormatError naming file and line for a line with fewer than 2 columns.
    """
    _check_lens(min_len, max_len, "read_tatoeba")
    pipe = _Pipeline(lower, form, strip_accents, tokenizer)
    pairs: list[Pair] = []
    raw = decode_utf8(_nonempty(path, "read_tatoeba"), path)
    # normalisation keeps "\t" and "\n", so line numbers and columns are unchanged by it
    lines = split_lines(pipe.normalize(raw))
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise DataFormatError(
                path, n, f"expected at least 2 tab-separated columns, got {len(fields)}"
            )
        src, tgt = pipe.tokens(fields[0]), pipe.tokens(fields[1])
        if reverse:
            src, tgt = tgt, src
        if _keep(src, tgt, min_len, max_len):
            pairs.append((src, tgt))
    return pairs


def _nonempty(path: PathLike, who: str) -> bytes:
    data = read_bytes(path, who)
    if not data.strip():
        raise DataFormatError(path, None, "file is empty")
    return data


def read_parallel(
    src_path: PathLike,
    tgt_path: PathLike,
    *,
    lower: bool = False,
    form: str = "NFC",
    strip_accents: bool = False,
    min_len: int = 1,
    max_len: int | None = None,
    tokenizer: Callable[[str], list[str]] | None = None,
) -> list[Pair]:
    """Sentence pairs from two line-aligned files (line i of one translates line i of the other).

    Files ending in ``.gz`` are decompressed. Options as in :func:`read_tatoeba`; pairs with a
    side shorter than ``min_len`` tokens (e.g. empty lines) or longer than ``max_len`` are
    dropped.

    Returns:
        list of (source tokens, target tokens).
    Raises:
        ValueError naming both files and their line counts when the counts differ.
    """
    _check_lens(min_len, max_len, "read_parallel")
    pipe = _Pipeline(lower, form, strip_accents, tokenizer)
    src_raw = decode_utf8(_nonempty(src_path, "read_parallel"), src_path)
    tgt_raw = decode_utf8(_nonempty(tgt_path, "read_parallel"), tgt_path)
    src_lines = split_lines(pipe.normalize(src_raw))
    tgt_lines = split_lines(pipe.normalize(tgt_raw))
    if len(src_lines) != len(tgt_lines):
        raise ValueError(
            f"read_parallel: the files are not line-aligned: {src_path} has {len(src_lines)} "
            f"lines, {tgt_path} has {len(tgt_lines)}"
        )
    pairs: list[Pair] = []
    for s, t in zip(src_lines, tgt_lines, strict=True):
        src, tgt = pipe.tokens(s), pipe.tokens(t)
        if _keep(src, tgt, min_len, max_len):
            pairs.append((src, tgt))
    return pairs


def build_translation_vocabs(
    pairs: Sequence[Pair], *, min_freq: int = 1, max_size: int | None = None
) -> tuple[Vocab, Vocab]:
    """One vocabulary per language, each with ``<pad>`` 0, ``<unk>`` 1, ``<bos>`` 2, ``<eos>`` 3.

    Args:
        pairs: (source tokens, target tokens) pairs (build from the training pairs only).
        min_freq, max_size: as in :meth:`Vocab.build`, for each language.
    Returns:
        (source vocab, target vocab).
    """
    kw = dict(min_freq=min_freq, max_size=max_size, pad=True, unk=True, bos=True, eos=True)
    return (
        Vocab.build((p[0] for p in pairs), **kw),
        Vocab.build((p[1] for p in pairs), **kw),
    )
