"""Tests of batchify, BPTT windows, padding and the bucketing batch sampler."""

import numpy as np
import pytest
from rnncore.data import BPTTBatches, BucketBatchSampler, batchify, pad_sequences


def test_batchify_columns_are_contiguous_text():
    data = batchify(np.arange(26), 4)  # T = 6, the last 2 tokens dropped
    assert data.shape == (6, 4) and data.dtype == np.int64 and data.flags.c_contiguous
    assert data[:, 0].tolist() == [0, 1, 2, 3, 4, 5]
    assert data[:, 3].tolist() == [18, 19, 20, 21, 22, 23]
    assert data[0].tolist() == [0, 6, 12, 18]
    with pytest.raises(ValueError, match="too few"):
        batchify([1, 2, 3], 4)
    with pytest.raises(ValueError, match="batch_size"):
        batchify([1, 2, 3], 0)
    with pytest.raises(ValueError, match="1-D integer"):
        batchify(np.zeros((2, 2), dtype=np.int64), 1)


def test_bptt_windows_shift_by_one_and_last_is_shorter():
    data = batchify(np.arange(22), 2)  # [11, 2]
    batches = BPTTBatches(data, 4)
    out = list(batches)
    assert len(batches) == len(out) == 3  # ceil((11 - 1) / 4)
    assert [x.shape[0] for x, _ in out] == [4, 4, 2]
    for x, y in out:
        assert x.shape == y.shape
        assert np.array_equal(y, x + 1)  # next token of the same column
    assert np.array_equal(np.concatenate([x for x, _ in out]), data[:-1])
    assert np.shares_memory(out[0][0], data)  # views, no copies
    assert list(BPTTBatches(data, 100))[0][0].shape == (10, 2)
    with pytest.raises(ValueError, match="T >= 2"):
        BPTTBatches(data[:1], 3)
    with pytest.raises(ValueError, match="bptt"):
        BPTTBatches(data, 0)


def test_pad_sequences_layouts_and_lengths():
    seqs = [[5, 6, 7], np.array([8]), [9, 10]]
    x, lengths = pad_sequences(seqs, pad_id=0)
    assert x.dtype == np.int64 and lengths.dtype == np.int64
    assert x.shape == (3, 3) and x.flags.c_contiguous
    assert x.T.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert lengths.tolist() == [3, 1, 2]
    xb, _ = pad_sequences(seqs, pad_id=-1, batch_first=True)
    assert xb.tolist() == [[5, 6, 7], [8, -1, -1], [9, 10, -1]]
    xc, lc = pad_sequences(seqs, max_len=2, batch_first=True)
    assert xc.tolist() == [[5, 6], [8, 0], [9, 10]] and lc.tolist() == [2, 1, 2]


def test_pad_sequences_errors():
    with pytest.raises(ValueError, match="no sequences"):
        pad_sequences([])
    with pytest.raises(ValueError, match="sequence 1 must be a non-empty"):
        pad_sequences([[1], []])
    with pytest.raises(ValueError, match="sequence 0 must hold integers"):
        pad_sequences([[1.5]])


def test_bucket_sampler_groups_similar_lengths_and_covers_everything():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 100, size=1000)
    s = BucketBatchSampler(lengths, 10, seed=3, pool_batches=10)
    batches = list(s)
    assert len(batches) == len(s) == 100
    flat = np.concatenate(batches)
    assert np.array_equal(np.sort(flat), np.arange(1000))
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    random_spread = np.mean([np.ptp(lengths[i : i + 10]) for i in range(0, 1000, 10)])
    assert spread < random_spread / 4  # far less padding than random batches


def test_bucket_sampler_is_deterministic_per_seed_and_epoch():
    lengths = np.arange(50) % 7 + 1
    a = BucketBatchSampler(lengths, 4, seed=1)
    b = BucketBatchSampler(lengths, 4, seed=1)
    ea1, ea2 = [x.tolist() for x in a], [x.tolist() for x in a]  # epochs 0 and 1
    assert ea1 == [x.tolist() for x in b]
    assert ea1 != ea2  # a new epoch reshuffles
    b.set_epoch(1)
    assert [x.tolist() for x in b] == ea2
    assert [x.tolist() for x in BucketBatchSampler(lengths, 4, seed=2)] != ea1


def test_bucket_sampler_without_shuffle_and_drop_last():
    lengths = [5, 1, 3, 1, 2]
    s = BucketBatchSampler(lengths, 2, shuffle=False)
    assert [b.tolist() for b in s] == [[1, 3], [4, 2], [0]]
    s = BucketBatchSampler(lengths, 2, shuffle=False, drop_last=True)
    assert len(s) == 2 and [b.tolist() for b in s] == [[1, 3], [4, 2]]
    assert sum(b.size for b in BucketBatchSampler(lengths, 2, drop_last=True)) == 4
    with pytest.raises(ValueError, match="lengths is empty"):
        BucketBatchSampler([], 2)
