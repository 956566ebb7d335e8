"""File access shared by the loaders: UTF-8 with file/line errors, .gz files, checked downloads."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Union

PathLike = Union[str, "os.PathLike[str]"]


class DataFormatError(ValueError):
    """A data file does not follow its format; the message names the file and (1-based) line.

    Attributes:
        path: the file (or archive member) as a string.
        line: 1-based line number, or None when the problem is the whole file.
    """

    def __init__(self, path: PathLike, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        where = self.path if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {message}")


def existing_file(path: PathLike, who: str) -> Path:
    """Path of an existing regular file, or FileNotFoundError / IsADirectoryError naming it."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{who}: file not found: {p}")
    if p.is_dir():
        raise IsADirectoryError(f"{who}: expected a file, got a directory: {p}")
    return p


def existing_dir(path: PathLike, who: str) -> Path:
    """Path of an existing directory, or FileNotFoundError / NotADirectoryError naming it."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{who}: directory not found: {p}")
    if not p.is_dir():
        raise NotADirectoryError(f"{who}: expected a directory, got a file: {p}")
    return p


def read_bytes(path: PathLike, who: str) -> bytes:
    """Bytes of a file; names ending in .gz are decompressed."""
    p = existing_file(path, who)
    if p.suffix == ".gz":
        try:
            with gzip.open(p, "rb") as f:
                return f.read()
        except (OSError, EOFError) as e:
            raise DataFormatError(p, None, f"not a valid gzip file ({e})") from None
    return p.read_bytes()


def decode_utf8(data: bytes, path: PathLike) -> str:
    """Decode UTF-8 (a leading BOM is dropped); bad bytes raise DataFormatError with the line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataFormatError(
            path, line, f"not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})"
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def read_text(path: PathLike, who: str) -> str:
    """Whole file as str (UTF-8, .gz aware); an empty or blank file is a DataFormatError."""
    text = decode_utf8(read_bytes(path, who), path)
    if not text.strip():
        raise DataFormatError(path, None, "file is empty")
    return text


def split_lines(text: str) -> list[str]:
    """Lines of a text without their "\\n", "\\r\\n" or "\\r" endings (a final one adds no
    line).

    Only those end a line (unlike str.splitlines, which also splits on U+2028, form feeds, ...),
    so line numbers agree with editors; a lone "\\r" (classic Mac OS files) is a line end too,
    not a character inside one line.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def read_lines(path: PathLike, who: str) -> list[str]:
    """Lines of a non-empty UTF-8 text file (.gz aware); element i is line i + 1."""
    return split_lines(read_text(path, who))


def sha256_of(path: PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_file(url: str, dest: PathLike, sha256: str | None, *, timeout: float = 60.0) -> Path:
    """Download url to dest unless dest already holds the file with this checksum.

    The bytes go to "<dest>.part" first and are moved into place only once their SHA-256 matches,
    so an interrupted or tampered download never leaves a file that looks complete.

    Args:
        url: http(s) (or file://) address.
        dest: file to write; parent folders are created.
        sha256: expected hex digest, or None to skip the check (only for sources with none).
        timeout: seconds for the connection.
    Returns:
        dest as a Path.
    Raises:
        ConnectionError: the download failed (offline, DNS, HTTP error); the message says how to
            proceed without a network.
        ValueError: the checksum does not match.
    """
    dest = Path(dest)
    if dest.is_file() and (sha256 is None or sha256_of(dest) == sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as f:
            shutil.copyfileobj(response, f, 1 << 20)
    except (urllib.error.URLError, OSError) as e:
        part.unlink(missing_ok=True)
        raise ConnectionError(
            f"could not download {url} ({e}). If this machine is offline, fetch the file "
            f"elsewhere, put it at {dest} and call again without download=True."
        ) from e
    if sha256 is not None:
        got = sha256_of(part)
        if got != sha256:
            part.unlink(missing_ok=True)
            raise ValueError(
                f"checksum mismatch for {url}: expected sha256 {sha256}, got {got} (file removed)"
            )
    os.replace(part, dest)
    return dest
