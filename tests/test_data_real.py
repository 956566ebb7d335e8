"""The loaders on the real datasets in ../shared/data (skipped where that folder is absent)."""

from pathlib import Path

import numpy as np
import pytest
from rnncore import data
from rnncore.metrics import persistence_forecast, rmse

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def folder(name):
    path = DATA / name
    if not path.is_dir():
        pytest.skip(f"real dataset not available: {path}")
    return path


def test_ptb_token_counts_with_eos():
    c = data.load_ptb(folder("ptb"))
    assert (c.train.size, c.valid.size, c.test.size) == (929_589, 73_760, 82_430)
    assert len(c.vocab) == 10_000  # Mikolov's 10k vocabulary, <unk> and <eos> included
    assert (c.vocab.unk_id, c.vocab.eos_id) == (0, 1)
    assert int((c.train == c.vocab.eos_id).sum()) == 42_068  # one per line
    assert int(c.valid.max()) < 10_000 and int(c.test.max()) < 10_000
    train = data.batchify(c.train, 20)
    assert train.shape == (46_479, 20)
    assert len(data.BPTTBatches(train, 35)) == 1328


def test_tiny_shakespeare_chars():
    c = data.load_tiny_shakespeare(folder("tinyshakespeare"))
    assert c.train.size + c.valid.size + c.test.size == 1_115_394
    assert len(c.vocab) == 65 and c.vocab.specials == {}
    assert c.train.size == 1_003_854  # floor(0.9 N)
    assert "".join(c.vocab.decode(c.train[:14])) == "First Citizen:"


@pytest.mark.parametrize(
    ("fine", "counts", "classes"),
    [(False, (6_920, 872, 1_821), 2), (True, (8_544, 1_101, 2_210), 5)],
)
def test_sst_sentence_counts(fine, counts, classes):
    d = data.load_sst(folder("sst2"), fine=fine)
    assert (len(d["train"]), len(d["dev"]), len(d["test"])) == counts
    assert {label for _, label in d["train"]} == set(range(classes))


def test_conll2003_sentence_counts():
    d = data.load_conll2003(folder("conll2003"))
    assert (len(d["train"]), len(d["valid"]), len(d["test"])) == (14_041, 3_250, 3_453)
    tags = data.build_label_vocab(t for _, t in d["train"])
    assert set(tags.itos[1:]) == {
        "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC",
    }  # fmt: skip
    # every valid/test tag is known to the training vocabulary
    data.read_conll(folder("conll2003") / "test.txt", labels=tags)
    pos = data.read_conll(folder("conll2003") / "train.txt", label_column="pos")
    assert pos[0] == (d["train"][0][0], ["NNP", "VBZ", "JJ", "NN", "TO", "VB", "JJ", "NN", "."])


def test_fra_eng_pairs():
    pairs = data.read_tatoeba(folder("fra_eng") / "fra.txt")
    assert len(pairs) == 142_787
    assert pairs[0] == (["Go", "."], ["Va", "!"])


def test_airline_passengers_and_persistence_baseline():
    dates, values = data.load_airline_passengers(folder("timeseries"))
    assert len(values) == 144 and dates[0] == "1949-01" and dates[-1] == "1960-12"
    assert (values[0], values[-1]) == (112.0, 432.0)
    _, test = data.split_series(values, 0.33)
    assert test.size == 48
    # README: repeating the last value on the last 33% gives RMSE about 48
    assert rmse(persistence_forecast(values, 48), test) == pytest.approx(48.04, abs=0.01)
    d = data.make_forecast_data(values, input_len=12, test_fraction=0.33, log=True)
    np.testing.assert_allclose(d.to_original(d.y_test, d.test_start)[:, 0], test, rtol=1e-12)
