"""Tests of the sentence-classification loaders: SST stsa files, GLUE SST-2 TSV, IMDB folder/tar."""

import io
import tarfile

import pytest
from rnncore.data import DataFormatError, load_imdb, load_sst, read_imdb, read_sst, read_sst2_tsv


def write(path, text):
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_read_sst_binary_and_fine(tmp_path):
    p = write(tmp_path / "stsa.binary.train", "1 a stirring , funny film\n0 dull .\n\n")
    assert read_sst(p) == [(["a", "stirring", ",", "funny", "film"], 1), (["dull", "."], 0)]
    f = write(tmp_path / "stsa.fine.dev", "4 great\n0 awful\n2 meh\n")
    assert [label for _, label in read_sst(f)] == [4, 0, 2]


def test_load_sst_splits(tmp_path):
    for s in ("train", "dev", "test"):
        write(tmp_path / f"stsa.binary.{s}", f"1 {s} one\n0 {s} two\n")
        write(tmp_path / f"stsa.fine.{s}", f"3 {s}\n")
    d = load_sst(tmp_path)
    assert sorted(d) == ["dev", "test", "train"]
    assert d["dev"][1] == (["dev", "two"], 0)
    assert load_sst(tmp_path, fine=True)["test"] == [(["test"], 3)]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "stsa.binary.train",
            "1 good\n2 what\n",
            r"line 2: unknown label 2 \(labels are in \[0, 2\)\)",
        ),
        ("stsa.fine.train", "5 good\n", r"line 1: unknown label 5"),
        (
            "stsa.binary.dev",
            "1 ok\npositive great\n",
            r"line 2: label 'positive' is not an integer",
        ),
        ("stsa.binary.test", "1 ok\n0\n", r"line 2: no sentence after the label '0'"),
        ("other.txt", "-1 nope\n", r"line 1: unknown label -1"),
    ],
)
def test_read_sst_errors_name_file_and_line(tmp_path, name, text, message):
    p = write(tmp_path / name, text)
    with pytest.raises(DataFormatError, match=name.replace(".", r"\.") + ", " + message):
        read_sst(p)


def test_read_sst_num_classes_and_other_errors(tmp_path):
    p = write(tmp_path / "my.txt", "7 fine\n")
    assert read_sst(p) == [(["fine"], 7)]  # no class count inferred from this name
    with pytest.raises(DataFormatError, match="unknown label 7"):
        read_sst(p, num_classes=3)
    with pytest.raises(FileNotFoundError, match="stsa.binary.nope"):
        read_sst(tmp_path / "stsa.binary.nope")
    with pytest.raises(DataFormatError, match="file is empty"):
        read_sst(write(tmp_path / "stsa.binary.empty", ""))
    with pytest.raises(DataFormatError, match="line 2: not valid UTF-8"):
        read_sst(write(tmp_path / "stsa.binary.bad", b"1 ok\n0 caf\xe9\n"))


def test_read_sst2_tsv(tmp_path):
    p = write(
        tmp_path / "train.tsv", "sentence\tlabel\nhide new secretions \t0\nthe greatest \t1\n"
    )
    assert read_sst2_tsv(p) == [(["hide", "new", "secretions"], 0), (["the", "greatest"], 1)]
    q = write(tmp_path / "swapped.tsv", "idx\tlabel\tsentence\n0\t1\tgood fun\n")
    assert read_sst2_tsv(q) == [(["good", "fun"], 1)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("index\tsentence\n0\tno labels here\n", r"line 1: header has no 'label' column"),
        (
            "sentence\tlabel\ngood\t1\nbad\t0\textra\n",
            r"line 3: expected 2 tab-separated columns, got 3",
        ),
        ("sentence\tlabel\ngood\t1\nbad\n", r"line 3: expected 2 tab-separated columns, got 1"),
        ("sentence\tlabel\ngood\t3\n", r"line 2: unknown label 3"),
        ("sentence\tlabel\n  \t1\n", r"line 2: empty sentence"),
    ],
)
def test_read_sst2_tsv_errors(tmp_path, text, message):
    with pytest.raises(DataFormatError, match=r"dev\.tsv, " + message):
        read_sst2_tsv(write(tmp_path / "dev.tsv", text))


REVIEWS = {
    "aclImdb/train/pos/0_9.txt": "A <b>great</b> film.<br /><br />Loved it!",
    "aclImdb/train/pos/10_8.txt": "Superb.",
    "aclImdb/train/neg/1_2.txt": "Dull, dull, dull.",
    "aclImdb/train/unsup/5_0.txt": "not labelled",
    "aclImdb/test/neg/3_1.txt": "Awful.",
    "aclImdb/test/pos/4_10.txt": "Wonderful.",
    "aclImdb/README": "readme",
}


def make_folder(root):
    for name, text in REVIEWS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "aclImdb"


def make_tar(path, reviews=REVIEWS):
    with tarfile.open(path, "w:gz") as tar:
        for name, text in reviews.items():
            data = text.encode() if isinstance(text, str) else text
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


EXPECTED_TRAIN = [
    (["dull", ",", "dull", ",", "dull", "."], 0),
    (["a", "<", "b", ">", "great", "<", "/", "b", ">", "film", ".", "loved", "it", "!"], 1),
    (["superb", "."], 1),
]


def test_imdb_folder_and_archive_agree(tmp_path):
    folder = make_folder(tmp_path / "x")
    archive = make_tar(tmp_path / "aclImdb_v1.tar.gz")
    assert read_imdb(folder) == EXPECTED_TRAIN  # neg first, then pos, by file name
    assert read_imdb(folder.parent) == EXPECTED_TRAIN  # the folder holding aclImdb/ works too
    assert read_imdb(archive) == EXPECTED_TRAIN
    assert read_imdb(archive, "test") == [(["awful", "."], 0), (["wonderful", "."], 1)]
    both = load_imdb(tmp_path)  # finds the archive in the folder
    assert both["train"] == EXPECTED_TRAIN and len(both["test"]) == 2
    assert load_imdb(folder) == both
    assert not (tmp_path / "aclImdb").exists()  # the archive was not extracted


def test_imdb_errors(tmp_path):
    with pytest.raises(ValueError, match="split must be"):
        read_imdb(tmp_path, "unsup")
    with pytest.raises(FileNotFoundError, match="neither"):
        load_imdb(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.tar.gz"):
        read_imdb(tmp_path / "nope.tar.gz")
    bad = make_tar(tmp_path / "bad.tar.gz", {"aclImdb/train/neg/0_1.txt": b"ok\ncaf\xe9"})
    with pytest.raises(DataFormatError, match=r"bad\.tar\.gz:aclImdb/train/neg/0_1\.txt, line 2"):
        read_imdb(bad)
    empty = make_tar(tmp_path / "empty.tar.gz", {"aclImdb/README": "x"})
    with pytest.raises(DataFormatError, match="no train/pos or train/neg reviews"):
        read_imdb(empty)
    notar = write(tmp_path / "notar.tar.gz", "plain text")
    with pytest.raises(DataFormatError, match="not a readable tar archive"):
        read_imdb(notar)
    folder = make_folder(tmp_path / "y")
    (folder / "test" / "pos" / "4_10.txt").unlink()
    (folder / "test" / "pos").rmdir()
    with pytest.raises(FileNotFoundError, match="test/pos"):
        read_imdb(folder, "test")


def test_labels_are_ascii_integers_and_a_header_alone_is_no_data(tmp_path):
    """int() takes "1_0" as 10 and other scripts' digits: a label is plain ASCII digits."""
    from rnncore.data import DataFormatError
    from rnncore.data.sentiment import read_sst, read_sst2_tsv

    p = tmp_path / "stsa.fine.x"
    for label in ("1_0", "\u0661"):
        p.write_text(f"{label} a film\n", encoding="utf-8")
        with pytest.raises(DataFormatError, match="is not an integer"):
            read_sst(p)
    p.write_text("3 a film\n", encoding="utf-8")
    assert read_sst(p) == [(["a", "film"], 3)]
    for bad in ("2", 0, True):
        with pytest.raises(ValueError, match="num_classes must be an integer >= 1"):
            read_sst(p, num_classes=bad)
    tsv = tmp_path / "train.tsv"
    tsv.write_text("sentence\tlabel\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="no examples after the header"):
        read_sst2_tsv(tsv)
