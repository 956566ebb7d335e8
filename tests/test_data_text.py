"""Tests of the LM loaders (PTB, char corpora), the tokenizer and the shared file errors."""

import gzip
import hashlib

import numpy as np
import pytest
from rnncore.data import (
    DataFormatError,
    download_file,
    load_char_corpus,
    load_ptb,
    read_ptb,
    split_by_fractions,
    tokenize,
)


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


@pytest.fixture
def ptb_dir(tmp_path):
    write(tmp_path / "ptb.train.txt", " the cat sat \n the dog <unk> \n")
    write(tmp_path / "ptb.valid.txt", " the bird sat \n")
    write(tmp_path / "ptb.test.txt", " a cat \n\n")
    return tmp_path


def test_tokenize():
    assert tokenize("Hello, World!") == ["hello", ",", "world", "!"]
    assert tokenize("It's great.<br /><br />Don't miss it") == [
        "it's", "great", ".", "don't", "miss", "it",
    ]  # fmt: skip
    assert tokenize("L'homme, ÉTÉ 2024", lower=False) == ["L'homme", ",", "ÉTÉ", "2024"]
    assert tokenize("") == []


def test_read_ptb_appends_eos_per_line(ptb_dir):
    assert read_ptb(ptb_dir / "ptb.train.txt") == [
        ["the", "cat", "sat", "<eos>"], ["the", "dog", "<unk>", "<eos>"],
    ]  # fmt: skip
    # an empty line is a sentence of just <eos>, as in the classic recipe
    assert read_ptb(ptb_dir / "ptb.test.txt") == [["a", "cat", "<eos>"], ["<eos>"]]


def test_load_ptb(ptb_dir):
    c = load_ptb(ptb_dir)
    v = c.vocab
    assert v.itos == ["<unk>", "<eos>", "the", "cat", "sat", "dog"]
    assert v.pad_id is None
    assert c.train.dtype == np.int64
    assert v.decode(c.train) == "the cat sat <eos> the dog <unk> <eos>".split()
    assert v.decode(c.valid) == "the <unk> sat <eos>".split()  # unseen "bird"
    assert v.decode(c.test) == "<unk> cat <eos> <eos>".split()
    again = load_ptb(ptb_dir, vocab=v)
    assert again.vocab is v and np.array_equal(again.test, c.test)


def test_load_ptb_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="directory not found"):
        load_ptb(tmp_path / "nowhere")
    write(tmp_path / "ptb.train.txt", "a\n")
    with pytest.raises(FileNotFoundError, match="ptb.valid.txt"):
        load_ptb(tmp_path)


def test_char_corpus_split_and_vocab(tmp_path):
    text = "abcabcabca" * 10  # 100 chars
    c = load_char_corpus(write(tmp_path / "t.txt", text), (0.8, 0.1, 0.1))
    assert c.vocab.itos == ["a", "b", "c"]  # a:40, b:30, c:30 -> ties by first occurrence
    assert (c.train.size, c.valid.size, c.test.size) == (80, 10, 10)
    assert "".join(c.vocab.decode(np.concatenate([c.train, c.valid, c.test]))) == text
    c2 = load_char_corpus(tmp_path / "t.txt", (0.5, 0.5, 0.0))
    assert (c2.train.size, c2.valid.size, c2.test.size) == (50, 50, 0)
    with pytest.raises(ValueError, match="sum to 1"):
        load_char_corpus(tmp_path / "t.txt", (0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="3 numbers"):
        load_char_corpus(tmp_path / "t.txt", (0.5, 0.5))


def test_split_by_fractions():
    assert split_by_fractions(10, (0.9, 0.05, 0.05)) == [(0, 9), (9, 9), (9, 10)]
    assert split_by_fractions(7, (0.5, 0.5)) == [(0, 3), (3, 7)]
    with pytest.raises(ValueError):
        split_by_fractions(10, (1.2, -0.2))


# ---- file errors shared by every loader ---------------------------------------------------


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.txt"):
        read_ptb(tmp_path / "nothing.txt")
    with pytest.raises(IsADirectoryError):
        read_ptb(tmp_path)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file_is_an_error(tmp_path, content):
    p = write(tmp_path / "empty.txt", content)
    with pytest.raises(DataFormatError, match=r"empty\.txt: file is empty"):
        read_ptb(p)
    with pytest.raises(ValueError):  # DataFormatError is a ValueError
        load_char_corpus(p)


def test_bad_utf8_names_file_and_line(tmp_path):
    p = write(tmp_path / "latin1.txt", "fine\nstill fine\ncaf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(DataFormatError, match=r"latin1\.txt, line 3: not valid UTF-8") as e:
        read_ptb(p)
    assert e.value.line == 3 and e.value.path.endswith("latin1.txt")


def test_gzip_and_bom_and_crlf(tmp_path):
    p = tmp_path / "t.txt.gz"
    with gzip.open(p, "wb") as f:
        f.write("\ufeffa b\r\nc\r\n".encode())
    assert read_ptb(p) == [["a", "b", "<eos>"], ["c", "<eos>"]]
    bad = write(tmp_path / "bad.gz", b"not gzip at all")
    with pytest.raises(DataFormatError, match="not a valid gzip file"):
        read_ptb(bad)


def test_download_file_checks_sha256_offline(tmp_path):
    # file:// URLs exercise the download path without a network
    src = write(tmp_path / "src.txt", "payload\n")
    sha = hashlib.sha256(b"payload\n").hexdigest()
    dest = tmp_path / "out" / "dest.txt"
    assert download_file(src.as_uri(), dest, sha) == dest
    assert dest.read_bytes() == b"payload\n"
    assert download_file("file:///does/not/matter", dest, sha) == dest  # already there
    with pytest.raises(ValueError, match="checksum mismatch"):
        download_file(src.as_uri(), tmp_path / "other.txt", "0" * 64)
    assert not (tmp_path / "other.txt").exists()
    assert not (tmp_path / "other.txt.part").exists()
    with pytest.raises(ConnectionError, match="offline"):
        download_file((tmp_path / "missing.txt").as_uri(), tmp_path / "x.txt", sha)
