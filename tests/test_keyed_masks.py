"""Random masks keyed by an example's index in the global batch (issue 16): a slice of a batch,
run with its offset, draws exactly what the whole batch draws, in every random layer."""

import numpy as np
import pytest
from rnncore import nn
from rnncore.nn.keyed import keyed_dropout, keyed_uniform

SLICES = [(0, 2), (2, 3), (3, 6)]


def _sliced(run, B):
    """run(lo, hi) for each slice of SLICES (covering range(B)) under its offset, joined."""
    assert SLICES[-1][1] == B
    parts = []
    for lo, hi in SLICES:
        with nn.offset_scope(lo):
            parts.append(run(lo, hi))
    return parts


@pytest.mark.parametrize(
    "cls, kw",
    [
        (nn.LSTM, {"zoneout": 0.2, "recurrent_dropout": 0.3}),
        (nn.LSTM, {"proj_size": 3}),
        (nn.GRU, {"zoneout": 0.2, "recurrent_dropout": 0.3}),
        (nn.RNN, {}),
        (nn.GatedRNN, {"zoneout": 0.1}),
    ],
)
def test_recurrent_masks_of_a_slice_are_those_of_the_whole_batch(cls, kw):
    rng = np.random.default_rng(0)
    kw = {**kw, "gates": ("input", "forget")} if cls is nn.GatedRNN else kw
    m = cls(5, 7, num_layers=3, dropout=0.4, bidirectional=True, seed=1, dtype="float64", **kw)
    x = rng.standard_normal((9, 6, 5))
    lens = np.array([9, 3, 5, 9, 1, 7])
    y, _ = m(x, lengths=lens)
    m.discard_saved()

    def run(lo, hi):
        m._calls = 0  # the same call of the layer
        out, _ = m(np.ascontiguousarray(x[:, lo:hi]), lengths=lens[lo:hi])
        m.discard_saved()
        return out

    m._calls = 0
    y2, _ = m(x, lengths=lens)  # the same call again: the same masks
    m.discard_saved()
    np.testing.assert_array_equal(y2, y)
    parts = _sliced(run, 6)
    np.testing.assert_allclose(np.concatenate(parts, axis=1), y, rtol=0, atol=1e-13)
    # without the offsets the slices draw other masks (the test would be vacuous otherwise)
    m._calls = 0
    wrong, _ = m(np.ascontiguousarray(x[:, 2:3]), lengths=lens[2:3])
    m.discard_saved()
    assert not np.allclose(wrong, y[:, 2:3])


@pytest.mark.parametrize("axis, shape", [(0, (6, 4, 3)), (1, (4, 6, 3)), (-1, (3, 4, 6))])
def test_dropout_masks_follow_the_batch_axis(axis, shape):
    d = nn.Dropout(0.5, seed=3, batch_axis=axis)
    y = d(np.ones(shape))
    assert 0.3 < (y == 0).mean() < 0.7
    parts = []
    for lo, hi in SLICES:
        d._calls = 0
        sl = [slice(None)] * 3
        sl[axis] = slice(lo, hi)
        with nn.offset_scope(lo):
            parts.append(d(np.ones(np.ones(shape)[tuple(sl)].shape)))
    np.testing.assert_array_equal(np.concatenate(parts, axis=axis), y)
    assert d(np.ones(shape)).tolist() != y.tolist()  # the next call: fresh masks


def test_offsets_are_checked_and_scoped():
    assert nn.batch_offset() == 0
    with nn.offset_scope(5):
        assert nn.batch_offset() == 5
    assert nn.batch_offset() == 0
    for bad, err in ((-1, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(err, match="offset"):
            nn.set_batch_offset(bad)
    with pytest.raises(ValueError, match="batch_axis 2 is not an axis of x"):
        nn.Dropout(0.5, batch_axis=2)(np.ones((3, 4)))
    with pytest.raises(TypeError, match="batch_axis must be an integer or None"):
        nn.Dropout(0.5, batch_axis="1")


def test_keyed_uniform_is_uniform_and_dropout_uses_it():
    u = keyed_uniform(7, (200, 500), batch_axis=0)
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    # neighbouring examples and seeds are uncorrelated
    assert abs(np.corrcoef(u[0], u[1])[0, 1]) < 0.15
    assert abs(np.corrcoef(u.ravel(), keyed_uniform(8, (200, 500), 0).ravel())[0, 1]) < 0.01
    # Dropout's mask is keyed_uniform's >= p, in float32 and float64, and under an offset
    for dtype in (np.float32, np.float64):
        x = np.random.default_rng(1).standard_normal((5, 8, 3)).astype(dtype)
        with nn.offset_scope(11):
            y, scale = keyed_dropout(x, 0.3, 99, 1)
            u = keyed_uniform(99, x.shape, 1)
        assert y.dtype == scale.dtype == dtype
        np.testing.assert_array_equal(scale, np.where(u >= 0.3, dtype(1 / 0.7), dtype(0)))
        np.testing.assert_array_equal(y, x * scale)
