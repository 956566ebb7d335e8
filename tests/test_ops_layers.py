"""Embedding, Linear and Dropout: finite-difference gradients, equality with torch.nn, gradient
accumulation, flat parameter buffers, and bad inputs."""

import numpy as np
import pytest
from rnncore.nn import Dropout, Embedding, Linear


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


# ---- Embedding --------------------------------------------------------------------------------


def test_embedding_forward_and_gradcheck():
    emb = Embedding(6, 3, padding_idx=2, dtype="float64", seed=0)
    ids = np.array([[1, 2, 5], [5, 0, 2]])
    y = emb(ids)
    assert y.shape == (2, 3, 3)
    np.testing.assert_array_equal(y, emb.weight.data[ids])
    np.testing.assert_array_equal(emb.weight.data[2], 0.0)  # padding row starts at zero
    R = np.random.default_rng(1).standard_normal(y.shape)
    assert emb.backward(R) is None
    numeric = _numeric_grad(lambda: float(np.sum(emb(ids) * R)), emb.weight.data)
    numeric[2] = 0.0  # the padding row gets no gradient by definition
    np.testing.assert_allclose(emb.weight.grad, numeric, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(emb.weight.grad[2], 0.0)
    np.testing.assert_array_equal(emb.weight.grad[3], 0.0)  # unused id
    # accumulation: a second backward adds the same again
    first = emb.weight.grad.copy()
    emb(ids)
    emb.backward(R)
    np.testing.assert_allclose(emb.weight.grad, 2 * first)
    emb.zero_grad()
    assert not emb.flat_gradients.any()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_embedding_equals_torch(dtype):
    torch = pytest.importorskip("torch")
    emb = Embedding(10, 4, padding_idx=-1, dtype=dtype, seed=3)
    assert emb.padding_idx == 9
    ids = np.random.default_rng(0).integers(0, 10, size=(7, 5))
    ids[0, 0] = 9
    temb = torch.nn.Embedding(10, 4, padding_idx=9, dtype=getattr(torch, dtype))
    with torch.no_grad():
        temb.weight.copy_(torch.tensor(emb.weight.data))
    y = emb(ids)
    ty = temb(torch.tensor(ids))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    emb.backward(dy)
    ty.backward(torch.tensor(dy))
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(emb.weight.grad, temb.weight.grad.numpy(), rtol=tol, atol=tol)


def test_embedding_bad_inputs():
    emb = Embedding(5, 2, seed=0)
    with pytest.raises(ValueError, match=r"ids: id 5 at index \(1, 0\) is out of range \[0, 5\)"):
        emb(np.array([[0, 1], [5, 2]]))
    with pytest.raises(ValueError, match=r"id -1 at index 2"):
        emb(np.array([0, 1, -1]))
    with pytest.raises(TypeError, match="must be integers"):
        emb(np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="must be integers"):
        emb(np.array([True, False]))
    emb(np.array([1, 2]))
    with pytest.raises(ValueError, match=r"dout must have shape \(2, 2\)"):
        emb.backward(np.zeros((3, 2), dtype=np.float32))
    with pytest.raises(TypeError, match="dout must have dtype float32"):
        emb.backward(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="padding_idx"):
        Embedding(5, 2, padding_idx=5)
    with pytest.raises(ValueError, match="num_embeddings"):
        Embedding(0, 2)
    with pytest.raises(TypeError, match="dtype"):
        Embedding(5, 2, dtype="int32")
    emb.eval()
    emb(np.array([1]))
    with pytest.raises(RuntimeError, match="training-mode forward"):
        emb.backward(np.zeros((1, 2), dtype=np.float32))


# ---- Linear -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradcheck(bias):
    lin = Linear(4, 3, bias=bias, dtype="float64", seed=0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 4))
    R = rng.standard_normal((2, 5, 3))

    def loss():
        return float(np.sum(lin(x) * R))

    loss()
    dx = lin.backward(R)
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, _numeric_grad(loss, x), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(
        lin.weight.grad, _numeric_grad(loss, lin.weight.data), rtol=1e-7, atol=1e-9
    )
    if bias:
        np.testing.assert_allclose(
            lin.bias.grad, _numeric_grad(loss, lin.bias.data), rtol=1e-7, atol=1e-9
        )
        np.testing.assert_allclose(lin.bias.grad, R.sum(axis=(0, 1)))
    else:
        assert lin.bias is None and [n for n, _ in lin.named_parameters()] == ["weight"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows", [(7, 3), (1,), (4,), (5,)])
def test_linear_equals_torch(dtype, rows):
    """Up to 4 rows (a decoder's output layer, one token at a time) the engine multiplies the
    weight as it lies, one matrix-vector product per row; above, a GEMM."""
    torch = pytest.importorskip("torch")
    lin = Linear(16, 24, dtype=dtype, seed=2)
    tlin = torch.nn.Linear(16, 24, dtype=getattr(torch, dtype))
    tlin.load_state_dict({k: torch.tensor(v) for k, v in lin.state_dict().items()})
    rng = np.random.default_rng(3)
    x = rng.standard_normal((*rows, 16)).astype(dtype)
    dy = rng.standard_normal((*rows, 24)).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = tlin(tx)
    ty.backward(torch.tensor(dy))
    y = lin(x)
    dx = lin.backward(dy)
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(lin.weight.grad, tlin.weight.grad.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(lin.bias.grad, tlin.bias.grad.numpy(), rtol=tol, atol=tol)


def test_linear_large_batch_uses_threads_and_matches_numpy():
    # big enough for the engine to split the products across threads
    lin = Linear(64, 300, dtype="float64", seed=0)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((257, 64))
    dy = rng.standard_normal((257, 300))
    # atol: entries that cancel to ~1e-4 differ in the last bits between BLAS kernels (AVX2 vs
    # AVX-512 OpenBLAS), which a relative tolerance alone reads as a 5e-12 error.
    tol = dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(lin(x), x @ lin.weight.data.T + lin.bias.data, **tol)
    np.testing.assert_allclose(lin.backward(dy), dy @ lin.weight.data, **tol)
    np.testing.assert_allclose(lin.weight.grad, dy.T @ x, **tol)
    wide = Linear(8, 5000, dtype="float64", seed=1)  # more columns than rows: split by columns
    x2 = rng.standard_normal((30, 8))
    np.testing.assert_allclose(wide(x2), x2 @ wide.weight.data.T + wide.bias.data, **tol)


def test_linear_flat_buffers_and_init():
    lin = Linear(9, 4, seed=0)
    assert lin.flat_parameters.shape == (9 * 4 + 4,)
    assert np.shares_memory(lin.flat_parameters, lin.weight.data)
    assert np.shares_memory(lin.flat_gradients, lin.bias.grad)
    assert np.abs(lin.flat_parameters).max() <= 1 / 3
    assert lin.weight.data.dtype == np.float32


def test_linear_bad_inputs():
    lin = Linear(3, 2, seed=0)
    with pytest.raises(ValueError, match=r"x must have shape \[..., I=3\]"):
        lin(np.zeros((4, 5), dtype=np.float32))
    with pytest.raises(TypeError, match="x must have dtype float32"):
        lin(np.zeros((4, 3)))
    with pytest.raises(TypeError, match="numpy array"):
        lin([[0.0, 0.0, 0.0]])
    with pytest.raises(RuntimeError, match="training-mode forward"):
        lin.backward(np.zeros((4, 2), dtype=np.float32))
    lin(np.zeros((4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"dy must have shape \(4, 2\)"):
        lin.backward(np.zeros((4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="in_features"):
        Linear(0, 2)
    with pytest.raises(TypeError, match="out_features"):
        Linear(3, 2.0)


# ---- Dropout ----------------------------------------------------------------------------------


def test_dropout_mask_scaling_and_backward():
    drop = Dropout(0.3, seed=0)
    x = np.ones((200, 100), dtype=np.float32)
    y = drop(x)
    kept = y != 0
    assert 0.27 < 1 - kept.mean() < 0.33
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    dy = np.full_like(x, 2.0)
    dx = drop.backward(dy)
    np.testing.assert_array_equal(dx != 0, kept)  # the same mask
    np.testing.assert_allclose(dx[kept], 2 / 0.7, rtol=1e-6)
    assert y.dtype == dx.dtype == np.float32
    # same seed, same masks; the next call draws a new mask
    again = Dropout(0.3, seed=0)
    np.testing.assert_array_equal(again(x), y)
    assert not np.array_equal(again(x), y)


def test_dropout_eval_and_edge_probabilities():
    x = np.random.default_rng(0).standard_normal((5, 4))
    drop = Dropout(0.5, seed=1).eval()
    assert drop(x) is x
    assert drop.backward(x) is x
    assert Dropout(0.0)(x) is x
    ones = Dropout(1.0, seed=0)
    assert not ones(x).any() and not ones.backward(x).any()
    with pytest.raises(ValueError, match="p must be in"):
        Dropout(1.5)
    with pytest.raises(TypeError, match="p must be a number"):
        Dropout("0.5")
    with pytest.raises(TypeError, match="float32 or float64"):
        Dropout(0.5)(np.ones(3, dtype=np.int64))
    train = Dropout(0.5)
    train(x)
    with pytest.raises(ValueError, match="dy must have shape"):
        train.backward(np.ones((2, 2)))
