"""rnncore.optim: optimizer updates equal torch.optim's, flat-run grouping, state_dict round trips,
non-finite skipping, gradient clipping against torch.nn.utils, and bad inputs."""

import math

import numpy as np
import pytest
import rnncore
from rnncore import optim
from rnncore.nn import Embedding, Linear, Parameter

STEPS = 5


def _loose_params(shapes, dtype, seed=0):
    """Parameters over separate arrays (not adjacent in memory): one engine call each."""
    rng = np.random.default_rng(seed)
    out = []
    for i, s in enumerate(shapes):
        data = rng.standard_normal(s).astype(dtype)
        out.append(Parameter(f"p{i}", data, np.zeros_like(data)))
    return out


def _model_params(dtype, seed=0):
    """Parameters of two modules (Linear: weight+bias in one buffer; Embedding) plus a loose one."""
    lin = Linear(3, 4, dtype=dtype, seed=seed)
    emb = Embedding(5, 2, dtype=dtype, seed=seed + 1)
    return lin.parameters() + emb.parameters() + _loose_params([(3,)], dtype, seed + 2)


def _grads_sequence(params, steps, seed=1):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(p.shape) for p in params] for _ in range(steps)]


def _run_ours(opt_cls, kwargs, dtype, grads, params=None):
    params = params or _model_params(dtype)
    opt = opt_cls(params, **kwargs)
    history = []
    for step_grads in grads:
        opt.zero_grad()
        for p, g in zip(params, step_grads, strict=True):
            p.grad[...] += g.astype(dtype)
        assert opt.step() is True
        history.append([p.data.copy() for p in params])
    return params, opt, history


def _run_torch(torch, opt_name, kwargs, dtype, init, grads):
    tdtype = getattr(torch, str(np.dtype(dtype)))
    tparams = [torch.nn.Parameter(torch.tensor(a, dtype=tdtype)) for a in init]
    opt = getattr(torch.optim, opt_name)(tparams, **kwargs)
    history = []
    for step_grads in grads:
        opt.zero_grad()
        for p, g in zip(tparams, step_grads, strict=True):
            p.grad = torch.tensor(g.astype(dtype))
        opt.step()
        history.append([p.detach().numpy().copy() for p in tparams])
    return history


CONFIGS = {
    "sgd": ("SGD", {"lr": 0.1}),
    "sgd-momentum": ("SGD", {"lr": 0.05, "momentum": 0.9}),
    "sgd-dampening-wd": (
        "SGD",
        {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.01},
    ),
    "sgd-nesterov-wd": (
        "SGD",
        {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3},
    ),
    "adam": ("Adam", {"lr": 1e-2}),
    "adam-wd-amsgrad": (
        "Adam",
        {"lr": 1e-2, "betas": (0.8, 0.99), "weight_decay": 0.1, "amsgrad": True},
    ),
    "adamw": ("AdamW", {"lr": 1e-2, "weight_decay": 0.1}),
    "adamw-amsgrad": ("AdamW", {"lr": 3e-3, "eps": 1e-6, "amsgrad": True}),
    "rmsprop": ("RMSprop", {"lr": 1e-2}),
    "rmsprop-centered": ("RMSprop", {"lr": 1e-2, "alpha": 0.9, "centered": True}),
    "rmsprop-momentum-wd": ("RMSprop", {"lr": 1e-2, "momentum": 0.9, "weight_decay": 0.01}),
    "rmsprop-all": (
        "RMSprop",
        {"lr": 1e-3, "momentum": 0.5, "centered": True, "weight_decay": 0.1, "eps": 1e-6},
    ),
    "adagrad": ("Adagrad", {"lr": 0.1}),
    "adagrad-decay-init-wd": (
        "Adagrad",
        {"lr": 0.1, "lr_decay": 0.05, "initial_accumulator_value": 0.5, "weight_decay": 0.01},
    ),
    "adadelta": ("Adadelta", {}),
    "adadelta-kim-wd": ("Adadelta", {"lr": 0.5, "rho": 0.95, "eps": 1e-6, "weight_decay": 0.01}),
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_updates_do_not_depend_on_where_the_buffer_lies(config):
    """The same values at 8 different offsets in memory update to the same bits: a vectorised loop
    whose first or last elements are computed another way (a fused multiply-add in one, an
    approximate square root in the other) made a restored optimizer drift from the original."""
    name, kwargs = CONFIGS[config]
    rng = np.random.default_rng(0)
    n = 37
    data = rng.standard_normal(n).astype(np.float32)
    grads = [rng.standard_normal(n).astype(np.float32) for _ in range(4)]
    results = []
    for offset in range(8):
        buf, gbuf = np.zeros(n + 8, np.float32), np.zeros(n + 8, np.float32)
        p = Parameter("p", buf[offset : offset + n], gbuf[offset : offset + n])
        p.data[...] = data
        opt = getattr(optim, name)([p], **kwargs)
        for g in grads:
            p.grad[...] = g
            opt.step()
        results.append(p.data.copy())
    for offset, r in enumerate(results[1:], 1):
        np.testing.assert_array_equal(r, results[0], err_msg=f"offset {offset}")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_updates_of_large_buffers_equal_torch(config, threads):
    """The engine updates a buffer in pieces of 4096 elements (vectorised, over the threads from
    32768 on): 70001 values give 17 whole pieces and a partial one, both thread counts."""
    torch = pytest.importorskip("torch")
    name, kwargs = CONFIGS[config]
    params = _loose_params([(70001,), (5000,)], "float32", seed=3)
    init = [p.data.copy() for p in params]
    grads = _grads_sequence(params, 3, seed=4)
    before = rnncore.get_num_threads()
    rnncore.set_num_threads(threads)
    try:
        _, _, ours = _run_ours(getattr(optim, name), kwargs, "float32", grads, params)
    finally:
        rnncore.set_num_threads(before)
    theirs = _run_torch(torch, name, kwargs, "float32", init, grads)
    for step, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        for k, (x, y) in enumerate(zip(a, b, strict=True)):
            np.testing.assert_allclose(x, y, rtol=2e-6, atol=2e-7, err_msg=f"step {step} param {k}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_updates_equal_torch(config, dtype):
    torch = pytest.importorskip("torch")
    name, kwargs = CONFIGS[config]
    params = _model_params(dtype)
    init = [p.data.copy() for p in params]
    grads = _grads_sequence(params, STEPS)
    _, opt, ours = _run_ours(getattr(optim, name), kwargs, dtype, grads, params)
    theirs = _run_torch(torch, name, kwargs, dtype, init, grads)
    rtol, atol = (1e-12, 1e-14) if dtype == "float64" else (2e-6, 2e-7)
    for step, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        for k, (x, y) in enumerate(zip(a, b, strict=True)):
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=f"step {step} param {k}")
    # the parameters really moved (a no-op optimizer would fail the comparison above anyway)
    assert not np.allclose(ours[-1][0], init[0])
    # Linear's weight+bias form one run, the embedding one, the loose array one: 3 engine calls
    assert opt.num_engine_calls == 3


def test_param_groups_and_lr_edits_equal_torch():
    torch = pytest.importorskip("torch")
    params = _loose_params([(4, 3), (5,)], "float64")
    init = [p.data.copy() for p in params]
    grads = _grads_sequence(params, 4)
    opt = optim.Adam([{"params": [params[0]]}, {"params": [params[1]], "lr": 0.5}], lr=0.01)
    tp = [torch.nn.Parameter(torch.tensor(a)) for a in init]
    topt = torch.optim.Adam([{"params": [tp[0]]}, {"params": [tp[1]], "lr": 0.5}], lr=0.01)
    for i, step_grads in enumerate(grads):
        if i == 2:  # edit lr mid-run, as a schedule would
            opt.param_groups[0]["lr"] = 0.2
            topt.param_groups[0]["lr"] = 0.2
        for p, t, g in zip(params, tp, step_grads, strict=True):
            p.grad[...] = g
            t.grad = torch.tensor(g)
        opt.step()
        topt.step()
    for p, t in zip(params, tp, strict=True):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-12)
    assert opt.param_groups[1]["lr"] == 0.5


def test_recurrent_layer_is_one_engine_call():
    lstm = rnncore.nn.LSTM(3, 4, num_layers=2, dtype="float64", seed=0)
    lin = Linear(4, 2, dtype="float64", seed=0)
    opt = optim.SGD(lstm.parameters() + lin.parameters(), lr=0.1)
    assert len(lstm.parameters()) == 8
    assert opt.num_engine_calls == 2
    lstm.flat_gradients[...] = 1.0
    before = lstm.flat_parameters.copy()
    opt.step()
    np.testing.assert_allclose(lstm.flat_parameters, before - 0.1)


def _snapshot(params):
    return [p.data.copy() for p in params]


@pytest.mark.parametrize(
    "config",
    [
        "sgd-nesterov-wd",
        "adam-wd-amsgrad",
        "rmsprop-all",
        "adagrad-decay-init-wd",
        "adadelta-kim-wd",
    ],
)
def test_state_dict_round_trip_gives_identical_updates(config):
    name, kwargs = CONFIGS[config]
    grads = _grads_sequence(_model_params("float32"), 6, seed=5)
    params, opt, _ = _run_ours(getattr(optim, name), kwargs, "float32", grads[:3])
    saved_params = _snapshot(params)
    saved = opt.state_dict()
    # the checkpoint is a copy: further steps must not change it
    buffers_before = {k: {n: np.copy(v) for n, v in e.items()} for k, e in saved["state"].items()}
    for step_grads in grads[3:]:
        opt.zero_grad()
        for p, g in zip(params, step_grads, strict=True):
            p.grad[...] = g.astype("float32")
        opt.step()
    continued = _snapshot(params)
    for k, entry in saved["state"].items():
        for n, v in entry.items():
            np.testing.assert_array_equal(v, buffers_before[k][n])
    assert saved["state"][0]["step"] == 3
    # restore into fresh parameters and a fresh optimizer with other hyperparameters
    fresh = _model_params("float32", seed=99)
    for p, v in zip(fresh, saved_params, strict=True):
        p.data[...] = v
    opt2 = getattr(optim, name)(fresh, lr=0.5)
    opt2.load_state_dict(saved)
    assert opt2.param_groups[0]["lr"] == kwargs["lr"]
    for step_grads in grads[3:]:
        opt2.zero_grad()
        for p, g in zip(fresh, step_grads, strict=True):
            p.grad[...] = g.astype("float32")
        opt2.step()
    for a, b in zip(_snapshot(fresh), continued, strict=True):
        np.testing.assert_array_equal(a, b)


def test_load_state_dict_checks_sizes():
    opt = optim.Adam(_loose_params([(3,)], "float64"), lr=0.1)
    opt.step()
    other = optim.Adam(_loose_params([(4,)], "float64"), lr=0.1)
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict(opt.state_dict())
    two = optim.Adam(_loose_params([(3,), (3,)], "float64"), lr=0.1)
    with pytest.raises(ValueError, match="parameters saved"):
        two.load_state_dict(opt.state_dict())
    with pytest.raises(TypeError):
        two.load_state_dict([1, 2])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_skip_nonfinite(bad):
    params = _model_params("float32")
    opt = optim.Adam(params, lr=0.1, skip_nonfinite=True)
    for p in params:
        p.grad[...] = 1.0
    assert opt.step() is True
    before = _snapshot(params)
    state_before = opt.state_dict()
    params[2].grad[0, 1] = bad
    assert opt.step() is False
    assert opt.skipped_steps == 1
    for a, b in zip(_snapshot(params), before, strict=True):
        np.testing.assert_array_equal(a, b)
    assert opt.state_dict()["state"][0]["step"] == state_before["state"][0]["step"] == 1
    np.testing.assert_array_equal(
        opt.state_dict()["state"][0]["exp_avg"], state_before["state"][0]["exp_avg"]
    )
    assert opt.state_dict()["skipped_steps"] == 1
    # without the option, a NaN gradient goes through (as in torch)
    plain = optim.SGD(params, lr=0.1)
    plain.step()
    assert not np.all(np.isfinite(params[2].data))


def test_clip_grad_norm_equals_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    params = _model_params("float64")
    for p in params:
        p.grad[...] = rng.standard_normal(p.shape)
    tgrads = [torch.tensor(p.grad.copy()) for p in params]
    tparams = [torch.nn.Parameter(torch.zeros_like(g)) for g in tgrads]
    for t, g in zip(tparams, tgrads, strict=True):
        t.grad = g
    total = math.sqrt(sum(float(np.sum(p.grad**2)) for p in params))
    # above max_norm: scaled by max_norm / (norm + 1e-6)
    norm = optim.clip_grad_norm(params, 1.5)
    tnorm = torch.nn.utils.clip_grad_norm_(tparams, 1.5)
    assert isinstance(norm, float)
    assert norm == pytest.approx(total, rel=1e-14)
    assert norm == pytest.approx(float(tnorm), rel=1e-12)
    for p, t in zip(params, tparams, strict=True):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-12)
    assert optim.grad_norm(params) == pytest.approx(1.5 / (total + 1e-6) * total, rel=1e-12)
    # below (and at) max_norm: unchanged, norm still returned
    before = [p.grad.copy() for p in params]
    n2 = optim.clip_grad_norm(params, 10.0)
    assert n2 == pytest.approx(optim.grad_norm(params))
    for p, b in zip(params, before, strict=True):
        np.testing.assert_array_equal(p.grad, b)
    at = optim.clip_grad_norm(params, n2)
    assert at == n2
    for p, b in zip(params, before, strict=True):
        np.testing.assert_array_equal(p.grad, b)


def test_clip_grad_norm_mixed_dtypes_and_arrays():
    a = np.array([3.0, 0.0], dtype=np.float32)
    b = np.array([[4.0]], dtype=np.float64)
    assert optim.clip_grad_norm([a, b], 1.0) == pytest.approx(5.0)
    assert a[0] == pytest.approx(3.0 / (5.0 + 1e-6), rel=1e-6)
    assert b[0, 0] == pytest.approx(4.0 / (5.0 + 1e-6), rel=1e-12)
    # a single array works too
    c = np.array([0.3, 0.4])
    assert optim.clip_grad_norm(c, 1.0) == pytest.approx(0.5)
    # non-finite norm: returned, nothing scaled
    d = np.array([np.inf, 1.0])
    assert math.isinf(optim.clip_grad_norm([d], 1.0))
    assert d[1] == 1.0


def test_clip_grad_value_equals_torch():
    torch = pytest.importorskip("torch")
    g = np.random.default_rng(4).standard_normal((5, 6)) * 3
    p = Parameter("w", np.zeros_like(g), g.copy())
    t = torch.nn.Parameter(torch.zeros(5, 6, dtype=torch.float64))
    t.grad = torch.tensor(g)
    optim.clip_grad_value([p], 1.25)
    torch.nn.utils.clip_grad_value_([t], 1.25)
    np.testing.assert_array_equal(p.grad, t.grad.numpy())
    assert p.grad.max() == 1.25 and p.grad.min() == -1.25


def test_all_finite():
    params = _model_params("float32")
    assert optim.all_finite(params) is True
    params[-1].grad[1] = np.nan
    assert optim.all_finite(params) is False
    big = np.zeros(200_000, dtype=np.float32)
    assert optim.all_finite([big])
    big[123_456] = -np.inf
    assert not optim.all_finite([big])


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda p: optim.SGD(p, lr=0.0), ValueError, "lr"),
        (lambda p: optim.SGD(p, lr=-1.0), ValueError, "lr"),
        (lambda p: optim.SGD(p, lr="0.1"), TypeError, "lr"),
        (lambda p: optim.SGD(p, lr=0.1, momentum=-0.5), ValueError, "momentum"),
        (lambda p: optim.SGD(p, lr=0.1, nesterov=True), ValueError, "nesterov"),
        (
            lambda p: optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
            ValueError,
            "nesterov",
        ),
        (lambda p: optim.SGD(p, lr=0.1, weight_decay=-1), ValueError, "weight_decay"),
        (lambda p: optim.Adam(p, betas=(1.0, 0.999)), ValueError, r"betas\[0\]"),
        (lambda p: optim.Adam(p, betas=(0.9, -0.1)), ValueError, r"betas\[1\]"),
        (lambda p: optim.Adam(p, betas=0.9), TypeError, "betas"),
        (lambda p: optim.Adam(p, eps=-1e-8), ValueError, "eps"),
        (lambda p: optim.AdamW(p, lr=math.nan), ValueError, "lr"),
        (lambda p: optim.RMSprop(p, alpha=-0.1), ValueError, "alpha"),
        (lambda p: optim.RMSprop(p, momentum=-0.1), ValueError, "momentum"),
        (lambda p: optim.Adagrad(p, lr_decay=-1), ValueError, "lr_decay"),
        (
            lambda p: optim.Adagrad(p, initial_accumulator_value=-1),
            ValueError,
            "initial_accumulator_value",
        ),
        (lambda p: optim.SGD([], lr=0.1), ValueError, "empty"),
        (lambda p: optim.SGD([np.zeros(3)], lr=0.1), TypeError, "Parameter"),
        (lambda p: optim.SGD(p[0], lr=0.1), TypeError, "single"),
        (lambda p: optim.SGD(p + p[:1], lr=0.1), ValueError, "share memory"),
        (
            lambda p: optim.SGD([{"params": p}, {"params": p[:1]}], lr=0.1),
            ValueError,
            "share memory",
        ),
        (lambda p: optim.clip_grad_norm(p, 0.0), ValueError, "max_norm"),
        (lambda p: optim.clip_grad_norm(p, -1.0), ValueError, "max_norm"),
        (lambda p: optim.clip_grad_value(p, 0.0), ValueError, "clip_value"),
        (
            lambda p: optim.clip_grad_norm([np.zeros(3, dtype=np.int32)], 1.0),
            TypeError,
            r"params\[0\]",
        ),
        (lambda p: optim.clip_grad_norm([np.zeros((3, 4))[:, 1]], 1.0), ValueError, "C-contiguous"),
        (lambda p: optim.clip_grad_norm(42, 1.0), TypeError, "params"),
    ],
)
def test_bad_inputs(make, exc, match):
    with pytest.raises(exc, match=match):
        make(_loose_params([(3,), (2, 2)], "float64"))


def test_bad_lr_set_at_runtime_is_caught_at_step():
    params = _loose_params([(3,)], "float64")
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    opt.param_groups[0]["lr"] = -0.1
    with pytest.raises(ValueError, match=r"SGD.step: param_groups\[0\]: lr"):
        opt.step()
    opt.param_groups[0]["lr"] = 0.0  # a schedule may reach 0: allowed, and a no-op
    before = params[0].data.copy()
    params[0].grad[...] = 1.0
    opt.step()
    np.testing.assert_array_equal(params[0].data, before)
    opt.param_groups[0]["lr"] = 0.1
    opt.param_groups[0]["momentum"] = -1.0
    with pytest.raises(ValueError, match="momentum"):
        opt.step()


def test_engine_rejects_mismatched_buffers():
    p = np.zeros(4)
    with pytest.raises(ValueError, match="grad"):
        rnncore._core.sgd_step(p, np.zeros(3), None, lr=0.1)
    with pytest.raises(TypeError, match="grad"):
        rnncore._core.sgd_step(p, np.zeros(4, dtype=np.float32), None, lr=0.1)
    with pytest.raises(ValueError, match="momentum_buf"):
        rnncore._core.sgd_step(p, np.zeros(4), None, lr=0.1, momentum=0.9)
    ro = np.zeros(4)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="param: must be writable"):
        rnncore._core.adam_step(ro, p, p.copy(), p.copy(), None, step=1, lr=0.1)
    with pytest.raises(ValueError, match="step"):
        rnncore._core.adam_step(p, p.copy(), p.copy(), p.copy(), None, step=0, lr=0.1)


def test_toy_language_model_learns():
    """Embedding -> LSTM -> Linear -> CrossEntropyLoss trained with Adam, clipping and a warm-up +
    cosine schedule learns to continue a counting sequence; one engine call per layer per step."""
    from rnncore.optim import lr_scheduler

    rng = np.random.default_rng(0)
    V, T, B = 12, 8, 16
    emb = Embedding(V, 8, seed=0)
    lstm = rnncore.nn.LSTM(8, 24, seed=1)
    out = Linear(24, V, seed=2)
    crit = rnncore.nn.CrossEntropyLoss()
    params = emb.parameters() + lstm.parameters() + out.parameters()
    opt = optim.Adam(params, lr=2e-2, skip_nonfinite=True)
    assert opt.num_engine_calls == 3
    sched = lr_scheduler.LinearWarmup(opt, 5, after=lr_scheduler.CosineAnnealingLR(opt, 75))
    losses = []
    for _ in range(80):
        seq = (rng.integers(0, V, size=B)[None, :] + np.arange(T + 1)[:, None]) % V
        opt.zero_grad()
        z, _ = lstm(emb(seq[:-1]))
        losses.append(crit(out(z), seq[1:]))
        dz, _ = lstm.backward(out.backward(crit.backward()))
        emb.backward(dz)
        optim.clip_grad_norm(params, 1.0)
        opt.step()
        sched.step()
    assert losses[0] > 2.0 and max(losses[-5:]) < 0.2
    assert opt.skipped_steps == 0
