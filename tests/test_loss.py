"""CrossEntropyLoss and MSELoss: finite-difference gradients, equality with torch (incl.
ignore_index, label smoothing, logits of 1e4), the backward protocol, and bad inputs."""

import numpy as np
import pytest
from rnncore.nn import CrossEntropyLoss, MSELoss


def _numeric_grad(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        keep = x[i]
        x[i] = keep + h
        up = f()
        x[i] = keep - h
        down = f()
        x[i] = keep
        g[i] = (up - down) / (2 * h)
    return g


def _case(shape=(3, 4), C=5, seed=0, ignore=-100):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal(shape + (C,)) * 2
    targets = rng.integers(0, C, size=shape)
    targets.flat[1] = ignore
    return logits, targets


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_cross_entropy_gradcheck(reduction, smoothing):
    logits, targets = _case(ignore=7)
    crit = CrossEntropyLoss(ignore_index=7, reduction=reduction, label_smoothing=smoothing)
    crit(logits, targets)
    analytic = crit.backward()
    assert analytic.shape == logits.shape
    numeric = _numeric_grad(lambda: crit(logits, targets), logits)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
    assert np.all(analytic[0, 1] == 0)  # the ignored position
    assert crit.count == 11


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_equals_torch(dtype, reduction, smoothing):
    torch = pytest.importorskip("torch")
    logits, targets = _case(shape=(4, 6), C=7, seed=1)
    logits = logits.astype(dtype)
    crit = CrossEntropyLoss(reduction=reduction, label_smoothing=smoothing)
    loss = crit(logits, targets)
    assert isinstance(loss, float)
    grad = crit.backward()
    z = torch.tensor(logits.reshape(-1, 7), requires_grad=True)
    want = torch.nn.functional.cross_entropy(
        z, torch.tensor(targets.reshape(-1)), reduction=reduction, label_smoothing=smoothing
    )
    want.backward()
    tol = 1e-12 if dtype == "float64" else 1e-5
    assert loss == pytest.approx(want.item(), rel=tol)
    np.testing.assert_allclose(grad.reshape(-1, 7), z.grad.numpy(), rtol=tol, atol=tol * 1e-2)


def test_cross_entropy_huge_logits_finite_and_equal_to_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    logits = (rng.standard_normal((8, 10)) * 1e4).astype(np.float32)
    logits[0, 3] = 1e4
    targets = rng.integers(0, 10, size=8)
    crit = CrossEntropyLoss(label_smoothing=0.05)
    loss = crit(logits, targets)
    grad = crit.backward()
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    z = torch.tensor(logits, requires_grad=True)
    want = torch.nn.functional.cross_entropy(z, torch.tensor(targets), label_smoothing=0.05)
    want.backward()
    assert loss == pytest.approx(want.item(), rel=1e-6)
    np.testing.assert_allclose(grad, z.grad.numpy(), atol=1e-6)


def test_cross_entropy_all_ignored_is_zero():
    logits, _ = _case()
    targets = np.full((3, 4), -100)
    crit = CrossEntropyLoss()
    assert crit(logits, targets) == 0.0
    assert crit.count == 0
    assert np.all(crit.backward() == 0)


def test_cross_entropy_backward_scale_and_protocol():
    logits, targets = _case()
    crit = CrossEntropyLoss()
    crit(logits, targets)
    g1 = crit.backward().copy()
    with pytest.raises(RuntimeError, match="each forward allows one backward"):
        crit.backward()
    crit(logits, targets)
    np.testing.assert_allclose(crit.backward(0.25), 0.25 * g1, rtol=1e-15)
    crit.eval()
    loss_eval = crit(logits, targets)
    with pytest.raises(RuntimeError, match="training-mode forward"):
        crit.backward()
    assert loss_eval == pytest.approx(crit.train()(logits, targets))
    with pytest.raises(ValueError, match="scale"):
        crit.backward(float("nan"))


def test_cross_entropy_bad_inputs():
    logits, targets = _case(C=5)
    crit = CrossEntropyLoss()
    bad = targets.copy()
    bad[2, 3] = 5
    with pytest.raises(
        ValueError, match=r"targets: class 5 at position 11 is out of range \[0, 5\)"
    ):
        crit(logits, bad)
    bad[2, 3] = -3
    with pytest.raises(ValueError, match="class -3"):
        crit(logits, bad)
    with pytest.raises(TypeError, match="targets must be integer"):
        crit(logits, targets.astype(np.float64))
    with pytest.raises(ValueError, match=r"targets must have shape \(3, 4\)"):
        crit(logits, targets[:2])
    with pytest.raises(TypeError, match="logits must be float32 or float64"):
        crit(logits.astype(np.int64), targets)
    with pytest.raises(TypeError, match="logits must be a numpy array"):
        crit(logits.tolist(), targets)
    with pytest.raises(ValueError, match="reduction"):
        CrossEntropyLoss(reduction="none")
    with pytest.raises(ValueError, match="label_smoothing"):
        CrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(TypeError, match="ignore_index"):
        CrossEntropyLoss(ignore_index=1.0)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_gradcheck_and_torch(reduction):
    rng = np.random.default_rng(3)
    pred, target = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    crit = MSELoss(reduction)
    loss = crit(pred, target)
    grad = crit.backward()
    numeric = _numeric_grad(lambda: crit(pred, target), pred)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)
    torch = pytest.importorskip("torch")
    p = torch.tensor(pred, requires_grad=True)
    want = torch.nn.functional.mse_loss(p, torch.tensor(target), reduction=reduction)
    want.backward()
    assert loss == pytest.approx(want.item(), rel=1e-14)
    np.testing.assert_allclose(grad, p.grad.numpy(), rtol=1e-14)


def test_mse_float32_and_bad_inputs():
    rng = np.random.default_rng(4)
    pred = rng.standard_normal(100).astype(np.float32)
    target = rng.standard_normal(100).astype(np.float32)
    crit = MSELoss()
    assert crit(pred, target) == pytest.approx(
        float(np.mean((pred.astype(float) - target) ** 2)), rel=1e-6
    )
    assert crit.backward().dtype == np.float32
    with pytest.raises(TypeError, match="target must have pred's dtype"):
        crit(pred, target.astype(np.float64))
    with pytest.raises(ValueError, match="target must have shape"):
        crit(pred, target[:5])
    with pytest.raises(ValueError, match="reduction"):
        MSELoss("max")


def test_cross_entropy_uint64_target_beyond_int64_is_refused():
    """2^64 - 100 as uint64 wrapped to -100 = ignore_index and was silently ignored (issue 13)."""
    crit = CrossEntropyLoss()
    logits = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="beyond int64"):
        crit(logits, np.array([1, 2**64 - 100], dtype=np.uint64))
    assert crit(logits, np.array([1, 2], dtype=np.uint64)) == pytest.approx(np.log(3.0))


def test_cross_entropy_and_grad_norm_do_not_depend_on_buffer_alignment():
    """The same numbers at 16 addresses: the engine's sums run in an order fixed by the index
    (lane_sum), not by where the first aligned element happens to be (issue 13: an AVX-512
    build gave two losses over 16 alignments, and a char-LM resume differed by 2e-9)."""
    from rnncore import optim
    from rnncore.nn import Parameter

    rng = np.random.default_rng(0)
    N, C = 13, 1003  # odd sizes: every row starts at another alignment too
    logits = (rng.standard_normal((N, C)) * 3).astype(np.float32)
    targets = rng.integers(0, C, size=N)
    grads = rng.standard_normal(70001).astype(np.float32)
    losses, dlogits, norms = set(), set(), set()
    for off in range(16):
        buf = np.empty(N * C + 16, dtype=np.float32)
        view = buf[off : off + N * C].reshape(N, C)
        view[...] = logits
        crit = CrossEntropyLoss(label_smoothing=0.1)
        losses.add(crit(view, targets))
        dlogits.add(crit.backward().tobytes())
        gbuf = np.empty(grads.size + 16, dtype=np.float32)
        g = gbuf[off : off + grads.size]
        g[...] = grads
        norms.add(optim.clip_grad_norm([Parameter("p", g.copy(), g)], 1e9))
    assert len(losses) == 1 and len(dlogits) == 1 and len(norms) == 1, (losses, norms)
