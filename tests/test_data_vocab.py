"""Tests of rnncore.data.Vocab: deterministic order, specials, encode/decode, JSON round trips."""

import json

import numpy as np
import pytest
from rnncore.data import BOS, EOS, PAD, UNK, Vocab, build_label_vocab

SENTS = [["b", "a", "c", "a"], ["c", "d", "a", "e"], ["b"]]  # a:3, b:2, c:2, d:1, e:1


def test_build_order_is_frequency_then_first_occurrence():
    v = Vocab.build(SENTS)
    assert v.itos == [PAD, UNK, "a", "b", "c", "d", "e"]
    assert (v.pad_id, v.unk_id, v.bos_id, v.eos_id) == (0, 1, None, None)
    assert len(v) == 7
    # the same data in another order gives the same counts but another tie order
    v2 = Vocab.build([["c", "b"], ["a", "a", "a", "b", "c"]])
    assert v2.itos == [PAD, UNK, "a", "c", "b"]


def test_specials_order_and_flags():
    v = Vocab.build(SENTS, bos=True, eos=True)
    assert v.itos[:4] == [PAD, UNK, BOS, EOS]
    assert (v.pad_id, v.unk_id, v.bos_id, v.eos_id) == (0, 1, 2, 3)
    v = Vocab.build(SENTS, pad=False, unk=False)
    assert v.itos == ["a", "b", "c", "d", "e"]
    assert v.specials == {}


def test_special_spelling_in_data_maps_to_the_special():
    # PTB spells rare words <unk> and we append <eos>: they must not be duplicated
    v = Vocab.build([["x", UNK, EOS], [UNK, EOS]], pad=False, eos=True)
    assert v.itos == [UNK, EOS, "x"]


def test_min_freq_and_max_size():
    assert Vocab.build(SENTS, min_freq=2).itos == [PAD, UNK, "a", "b", "c"]
    assert Vocab.build(SENTS, max_size=4).itos == [PAD, UNK, "a", "b"]
    assert len(Vocab.build(SENTS, max_size=2)) == 2
    with pytest.raises(ValueError, match="max_size"):
        Vocab.build(SENTS, max_size=1)
    with pytest.raises(ValueError, match="min_freq"):
        Vocab.build(SENTS, min_freq=0)


def test_encode_decode_unknown():
    v = Vocab.build(SENTS, bos=True, eos=True)
    ids = v.encode(["a", "zzz", "e"], add_bos=True, add_eos=True)
    assert ids.dtype == np.int64
    assert ids.tolist() == [2, 4, 1, 8, 3]
    assert v.decode(ids) == [BOS, "a", UNK, "e", EOS]
    assert v.decode(ids, skip_specials=True) == ["a", "e"]
    assert v.decode([4, 3, 5], stop_at_eos=True) == ["a"]
    assert v["zzz"] == v.unk_id and v["a"] == 4 and v.token(4) == "a"
    assert "a" in v and "zzz" not in v
    with pytest.raises(ValueError, match="out of range"):
        v.decode([0, 99])
    with pytest.raises(IndexError, match="out of range"):
        v.token(-1)


def test_no_unk_rejects_unknown_and_missing_specials():
    v = Vocab.build(SENTS, unk=False)
    with pytest.raises(ValueError, match="'zzz' at position 1"):
        v.encode(["a", "zzz"])
    with pytest.raises(ValueError, match="no bos"):
        v.encode(["a"], add_bos=True)


def test_str_is_encoded_per_character():
    v = Vocab.build(["hello"], pad=False, unk=False)
    assert v.itos == ["l", "h", "e", "o"]
    assert v.decode(v.encode("hole")) == list("hole")


def test_dict_and_json_round_trip(tmp_path):
    v = Vocab.build([["é", "ß", "a"]], bos=True)
    d = v.to_dict()
    json.dumps(d)  # JSON-ready: fits in a checkpoint's metadata
    assert Vocab.from_dict(json.loads(json.dumps(d))) == v
    path = tmp_path / "vocab.json"
    v.save(path)
    assert Vocab.load(path) == v
    assert "é" in path.read_text(encoding="utf-8")


def test_bad_dicts_and_files(tmp_path):
    with pytest.raises(ValueError, match="not a vocabulary"):
        Vocab.from_dict({"tokens": ["a"]})
    with pytest.raises(ValueError, match="unknown special roles"):
        Vocab.from_dict({"format": "rnncore.data.Vocab", "version": 1, "tokens": ["a"],
                         "specials": {"mask": "a"}})  # fmt: skip
    with pytest.raises(FileNotFoundError, match="nope.json"):
        Vocab.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.json"):
        Vocab.load(bad)


def test_constructor_checks():
    with pytest.raises(ValueError, match="duplicate token 'a'"):
        Vocab(["a", "b", "a"])
    with pytest.raises(ValueError, match="pad token"):
        Vocab(["a"], pad=PAD)
    with pytest.raises(TypeError):
        Vocab.build("abc")


def test_label_vocab_has_pad_but_no_unk():
    v = build_label_vocab([["O", "B-PER", "I-PER", "O"], ["O", "B-LOC"]])
    assert v.itos == [PAD, "O", "B-PER", "I-PER", "B-LOC"]
    assert v.unk_id is None
    with pytest.raises(ValueError, match="B-ORG"):
        v.encode(["B-ORG"])
