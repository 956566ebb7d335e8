"""The task commands end to end on tiny data files written here: train -> metrics.json and a
checkpoint -> eval / sample / predict; bad input gives `rnncore: error: ...` and exit status 2."""

import json
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from rnncore import data
from rnncore.cli import main
from rnncore.train import load_checkpoint

FAST = "--no-progress --epochs 2 --hidden 16 --embed 16 --layers 1"


def _run(capsys, args, *paths, data=None, out=None, text=None):
    """main() on ``args`` (split on spaces) + paths, then --data/--out and a final TEXT argument
    when given (these are kept whole).

    Returns:
        (exit status, stdout, stderr).
    """
    argv = args.split() + [str(p) for p in paths]
    if data is not None:
        argv += ["--data", str(data)]
    if out is not None:
        argv += ["--out", str(out)]
    if text is not None:
        argv.append(text)
    code = main(argv)
    stdout, stderr = capsys.readouterr()
    return code, stdout, stderr


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def ptb_dir(tmp_path):
    d = tmp_path / "ptb"
    d.mkdir()
    for i, split in enumerate(("train", "valid", "test")):
        n = 300 if split == "train" else 60
        sents = data.anbn(n, max_n=4, seed=i)
        _write(d / f"ptb.{split}.txt", [" ".join(s) for s in sents])
    return d


@pytest.fixture
def sst_dir(tmp_path):
    d = tmp_path / "sst"
    d.mkdir()
    for i, split in enumerate(("train", "dev", "test")):
        ex = data.synthetic_sentiment(300 if split == "train" else 60, seed=i)
        _write(d / f"stsa.binary.{split}", [f"{y} {' '.join(t)}" for t, y in ex])
    return d


def _conll_lines(sentences):
    lines = ["-DOCSTART- -X- -X- O", ""]
    for toks, tags in sentences:
        lines += [f"{w} NN I-NP {t}" for w, t in zip(toks, tags, strict=True)] + [""]
    return lines


@pytest.fixture
def conll_dir(tmp_path):
    d = tmp_path / "conll"
    d.mkdir()
    for i, split in enumerate(("train", "valid", "test")):
        sents = data.synthetic_tagging(200 if split == "train" else 40, seed=i)
        sents = [
            ([w.capitalize() if t != "O" else w for w, t in zip(*s, strict=True)], s[1])
            for s in sents
        ]
        _write(d / f"{split}.txt", _conll_lines(sents))
    return d


def _metrics(out_dir):
    return json.loads((out_dir / "metrics.json").read_text())


def test_lm_train_eval_sample(capsys, tmp_path, ptb_dir):
    out = tmp_path / "lm"
    opts = "--batch-size 4 --bptt 8 --eval-batch-size 2 --optimizer adam --lr 0.02 --tie-weights"
    code, _, err = _run(capsys, f"train lm {FAST} {opts}", data=ptb_dir, out=out)
    assert code == 0, err
    m = _metrics(out)
    assert m["task"] == "lm" and m["epochs"] == 2 and len(m["history"]) == 2
    assert m["wall_seconds"] > 0 and m["seconds_per_epoch"] > 0
    assert set(m["valid"]) == {"loss", "ppl"} and m["test"]["ppl"] < 3.0  # vocab a, b, <eos>
    ckpt = load_checkpoint(out / "checkpoint")
    assert ckpt.model_type == "language_model" and ckpt.extra["task"] == "lm"
    assert ckpt.vocab.itos[:2] == ["<unk>", "<eos>"]
    assert (out / "checkpoint" / "best" / "model.safetensors").is_file()

    code, stdout, err = _run(capsys, "eval", out, data=ptb_dir)
    assert code == 0, err
    assert json.loads(stdout)["test"]["ppl"] == pytest.approx(m["test"]["ppl"], rel=1e-5)
    code, stdout, _ = _run(capsys, "eval", out, data=ptb_dir / "ptb.test.txt")
    assert json.loads(stdout)["ptb.test.txt"]["loss"] == pytest.approx(m["test"]["loss"], 1e-5)
    code, stdout, err = _run(capsys, "eval --int8", out, data=ptb_dir)
    assert code == 0, err  # int8 products: the same perplexity within the quantization error
    int8_ppl = json.loads(stdout)["test"]["ppl"]
    assert int8_ppl != m["test"]["ppl"] and int8_ppl == pytest.approx(m["test"]["ppl"], rel=0.02)
    with pytest.raises(SystemExit):  # one token per call: int8 would only cost there
        _run(capsys, "sample --int8", out)
    assert "unrecognized arguments: --int8" in capsys.readouterr().err

    code, stdout, err = _run(
        capsys, "sample --length 30 --seed 1", out, "--prompt", text="a A zebra"
    )
    assert code == 0, err
    assert stdout.startswith("a a <unk>") and len(stdout.split()) >= 10
    code, stdout, err = _run(capsys, "sample --length 40 --temperature 0.5", out)
    assert code == 0 and set(stdout.split()) <= {"a", "b", "<unk>"}


def test_charlm_reports_bits_per_character(capsys, tmp_path):
    text = tmp_path / "input.txt"
    text.write_text("the cat sat on the mat.\n" * 60, encoding="utf-8")
    out = tmp_path / "charlm"
    opts = "--batch-size 4 --bptt 16 --eval-batch-size 2 --lr 0.01 --dropout 0"
    code, _, err = _run(capsys, f"train charlm {FAST} {opts}", data=text, out=out)
    assert code == 0, err
    m = _metrics(out)
    assert m["test"]["bpc"] == pytest.approx(m["test"]["loss"] / np.log(2))
    assert m["data"]["train_tokens"] == int(0.9 * 24 * 60)
    code, stdout, err = _run(capsys, "sample --length 20", out, "--prompt", text="the c§")
    assert code == 0 and stdout.startswith("the c") and len(stdout) == 5 + 20 + 1
    assert "left out of the prompt" in err
    code, stdout, _ = _run(capsys, "sample --length 5 --temperature 0", out)
    assert code == 0 and len(stdout) == 6
    code, stdout, _ = _run(capsys, "eval", out, data=tmp_path)  # a folder with input.txt
    ev = json.loads(stdout)
    assert code == 0 and set(ev) == {"valid", "test"}
    assert ev["test"]["bpc"] == pytest.approx(m["test"]["bpc"], rel=1e-5)


def test_sentiment_train_eval_predict(capsys, tmp_path, sst_dir):
    out = tmp_path / "sst"
    opts = "--epochs 4 --lr 0.01 --cell gru --dropout 0"
    code, _, err = _run(capsys, f"train sentiment {FAST} {opts}", data=sst_dir, out=out)
    assert code == 0, err
    m = _metrics(out)
    assert m["valid"]["accuracy"] >= 0.85 and m["test"]["accuracy"] >= 0.85
    assert m["data"]["train_examples"] == 300 and m["model_config"]["bidirectional"] is True
    code, stdout, _ = _run(capsys, "eval", out, data=sst_dir)
    assert json.loads(stdout)["test"]["accuracy"] == pytest.approx(m["test"]["accuracy"])
    code, stdout, _ = _run(capsys, "predict", out, text="A wonderful, superb film!")
    assert code == 0 and stdout.split()[0] == "positive" and "negative=" in stdout
    code, stdout, _ = _run(capsys, "predict", out, text="awful and boring, zzzunknown")
    assert stdout.split()[0] == "negative"
    code, _, err = _run(capsys, "predict", out, text="   ")
    assert code == 2 and err.startswith("rnncore: error:") and "no words" in err


def test_sentiment_from_a_glue_tsv_holds_out_validation(capsys, tmp_path):
    ex = data.synthetic_sentiment(120, seed=0)
    tsv = _write(
        tmp_path / "train.tsv", ["sentence\tlabel"] + [f"{' '.join(t)}\t{y}" for t, y in ex]
    )
    out = tmp_path / "glue"
    code, _, err = _run(
        capsys, f"train sentiment {FAST} --epochs 1 --valid-fraction 0.25", data=tsv, out=out
    )
    assert code == 0, err
    m = _metrics(out)
    assert m["data"]["valid_examples"] == 30 and m["test"] is None


def test_sentiment_reads_imdb_folder_and_archive(capsys, tmp_path):
    root = tmp_path / "imdb" / "aclImdb"
    ex = data.synthetic_sentiment(80, seed=3)
    for i, (toks, y) in enumerate(ex):
        folder = root / ("train" if i < 60 else "test") / ("pos" if y else "neg")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}_7.txt").write_text(" ".join(toks).capitalize() + ".<br />", "utf-8")
    with tarfile.open(tmp_path / "aclImdb_v1.tar.gz", "w:gz") as tar:
        tar.add(root, arcname="aclImdb")
    for src in (tmp_path / "imdb", tmp_path / "aclImdb_v1.tar.gz"):
        out = tmp_path / f"out_{src.name}"
        code, _, err = _run(capsys, f"train sentiment {FAST} --epochs 1", data=src, out=out)
        assert code == 0, err
        m = _metrics(out)
        assert m["data"]["source"].startswith("IMDB") and m["data"]["test_examples"] == 20
        assert m["data"]["train_examples"] + m["data"]["valid_examples"] == 60


def test_tagger_train_eval_predict(capsys, tmp_path, conll_dir):
    out = tmp_path / "ner"
    opts = "--epochs 5 --batch-size 16 --dropout 0 --lr 0.02 --char-embed 8 --char-hidden 8"
    code, _, err = _run(capsys, f"train tagger {FAST} {opts}", data=conll_dir, out=out)
    assert code == 0, err
    m = _metrics(out)
    assert {"f1", "precision", "recall", "accuracy"} <= set(m["test"])
    assert m["test"]["f1"] >= 0.8, m["test"]
    ckpt = load_checkpoint(out / "checkpoint")
    assert set(ckpt.vocabs) == {"tags", "chars"} and "B-PER" in ckpt.vocabs["tags"]
    code, stdout, _ = _run(capsys, "eval", out, data=conll_dir / "test.txt")
    assert json.loads(stdout)["test.txt"]["f1"] == pytest.approx(m["test"]["f1"])
    code, stdout, err = _run(capsys, "predict", out, text="Mary met Alice Smith in London.")
    assert code == 0, err
    pairs = [p.rsplit("/", 1) for p in stdout.split()]
    assert [w for w, _ in pairs] == ["Mary", "met", "Alice", "Smith", "in", "London", "."]
    assert [t for _, t in pairs][:4] == ["B-PER", "O", "B-PER", "I-PER"]

    pos = tmp_path / "pos"
    opts = "--epochs 1 --label-column pos --no-char-features"
    code, _, err = _run(capsys, f"train tagger {FAST} {opts}", data=conll_dir, out=pos)
    assert code == 0, err
    assert _metrics(pos)["test"]["accuracy"] == 1.0  # every POS tag is NN
    assert "f1" not in _metrics(pos)["test"]


# ---- bad input ----------------------------------------------------------------------------------
def test_missing_and_malformed_files_name_file_and_line(capsys, tmp_path, conll_dir, sst_dir):
    code, _, err = _run(capsys, "train lm", data=tmp_path / "nope", out=tmp_path / "o")
    assert code == 2 and err.startswith("rnncore: error:") and "nope" in err
    assert "Traceback" not in err

    lines = (conll_dir / "valid.txt").read_text().splitlines()
    lines[4] = lines[4] + " EXTRA"
    _write(conll_dir / "valid.txt", lines)
    code, _, err = _run(capsys, "train tagger", data=conll_dir, out=tmp_path / "t")
    assert code == 2 and "valid.txt, line 5" in err and "expected 4 columns" in err

    # (a tag only the valid/test file has is no longer an error: tests/test_cli_user.py)

    _write(sst_dir / "stsa.binary.dev", ["1 fine", "7 bad label"])
    code, _, err = _run(capsys, "train sentiment", data=sst_dir, out=tmp_path / "s")
    assert code == 2 and "stsa.binary.dev, line 2: unknown label 7" in err

    (sst_dir / "stsa.binary.dev").write_bytes(b"1 ok\n0 caf\xe9\n")
    code, _, err = _run(capsys, "train sentiment", data=sst_dir, out=tmp_path / "s")
    assert code == 2 and "line 2: not valid UTF-8" in err

    empty = _write(tmp_path / "empty.txt", [""])
    code, _, err = _run(capsys, "train charlm", data=empty, out=tmp_path / "c")
    assert code == 2 and "empty.txt: file is empty" in err

    code, _, err = _run(capsys, "train sentiment", data=tmp_path, out=tmp_path / "s")
    assert code == 2 and "no sentiment data found" in err


def test_bad_options_and_model_dirs(capsys, tmp_path, ptb_dir):
    o = tmp_path / "o"
    code, _, err = _run(capsys, "train lm --tie-weights --embed 8 --hidden 16", data=ptb_dir, out=o)
    assert code == 2 and "--tie-weights needs --embed == --hidden" in err
    code, _, err = _run(capsys, "train lm --batch-size 5000", data=ptb_dir, out=o)
    assert code == 2 and "ptb.train.txt has" in err and "too few" in err
    code, _, err = _run(capsys, "eval", tmp_path / "missing", data=ptb_dir)
    assert code == 2 and "model directory not found" in err
    (tmp_path / "notamodel").mkdir()
    code, _, err = _run(capsys, "sample", tmp_path / "notamodel")
    assert code == 2 and "no checkpoint" in err

    out = tmp_path / "lm"
    opts = "--epochs 1 --batch-size 4 --max-batches 3"
    code, _, err = _run(capsys, f"train lm {FAST} {opts}", data=ptb_dir, out=out)
    assert code == 0 and _metrics(out)["history"][0]["steps"] == 3
    code, _, err = _run(
        capsys, f"train lm {FAST} {opts} --epochs 2 --resume", data=ptb_dir, out=out
    )
    assert code == 0, err
    assert [h["epoch"] for h in _metrics(out)["history"]] == [1, 2]  # epoch 1 was not redone
    # A run killed between the two renames of a save leaves only the backup of last/: --resume
    # continues from it (issue 13), as load_checkpoint does.
    last = out / "checkpoint" / "last"
    last.rename(last.parent / ".last.old-999999999-deadbeef")
    code, _, err = _run(
        capsys, f"train lm {FAST} {opts} --epochs 3 --resume", data=ptb_dir, out=out
    )
    assert code == 0, err
    assert [h["epoch"] for h in _metrics(out)["history"]] == [1, 2, 3]
    assert (last / "checkpoint.json").is_file()
    code, _, err = _run(capsys, f"train lm {FAST} --resume", data=ptb_dir, out=tmp_path / "new")
    assert code == 2 and "--resume: no checkpoint" in err
    code, _, err = _run(capsys, "predict", out, text="a b")
    assert code == 2 and "`rnncore predict` does not apply to a lm model" in err
    code, _, err = _run(capsys, "sample --top-k 0", out)
    assert code == 2 and "--top-k must be >= 1" in err


def test_exit_status_and_no_traceback_from_the_command(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "rnncore", "train", "tagger"]
        + ["--data", str(tmp_path / "x"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("rnncore: error:") and "Traceback" not in proc.stderr


def test_charlm_resume_is_bit_identical(capsys, tmp_path):
    """A char-LM run stopped after epoch 1 and resumed ends with the same bytes as the run that
    never stopped (issue 13: they differed by 2.3e-9 when sums depended on buffer addresses).
    Dropout on, so the restored random state matters too."""
    from rnncore.serialization import load_safetensors

    text = tmp_path / "input.txt"
    text.write_text("the cat sat on the mat. a dog ran.\n" * 40, encoding="utf-8")
    opts = "--no-progress --hidden 16 --embed 8 --layers 2 --batch-size 4 --bptt 12 --dropout 0.2"
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert _run(capsys, f"train charlm {opts} --epochs 2", data=text, out=whole)[0] == 0
    assert _run(capsys, f"train charlm {opts} --epochs 1", data=text, out=split)[0] == 0
    code, _, err = _run(capsys, f"train charlm {opts} --epochs 2 --resume", data=text, out=split)
    assert code == 0, err
    a, _ = load_safetensors(whole / "checkpoint" / "last" / "model.safetensors")
    b, _ = load_safetensors(split / "checkpoint" / "last" / "model.safetensors")
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].tobytes() == b[name].tobytes(), name
    ha, hb = _metrics(whole)["history"], _metrics(split)["history"]
    assert [h["train_loss"] for h in ha] == [h["train_loss"] for h in hb]
