"""Layer behaviour beyond the maths: grad accumulation, parameter views, state_dict, dropout."""

import numpy as np
import pytest
from rnn_helpers import (
    CELLS,
    assert_close,
    assert_same,
    is_lstm,
    join_state,
    make_layer,
    param_by_name,
    random_state,
    reference,
    split_state,
    state_list,
)

STEPS, BATCH, INPUT, HIDDEN = 5, 3, 4, 6


def _inputs(cell, dtype="float64", num_layers=2, dirs=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((STEPS, BATCH, INPUT)).astype(dtype)
    state = random_state(rng, cell, num_layers, dirs, BATCH, HIDDEN, dtype)
    dy = rng.standard_normal((STEPS, BATCH, dirs * HIDDEN)).astype(dtype)
    dstate = random_state(rng, cell, num_layers, dirs, BATCH, HIDDEN, dtype)
    return x, state, dy, dstate


def _grads(layer):
    return {p.name: np.array(p.grad) for p in layer.parameters()}


@pytest.mark.parametrize("cell", list(CELLS))
def test_gradients_accumulate_and_zero_grad_clears(cell):
    layer = make_layer(cell, INPUT, HIDDEN, 2, True)
    x, state, dy, dstate = _inputs(cell)
    lengths = np.array([5, 2, 3])
    layer.zero_grad()
    layer(x, lengths=lengths, state=state)
    dx1, ds1 = layer.backward(dy, dstate=dstate)
    once = _grads(layer)
    assert all(np.abs(g).max() > 0 for g in once.values()), "every parameter gets a gradient"
    layer(x, lengths=lengths, state=state)
    dx2, ds2 = layer.backward(dy, dstate=dstate)
    twice = _grads(layer)
    for name in once:
        np.testing.assert_allclose(twice[name], 2 * once[name], rtol=1e-12, atol=0, err_msg=name)
    # activation gradients are assigned, not accumulated
    np.testing.assert_array_equal(dx2, dx1)
    for a, b in zip(state_list(cell, ds2), state_list(cell, ds1), strict=True):
        np.testing.assert_array_equal(a, b)

    live = [p.grad for p in layer.parameters()]  # views: zero_grad must clear them in place
    layer.zero_grad()
    assert all(not g.any() for g in live)
    assert all(not p.grad.any() for p in layer.parameters())
    layer(x, lengths=lengths, state=state)
    layer.backward(dy, dstate=dstate)
    for name, g in _grads(layer).items():
        np.testing.assert_array_equal(g, once[name], err_msg=name)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_parameters_are_live_views(cell):
    layer = make_layer(cell, INPUT, HIDDEN, 2, True)
    params = param_by_name(layer)
    sd = layer.state_dict()
    assert list(params) == list(sd), "parameters() and state_dict() agree on names and order"
    for name, p in params.items():
        assert p.data.shape == sd[name].shape and p.grad.shape == sd[name].shape
        assert p.data.dtype == np.float64 and p.grad.dtype == np.float64
    x, state, _, _ = _inputs(cell)
    y_before, _ = layer(x, state=state)

    p = params["weight_hh_l1_reverse"]
    p.data[...] *= 0.5  # write through the view
    np.testing.assert_array_equal(
        layer.state_dict()["weight_hh_l1_reverse"], 0.5 * sd["weight_hh_l1_reverse"]
    )
    y_after, _ = layer(x, state=state)
    assert np.abs(y_after - y_before).max() > 1e-6, "forward must see writes to parameter views"
    want, _, _ = reference(cell, layer, x, None, state, 2, True)
    assert_close(y_after, want, "float64", "y after editing a parameter view")

    # state_dict returns copies: editing them changes nothing
    sd2 = layer.state_dict()
    sd2["weight_ih_l0"][...] = 123.0
    assert not (layer.state_dict()["weight_ih_l0"] == 123.0).any()


@pytest.mark.parametrize("cell", list(CELLS))
def test_state_dict_round_trip_and_seed(cell):
    a = make_layer(cell, INPUT, HIDDEN, 2, True, seed=7)
    b = make_layer(cell, INPUT, HIDDEN, 2, True, seed=7)
    c = make_layer(cell, INPUT, HIDDEN, 2, True, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=f"same seed, {k}")
    assert any(not np.array_equal(sa[k], sc[k]) for k in sa), "different seeds, same weights"
    c.load_state_dict(sa)
    for k, v in c.state_dict().items():
        np.testing.assert_array_equal(v, sa[k], err_msg=k)
    x, state, _, _ = _inputs(cell)
    ya, _ = a(x, state=state)
    yc, _ = c(x, state=state)
    assert_same(ya, yc)


def test_load_state_dict_rejects_wrong_shapes_and_names():
    layer = make_layer("lstm", INPUT, HIDDEN, 1, False)
    before = layer.state_dict()
    bad = dict(before)
    bad["weight_hh_l0"] = np.zeros((4 * HIDDEN, HIDDEN + 1))
    with pytest.raises(ValueError, match="weight_hh_l0"):
        layer.load_state_dict(bad)
    missing = {k: v for k, v in before.items() if k != "bias_ih_l0"}
    with pytest.raises((ValueError, KeyError), match="bias_ih_l0"):
        layer.load_state_dict(missing)
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=f"{k} changed by a failed load")


@pytest.mark.parametrize("cell", list(CELLS))
def test_eval_equals_train_without_dropout(cell):
    layer = make_layer(cell, INPUT, HIDDEN, 2, True)
    x, state, _, _ = _inputs(cell)
    lengths = np.array([3, 5, 1])
    layer.train()
    y_train, s_train = layer(x, lengths=lengths, state=state)
    layer.eval()
    y_eval, s_eval = layer(x, lengths=lengths, state=state)
    assert_same(y_train, y_eval)
    for a, b in zip(state_list(cell, s_train), state_list(cell, s_eval), strict=True):
        assert_same(a, b)


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru"])
def test_dropout_deterministic_per_seed_and_off_in_eval(cell):
    x, state, dy, dstate = _inputs(cell, num_layers=3)

    def run(seed, train):
        layer = make_layer(cell, INPUT, HIDDEN, 3, True, seed=seed, dropout=0.5)
        layer.train() if train else layer.eval()
        y, st = layer(x, state=state)
        return layer, y, st

    l1, y1, _ = run(3, True)
    l2, y2, _ = run(3, True)
    assert_same(y1, y2)  # same seed, same masks
    dx1, _ = l1.backward(dy, dstate=dstate)
    dx2, _ = l2.backward(dy, dstate=dstate)
    assert_same(dx1, dx2)
    for name, g in _grads(l1).items():
        assert_same(g, _grads(l2)[name], what=name)

    le, y_eval, s_eval = run(3, False)
    assert np.abs(y1 - y_eval).max() > 1e-3, "dropout must change the training forward"
    want_y, want_h, want_c = reference(cell, le, x, None, state, 3, True)
    assert_close(y_eval, want_y, "float64", "eval-mode y with dropout=0.5")
    h, c = split_state(cell, s_eval)
    assert_close(h, want_h, "float64", "eval-mode h_n with dropout=0.5")
    if is_lstm(cell):
        assert_close(c, want_c, "float64", "eval-mode c_n with dropout=0.5")
    # dropout acts between layers: layer 0's final states (both directions) are untouched
    _, s1 = l1(x, state=state)
    np.testing.assert_allclose(split_state(cell, s1)[0][:2], want_h[:2], rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", list(CELLS))
def test_state_carries_across_chunks(cell):
    """Stateful use (truncated BPTT): running x[:2] then x[2:] from its final state == running x."""
    layer = make_layer(cell, INPUT, HIDDEN, 2, True)
    layer_uni = make_layer(cell, INPUT, HIDDEN, 2, False)
    for lyr, dirs in ((layer_uni, 1), (layer, 2)):
        x, state, _, _ = _inputs(cell, dirs=dirs)
        y_all, s_all = lyr(x, state=state)
        y_a, s_a = lyr(x[:2], state=state)
        y_b, s_b = lyr(x[2:], state=s_a)
        if dirs == 1:
            np.testing.assert_allclose(np.concatenate([y_a, y_b]), y_all, rtol=0, atol=1e-13)
            for a, b in zip(state_list(cell, s_b), state_list(cell, s_all), strict=True):
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)
        else:  # bidirectional: chunking changes the reverse pass, so it must differ
            assert np.abs(np.concatenate([y_a, y_b]) - y_all).max() > 1e-6


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_relu"])
def test_outputs_are_not_overwritten_by_later_calls(cell):
    layer = make_layer(cell, INPUT, HIDDEN, 2, True)
    x, state, dy, dstate = _inputs(cell)
    x2, state2, dy2, dstate2 = _inputs(cell, seed=1)
    y, st = layer(x, state=state)
    dx, ds = layer.backward(dy, dstate=dstate)
    saved = [np.array(a) for a in (y, *state_list(cell, st), dx, *state_list(cell, ds))]
    layer(x2, state=state2)
    layer.backward(dy2, dstate=dstate2)
    for got, want in zip((y, *state_list(cell, st), dx, *state_list(cell, ds)), saved, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_inputs_are_not_modified(cell):
    layer = make_layer(cell, INPUT, HIDDEN, 2, True)
    x, state, dy, dstate = _inputs(cell)
    lengths = np.array([5, 1, 3])
    copies = [np.array(a) for a in (x, *state_list(cell, state), dy, *state_list(cell, dstate))]
    layer(x, lengths=lengths, state=state)
    layer.backward(dy, dstate=dstate)
    for got, want in zip(
        (x, *state_list(cell, state), dy, *state_list(cell, dstate)), copies, strict=True
    ):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(lengths, [5, 1, 3])


@pytest.mark.parametrize("cell", ["lstm", "rnn_tanh"])
def test_non_contiguous_inputs_are_accepted(cell):
    layer = make_layer(cell, INPUT, HIDDEN, 2, True)
    rng = np.random.default_rng(5)
    big = rng.standard_normal((2 * STEPS, BATCH, 2 * INPUT))
    x_view = big[::2, :, ::2]  # strided in two axes
    assert not x_view.flags.c_contiguous
    x = np.ascontiguousarray(x_view)
    h = rng.standard_normal((BATCH, 4, HIDDEN)).transpose(1, 0, 2)  # [L*D, B, H], strided
    c = rng.standard_normal((4, BATCH, HIDDEN)) if is_lstm(cell) else None
    dy_big = rng.standard_normal((STEPS, BATCH, 4 * HIDDEN))
    dy_view = dy_big[:, :, ::2]
    y1, s1 = layer(x_view, state=join_state(cell, h, c))
    dx1, _ = layer.backward(dy_view)
    y2, s2 = layer(x, state=join_state(cell, np.ascontiguousarray(h), c))
    dx2, _ = layer.backward(np.ascontiguousarray(dy_view))
    assert_same(y1, y2)
    assert_same(dx1, dx2)
    for a, b in zip(state_list(cell, s1), state_list(cell, s2), strict=True):
        assert_same(a, b)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_lengths_forms_agree(cell):
    """lengths as a list, int64 array or int32 array give the same result."""
    layer = make_layer(cell, INPUT, HIDDEN, 1, True)
    x, _, _, _ = _inputs(cell, num_layers=1)
    want, _ = layer(x, lengths=np.array([4, 5, 1], dtype=np.int64))
    for lengths in ([4, 5, 1], np.array([4, 5, 1], dtype=np.int32), (4, 5, 1)):
        got, _ = layer(x, lengths=lengths)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("cell", list(CELLS))
def test_dy_none_means_zero(cell):
    """backward(None, dstate) == backward(zeros, dstate); backward(dy) == backward(dy, zeros)."""
    layer = make_layer(cell, INPUT, HIDDEN, 2, True)
    x, state, dy, dstate = _inputs(cell)
    results = []
    for dy_arg, ds_arg in (
        (None, dstate),
        (np.zeros_like(dy), dstate),
        (dy, None),
        (dy, join_state(cell, *[np.zeros_like(a) for a in state_list(cell, dstate)])),
    ):
        layer.zero_grad()
        layer(x, state=state)
        dx, ds = layer.backward(dy_arg, dstate=ds_arg)
        results.append((np.array(dx), [np.array(a) for a in state_list(cell, ds)], _grads(layer)))
    for first, second in (results[0:2], results[2:4]):
        assert_same(first[0], second[0])
        for a, b in zip(first[1], second[1], strict=True):
            assert_same(a, b)
        for k in first[2]:
            assert_same(first[2][k], second[2][k], what=k)


def _run_fresh(cell, threads, x, lengths, dy, layer=None):
    import rnncore

    before = rnncore.get_num_threads()
    try:
        rnncore.set_num_threads(threads)
        layer = layer or make_layer(cell, INPUT, HIDDEN, 2, True, seed=4)
        layer.zero_grad()
        y, st = layer(x, lengths=lengths)
        dx, _ = layer.backward(dy)
        grads = np.concatenate([p.grad.ravel() for p in layer.parameters()])
        return [np.array(a) for a in (y, *state_list(cell, st), dx, grads)]
    finally:
        rnncore.set_num_threads(before)


def _determinism_inputs():
    rng = np.random.default_rng(8)
    steps, batch = 9, 17  # several rows per thread
    x = rng.standard_normal((steps, batch, INPUT))
    lengths = rng.integers(1, steps + 1, size=batch)
    dy = rng.standard_normal((steps, batch, 2 * HIDDEN))
    return x, lengths, dy


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_repeated_calls_are_bitwise_identical(cell, threads):
    x, lengths, dy = _determinism_inputs()
    layer = make_layer(cell, INPUT, HIDDEN, 2, True, seed=4)
    first = _run_fresh(cell, threads, x, lengths, dy, layer)
    for _ in range(3):
        for a, b in zip(_run_fresh(cell, threads, x, lengths, dy, layer), first, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_same_seed_same_threads_same_result(cell):
    """DESIGN.md: 'same seed, same threads, same result' -- across fresh layer instances too."""
    x, lengths, dy = _determinism_inputs()
    first = _run_fresh(cell, 1, x, lengths, dy)
    for _ in range(8):  # fresh instances land at different addresses
        for a, b in zip(_run_fresh(cell, 1, x, lengths, dy), first, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_thread_count_changes_only_rounding(cell):
    x, lengths, dy = _determinism_inputs()
    layer = make_layer(cell, INPUT, HIDDEN, 2, True, seed=4)
    one = _run_fresh(cell, 1, x, lengths, dy, layer)
    two = _run_fresh(cell, 2, x, lengths, dy, layer)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_backward_does_not_see_later_changes_to_inputs(cell):
    """The forward keeps the state it needs: reusing the state buffers before backward is safe."""
    x, state, dy, dstate = _inputs(cell)
    results = []
    for scribble in (False, True):
        layer = make_layer(cell, INPUT, HIDDEN, 2, True)
        st = join_state(cell, *[a.copy() for a in state_list(cell, state)])
        layer(x, state=st)
        if scribble:
            for a in state_list(cell, st):
                a[...] = -3.0
        dx, ds = layer.backward(dy, dstate=dstate)
        results.append([np.array(a) for a in (dx, *state_list(cell, ds))] + [_grads(layer)])
    for a, b in zip(results[0][:-1], results[1][:-1], strict=True):
        assert_same(a, b)
    for k, g in results[0][-1].items():
        assert_same(results[1][-1][k], g, what=k)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("edited", ["x", "y"])
@pytest.mark.parametrize("where", ["all", 0, 5, -1])
def test_backward_refuses_inputs_or_outputs_edited_in_place(cell, edited, where):
    """Without lengths the engine reads x and y in place (no copies, PyTorch's memory): editing
    either between forward and backward, all of it or a single value (first, one of another hash
    lane, last), is a clear RuntimeError, as in PyTorch, and the layer stays usable."""
    x, state, dy, dstate = _inputs(cell)
    layer = make_layer(cell, INPUT, HIDDEN, 2, True)
    xx = x.copy()
    y, _ = layer(xx, state=state)
    arr = xx if edited == "x" else y
    if where == "all":
        arr[...] = 7.0
    else:
        arr.reshape(-1)[where] += 1.0
    with pytest.raises(RuntimeError, match=edited):
        layer.backward(dy, dstate=dstate)
    y, _ = layer(x, state=state)  # usable again
    dx, _ = layer.backward(dy, dstate=dstate)
    assert np.isfinite(dx).all()


def test_lstm_dstate_parts_may_be_none():
    """LSTM dstate (dh, None) / (None, dc) mean zeros for the missing part."""
    layer = make_layer("lstm", INPUT, HIDDEN, 2, True)
    x, state, dy, (dh, dc) = _inputs("lstm")
    zeros = np.zeros_like(dh)
    for partial, full in (((dh, None), (dh, zeros)), ((None, dc), (zeros, dc))):
        got, want = [], []
        for ds, out in ((partial, got), (full, want)):
            layer.zero_grad()
            layer(x, state=state)
            dx, (dh0, dc0) = layer.backward(dy, dstate=ds)
            out += [np.array(dx), np.array(dh0), np.array(dc0), *_grads(layer).values()]
        for a, b in zip(got, want, strict=True):
            assert_same(a, b)
