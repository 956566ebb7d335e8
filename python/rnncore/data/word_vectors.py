"""Pretrained word vectors from the word2vec and GloVe text formats, aligned to a vocabulary."""

from __future__ import annotations

import gzip
import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from ._io import DataFormatError, PathLike, existing_file
from .vocab import Vocab

#: a longer line is not a text vectors file (a 300-d line is about 3 KB; the binary word2vec
#: format, or a file without newlines, would otherwise be read whole as one "line")
MAX_LINE_BYTES = 1 << 20

_GZIP_MAGIC = b"\x1f\x8b"


class WordVectorsDimError(DataFormatError):
    """The file's vectors do not have the dimension asked for (``dim=``).

    Attributes:
        found: the file's dimension.
        expected: the one asked for.
    """

    def __init__(self, path: PathLike, line: int, found: int, expected: int):
        self.found = found
        self.expected = expected
        super().__init__(path, line, f"the vectors have {found} dimensions, expected {expected}")


@dataclass(frozen=True, eq=False)  # eq would compare the arrays ambiguously
class WordVectors:
    """What :func:`load_word_vectors` returns: the matrix and how much of the vocabulary it covers.

    Attributes:
        vectors: [V, E] (V = len(vocab)), row i for vocabulary id i.
        path: the file read.
        format: "word2vec" (a "count dim" first line) or "glove" (none).
        file_words: vectors in the file.
        words: vocabulary entries that are words (specials such as <pad>/<unk> not counted).
        found: of these, how many got a vector from the file (exactly or ignoring case).
        found_by_case: of ``found``, how many only ignoring case (``lowercase_fallback``).
        missing: the words left at random, in vocabulary order.
        init_std: standard deviation of the random rows.
    """

    vectors: np.ndarray
    path: str
    format: str
    file_words: int
    words: int
    found: int
    found_by_case: int
    missing: tuple[str, ...]
    init_std: float

    @property
    def dim(self) -> int:
        """E, the vectors' dimension."""
        return int(self.vectors.shape[1])

    @property
    def coverage(self) -> float:
        """found / words (1.0 for a vocabulary without words)."""
        return self.found / self.words if self.words else 1.0

    def summary(self) -> str:
        """One line for a log, e.g. ``9,871 of 10,000 vocabulary words (98.7%, 312 ignoring
        case) found in glove.txt (glove, 400,000 vectors of 100 dimensions); 129 random``."""
        case = f", {self.found_by_case:,} ignoring case" if self.found_by_case else ""
        return (
            f"{self.found:,} of {self.words:,} vocabulary words ({100 * self.coverage:.1f}%{case})"
            f" found in {self.path} ({self.format}, {self.file_words:,} vectors of {self.dim} "
            f"dimensions); {len(self.missing):,} random (std {self.init_std:.3g})"
        )

    def report(self) -> dict[str, Any]:
        """The numbers of :meth:`summary` as a JSON-ready dict (with up to 20 missing words)."""
        return {
            "path": self.path,
            "format": self.format,
            "file_words": self.file_words,
            "dim": self.dim,
            "words": self.words,
            "found": self.found,
            "found_by_case": self.found_by_case,
            "coverage": self.coverage,
            "missing": len(self.missing),
            "missing_examples": list(self.missing[:20]),
        }


def _open_binary(path: PathLike) -> IO[bytes]:
    """The file's bytes, decompressed when it is gzip (recognised by its magic bytes)."""
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == _GZIP_MAGIC else open(path, "rb")


def _lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline) of a UTF-8 text file, streamed."""
    try:
        with _open_binary(path) as f:
            number = 0
            while True:
                raw = f.readline(MAX_LINE_BYTES)
                if not raw:
                    return
                number += 1
                if len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n"):
                    raise DataFormatError(
                        path,
                        number,
                        f"line longer than {MAX_LINE_BYTES:,} bytes: not a text vectors file "
                        "(the binary word2vec format is not read; convert it to text)",
                    )
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataFormatError(
                        path,
                        number,
                        f"not valid UTF-8 (byte 0x{raw[e.start]:02x}); only the text formats are "
                        "read (word2vec's binary format must be converted to text)",
                    ) from None
                if number == 1 and line.startswith("\ufeff"):
                    line = line[1:]
                yield number, line.rstrip("\r\n")
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataFormatError(path, None, f"not a valid gzip file ({e})") from None


def _fields(line: str) -> list[str]:
    """The space-separated fields of a line; word2vec writes a space after the last number."""
    return line.rstrip(" \t").split(" ")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _header(fields: list[str]) -> tuple[int, int] | None:
    """(count, dim) when the fields are word2vec's first line "count dim", else None."""
    if len(fields) != 2 or not all(f.isascii() and f.isdigit() for f in fields):
        return None
    count, dim = int(fields[0]), int(fields[1])
    return (count, dim) if dim >= 1 else None


def load_word_vectors(
    path: PathLike,
    vocab: Vocab | Sequence[str],
    *,
    dim: int | None = None,
    lowercase_fallback: bool = True,
    init_std: float | None = None,
    seed: int = 0,
    dtype: Any = "float32",
) -> WordVectors:
    """Pretrained vectors for the words of ``vocab``, read from a word2vec or GloVe text file.

    Formats, recognised from the first line: word2vec text (and fastText .vec): a first line
    "count dim", then one "word x1 ... xdim" line per word; GloVe: the same lines without the
    first (so a first line of two integers is taken as word2vec's: a 1-d GloVe file whose first
    word is an integer is misread). Fields are separated by single spaces (a trailing space is
    allowed); a word may hold spaces (GloVe 840B has some) when the fields before the numbers are
    not all numbers. Blank lines are skipped. The file may be gzip-compressed (any name). It is
    streamed: only the vocabulary's rows are parsed and kept, so a file of millions of words
    needs no more memory than the result.

    Rows: a vocabulary word takes the file's vector for it; without one, with
    ``lowercase_fallback``, the first vector whose word equals it ignoring case (files list
    words by frequency, so the commonest spelling: "Paris" takes "paris" from GloVe's lower-cased
    files, "paris" takes "Paris" from word2vec's cased ones). Specials take the file's vector of
    their own spelling if there is one (PTB-trained vectors have "<unk>"), never by case. The
    rest are drawn from N(0, init_std²) (seeded); by default init_std is the standard deviation
    of the vectors found, so random rows have the pretrained ones' scale (Kim 2014 matched the
    variance in the same way). The padding row (``vocab.pad_id``) is zero.

    Args:
        path: the vectors file.
        vocab: a :class:`Vocab`, or the tokens in id order (no specials).
        dim: the dimension the vectors must have (a :class:`WordVectorsDimError`, raised at the
            first line, otherwise); None: the file's.
        lowercase_fallback: also match words ignoring case (exact matches always win).
        init_std: standard deviation of the random rows (>= 0); None: that of the vectors found
            (1.0 if none is).
        seed: seed of the random rows.
        dtype: 'float32' or 'float64', the dtype of ``vectors``.

    Returns:
        A :class:`WordVectors`: ``vectors`` [V, E] and the coverage (``found``, ``words``,
        ``coverage``, ``missing``, ``summary()``).

    Raises:
        FileNotFoundError: no file at ``path``.
        DataFormatError (a ValueError): the file is empty, not UTF-8 text, or a line is malformed
            (too few or too many numbers for the dimension, a value that is not a finite number,
            fewer or more vectors than a word2vec header announces); the message names the file
            and line.
    """
    where = "load_word_vectors"
    p = existing_file(path, where)
    if not isinstance(vocab, Vocab):
        if isinstance(vocab, str) or not isinstance(vocab, Sequence):
            raise TypeError(f"{where}: vocab must be a Vocab or a list of tokens")
        vocab = Vocab(vocab)
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        raise ValueError(f"{where}: dim must be an integer >= 1 or None, got {dim!r}")
    if init_std is not None and not (
        isinstance(init_std, (int, float)) and math.isfinite(init_std) and init_std >= 0
    ):
        raise ValueError(f"{where}: init_std must be a finite number >= 0 or None, got {init_std}")
    out_dtype = np.dtype(dtype)
    if out_dtype not in (np.float32, np.float64):
        raise TypeError(f"{where}: dtype must be 'float32' or 'float64', got {dtype!r}")

    tokens = vocab.itos
    specials = {vocab.stoi[t] for t in vocab.specials.values()}
    exact = vocab.stoi
    by_case: dict[str, list[int]] = {}
    if lowercase_fallback:
        for i, t in enumerate(tokens):
            if i not in specials:
                by_case.setdefault(t.lower(), []).append(i)
    # 0: no vector yet, 1: one ignoring case, 2: its own (an exact match always wins)
    source = np.zeros(len(tokens), dtype=np.int8)
    vectors: np.ndarray | None = None
    fmt = "glove"
    announced: int | None = None
    file_dim = dim
    count = 0
    last = 0
    for number, line in _lines(p):
        last = number
        if not line.strip():
            continue  # blank lines (a trailing one is common) are no vectors
        fields = _fields(line)
        if vectors is None:  # the first line: a word2vec header, or the first GloVe vector
            header = _header(fields)
            if header is not None:
                fmt = "word2vec"
                announced, found_dim = header
            else:
                found_dim = len(fields) - 1
                if found_dim < 1:
                    raise DataFormatError(
                        p, number, "expected 'count dim' (word2vec) or 'word x1 x2 ...' (GloVe)"
                    )
            if file_dim is not None and found_dim != file_dim:
                raise WordVectorsDimError(p, number, found_dim, file_dim)
            file_dim = found_dim
            vectors = np.zeros((len(tokens), file_dim), dtype=out_dtype)
            if header is not None:
                continue
        assert file_dim is not None
        word, values = _word_and_values(fields, file_dim, p, number)
        count += 1
        if announced is not None and count > announced:
            raise DataFormatError(
                p, number, f"more vectors than the {announced:,} the first line announces"
            )
        rows = {j: 1 for j in by_case.get(word.lower(), ()) if source[j] == 0}
        i = exact.get(word)
        if i is not None and source[i] < 2:
            rows[i] = 2
        if not rows:
            continue  # only the vocabulary's vectors are parsed and kept
        vec = _numbers(values, out_dtype, p, number)
        for row, kind in rows.items():
            vectors[row] = vec
            source[row] = kind
    if vectors is None:
        raise DataFormatError(p, None, "file is empty")
    if announced is not None and count != announced:
        raise DataFormatError(
            p, last, f"the first line announces {announced:,} vectors, the file has {count:,}"
        )
    if count == 0:
        raise DataFormatError(p, None, "no vectors in the file")

    words = [i for i in range(len(tokens)) if i not in specials]
    got = source > 0
    if init_std is None:
        init_std = float(vectors[got].std(dtype=np.float64)) if got.any() else 1.0
    rng = np.random.default_rng(seed)
    rest = ~got
    vectors[rest] = rng.standard_normal((int(rest.sum()), vectors.shape[1])) * init_std
    if vocab.pad_id is not None:
        vectors[vocab.pad_id] = 0.0
    return WordVectors(
        vectors=vectors,
        path=str(p),
        format=fmt,
        file_words=count,
        words=len(words),
        found=int(sum(1 for i in words if source[i] > 0)),
        found_by_case=int(sum(1 for i in words if source[i] == 1)),
        missing=tuple(tokens[i] for i in words if source[i] == 0),
        init_std=float(init_std),
    )


def _word_and_values(
    fields: list[str], dim: int, path: PathLike, number: int
) -> tuple[str, list[str]]:
    """(word, its ``dim`` number fields) of a vector line; DataFormatError when it has too few
    fields, or more with only numbers before them (a number too many, not a word with spaces)."""
    n = len(fields)
    if n == dim + 1:
        return fields[0], fields[1:]
    if n > dim + 1 and not all(_is_number(f) for f in fields[1 : n - dim]):
        return " ".join(fields[: n - dim]), fields[n - dim :]
    got = n - 1
    raise DataFormatError(
        path,
        number,
        f"expected a word and {dim} numbers, got {got} field{'s' if got != 1 else ''} after "
        f"{fields[0][:40]!r}",
    )


def _numbers(values: list[str], dtype: np.dtype, path: PathLike, number: int) -> np.ndarray:
    """The fields as finite numbers of ``dtype`` [dim]; DataFormatError naming the first bad one
    (1e39 is finite in float64 but not in float32)."""
    try:
        vec = np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        bad = next(v for v in values if not _is_number(v))
        raise DataFormatError(path, number, f"{bad[:40]!r} is not a number") from None
    with np.errstate(over="ignore"):
        vec = vec.astype(dtype)
    if not np.isfinite(vec).all():
        k = int(np.flatnonzero(~np.isfinite(vec))[0])
        raise DataFormatError(
            path, number, f"value {k + 1} ({values[k][:40]}) is not a finite {dtype} number"
        )
    return vec
