"""The training operations on device arrays (rnncore.cuda.embedding ... all_finite, C++
rnncore/device_ops.h) against the CPU engine's ops: on "cuda-sim" everywhere, on "cuda" where a GPU
is visible (skipped otherwise)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from gpu_helpers import DEVICES
from rnncore import _core, cuda

# float64 to 1e-10 and float32 to 1e-5, the CUDA issue's tolerances (sums run in another order).
TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-6)}
DTYPES = [np.float64, np.float32]


def rand(*shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def dev(a, device, dtype=None):
    return cuda.to_device(a, device, dtype)


def close(device_array, expected, dtype):
    np.testing.assert_allclose(device_array.numpy(), expected, **TOL[dtype])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_forward_and_backward(device, dtype):
    V, E = 11, 6
    ids = np.array([[3, 0, 10], [3, 7, 3]], np.int64)
    w = rand(V, E, dtype=dtype)
    out = cuda.embedding(ids, dev(w, device))  # host ids are uploaded
    assert out.shape == (2, 3, E) and out.dtype == dtype
    close(out, w[ids], dtype)
    out2 = cuda.embedding(dev(ids, device, "int64"), dev(w, device))
    close(out2, w[ids], dtype)

    dout = rand(2, 3, E, dtype=dtype, seed=1)
    for pad in (None, 3):
        dw_cpu = rand(V, E, dtype=dtype, seed=2)
        dw = dev(dw_cpu, device)
        cuda.embedding_backward(ids, dev(dout, device), dw, padding_idx=pad)
        _core.embedding_backward(ids.reshape(-1), dout.reshape(-1, E), dw_cpu, pad)
        close(dw, dw_cpu, dtype)


@pytest.mark.parametrize("device", DEVICES)
def test_embedding_ids_out_of_range_are_named(device):
    w = dev(rand(5, 3), device)
    with pytest.raises(ValueError, match=r"ids: id 5 at position 2 is out of range \[0, 5\)"):
        cuda.embedding(np.array([0, 1, 5, -1]), w)
    with pytest.raises(ValueError, match=r"id -1 at position 1"):
        cuda.embedding(dev(np.array([4, -1]), device, "int64"), w)
    with pytest.raises(TypeError, match="ids must be integers"):
        cuda.embedding(np.array([0.0, 1.0]), w)
    with pytest.raises(TypeError, match="ids must have dtype int64"):
        cuda.embedding(dev(np.array([0.0]), device), w)
    with pytest.raises(ValueError, match="padding_idx must be in"):
        cuda.embedding_backward(np.array([0]), dev(rand(1, 3), device), w, padding_idx=5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_forward_and_backward(device, dtype, with_bias):
    N, In, O = 7, 5, 4
    x, w = rand(2, N, In, dtype=dtype), rand(O, In, dtype=dtype, seed=1)
    b = rand(O, dtype=dtype, seed=2) if with_bias else None
    y = cuda.linear(dev(x, device), dev(w, device), None if b is None else dev(b, device))
    assert y.shape == (2, N, O)
    close(y, _core.linear_forward(x.reshape(-1, In), w, b).reshape(2, N, O), dtype)

    dy = rand(2, N, O, dtype=dtype, seed=3)
    dw_cpu, db_cpu = rand(O, In, dtype=dtype, seed=4), rand(O, dtype=dtype, seed=5)
    dw, db = dev(dw_cpu, device), dev(db_cpu, device)
    dx = cuda.linear_backward(
        dev(dy, device), dev(x, device), dev(w, device), dw, db if with_bias else None
    )
    dx_cpu = _core.linear_backward(
        dy.reshape(-1, O), x.reshape(-1, In), w, dw_cpu, db_cpu if with_bias else None
    )
    close(dx, dx_cpu.reshape(2, N, In), dtype)
    close(dw, dw_cpu, dtype)
    close(db, db_cpu, dtype)
    assert (
        cuda.linear_backward(dev(dy, device), dev(x, device), dev(w, device), dw, need_dx=False)
        is None
    )


@pytest.mark.parametrize("device", DEVICES)
def test_linear_checks_shapes_and_dtypes(device):
    w = dev(rand(4, 5), device)
    with pytest.raises(ValueError, match=r"x must have shape \[\.\.\., 5\]"):
        cuda.linear(dev(rand(3, 4), device), w)
    with pytest.raises(TypeError, match="x has dtype float32; expected float64"):
        cuda.linear(dev(rand(3, 5, dtype=np.float32), device), w)
    with pytest.raises(ValueError, match=r"bias must have shape \[4\]"):
        cuda.linear(dev(rand(3, 5), device), w, dev(rand(5), device))
    with pytest.raises(TypeError, match="needs device arrays"):
        cuda.linear(rand(3, 5), rand(4, 5))
    with pytest.raises(TypeError, match="x must be a device array"):
        cuda.linear(rand(3, 5), w)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"reduction": "sum", "grad_scale": 0.5},
        {"label_smoothing": 0.1, "ignore_index": 2},
    ],
)
def test_cross_entropy(device, dtype, options):
    N, C = 9, 13
    logits = rand(N, C, dtype=dtype) * 4
    targets = np.random.default_rng(1).integers(0, C, N).astype(np.int64)
    targets[3] = options.get("ignore_index", -100)
    loss, d, count = cuda.cross_entropy(
        dev(logits, device), dev(targets, device, "int64"), **options
    )
    cpu = dict(options)
    ref_loss, ref_d, ref_count = _core.cross_entropy(logits, targets, **cpu)
    assert count == ref_count == N - 1
    np.testing.assert_allclose(loss, ref_loss, **TOL[dtype])
    close(d, ref_d, dtype)
    loss2, none, _ = cuda.cross_entropy(dev(logits, device), targets, grad=False, **options)
    assert none is None and loss2 == pytest.approx(loss, rel=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_cross_entropy_bad_targets(device):
    logits = dev(rand(3, 4), device)
    with pytest.raises(ValueError, match=r"targets: class 4 at position 1 is out of range"):
        cuda.cross_entropy(logits, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"targets must have shape \[3\]"):
        cuda.cross_entropy(logits, np.array([0, 1]))
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        cuda.cross_entropy(logits, np.array([0, 1, 2]), label_smoothing=2.0)
    with pytest.raises(ValueError, match="reduction must be"):
        cuda.cross_entropy(logits, np.array([0, 1, 2]), reduction="max")
    loss, d, count = cuda.cross_entropy(logits, np.full(3, -100))  # every row ignored
    assert (loss, count) == (0.0, 0) and not d.numpy().any()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction, grad_scale", [("mean", 1.0), ("sum", 0.25)])
def test_mse_loss(device, dtype, reduction, grad_scale):
    pred, target = rand(4, 3, 5, dtype=dtype), rand(4, 3, 5, dtype=dtype, seed=1)
    loss, d = cuda.mse_loss(
        dev(pred, device), dev(target, device), reduction=reduction, grad_scale=grad_scale
    )
    ref_loss, ref_d = _core.mse_loss(pred.ravel(), target.ravel(), reduction, True, grad_scale)
    np.testing.assert_allclose(loss, ref_loss, **TOL[dtype])
    assert d.shape == pred.shape
    close(d, ref_d.reshape(pred.shape), dtype)
    host_target, none = cuda.mse_loss(dev(pred, device), target, reduction=reduction, grad=False)
    assert none is None and host_target == pytest.approx(loss, rel=1e-12)
    with pytest.raises(ValueError, match=r"target must have shape \[4, 3, 5\] like pred"):
        cuda.mse_loss(dev(pred, device), target[:2])
    other = np.float32 if dtype == np.float64 else np.float64
    with pytest.raises(TypeError, match="target has dtype"):
        cuda.mse_loss(dev(pred, device), dev(target, device, other))
    with pytest.raises(
        TypeError, match=f"target must have pred's dtype {np.dtype(dtype)}, got int64"
    ):
        cuda.mse_loss(dev(pred, device), np.ones(pred.shape, np.int64))
    assert cuda.mse_loss(cuda.DeviceArray((0,), dtype, device), np.zeros(0, dtype))[0] == 0.0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta, tb", [(False, False), (False, True), (True, False), (True, True)])
def test_batched_products(device, dtype, ta, tb):
    a = rand(3, 5, 4, dtype=dtype) if ta else rand(3, 4, 5, dtype=dtype)  # op(a) [3, 4, 5]
    b = rand(3, 2, 5, dtype=dtype, seed=1) if tb else rand(3, 5, 2, dtype=dtype, seed=1)
    want = np.matmul(a.transpose(0, 2, 1) if ta else a, b.transpose(0, 2, 1) if tb else b)
    got = cuda.bmm(dev(a, device), dev(b, device), transpose_a=ta, transpose_b=tb)
    close(got, want, dtype)
    cuda.bmm(dev(a, device), dev(b, device), transpose_a=ta, transpose_b=tb, out=got)
    close(got, 2 * want, dtype)  # out=: added to
    with pytest.raises(ValueError, match="do not multiply"):
        cuda.bmm(dev(a, device), dev(b, device), transpose_a=not ta, transpose_b=tb)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_masked_softmax_and_its_gradient(device, dtype):
    scores = rand(3, 2, 5, dtype=dtype) * 3
    lengths = np.array([5, 2, 1])
    valid = np.arange(5)[None, None, :] < lengths[:, None, None]
    z = np.where(valid, scores, -np.inf)
    want = np.exp(z - z.max(axis=-1, keepdims=True))
    want /= want.sum(axis=-1, keepdims=True)
    w = cuda.masked_softmax(dev(scores, device), lengths)
    close(w, want, dtype)
    assert not w.numpy()[~np.broadcast_to(valid, want.shape)].any()
    dw = rand(3, 2, 5, dtype=dtype, seed=2)
    ds = cuda.softmax_backward(dev(dw, device), w)
    close(ds, want * (dw - (dw * want).sum(axis=-1, keepdims=True)), dtype)
    with pytest.raises(
        ValueError, match=r"masked_softmax: lengths: 6 at position 0 is outside \[1, S=5\]"
    ):
        cuda.masked_softmax(dev(scores, device), np.array([6, 1, 1]))
    assert cuda.masked_softmax(dev(np.zeros((2, 0, 4)), device), [1, 1]).shape == (2, 0, 4)


@pytest.mark.parametrize("device", DEVICES)
def test_add_and_sum_over_the_first_axis(device):
    x, y = rand(4, 3, 2), rand(4, 3, 2, seed=1)
    yd = dev(y, device)
    assert cuda.add_(yd, dev(x, device), alpha=-0.5) is yd
    close(yd, y - 0.5 * x, np.float64)
    close(cuda.sum_axis0(dev(x, device)), x.sum(axis=0), np.float64)
    out = dev(y[0], device)
    cuda.sum_axis0(dev(x, device), out=out)
    close(out, y[0] + x.sum(axis=0), np.float64)
    with pytest.raises(ValueError, match=r"x must have shape \[4, 3, 2\]"):
        cuda.add_(yd, dev(x[:2], device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_tanh_and_its_gradient(device, dtype):
    x, dy = rand(3, 4, dtype=dtype) * 3, rand(3, 4, dtype=dtype, seed=1)
    y = cuda.tanh(dev(x, device))
    close(y, np.tanh(x), dtype)
    close(cuda.tanh_backward(dev(dy, device), y), dy * (1 - y.numpy() ** 2), dtype)
    with pytest.raises(ValueError, match=r"dy must have shape \[3, 4\]"):
        cuda.tanh_backward(dev(dy[:2], device), y)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_concat_and_split_along_the_last_axis(device, dtype):
    a, b, c = (rand(3, 2, n, dtype=dtype, seed=n) for n in (4, 1, 5))
    joined = cuda.concat_last([dev(a, device), dev(b, device), dev(c, device)])
    np.testing.assert_array_equal(joined.numpy(), np.concatenate([a, b, c], axis=-1))
    parts = cuda.split_last(joined, [4, 1, 5])
    for part, want in zip(parts, (a, b, c), strict=True):
        np.testing.assert_array_equal(part.numpy(), want)
    assert [p.shape for p in cuda.split_last(joined, [0, 10])] == [(3, 2, 0), (3, 2, 10)]
    with pytest.raises(ValueError, match=r"arrays\[1\] must have shape \[3, 2, \*\]"):
        cuda.concat_last([dev(a, device), dev(rand(2, 2, 1, dtype=dtype), device)])
    with pytest.raises(ValueError, match=r"sizes \[4, 5\] must be >= 0 and add up"):
        cuda.split_last(joined, [4, 5])
    other = np.float32 if dtype == np.float64 else np.float64
    with pytest.raises(TypeError, match=r"arrays\[1\] has dtype"):
        cuda.concat_last([dev(a, device), dev(b, device, other)])
    with pytest.raises(TypeError, match="sizes must be integers"):
        cuda.split_last(joined, [3.7, 6.3])
    with pytest.raises(TypeError, match="sizes must be integers"):
        cuda.split_last(joined, [True, 9])
    with pytest.raises(ValueError, match=r"arrays\[0\] must have at least one axis"):
        cuda.concat_last([dev(np.array(1.0, dtype), device)])


def pooled_reference(y, lengths):
    """Mean and max over each sequence's first lengths[b] steps, and the step of the maximum."""
    mean = np.stack([y[:n, b].mean(axis=0) for b, n in enumerate(lengths)])
    steps = np.stack([y[:n, b].argmax(axis=0) for b, n in enumerate(lengths)])
    top = np.take_along_axis(y, steps[None], axis=0)[0]
    return mean, top, steps


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_pooling_over_time_matches_the_cpu_and_numpy(device, dtype):
    T, B, F = 6, 4, 5
    y = rand(T, B, F, dtype=dtype)
    y[4, 1] = 50.0  # past sequence 1's end (length 3): must not win
    y[2, 0, 0] = y[4, 0, 0] = 9.0  # a tie: the first step wins, as numpy's argmax
    lengths = np.array([6, 3, 1, 5])
    mean, top, steps = pooled_reference(y, lengths)
    for kernel_mean, (kernel_top, kernel_steps) in (
        (_core.time_pool(y, lengths), _core.time_pool(y, lengths, True)),
        (cuda.mean_pool(dev(y, device), lengths), cuda.max_pool(dev(y, device), lengths)),
    ):
        np.testing.assert_allclose(np.asarray(kernel_mean), mean, **TOL[dtype])
        np.testing.assert_array_equal(np.asarray(kernel_top), top)
        np.testing.assert_array_equal(np.asarray(kernel_steps), steps)
    assert steps[0, 0] == 2
    dpooled = rand(B, F, dtype=dtype, seed=3)
    valid = (np.arange(T)[:, None] < lengths[None, :])[:, :, None]
    want_mean = np.where(valid, dpooled[None] / lengths[None, :, None].astype(dtype), 0)
    want_max = np.zeros_like(y)
    np.put_along_axis(want_max, steps[None], dpooled[None], axis=0)
    np.testing.assert_allclose(
        _core.time_pool_backward(dpooled, lengths, T), want_mean, **TOL[dtype]
    )
    np.testing.assert_array_equal(_core.time_pool_backward(dpooled, steps, T, True), want_max)
    close(cuda.mean_pool_backward(dev(dpooled, device), lengths, T), want_mean, dtype)
    got = cuda.max_pool_backward(dev(dpooled, device), dev(steps, device, "int64"), T)
    np.testing.assert_array_equal(got.numpy(), want_max)


@pytest.mark.parametrize("device", DEVICES)
def test_pooling_refuses_bad_lengths_and_steps(device):
    y = dev(rand(4, 2, 3), device)
    for lengths in ([0, 2], [5, 1]):
        with pytest.raises(
            ValueError,
            match=r"rnncore.cuda.mean_pool: lengths: \d at position 0 is outside \[1, T=4\]",
        ):
            cuda.mean_pool(y, np.array(lengths))
        with pytest.raises(ValueError, match=r"is outside \[1, T=4\]"):
            _core.time_pool(rand(4, 2, 3), np.array(lengths), True)
    with pytest.raises(ValueError, match=r"lengths must have shape \[2\]"):
        cuda.max_pool(y, np.array([1, 2, 3]))
    with pytest.raises(TypeError, match="lengths must be integers"):
        cuda.mean_pool(y, np.array([1.0, 2.0]))
    steps = np.array([[0, 1, 2], [3, 4, 0]])  # 4 is outside [0, T=4)
    with pytest.raises(ValueError, match=r"argmax: step 4 at position 4 is outside \[0, T=4\)"):
        cuda.max_pool_backward(dev(rand(2, 3), device), steps, 4)
    with pytest.raises(ValueError, match=r"argmax: step 4 at position 4 is outside \[0, T=4\)"):
        _core.time_pool_backward(rand(2, 3), steps, 4, True)
    with pytest.raises(ValueError, match="T must be an integer >= 1"):
        cuda.mean_pool_backward(dev(rand(2, 3), device), np.array([1, 1]), 0)
    # empty axes give empty results
    none = dev(np.zeros((4, 2, 0)), device)
    assert cuda.mean_pool(none, np.array([1, 4])).shape == (2, 0)
    assert [a.shape for a in cuda.max_pool(none, np.array([1, 4]))] == [(2, 0), (2, 0)]
    assert _core.time_pool(np.zeros((4, 0, 3)), np.zeros(0, np.int64)).shape == (0, 3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_keyed_dropout_draws_the_cpu_masks(device, dtype):
    x = rand(3, 4, 5, dtype=dtype)
    y, scale = cuda.keyed_dropout(dev(x, device), 0.3, seed=42, batch_offset=7)
    ref_y, ref_scale = _core.keyed_dropout(x, 0.3, 42, batch_offset=7)
    y_only, none = cuda.keyed_dropout(
        dev(x, device), 0.3, seed=42, batch_offset=7, keep_scale=False
    )
    assert none is None
    np.testing.assert_array_equal(y_only.numpy(), ref_y)
    np.testing.assert_array_equal(scale.numpy(), ref_scale)
    np.testing.assert_array_equal(y.numpy(), ref_y)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        cuda.keyed_dropout(dev(x, device), 1.0, seed=1)


OPTIMIZERS = [
    ("sgd", dict(lr=0.1), ()),
    ("sgd", dict(lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True), ("momentum_buf",)),
    ("sgd", dict(lr=0.1, momentum=0.5, dampening=0.2), ("momentum_buf",)),
    ("adam", dict(lr=0.01), ("exp_avg", "exp_avg_sq")),
    (
        "adam",
        dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
        ("exp_avg", "exp_avg_sq"),
    ),
    (
        "adam",
        dict(lr=0.01, weight_decay=0.1, beta1=0.3),
        ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
    ),
    ("rmsprop", dict(lr=0.01), ("square_avg",)),
    (
        "rmsprop",
        dict(lr=0.01, centered=True, momentum=0.9, weight_decay=0.1, alpha=0.3),
        ("square_avg", "grad_avg", "momentum_buf"),
    ),
    ("adadelta", dict(lr=1.0, weight_decay=0.1), ("square_avg", "acc_delta")),
    ("adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.1), ("state_sum",)),
]


def _step(module, name, param, grad, states, options, step):
    """One update by module (_core on numpy, rnncore.cuda on device arrays), by optimizer name."""
    if name == "sgd":
        module.sgd_step(param, grad, states.get("momentum_buf"), first_step=step == 1, **options)
    elif name == "adam":
        module.adam_step(
            param,
            grad,
            states["exp_avg"],
            states["exp_avg_sq"],
            states.get("max_exp_avg_sq"),
            step=step,
            **options,
        )
    elif name == "rmsprop":
        module.rmsprop_step(
            param,
            grad,
            states["square_avg"],
            states.get("grad_avg"),
            states.get("momentum_buf"),
            **options,
        )
    elif name == "adadelta":
        module.adadelta_step(param, grad, states["square_avg"], states["acc_delta"], **options)
    else:
        module.adagrad_step(param, grad, states["state_sum"], step=step, **options)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, options, state_names", OPTIMIZERS)
def test_optimizer_steps_match_the_cpu(device, dtype, name, options, state_names):
    P = 37
    param = rand(P, dtype=dtype)
    states = {s: np.zeros(P, dtype) for s in state_names}
    d_param = dev(param, device)
    d_states = {s: dev(v, device) for s, v in states.items()}
    for step in (1, 2, 3):
        grad = rand(P, dtype=dtype, seed=step)
        _step(_core, name, param, grad, states, options, step)
        _step(cuda, name, d_param, dev(grad, device), d_states, options, step)
        close(d_param, param, dtype)
        for s in state_names:
            close(d_states[s], states[s], dtype)


@pytest.mark.parametrize("device", DEVICES)
def test_optimizer_arguments_are_checked(device):
    p, g = dev(rand(4), device), dev(rand(4), device)
    with pytest.raises(ValueError, match="momentum_buf must not be null"):
        cuda.sgd_step(p, g, first_step=True, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"beta1 must be in \[0, 1\)"):
        cuda.adam_step(p, g, dev(rand(4), device), dev(rand(4), device), step=1, lr=0.1, beta1=1.0)
    with pytest.raises(ValueError, match="grad has 3 elements; param has 4"):
        cuda.sgd_step(p, dev(rand(3), device), first_step=True, lr=0.1)
    with pytest.raises(TypeError, match="grad has dtype float32; expected float64"):
        cuda.sgd_step(p, dev(rand(4, dtype=np.float32), device), first_step=True, lr=0.1)
    with pytest.raises(ValueError, match="step must be >= 1"):
        cuda.adagrad_step(p, g, dev(rand(4), device), step=0)


@pytest.mark.parametrize("device", DEVICES)
def test_norms_and_clipping_match_the_cpu(device):
    grads = [rand(40000, seed=1), rand(3, 5, seed=2), rand(7, dtype=np.float32, seed=3)]
    d = [dev(g, device) for g in grads]
    assert cuda.grad_norm(d) == pytest.approx(_core.grad_norm(grads), rel=1e-12)
    norm = cuda.clip_grad_norm(d, 10.0)
    assert norm == pytest.approx(_core.clip_grad_norm(grads, 10.0), rel=1e-12)
    for a, g in zip(d, grads, strict=True):
        close(a, g, g.dtype.type)
    assert cuda.clip_grad_norm(d, 1e6) == pytest.approx(10.0, rel=1e-6)  # below: unchanged
    cuda.clip_grad_value(d, 0.05)
    _core.clip_grad_value(grads, 0.05)
    for a, g in zip(d, grads, strict=True):
        close(a, g, g.dtype.type)
    assert cuda.all_finite(d)
    bad = rand(5)
    bad[3] = np.inf
    assert not cuda.all_finite([*d, dev(bad, device)])
    bad[3] = np.nan
    assert not cuda.all_finite(dev(bad, device))
    with pytest.raises(ValueError, match="max_norm must be > 0"):
        cuda.clip_grad_norm(d, 0.0)
    with pytest.raises(ValueError, match="clip_value must be > 0"):
        cuda.clip_grad_value(d, -1.0)


@pytest.mark.parametrize("device", DEVICES)
def test_int64_device_arrays_export(device):
    ids = cuda.to_device(np.array([[1, 2], [3, 4]]), device, "int64")
    assert ids.dtype == np.int64
    np.testing.assert_array_equal(
        np.from_dlpack(ids), [[1, 2], [3, 4]]
    ) if device == "cuda-sim" else None
    with pytest.raises(TypeError, match="an int64 copy needs integers"):
        cuda.to_device(np.array([0.5]), device, "int64")


@pytest.mark.parametrize("device", DEVICES)
def test_a_language_model_step_on_device_arrays_matches_rnncore_nn(device):
    """Embedding -> LSTM -> Linear -> cross-entropy -> clipping -> Adam, written with the device
    operations and a GPU LSTM on device arrays, gives the parameters rnncore.nn's CPU modules
    and optimizer give (two steps, float64)."""
    from rnncore import nn, optim

    V, E, H, T, B = 13, 5, 6, 4, 3
    f64 = "float64"
    emb, lstm = nn.Embedding(V, E, dtype=f64, seed=1), nn.LSTM(E, H, dtype=f64, seed=2)
    lin, crit = nn.Linear(H, V, dtype=f64, seed=3), nn.CrossEntropyLoss()
    params = [*emb.parameters(), *lstm.parameters(), *lin.parameters()]
    opt = optim.Adam(params, lr=0.05)

    g_lstm = nn.LSTM(E, H, dtype=f64, seed=2, device=device)  # its own parameters, host copies
    g_emb, g_lw, g_lb = (dev(p.data, device) for p in (emb.weight, lin.weight, lin.bias))
    dev_params = [g_emb, g_lw, g_lb]
    dev_grads = [dev(np.zeros_like(p.data), device) for p in (emb.weight, lin.weight, lin.bias)]
    moments = [[dev(np.zeros(p.size), device) for _ in range(2)] for p in dev_params]
    lstm_m = [np.zeros(p.data.size) for p in g_lstm.parameters() for _ in range(2)]

    rng = np.random.default_rng(5)
    for step in (1, 2):
        ids, targets = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
        # rnncore.nn on the CPU
        for m in (emb, lstm, lin):
            m.zero_grad()
        y, _ = lstm(emb(ids))
        loss = crit(lin(y.reshape(-1, H)), targets.reshape(-1))
        dy = lin.backward(crit.backward()).reshape(T, B, H)
        emb.backward(lstm.backward(dy)[0])
        norm = optim.clip_grad_norm(params, 0.5)
        opt.step()
        # the device: only the LSTM's parameters and gradients cross to the host
        g_lstm.zero_grad()
        dev_grads = [dev(np.zeros(g.shape), device) for g in dev_grads]
        d_ids = dev(ids, device, "int64")
        gy, _ = g_lstm(cuda.embedding(d_ids, g_emb))
        z = cuda.linear(gy, g_lw, g_lb).reshape(T * B, V)
        g_loss, dz, _ = cuda.cross_entropy(z, dev(targets.reshape(-1), device, "int64"))
        dgy = cuda.linear_backward(dz.reshape(T, B, V), gy, g_lw, dev_grads[1], dev_grads[2])
        cuda.embedding_backward(d_ids, g_lstm.backward(dgy)[0], dev_grads[0])
        # one global norm over the device gradients and the LSTM's (host) ones
        lstm_grads = [p.grad for p in g_lstm.parameters()]
        g_norm = math.hypot(cuda.grad_norm(dev_grads), _core.grad_norm(lstm_grads))
        coef = _core.clip_coefficient(g_norm, 0.5)
        cuda.scale(dev_grads, coef)
        for g in lstm_grads:
            g *= coef
        for p, g, (m1, m2) in zip(dev_params, dev_grads, moments, strict=True):
            cuda.adam_step(p, g, m1, m2, step=step, lr=0.05)
        for k, p in enumerate(g_lstm.parameters()):
            _core.adam_step(
                p.data.reshape(-1),
                p.grad.reshape(-1),
                lstm_m[2 * k],
                lstm_m[2 * k + 1],
                None,
                step=step,
                lr=0.05,
            )
        assert g_loss == pytest.approx(loss, rel=1e-10)
        assert g_norm == pytest.approx(norm, rel=1e-10)
    close(g_emb, emb.weight.data, np.float64)
    close(g_lw, lin.weight.data, np.float64)
    close(g_lb, lin.bias.data, np.float64)
    for a, b in zip(g_lstm.parameters(), lstm.parameters(), strict=True):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-10, atol=1e-12)
