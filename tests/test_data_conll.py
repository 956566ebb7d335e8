"""Tests of the CoNLL column-file reader: sentence splitting, label columns and format errors."""

import pytest
from rnncore.data import DataFormatError, build_label_vocab, load_conll2003, read_conll

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
-DOCSTART- -X- -X- O
BRUSSELS NNP B-NP B-LOC


1996-08-22 CD I-NP O
"""


def write(path, text):
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_sentences_and_label_columns(tmp_path):
    p = write(tmp_path / "train.txt", CONLL)
    ner = read_conll(p)
    assert ner == [
        (["EU", "rejects", "German", "."], ["B-ORG", "O", "B-MISC", "O"]),
        (["Peter", "Blackburn"], ["B-PER", "I-PER"]),
        (["BRUSSELS"], ["B-LOC"]),  # -DOCSTART- ends a sentence even without a blank line
        (["1996-08-22"], ["O"]),  # several blank lines are one boundary
    ]
    assert read_conll(p, label_column="pos")[1] == (["Peter", "Blackburn"], ["NNP", "NNP"])
    assert read_conll(p, label_column="chunk")[0][1] == ["B-NP", "B-VP", "B-NP", "O"]
    assert read_conll(p, label_column=1) == read_conll(p, label_column="pos")
    assert read_conll(p, label_column=-1) == ner


def test_two_column_tab_file_without_final_newline(tmp_path):
    p = write(tmp_path / "pos.tsv", "The\tDT\ndog\tNN\n\nRuns\tVBZ")
    assert read_conll(p, label_column=1) == [(["The", "dog"], ["DT", "NN"]), (["Runs"], ["VBZ"])]


def test_label_vocab_and_unknown_label(tmp_path):
    train = read_conll(write(tmp_path / "train.txt", CONLL))
    labels = build_label_vocab(tags for _, tags in train)
    assert labels.itos[0] == "<pad>" and labels.itos[1] == "O" and labels.unk_id is None
    assert set(labels.itos[1:]) == {"O", "B-ORG", "B-MISC", "B-PER", "I-PER", "B-LOC"}
    test = write(tmp_path / "test.txt", "Paris NNP B-NP B-LOC\nbank NN I-NP B-FAC\n")
    with pytest.raises(DataFormatError, match=r"test\.txt, line 2: unknown label 'B-FAC'"):
        read_conll(test, labels=labels)
    with pytest.raises(DataFormatError, match="unknown label '<pad>'"):
        read_conll(write(tmp_path / "pad.txt", "x y z <pad>\n"), labels=labels)
    assert read_conll(test, labels=["B-LOC", "B-FAC"])[0][1] == ["B-LOC", "B-FAC"]


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("a NN B-NP O\nb NN O\n", {}, r"line 2: expected 4 columns \(as on line 1\), got 3"),
        ("\n\na NN\nb NN x y\n", {}, r"line 4: expected 2 columns \(as on line 3\), got 4"),
        ("a NN\n", {"label_column": 3}, r"line 1: label_column 3 is out of range for 2 columns"),
        ("-DOCSTART- -X- O\n\n", {}, r"no sentences"),
        (b"a NN O\n\nb\xff NN O\n", {}, r"line 3: not valid UTF-8"),
        ("", {}, r"file is empty"),
        ("EU NNP B-ORG\nrejects VBZ B-VP O\n", {}, r"line 2: expected 3 columns \(as on line 1\)"),
        ("EU\nrejects\n", {}, r"line 1: label_column -1 and token_column 0 are the same column"),
    ],
)
def test_format_errors_name_file_and_line(tmp_path, text, kwargs, message):
    p = write(tmp_path / "bad.conll", text)
    with pytest.raises(DataFormatError, match=r"bad\.conll(, |: )" + message):
        read_conll(p, **kwargs)


def test_bad_arguments_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match="label_column must be"):
        read_conll(write(tmp_path / "a.txt", "a b\n"), label_column="lemma")
    with pytest.raises(FileNotFoundError, match="valid.txt"):
        write(tmp_path / "train.txt", CONLL)
        load_conll2003(tmp_path)


def test_load_conll2003(tmp_path):
    for s in ("train", "valid", "test"):
        write(tmp_path / f"{s}.txt", CONLL)
    d = load_conll2003(tmp_path, label_column="pos")
    assert sorted(d) == ["test", "train", "valid"]
    assert d["valid"][0][1] == ["NNP", "VBZ", "JJ", "."]


def test_classic_mac_line_ends_are_line_ends(tmp_path):
    """A file with lone CR line ends: each line is a token line, not one long line."""
    p = tmp_path / "cr.txt"
    p.write_bytes(b"EU NNP B-NP B-ORG\rX NNP B-NP O\r\rY NN B-NP O\r")
    assert read_conll(p) == [(["EU", "X"], ["B-ORG", "O"]), (["Y"], ["O"])]
