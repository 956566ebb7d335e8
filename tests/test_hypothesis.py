"""Property-based tests: random shapes, dtypes, lengths and values at the Python API.

Every call must end in one of two ways: a clean ValueError/TypeError/RuntimeError, or a
result that is right (equal to the NumPy reference when the arguments are valid). Any
other exception, a crash, or a wrong number fails.
"""

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from rnn_helpers import (
    CELLS,
    TOL,
    is_lstm,
    join_state,
    make_layer,
    reference,
    split_state,
    state_list,
)

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI failures reproduce
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
CLEAN = (ValueError, TypeError, RuntimeError)
ARG_REGEX = {
    "x": r"\bx\b",
    "lengths": r"\blengths\b",
    "state": r"\bstate\b",
    "dy": r"\bdy\b",
    "dstate": r"\bdstate\b",
}


def _attempt(fn):
    """('ok', result) or ('error', exception) for a clean exception; anything else propagates."""
    try:
        return "ok", fn()
    except CLEAN as e:
        return "error", e


def _close(got, want, dtype, what):
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    err = float(np.abs(got - want).max(initial=0.0))
    assert err <= 10 * TOL[dtype] * scale, f"{what}: max abs error {err:.3e}"


def _check_against_reference(cell, layer, cfg, x_tm, lengths, state, result):
    """result of a valid forward == reference (x_tm is time-major)."""
    y, st_out = result
    L, D, H = cfg["num_layers"], 2 if cfg["bidirectional"] else 1, cfg["hidden"]
    want_y, want_h, want_c = reference(cell, layer, x_tm, lengths, state, L, cfg["bidirectional"])
    y = np.asarray(y)
    assert y.dtype == np.dtype(cfg["dtype"])
    if cfg["batch_first"]:
        y = y.transpose(1, 0, 2)
    _close(y, want_y, cfg["dtype"], "y")
    h, c = split_state(cell, st_out)
    assert np.asarray(h).shape == (L * D, x_tm.shape[1], H)
    _close(h, want_h, cfg["dtype"], "h_n")
    if is_lstm(cell):
        _close(c, want_c, cfg["dtype"], "c_n")


@st.composite
def layer_configs(draw):
    return dict(
        cell=draw(st.sampled_from(list(CELLS))),
        input=draw(st.integers(1, 3)),
        hidden=draw(st.integers(1, 3)),
        num_layers=draw(st.integers(1, 2)),
        bidirectional=draw(st.booleans()),
        dtype=draw(st.sampled_from(["float32", "float64"])),
        batch_first=draw(st.booleans()),
    )


def _build(cfg):
    return make_layer(
        cfg["cell"], cfg["input"], cfg["hidden"], cfg["num_layers"], cfg["bidirectional"],
        dtype=cfg["dtype"], seed=0, batch_first=cfg["batch_first"],
    )  # fmt: skip


@st.composite
def forward_cases(draw, valid_only=False):
    """A layer config and forward arguments, each possibly broken; faults lists what is broken."""
    cfg = draw(layer_configs())
    cell, dt = cfg["cell"], np.dtype(cfg["dtype"])
    L, D, H = cfg["num_layers"], 2 if cfg["bidirectional"] else 1, cfg["hidden"]
    # mostly valid arguments; test_forward_random_valid_arguments_match_reference draws only those
    steps = draw(st.sampled_from(([] if valid_only else [0]) + [1, 2, 3, 4, 5] * 2))
    batch = draw(st.sampled_from(([] if valid_only else [0]) + [1, 2, 3, 4] * 2))
    faults = []

    x_kinds = ["valid"] if valid_only else ["valid"] * 8 + ["rank", "features"]
    x_kind = draw(st.sampled_from(x_kinds))
    if x_kind == "rank":
        ndim = draw(st.sampled_from([0, 1, 2, 4, 5, 6, 7, 8]))
        shape = tuple(draw(st.integers(0, 3)) for _ in range(ndim))
        faults.append("x")
    else:
        feat = cfg["input"]
        if x_kind == "features":
            feat = draw(st.integers(0, 5).filter(lambda n: n != cfg["input"]))
            faults.append("x")
        shape = (batch, steps, feat) if cfg["batch_first"] else (steps, batch, feat)
    values = draw(st.sampled_from(["normal", "large"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.standard_normal(shape) * (30.0 if values == "large" else 1.0)
    x = x.astype(dt)

    bad = [] if valid_only else ["count", "range", "float"]
    lengths_kind = draw(st.sampled_from(["none"] * 2 + ["valid"] * 3 + bad))
    lengths = None
    if lengths_kind == "valid" and steps >= 1:
        lengths = rng.integers(1, steps + 1, size=batch)
    elif lengths_kind == "count":
        n = draw(st.integers(0, 6).filter(lambda n: n != batch))
        lengths = rng.integers(1, max(steps, 1) + 1, size=n)
        faults.append("lengths")
    elif lengths_kind == "range" and batch >= 1:
        lengths = rng.integers(1, max(steps, 1) + 1, size=batch)
        lengths[draw(st.integers(0, batch - 1))] = draw(st.sampled_from([0, -1, steps + 1, 10**6]))
        faults.append("lengths")
    elif lengths_kind == "float" and batch >= 1:
        lengths = rng.integers(1, max(steps, 1) + 1, size=batch).astype(np.float64) + 0.5
        faults.append("lengths")

    state_kinds = ["none", "valid", "valid"] + ([] if valid_only else ["shape"])
    state_kind = draw(st.sampled_from(state_kinds))
    state = None
    if state_kind != "none":
        sshape = (L * D, batch, H)
        if state_kind == "shape":
            axis = draw(st.integers(0, 2))
            sshape = tuple(n + 1 if i == axis else n for i, n in enumerate(sshape))
            faults.append("state")
        h = rng.standard_normal(sshape).astype(dt)
        c = rng.standard_normal((L * D, batch, H)).astype(dt) if is_lstm(cell) else None
        state = join_state(cell, h, c)
    return cfg, x, lengths, state, faults


@settings(SETTINGS, max_examples=100)
@given(forward_cases())
def test_forward_random_arguments(case):
    cfg, x, lengths, state, faults = case
    cell = cfg["cell"]
    layer = _build(cfg)
    kind, out = _attempt(lambda: layer(x, lengths=lengths, state=state))
    # an empty time or batch axis may be refused (naming x) or computed: both are fine
    empty = x.ndim == 3 and 0 in x.shape[:2] and "x" not in faults
    event(("broken: " + ",".join(faults) if faults else "valid") + (" empty" * empty) + f", {kind}")
    if faults:
        assert kind == "error", f"accepted broken {faults}: x{x.shape} lengths={lengths}"
        assert isinstance(out, ValueError | TypeError), repr(out)
        if len(faults) == 1:
            names = faults + ["x"] * empty
            assert any(re.search(ARG_REGEX[f], str(out)) for f in names), (
                f"message does not name {' or '.join(names)}: {out}"
            )
        return
    x_tm = x.transpose(1, 0, 2) if cfg["batch_first"] else x
    if empty and kind == "error":
        assert isinstance(out, ValueError) and re.search(ARG_REGEX["x"], str(out)), repr(out)
        return
    assert kind == "ok", f"valid call rejected: {out!r}"
    _check_against_reference(cell, layer, cfg, x_tm, lengths, state, out)


@SETTINGS
@given(forward_cases(valid_only=True))
def test_forward_random_valid_arguments_match_reference(case):
    cfg, x, lengths, state, faults = case
    assert not faults
    layer = _build(cfg)
    out = layer(x, lengths=lengths, state=state)
    x_tm = x.transpose(1, 0, 2) if cfg["batch_first"] else x
    _check_against_reference(cfg["cell"], layer, cfg, x_tm, lengths, state, out)


BAD_DTYPES = [
    np.float16,
    np.int8,
    np.int32,
    np.int64,
    np.uint8,
    np.bool_,
    np.complex64,
    np.complex128,
    object,
    np.str_,
]


@SETTINGS
@given(
    layer_configs(),
    st.sampled_from(["x", "state", "dy", "dstate"]),
    st.sampled_from(BAD_DTYPES + ["other_float"]),
)
def test_wrong_dtypes_are_type_errors(cfg, where, bad):
    cell, dt = cfg["cell"], np.dtype(cfg["dtype"])
    L, D, H = cfg["num_layers"], 2 if cfg["bidirectional"] else 1, cfg["hidden"]
    steps, batch = 3, 2
    rng = np.random.default_rng(0)
    bad_dt = (
        np.dtype(np.float64 if dt == np.float32 else np.float32) if bad == "other_float" else bad
    )

    def arr(shape, name):
        a = rng.standard_normal(shape).astype(dt)
        if name == where:
            a = a.astype(bad_dt) if bad_dt is not np.str_ else a.astype(str)
        return a

    xshape = (batch, steps, cfg["input"]) if cfg["batch_first"] else (steps, batch, cfg["input"])
    yshape = xshape[:2] + (D * H,)
    sshape = (L * D, batch, H)
    layer = _build(cfg)
    x = arr(xshape, "x")
    state = join_state(cell, arr(sshape, "state"), arr(sshape, "state") if is_lstm(cell) else None)
    if where in ("x", "state"):
        with pytest.raises(TypeError, match=ARG_REGEX[where]):
            layer(x, state=state)
        return
    layer(x, state=state)
    dy = arr(yshape, "dy")
    dstate = join_state(
        cell, arr(sshape, "dstate"), arr(sshape, "dstate") if is_lstm(cell) else None
    )
    with pytest.raises(TypeError, match=ARG_REGEX[where]):
        layer.backward(dy, dstate=dstate)
    # the forward is still there: a correct backward works
    good_ds = join_state(
        cell, np.zeros(sshape, dt), np.zeros(sshape, dt) if is_lstm(cell) else None
    )
    dx, _ = layer.backward(np.zeros(yshape, dt), dstate=good_ds)
    assert np.asarray(dx).shape == xshape and not np.asarray(dx).any()


@st.composite
def nonfinite_cases(draw):
    cfg = draw(layer_configs())
    cfg["batch_first"] = False
    steps, batch = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.standard_normal((steps, batch, cfg["input"]))
    lengths = rng.integers(1, steps + 1, size=batch) if draw(st.booleans()) else None
    n_bad = draw(st.integers(1, 4))
    for _ in range(n_bad):
        t, b, i = (draw(st.integers(0, n - 1)) for n in x.shape)
        x[t, b, i] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return cfg, x.astype(cfg["dtype"]), lengths


@SETTINGS
@given(nonfinite_cases())
def test_nan_and_inf_inputs(case):
    """Non-finite values stay in their own sequence; padding is exactly zero; no crash."""
    cfg, x, lengths = case
    cell = cfg["cell"]
    layer = _build(cfg)
    kind, out = _attempt(lambda: layer(x, lengths=lengths))
    if kind == "error":  # an engine may refuse non-finite input, but only with a ValueError
        assert isinstance(out, ValueError) and re.search(ARG_REGEX["x"], str(out)), repr(out)
        return
    y, _ = out
    steps, batch = x.shape[:2]
    lens = np.full(batch, steps) if lengths is None else lengths
    for b in range(batch):
        assert not np.asarray(y)[lens[b] :, b].any(), "outputs past the end must be exactly zero"
    clean = np.isfinite(x[: lens.max()]).all(axis=2)  # [T, B]
    finite_b = [b for b in range(batch) if clean[: lens[b], b].all()]
    if finite_b:
        # each sequence only sees its own input: the finite ones match the reference
        sub = np.array(finite_b)
        want_y, want_h, _ = reference(
            cell, layer, x[:, sub], None if lengths is None else lengths[sub], None,
            cfg["num_layers"], cfg["bidirectional"],
        )  # fmt: skip
        h, _ = split_state(cell, out[1])
        _close(np.asarray(y)[:, sub], want_y, cfg["dtype"], "y of finite sequences")
        _close(np.asarray(h)[:, sub], want_h, cfg["dtype"], "h_n of finite sequences")


@st.composite
def padded_garbage_cases(draw):
    cfg = draw(layer_configs())
    cfg["batch_first"] = False
    steps, batch = draw(st.integers(2, 5)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.standard_normal((steps, batch, cfg["input"])).astype(cfg["dtype"])
    lengths = rng.integers(1, steps, size=batch)  # every sequence has padding
    junk = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e30]))
    return cfg, x, lengths, junk


@SETTINGS
@given(padded_garbage_cases())
def test_values_in_padding_are_ignored(case):
    """Packed-sequence semantics: x at t >= lengths[b] never matters, forward or backward."""
    cfg, x, lengths, junk = case
    cell = cfg["cell"]
    L, D, H = cfg["num_layers"], 2 if cfg["bidirectional"] else 1, cfg["hidden"]
    dirty = x.copy()
    for b, n in enumerate(lengths):
        dirty[n:, b] = junk
    rng = np.random.default_rng(1)
    dt = cfg["dtype"]
    dy = rng.standard_normal(x.shape[:2] + (D * H,)).astype(dt)
    dh = rng.standard_normal((L * D, x.shape[1], H)).astype(dt)
    dstate = join_state(cell, dh, dh.copy() if is_lstm(cell) else None)
    results = []
    layer = _build(cfg)  # one instance: its results are reproducible bit for bit
    for inp in (x, dirty):
        layer.zero_grad()
        y, st_out = layer(inp, lengths=lengths)
        dx, _ = layer.backward(dy, dstate=dstate)
        grads = {p.name: np.array(p.grad) for p in layer.parameters()}
        results.append((np.array(y), [np.array(a) for a in state_list(cell, st_out)], dx, grads))
    (y0, s0, dx0, g0), (y1, s1, dx1, g1) = results
    np.testing.assert_array_equal(y1, y0)
    for a, b in zip(s1, s0, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(dx1, dx0)
    for b, n in enumerate(lengths):
        assert not np.asarray(dx1)[n:, b].any(), "dx in the padding must be exactly zero"
    for k in g0:
        np.testing.assert_array_equal(g1[k], g0[k], err_msg=f"grad {k} saw the padding")


@st.composite
def backward_cases(draw):
    cfg = draw(layer_configs())
    cfg["dtype"] = "float64"
    steps, batch = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    L, D, H = cfg["num_layers"], 2 if cfg["bidirectional"] else 1, cfg["hidden"]
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    xshape = (batch, steps, cfg["input"]) if cfg["batch_first"] else (steps, batch, cfg["input"])
    yshape = xshape[:2] + (D * H,)
    sshape = (L * D, batch, H)
    faults = []
    dy_kind = draw(st.sampled_from(["none", "valid", "valid", "shape", "rank"]))
    dy = None
    if dy_kind == "valid":
        dy = rng.standard_normal(yshape)
    elif dy_kind == "shape":
        axis = draw(st.integers(0, 2))
        dy = rng.standard_normal(tuple(n + 1 if i == axis else n for i, n in enumerate(yshape)))
        faults.append("dy")
    elif dy_kind == "rank":
        ndim = draw(st.sampled_from([0, 1, 2, 4, 5]))
        dy = rng.standard_normal(tuple(draw(st.integers(1, 3)) for _ in range(ndim)))
        faults.append("dy")
    ds_kind = draw(st.sampled_from(["none", "valid", "valid", "shape"]))
    dstate = None
    if ds_kind != "none":
        hshape = sshape
        if ds_kind == "shape":
            axis = draw(st.integers(0, 2))
            hshape = tuple(n + 2 if i == axis else n for i, n in enumerate(sshape))
            faults.append("dstate")
        dh = rng.standard_normal(hshape)
        dstate = join_state(
            cfg["cell"], dh, rng.standard_normal(sshape) if is_lstm(cfg["cell"]) else None
        )
    x = rng.standard_normal(xshape)
    direction = rng.standard_normal(xshape)
    lengths = rng.integers(1, steps + 1, size=batch) if draw(st.booleans()) else None
    return cfg, x, lengths, dy, dstate, direction, faults


@SETTINGS
@given(backward_cases())
def test_backward_random_arguments(case):
    """Broken dy/dstate are clean errors; valid ones give dx that passes a directional FD check."""
    cfg, x, lengths, dy, dstate, direction, faults = case
    cell = cfg["cell"]
    layer = _build(cfg)
    layer(x, lengths=lengths)
    kind, out = _attempt(lambda: layer.backward(dy, dstate=dstate))
    event("broken: " + ",".join(faults) if faults else f"valid, {kind}")
    if faults:
        assert kind == "error", f"accepted broken {faults}"
        assert isinstance(out, ValueError | TypeError), repr(out)
        return
    assert kind == "ok", f"valid backward rejected: {out!r}"
    dx, _ = out
    assert np.asarray(dx).shape == x.shape
    if cfg["cell"] == "rnn_relu":
        return  # kinks: a random direction may cross one; test_gradcheck covers ReLU carefully

    def loss(xx):
        y, st_out = layer(xx, lengths=lengths)
        total = 0.0 if dy is None else float(np.sum(y * dy))
        if dstate is not None:
            for a, r in zip(split_state(cell, st_out), split_state(cell, dstate), strict=True):
                if r is not None:
                    total += float(np.sum(a * r))
        return total

    eps = 1e-6
    numeric = (loss(x + eps * direction) - loss(x - eps * direction)) / (2 * eps)
    analytic = float(np.sum(np.asarray(dx) * direction))
    assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(analytic)), (numeric, analytic)


LENGTHS_GARBAGE = st.one_of(
    st.lists(st.integers(-3, 8), min_size=0, max_size=5),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=3, max_size=3),
    st.lists(st.booleans(), min_size=3, max_size=3),
    st.lists(st.text(max_size=2), min_size=3, max_size=3),
    st.lists(st.one_of(st.none(), st.integers(1, 4)), min_size=3, max_size=3),
    st.lists(st.lists(st.integers(1, 4), max_size=2), min_size=3, max_size=3),
    st.sampled_from([2**63 - 1, -(2**63), 2**64, 3, "abc", 2.5]).map(lambda v: [v, 1, 1]),
    st.sampled_from(["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]).map(
        lambda d: np.array([4, 1, 2]).astype(d)
    ),
    st.integers(1, 4),
)


@SETTINGS
@given(LENGTHS_GARBAGE)
@example(lengths=[[], [], [1]])  # ragged: numpy itself refuses to make an array of it
@example(lengths=[4, None, 1])
@example(lengths=[2**64, 1, 1])
@example(lengths=[True, True, True])
@example(lengths=np.array([4, 1, 2], dtype=np.uint64))
@example(lengths=[4.0, 1.0, 2.0])
def test_lengths_garbage(lengths):
    """Any lengths value: a clean error naming lengths, or the result for those integer lengths."""
    cell = "lstm"
    steps, batch = 4, 3
    cfg = dict(
        cell=cell, input=2, hidden=3, num_layers=2, bidirectional=True, dtype="float64",
        batch_first=False,
    )  # fmt: skip
    layer = _build(cfg)
    x = np.random.default_rng(0).standard_normal((steps, batch, 2))
    kind, out = _attempt(lambda: layer(x, lengths=lengths))
    as_ints = _exact_int_lengths(lengths, batch, steps)
    event(f"{'invalid' if as_ints is None else 'valid'} lengths, {kind}")
    if as_ints is None:
        assert kind == "error", f"accepted invalid lengths {lengths!r}"
        assert isinstance(out, ValueError | TypeError), repr(out)
        assert "lengths" in str(out), f"message does not name lengths: {out}"
        return
    if kind == "error":  # e.g. bools or unsigned arrays may be refused, but cleanly
        assert isinstance(out, ValueError | TypeError) and "lengths" in str(out), repr(out)
        return
    _check_against_reference(cell, layer, cfg, x, as_ints, None, out)


def _exact_int_lengths(lengths, batch, steps):
    """The lengths as an int array if they are B integers in [1, T]; else None."""
    try:
        arr = np.asarray(lengths)
    except (ValueError, TypeError, OverflowError):
        return None
    if arr.shape != (batch,) or arr.dtype.kind not in "iub":
        return None
    arr = arr.astype(np.int64)
    if arr.min() < 1 or arr.max() > steps:
        return None
    return arr
