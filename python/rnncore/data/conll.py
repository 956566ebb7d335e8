"""CoNLL-style column files (CoNLL-2003 NER/POS): (tokens, labels) sentences from one column."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ._io import DataFormatError, PathLike, read_lines
from .vocab import Vocab

Sentence = tuple[list[str], list[str]]

#: named label columns of the CoNLL-2003 English files (``token POS chunk NER``)
CONLL2003_COLUMNS = {"pos": 1, "chunk": 2, "ner": -1}


def read_conll(
    path: PathLike,
    *,
    label_column: int | str = "ner",
    token_column: int = 0,
    labels: Iterable[str] | Vocab | None = None,
) -> list[Sentence]:
    """Sentences of a CoNLL column file.

    One token per line, columns separated by whitespace; a blank line or a ``-DOCSTART-`` line
    ends a sentence (so documents never merge sentences). Every token line of the file must have
    the same number of columns as the first one.

    Args:
        path: the file (UTF-8; .gz is decompressed).
        label_column: index of the label column (negative counts from the end), or a name of
            :data:`CONLL2003_COLUMNS`: "ner" (last column), "pos" (index 1), "chunk" (index 2).
        token_column: index of the token column.
        labels: allowed labels (or a label :class:`Vocab`, whose special tokens do not count); a
            label outside them raises DataFormatError with its line. None accepts every label.
    Returns:
        list of (tokens, labels), two equally long lists of str per sentence.
    """
    if isinstance(label_column, str):
        if label_column not in CONLL2003_COLUMNS:
            raise ValueError(
                f"read_conll: label_column must be an int or one of {sorted(CONLL2003_COLUMNS)}, "
                f"got {label_column!r}"
            )
        label_column = CONLL2003_COLUMNS[label_column]
    allowed = None
    if labels is not None:
        if isinstance(labels, Vocab):
            allowed = set(labels.itos) - set(labels.specials.values())
        else:
            allowed = set(labels)
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    ncols = None
    first = 0  # the line that set ncols
    for n, line in enumerate(read_lines(path, "read_conll"), 1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if tokens:
                sentences.append((tokens, tags))
                tokens, tags = [], []
            continue
        if ncols is None:
            ncols = len(fields)
            for name, col in (("label_column", label_column), ("token_column", token_column)):
                if not -ncols <= col < ncols:
                    raise DataFormatError(
                        path, n, f"{name} {col} is out of range for {ncols} columns"
                    )
            if label_column % ncols == token_column % ncols:
                raise DataFormatError(
                    path,
                    n,
                    f"label_column {label_column} and token_column {token_column} are the same "
                    f"column of {ncols}: the file has no label column apart from the tokens",
                )
            first = n
        elif len(fields) != ncols:
            raise DataFormatError(
                path, n, f"expected {ncols} columns (as on line {first}), got {len(fields)}"
            )
        tag = fields[label_column]
        if allowed is not None and tag not in allowed:
            raise DataFormatError(path, n, f"unknown label {tag!r}")
        tokens.append(fields[token_column])
        tags.append(tag)
    if tokens:
        sentences.append((tokens, tags))
    if not sentences:
        raise DataFormatError(path, None, "no sentences (only blank or -DOCSTART- lines)")
    return sentences


def load_conll2003(root: PathLike, *, label_column: int | str = "ner") -> dict[str, list[Sentence]]:
    """CoNLL-2003 English from ``root/{train,valid,test}.txt`` (14,041 / 3,250 / 3,453 sentences).

    There is no official download (Reuters licence): pass the folder holding your copy.

    Args:
        root: the folder.
        label_column: as in :func:`read_conll` ("ner", "pos", "chunk" or an index).
    Returns:
        {"train", "valid", "test"} -> list of (tokens, labels).
    """
    root = Path(root)
    return {
        s: read_conll(root / f"{s}.txt", label_column=label_column)
        for s in ("train", "valid", "test")
    }
