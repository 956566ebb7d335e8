"""Tests of the translation loaders: Tatoeba TSV, parallel files, Unicode forms, vocabularies."""

import gzip
import unicodedata

import pytest
from rnncore.data import (
    DataFormatError,
    build_translation_vocabs,
    normalize_text,
    read_parallel,
    read_tatoeba,
)

NFC_CAFE = "caf\u00e9"  # é as one code point
NFD_CAFE = "cafe\u0301"  # e + combining acute accent

TATOEBA = (
    "Go.\tVa !\n"
    "Who?\tQui ?\tCC-BY 2.0 (France) Attribution: tatoeba.org #2083030 (CK) & #4366796 (gillux)\n"
    f"I like coffee.\tJ'aime le {NFD_CAFE}.\n"
    "\n"
    "I'm sure it's a very long sentence indeed.\tJe suis sûr que c'est une très longue phrase.\n"
)


def write(path, text):
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_read_tatoeba_columns_attribution_and_tokens(tmp_path):
    pairs = read_tatoeba(write(tmp_path / "fra.txt", TATOEBA))
    assert len(pairs) == 4
    assert pairs[0] == (["Go", "."], ["Va", "!"])
    assert pairs[1] == (["Who", "?"], ["Qui", "?"])  # attribution column ignored
    assert pairs[2] == (["I", "like", "coffee", "."], ["J'aime", "le", NFC_CAFE, "."])


def test_filters_lower_reverse(tmp_path):
    p = write(tmp_path / "fra.txt", TATOEBA)
    short = read_tatoeba(p, max_len=4, lower=True)
    assert [src for src, _ in short] == [["go", "."], ["who", "?"], ["i", "like", "coffee", "."]]
    assert read_tatoeba(p, min_len=3, max_len=5) == [
        (["I", "like", "coffee", "."], ["J'aime", "le", NFC_CAFE, "."])
    ]
    assert read_tatoeba(p, reverse=True)[0] == (["Va", "!"], ["Go", "."])
    with pytest.raises(ValueError, match="max_len"):
        read_tatoeba(p, min_len=3, max_len=2)


def test_unicode_forms_and_accents(tmp_path):
    # both spellings of "café" in the file become one token in the requested form
    p = write(tmp_path / "mixed.txt", f"coffee\t{NFC_CAFE}\ncoffee\t{NFD_CAFE}\n")
    nfc = read_tatoeba(p)
    assert nfc[0][1] == nfc[1][1] == [NFC_CAFE]
    nfd = read_tatoeba(p, form="NFD")
    assert nfd[0][1] == nfd[1][1] == [NFD_CAFE]  # not split at the combining accent
    assert read_tatoeba(p, strip_accents=True)[1][1] == ["cafe"]
    assert normalize_text("Ça ÉTÉ", lower=True, strip_accents=True) == "ca ete"
    assert normalize_text(NFD_CAFE) == NFC_CAFE
    assert normalize_text("ﬁ", form="NFKC") == "fi"
    assert unicodedata.is_normalized("NFD", normalize_text(NFC_CAFE, form="NFD"))
    with pytest.raises(ValueError, match="form must be"):
        normalize_text("x", form="NFX")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Go.\tVa !\nno tab here\n", r"line 2: expected at least 2 tab-separated columns, got 1"),
        (b"Go.\tVa !\nCaf\xe9\tx\n", r"line 2: not valid UTF-8"),
        ("", r"file is empty"),
    ],
)
def test_tatoeba_errors(tmp_path, text, message):
    with pytest.raises(DataFormatError, match=r"fra\.txt(, |: )" + message):
        read_tatoeba(write(tmp_path / "fra.txt", text))


def test_read_parallel_plain_and_gz(tmp_path):
    src = write(tmp_path / "train.en", "Hello world .\n\nA long long long sentence\nBye\n")
    tgt = tmp_path / "train.fr.gz"
    with gzip.open(tgt, "wb") as f:
        f.write(b"Bonjour le monde .\nvide\nUne phrase\nAu revoir\n")
    pairs = read_parallel(src, tgt, lower=True)
    # the pair with an empty side is dropped (min_len=1)
    assert pairs == [
        (["hello", "world", "."], ["bonjour", "le", "monde", "."]),
        (["a", "long", "long", "long", "sentence"], ["une", "phrase"]),
        (["bye"], ["au", "revoir"]),
    ]
    assert len(read_parallel(src, tgt, max_len=4)) == 2


def test_read_parallel_unequal_line_counts(tmp_path):
    src = write(tmp_path / "a.en", "one\ntwo\nthree\n")
    tgt = write(tmp_path / "a.fr", "un\ndeux\n")
    with pytest.raises(ValueError, match=r"a\.en has 3 lines, .*a\.fr has 2"):
        read_parallel(src, tgt)
    with pytest.raises(FileNotFoundError, match="missing.fr"):
        read_parallel(src, tmp_path / "missing.fr")


def test_translation_vocabs(tmp_path):
    pairs = read_tatoeba(write(tmp_path / "fra.txt", TATOEBA))
    src_v, tgt_v = build_translation_vocabs(pairs)
    for v in (src_v, tgt_v):
        assert v.itos[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    assert "coffee" in src_v and "coffee" not in tgt_v and NFC_CAFE in tgt_v
    ids = tgt_v.encode(pairs[0][1], add_bos=True, add_eos=True)
    assert tgt_v.decode(ids) == ["<bos>", "Va", "!", "<eos>"]
    small_src, _ = build_translation_vocabs(pairs, max_size=5)
    assert small_src.itos == ["<pad>", "<unk>", "<bos>", "<eos>", "."]
