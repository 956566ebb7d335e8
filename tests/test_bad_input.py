"""Wrong arguments raise the right exception naming the argument, and the layer stays usable."""

import copy

import numpy as np
import pytest
from rnn_helpers import assert_same, is_lstm, join_state, make_layer, state_list

STEPS, BATCH, INPUT, HIDDEN, LAYERS, DIRS = 4, 3, 2, 5, 2, 2
DTYPE = "float32"
CELLS = ["lstm", "gru", "rnn_tanh"]

# regexes for "the message names the argument"
X, LENGTHS, STATE, DY, DSTATE = r"\bx\b", r"\blengths\b", r"\bstate\b", r"\bdy\b", r"\bdstate\b"


def _good(cell, seed=0):
    rng = np.random.default_rng(seed)
    f = np.float32
    x = rng.standard_normal((STEPS, BATCH, INPUT)).astype(f)
    shape = (LAYERS * DIRS, BATCH, HIDDEN)
    h, c = rng.standard_normal(shape).astype(f), rng.standard_normal(shape).astype(f)
    dy = rng.standard_normal((STEPS, BATCH, DIRS * HIDDEN)).astype(f)
    dh, dc = rng.standard_normal(shape).astype(f), rng.standard_normal(shape).astype(f)
    state = join_state(cell, h, c if is_lstm(cell) else None)
    dstate = join_state(cell, dh, dc if is_lstm(cell) else None)
    return dict(x=x, lengths=np.array([4, 1, 3]), state=state, dy=dy, dstate=dstate)


def _layer(cell):
    return make_layer(cell, INPUT, HIDDEN, LAYERS, DIRS == 2, dtype=DTYPE, seed=9)


def _run(layer, cell, g):
    layer.train()
    y, st = layer(g["x"], lengths=g["lengths"], state=g["state"])
    dx, ds = layer.backward(g["dy"], dstate=g["dstate"])
    grads = {p.name: np.array(p.grad) for p in layer.parameters()}
    return [np.array(a) for a in (y, *state_list(cell, st), dx, *state_list(cell, ds))], grads


def _assert_usable(layer, cell):
    """A correct forward + backward after the error gives exactly what a fresh layer gives."""
    g = _good(cell, seed=1)
    got, got_grads = _run(layer, cell, g)
    want, want_grads = _run(_layer(cell), cell, g)
    for a, b in zip(got, want, strict=True):
        assert_same(a, b)
    for k, v in want_grads.items():
        assert_same(got_grads[k], v, what=f"grad {k} after an error")


def _replace_h(cell, state, h):
    return (h, state[1]) if is_lstm(cell) else h


# id -> (function(cell, good args) -> bad forward kwargs, exception(s), regex)
def _fwd_cases():
    hs = (LAYERS * DIRS, BATCH, HIDDEN)
    return {
        "x_rank2": (lambda c, g: dict(g, x=g["x"][0]), ValueError, X),
        "x_rank4": (lambda c, g: dict(g, x=g["x"][None]), ValueError, X),
        "x_rank1": (lambda c, g: dict(g, x=g["x"][0, 0]), ValueError, X),
        "x_scalar": (lambda c, g: dict(g, x=np.float32(1.0)), (ValueError, TypeError), X),
        "x_input_size": (
            lambda c, g: dict(g, x=np.zeros((STEPS, BATCH, INPUT + 1), np.float32)),
            ValueError,
            X,
        ),
        "x_float64": (lambda c, g: dict(g, x=g["x"].astype(np.float64)), TypeError, X),
        "x_float16": (lambda c, g: dict(g, x=g["x"].astype(np.float16)), TypeError, X),
        "x_int64": (lambda c, g: dict(g, x=g["x"].astype(np.int64)), TypeError, X),
        "x_int32": (lambda c, g: dict(g, x=g["x"].astype(np.int32)), TypeError, X),
        "x_complex": (lambda c, g: dict(g, x=g["x"].astype(np.complex64)), TypeError, X),
        "lengths_short": (lambda c, g: dict(g, lengths=np.array([4, 1])), ValueError, LENGTHS),
        "lengths_long": (lambda c, g: dict(g, lengths=np.array([4, 1, 2, 3])), ValueError, LENGTHS),
        "lengths_2d": (lambda c, g: dict(g, lengths=np.array([[4, 1, 3]])), ValueError, LENGTHS),
        "lengths_zero": (lambda c, g: dict(g, lengths=np.array([4, 0, 3])), ValueError, LENGTHS),
        "lengths_negative": (lambda c, g: dict(g, lengths=[4, -1, 3]), ValueError, LENGTHS),
        "lengths_above_T": (lambda c, g: dict(g, lengths=[4, 5, 3]), ValueError, LENGTHS),
        "lengths_float": (
            lambda c, g: dict(g, lengths=np.array([4.0, 1.0, 3.0])),
            (TypeError, ValueError),
            LENGTHS,
        ),
        "lengths_float_fraction": (
            lambda c, g: dict(g, lengths=[4, 1.5, 3]),
            (TypeError, ValueError),
            LENGTHS,
        ),
        "state_layers": (
            lambda c, g: dict(g, state=_replace_h(c, g["state"], np.zeros(hs, np.float32)[1:])),
            ValueError,
            STATE,
        ),
        "state_batch": (
            lambda c, g: dict(
                g, state=_replace_h(c, g["state"], np.zeros((4, BATCH + 1, HIDDEN), np.float32))
            ),
            ValueError,
            STATE,
        ),
        "state_hidden": (
            lambda c, g: dict(
                g, state=_replace_h(c, g["state"], np.zeros((4, BATCH, HIDDEN - 1), np.float32))
            ),
            ValueError,
            STATE,
        ),
        "state_rank2": (
            lambda c, g: dict(
                g, state=_replace_h(c, g["state"], np.zeros((4, BATCH * HIDDEN), np.float32))
            ),
            ValueError,
            STATE,
        ),
        "state_float64": (
            lambda c, g: dict(g, state=_replace_h(c, g["state"], np.zeros(hs, np.float64))),
            TypeError,
            STATE,
        ),
    }


def _lstm_state_cases():
    hs = (LAYERS * DIRS, BATCH, HIDDEN)
    return {
        "lstm_state_not_tuple": (
            lambda c, g: dict(g, state=g["state"][0]),
            (TypeError, ValueError),
            STATE,
        ),
        "lstm_state_triple": (
            lambda c, g: dict(g, state=(*g["state"], g["state"][0])),
            (TypeError, ValueError),
            STATE,
        ),
        "lstm_c_shape": (
            lambda c, g: dict(g, state=(g["state"][0], np.zeros(hs, np.float32)[:, :2])),
            ValueError,
            STATE,
        ),
        "lstm_c_dtype": (
            lambda c, g: dict(g, state=(g["state"][0], np.zeros(hs, np.float64))),
            TypeError,
            STATE,
        ),
    }


@pytest.mark.parametrize("case", list(_fwd_cases()))
@pytest.mark.parametrize("cell", CELLS)
def test_forward_rejects(cell, case):
    make_bad, exc, regex = _fwd_cases()[case]
    layer = _layer(cell)
    args = {k: v for k, v in make_bad(cell, _good(cell)).items() if k not in ("dy", "dstate")}
    with pytest.raises(exc, match=regex):
        layer(args.pop("x"), **args)
    _assert_usable(layer, cell)


@pytest.mark.parametrize("case", list(_lstm_state_cases()))
def test_lstm_forward_rejects_bad_state(case):
    make_bad, exc, regex = _lstm_state_cases()[case]
    layer = _layer("lstm")
    g = make_bad("lstm", _good("lstm"))
    with pytest.raises(exc, match=regex):
        layer(g["x"], lengths=g["lengths"], state=g["state"])
    _assert_usable(layer, "lstm")


@pytest.mark.parametrize("cell", ["gru", "rnn_tanh"])
def test_non_lstm_rejects_tuple_state(cell):
    layer = _layer(cell)
    g = _good(cell)
    with pytest.raises((TypeError, ValueError), match=STATE):
        layer(g["x"], state=(g["state"], g["state"]))
    _assert_usable(layer, cell)


def _bwd_cases():
    dys = (STEPS, BATCH, DIRS * HIDDEN)
    hs = (LAYERS * DIRS, BATCH, HIDDEN)

    def with_dh(c, g, dh):
        return (dh, g["dstate"][1]) if is_lstm(c) else dh

    return {
        "dy_features": (
            lambda c, g: dict(g, dy=np.zeros((STEPS, BATCH, HIDDEN), np.float32)),
            ValueError,
            DY,
        ),
        "dy_steps": (lambda c, g: dict(g, dy=g["dy"][:-1]), ValueError, DY),
        "dy_batch": (lambda c, g: dict(g, dy=g["dy"][:, :-1]), ValueError, DY),
        "dy_rank2": (lambda c, g: dict(g, dy=g["dy"][0]), ValueError, DY),
        "dy_rank4": (lambda c, g: dict(g, dy=g["dy"][None]), ValueError, DY),
        "dy_float64": (lambda c, g: dict(g, dy=np.zeros(dys, np.float64)), TypeError, DY),
        "dy_int": (lambda c, g: dict(g, dy=np.zeros(dys, np.int32)), TypeError, DY),
        "dstate_shape": (
            lambda c, g: dict(g, dstate=with_dh(c, g, np.zeros(hs, np.float32)[:2])),
            ValueError,
            DSTATE,
        ),
        "dstate_hidden": (
            lambda c, g: dict(g, dstate=with_dh(c, g, np.zeros(hs, np.float32)[..., :2])),
            ValueError,
            DSTATE,
        ),
        "dstate_float64": (
            lambda c, g: dict(g, dstate=with_dh(c, g, np.zeros(hs, np.float64))),
            TypeError,
            DSTATE,
        ),
    }


@pytest.mark.parametrize("case", list(_bwd_cases()))
@pytest.mark.parametrize("cell", CELLS)
def test_backward_rejects_and_keeps_the_forward(cell, case):
    """A rejected backward leaves the forward's cache intact: a correct backward still works."""
    make_bad, exc, regex = _bwd_cases()[case]
    g = _good(cell)
    layer, twin = _layer(cell), _layer(cell)
    layer(g["x"], lengths=g["lengths"], state=g["state"])
    bad = make_bad(cell, g)
    with pytest.raises(exc, match=regex):
        layer.backward(bad["dy"], dstate=bad["dstate"])
    assert all(not p.grad.any() for p in layer.parameters()), "a rejected backward changed grads"
    dx, ds = layer.backward(g["dy"], dstate=g["dstate"])
    twin(g["x"], lengths=g["lengths"], state=g["state"])
    dx_t, ds_t = twin.backward(g["dy"], dstate=g["dstate"])
    assert_same(dx, dx_t)
    for a, b in zip(state_list(cell, ds), state_list(cell, ds_t), strict=True):
        assert_same(a, b)
    twin_grads = {p.name: p.grad for p in twin.parameters()}
    for p in layer.parameters():
        assert_same(p.grad, twin_grads[p.name], what=p.name)


def test_lstm_backward_rejects_non_tuple_dstate():
    g = _good("lstm")
    layer = _layer("lstm")
    layer(g["x"], lengths=g["lengths"], state=g["state"])
    with pytest.raises((TypeError, ValueError), match=DSTATE):
        layer.backward(g["dy"], dstate=g["dstate"][0])
    layer.backward(g["dy"], dstate=g["dstate"])


@pytest.mark.parametrize("cell", CELLS)
def test_backward_before_forward(cell):
    layer = _layer(cell)
    g = _good(cell)
    with pytest.raises(RuntimeError):
        layer.backward(g["dy"], dstate=g["dstate"])
    _assert_usable(layer, cell)


@pytest.mark.parametrize("cell", CELLS)
def test_backward_after_eval_forward(cell):
    layer = _layer(cell)
    g = _good(cell)
    layer.eval()
    y, _ = layer(g["x"], lengths=g["lengths"], state=g["state"])
    assert y.shape == (STEPS, BATCH, DIRS * HIDDEN)
    with pytest.raises(RuntimeError):
        layer.backward(g["dy"], dstate=g["dstate"])
    # a training forward followed by an eval forward: the eval forward replaced it
    layer.train()
    layer(g["x"], lengths=g["lengths"], state=g["state"])
    layer.eval()
    layer(g["x"], lengths=g["lengths"], state=g["state"])
    with pytest.raises(RuntimeError):
        layer.backward(g["dy"], dstate=g["dstate"])
    assert all(not p.grad.any() for p in layer.parameters())
    _assert_usable(layer, cell)


@pytest.mark.parametrize("cell", CELLS)
def test_backward_twice_for_one_forward(cell):
    layer = _layer(cell)
    g = _good(cell)
    layer(g["x"], lengths=g["lengths"], state=g["state"])
    layer.backward(g["dy"], dstate=g["dstate"])
    grads = {p.name: np.array(p.grad) for p in layer.parameters()}
    with pytest.raises(RuntimeError):
        layer.backward(g["dy"], dstate=g["dstate"])
    for p in layer.parameters():
        np.testing.assert_array_equal(p.grad, grads[p.name], err_msg=p.name)
    layer.zero_grad()
    _assert_usable(layer, cell)


def test_batch_first_lengths_count_batch_axis():
    """With batch_first, B is x.shape[0] and T is x.shape[1]: lengths are checked against those."""
    layer = make_layer("gru", INPUT, HIDDEN, 1, False, dtype=DTYPE, batch_first=True)
    x = np.zeros((3, 6, INPUT), np.float32)  # B=3, T=6
    y, h = layer(x, lengths=[6, 5, 1])
    assert y.shape == (3, 6, HIDDEN) and h.shape == (1, 3, HIDDEN)
    with pytest.raises(ValueError, match=LENGTHS):
        layer(x, lengths=[6, 5, 1, 1, 1, 1])
    with pytest.raises(ValueError, match=LENGTHS):
        layer(x, lengths=[7, 5, 1])


CTOR_CASES = {
    "input_size_0": (dict(input_size=0), ValueError, r"\binput_size\b"),
    "input_size_negative": (dict(input_size=-3), ValueError, r"\binput_size\b"),
    "hidden_size_0": (dict(hidden_size=0), ValueError, r"\bhidden_size\b"),
    "hidden_size_negative": (dict(hidden_size=-1), ValueError, r"\bhidden_size\b"),
    "hidden_size_float": (dict(hidden_size=4.5), (TypeError, ValueError), r"\bhidden_size\b"),
    "num_layers_0": (dict(num_layers=0), ValueError, r"\bnum_layers\b"),
    "dropout_negative": (dict(dropout=-0.1), ValueError, r"\bdropout\b"),
    "dropout_one": (dict(dropout=1.0), ValueError, r"\bdropout\b"),
    "dropout_big": (dict(dropout=2.0), ValueError, r"\bdropout\b"),
    "dropout_nan": (dict(dropout=float("nan")), ValueError, r"\bdropout\b"),
    "dtype_float16": (dict(dtype="float16"), (TypeError, ValueError), r"\bdtype\b"),
    "dtype_int32": (dict(dtype="int32"), (TypeError, ValueError), r"\bdtype\b"),
}


@pytest.mark.parametrize("case", list(CTOR_CASES))
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_constructor_rejects(cell, case):
    kwargs, exc, regex = CTOR_CASES[case]
    args = dict(input_size=INPUT, hidden_size=HIDDEN, num_layers=2)
    args.update(kwargs)
    with pytest.raises(exc, match=regex):
        make_layer(
            cell, args.pop("input_size"), args.pop("hidden_size"), args.pop("num_layers"), **args
        )


def test_rnn_rejects_unknown_nonlinearity():
    import rnncore

    with pytest.raises(ValueError, match=r"\bnonlinearity\b"):
        rnncore.nn.RNN(INPUT, HIDDEN, nonlinearity="sigmoid")


# ---- found by a review of the API as a demanding user would call it -----------------------------
from rnncore import models as rnn_models  # noqa: E402
from rnncore import nn as rnn_nn  # noqa: E402


@pytest.mark.parametrize(
    "make, kind, match",
    [
        (
            lambda: rnn_nn.LSTM(4, 8, seed=-1),
            ValueError,
            "LSTM: seed must be >= 0",
        ),
        (
            lambda: rnn_nn.Linear(2, 2, seed=1.5),
            TypeError,
            "Linear: seed must be",
        ),
        (lambda: rnn_nn.Dropout(0.1, seed=True), TypeError, "Dropout: seed"),
        (
            lambda: rnn_models.LanguageModel(10, 4, 4, seed=-3),
            ValueError,
            "LanguageModel: seed must be >= 0",
        ),
        (lambda: rnn_models.Seq2Seq(5, 5, seed="1"), TypeError, "Seq2Seq: seed"),
    ],
)
def test_seeds_are_checked_by_name(make, kind, match):
    with pytest.raises(kind, match=match):
        make()


def test_model_calls_name_their_arguments():
    from rnncore import models, nn

    lm = models.LanguageModel(10, 4, 4, seed=0)
    with pytest.raises(ValueError, match=r"training_step: batch must be \(x \[T, B\], y"):
        lm.training_step((np.arange(5), np.arange(5)))
    with pytest.raises(TypeError, match="validation_step: batch must be a pair"):
        lm.validation_step(np.zeros((3, 2), np.int64))
    assert lm.sample([1], 2, temperature=np.float32(0.7), seed=0).shape == (2,)
    with pytest.raises(TypeError, match="prompt_ids must be integer token ids"):
        lm.sample([1.7], 2)
    with pytest.raises(ValueError, match="prompt_ids must be 1-D"):
        lm.sample([[1, 2], [3, 4]], 2)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        lm.sample([1], 2, temperature=True)
    s2s = models.Seq2Seq(8, 8, embed_dim=4, hidden_size=4, seed=0)
    with pytest.raises(TypeError, match="beam_width must be an integer, got 2.7"):
        s2s.beam_search([4, 5], beam_width=2.7)
    crf = nn.CRF(3)
    e = np.zeros((4, 2, 3), np.float32)
    e[1, 0, 2] = np.nan
    with pytest.raises(ValueError, match="CRF.forward: emissions contain NaN"):
        crf(e, np.zeros((4, 2), np.int64))
    e[1, 0, 2] = -np.inf  # an impossible tag stays allowed
    assert np.isfinite(crf(e, np.zeros((4, 2), np.int64)))
    with pytest.raises(TypeError, match="CRF.backward: scale must be a number"):
        crf.backward(None)
    cell = nn.GRUCell(4, 8)
    with pytest.raises(ValueError, match=r"^GRUCell\.forward: "):
        cell(np.zeros((2, 5), np.float32))


def test_damaged_optimizer_state_is_refused_before_it_poisons_the_parameters():
    from rnncore import nn, optim

    lin = nn.Linear(3, 2, seed=0)
    opt = optim.Adam(lin.parameters())
    lin(np.ones((4, 3), np.float32))
    lin.backward(np.ones((4, 2), np.float32))
    opt.step()
    good = opt.state_dict()

    def damaged(key, value):
        sd = copy.deepcopy(good)
        sd["state"][0][key] = value
        return sd

    sq = good["state"][0]["exp_avg_sq"]
    for sd, match in [
        (damaged("exp_avg_sq", -np.ones_like(sq)), "'exp_avg_sq' holds negative values"),
        (damaged("exp_avg", np.full_like(sq, np.nan)), "'exp_avg' holds NaN"),
        (damaged("step", -1), "'step' of parameter 0 must be an integer >= 0"),
    ]:
        fresh = optim.Adam(lin.parameters())
        with pytest.raises(ValueError, match=match):
            fresh.load_state_dict(sd)
    optim.Adam(lin.parameters()).load_state_dict(good)
