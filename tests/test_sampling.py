"""The engine's one softmax and one sampler, as Python sees them (rnncore._core)."""

import numpy as np
import pytest
from rnncore import _core
from rnncore.models import LanguageModel


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(7,), (3, 7), (2, 3, 5)])
def test_log_softmax_and_softmax_match_numpy(dtype, shape):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    z = x.astype(np.float64)
    want = z - z.max(-1, keepdims=True)
    want = want - np.log(np.exp(want).sum(-1, keepdims=True))
    tol = 1e-6 if dtype == "float32" else 1e-13
    lp = _core.log_softmax(x)
    assert lp.dtype == np.dtype(dtype) and lp.shape == x.shape
    np.testing.assert_allclose(lp, want, rtol=0, atol=tol)
    p = _core.softmax(x)
    np.testing.assert_allclose(p, np.exp(want), rtol=0, atol=tol)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=0, atol=tol * 10)
    big = np.full(shape, 1e4, dtype=dtype)  # no overflow: every row is uniform
    np.testing.assert_allclose(_core.softmax(big), 1.0 / shape[-1], rtol=1e-6)


def test_softmax_bad_input():
    with pytest.raises(TypeError, match="x: expected dtype float32 or float64"):
        _core.softmax(np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="last axis"):
        _core.log_softmax(np.zeros((2, 0)))
    with pytest.raises(TypeError, match="numpy array"):
        _core.softmax([1.0, 2.0])


def test_sampler_is_seeded_and_follows_the_distribution():
    lp = np.log(np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float64))
    a, b = _core.Sampler(7), _core.Sampler(7)
    draws = [a.draw(lp) for _ in range(20000)]
    assert draws[:50] == [b.draw(lp) for _ in range(50)]
    freq = np.bincount(draws, minlength=4) / len(draws)
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=0.015)
    # top_k keeps the k most likely; temperature sharpens or flattens
    top2 = [a.draw(lp, 1.0, 2) for _ in range(2000)]
    assert set(top2) == {2, 3}
    cold = np.bincount([a.draw(lp, 0.2) for _ in range(4000)], minlength=4) / 4000
    assert cold[3] > 0.75
    assert a.draw(lp.astype(np.float32), 0.0) == 3  # greedy
    tie = np.log(np.array([0.4, 0.1, 0.4, 0.1]))
    assert a.draw(tie, 0.0) == 0 and a.draw(tie, 1.0, 1) == 0  # ties go to the lower id


def test_sampler_bad_input():
    s = _core.Sampler(1)
    with pytest.raises(ValueError, match="NaN"):
        s.draw(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="temperature"):
        s.draw(np.zeros(3), -1.0)
    with pytest.raises(ValueError, match="top_k"):
        s.draw(np.zeros(3), 1.0, -2)
    with pytest.raises(ValueError, match="no candidate has a finite"):
        s.draw(np.full(3, -np.inf))


def test_language_model_sample_uses_the_engine_sampler():
    """Same seed, same tokens; the first draw equals a draw on the model's own next-token
    log-probabilities with a fresh Sampler of that seed."""
    lm = LanguageModel(9, 4, 6, seed=0)
    prompt = np.array([1, 2, 3])
    a = lm.sample(prompt, 12, temperature=0.8, top_k=5, seed=3)
    assert np.array_equal(a, lm.sample(prompt, 12, temperature=0.8, top_k=5, seed=3))
    lm.eval()
    logits, _ = lm.forward(prompt[:, None])
    first = _core.Sampler(3).draw(_core.log_softmax(logits[-1, 0]), 0.8, 5)
    assert a[0] == first
    assert (
        lm.sample(prompt, 4, temperature=0).tolist()
        == lm.sample(prompt, 4, temperature=0.0).tolist()
    )
