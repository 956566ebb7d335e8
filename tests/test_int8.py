"""Int8 inference of the recurrent layers (int8_inference): the exact algorithm against a NumPy
reference, its invariances (batch, threads, lengths), and its error against float32 and against
PyTorch's quantize_dynamic."""

import numpy as np
import pytest
import rnncore
from rnncore import nn

RNG = np.random.default_rng(0)


def layer(cell="lstm", I=13, H=70, **kw):
    """A float32 layer with PyTorch-scale uniform weights."""
    m = nn.recurrent_layer(cell, I, H, seed=1, **kw)
    return m.eval()


def quantize_rows(W, levels):
    """(q, scale) of each row of W: round(W * levels / max|row|), ties to even, float32 math."""
    W = W.astype(np.float32)
    amax = np.abs(W).max(axis=1)
    inv = np.where(amax > 0, np.float32(levels) / np.where(amax > 0, amax, 1), 0).astype(np.float32)
    q = np.clip(np.rint(W * inv[:, None]), -levels, levels).astype(np.int64)
    return q, (amax / np.float32(levels)).astype(np.float32)


def int8_product(W, x):
    """x · Wᵀ as the engine's int8 kernels compute it: rows of W to 127 levels, rows of x to 63."""
    qw, sw = quantize_rows(W, 127)
    qx, sx = quantize_rows(x, 63)
    acc = qx @ qw.T  # exact integer sums
    return acc.astype(np.float32) * (sw[None, :] * sx[:, None])


def sigmoid(v):
    return (1 / (1 + np.exp(-v.astype(np.float64)))).astype(np.float32)


def test_one_lstm_step_equals_the_numpy_reference():
    """Odd sizes on purpose: 13 inputs (not a multiple of 4), 70 units (4H = 280 outputs: four
    full panels of 64 and a partial one, a partial vector of 8)."""
    m = layer()
    I, H, B = 13, 70, 3
    p = dict(m.named_parameters())
    x = RNG.standard_normal((1, B, I)).astype(np.float32)
    h0 = RNG.standard_normal((1, B, H)).astype(np.float32) * 0.5
    c0 = RNG.standard_normal((1, B, H)).astype(np.float32)
    m.int8_inference = True
    y, (hn, cn) = m(x, (h0, c0))
    b = p["bias_ih_l0"].data + p["bias_hh_l0"].data
    pre = (int8_product(p["weight_ih_l0"].data, x[0]) + b) + int8_product(
        p["weight_hh_l0"].data, h0[0]
    )
    i, f, g, o = np.split(pre, 4, axis=1)
    c = sigmoid(f) * c0[0] + sigmoid(i) * np.tanh(g)
    h = sigmoid(o) * np.tanh(c)
    np.testing.assert_allclose(cn[0], c, rtol=0, atol=2e-6)
    np.testing.assert_allclose(y[0], h, rtol=0, atol=2e-6)
    m.int8_inference = False
    y32, _ = m(x, (h0, c0))
    assert np.abs(y32 - y).max() > 1e-5  # the int8 products really ran


@pytest.mark.parametrize(
    "cell,kw",
    [
        ("lstm", dict(num_layers=2, bidirectional=True)),
        ("gru", dict(num_layers=2)),
        ("gru_v1", {}),
        ("rnn", {}),
        ("rnn_relu", {}),
        ("lstm", dict(proj_size=24)),
        ("gated-forget", {}),
    ],
    ids=str,
)
def test_every_cell_is_batch_and_thread_invariant_and_close_to_float32(cell, kw):
    m = layer(cell, **kw)
    T, B = 9, 6
    x = RNG.standard_normal((T, B, 13)).astype(np.float32)
    lengths = np.array([9, 3, 7, 1, 9, 5])
    want, _ = m(x, lengths=lengths)
    m.int8_inference = True
    got, _ = m(x, lengths=lengths)
    err = np.abs(got - want).max()
    assert 1e-6 < err < 0.05 * max(1.0, np.abs(want).max()), err
    # Each row is quantized on its own: a sequence alone gives what it gives in the batch.
    for b in (0, 1, 3):
        alone, _ = m(x[: lengths[b], b : b + 1])
        np.testing.assert_allclose(alone[:, 0], got[: lengths[b], b], rtol=0, atol=1e-6)
    before = rnncore.get_num_threads()
    try:
        rnncore.set_num_threads(1)
        one, _ = m(x, lengths=lengths)
    finally:
        rnncore.set_num_threads(before)
    np.testing.assert_allclose(one, got, rtol=0, atol=1e-6)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_and_weights_give_nan_not_finite_garbage(bad):
    """max |x| skips NaN, and an infinite max quantized a row to zeros: the int8 outputs looked
    plausible. Now a non-finite row's NaN reaches every output it touches (that sequence only)."""
    lstm = nn.LSTM(4, 8, seed=0).eval()
    lstm.int8_inference = True
    x = np.random.default_rng(0).standard_normal((3, 2, 4)).astype(np.float32)
    x[1, 0, 2] = bad
    y, (h, c) = lstm(x)
    assert not np.isnan(y[0]).any() and not np.isnan(y[:, 1]).any()  # before it, other sequence
    assert np.isnan(y[1:, 0]).all() and np.isnan(h[0, 0]).all()
    dict(lstm.named_parameters())["weight_hh_l0"].data[3, 1] = bad
    y, _ = lstm(x[:, 1:])
    assert np.isnan(y[1:]).all()  # from step 2 on, through h


def test_training_forwards_and_checkpoints_ignore_it():
    m = layer(num_layers=2).train()
    x = RNG.standard_normal((5, 2, 13)).astype(np.float32)
    want, _ = m(x)
    m.backward(np.ones_like(want))
    m.int8_inference = True
    got, _ = m(x)
    m.backward(np.ones_like(got))
    np.testing.assert_array_equal(got, want)  # training stays float32
    state = m.state_dict()
    assert all(v.dtype == np.float32 for v in state.values())


def test_bad_uses_are_refused_by_name():
    with pytest.raises(ValueError, match="LSTM.int8_inference: int8 inference is for float32"):
        nn.LSTM(3, 4, dtype="float64").int8_inference = True
    with pytest.raises(ValueError, match="runs on the CPU engine, not device 'cuda-sim'"):
        nn.LSTM(3, 4, device="cuda-sim").int8_inference = True
    with pytest.raises(ValueError, match="not offered for layer-normalised layers"):
        nn.LSTM(3, 4, layer_norm=True).int8_inference = True
    with pytest.raises(TypeError, match="must be True or False"):
        nn.LSTM(3, 4).int8_inference = "yes"
    m = nn.LSTM(3, 4)
    m.int8_inference = True
    with pytest.raises(ValueError, match="set int8_inference = False before moving"):
        m.to("cuda-sim")


def test_a_model_turns_every_recurrent_layer_int8():
    from rnncore.models import LanguageModel

    model = LanguageModel(50, 16, 32, num_layers=2, seed=0).eval()
    ids = RNG.integers(0, 50, (12, 2))
    want = model(ids)[0] if isinstance(model(ids), tuple) else model(ids)
    assert model.int8_inference_() is model
    assert all(m.int8_inference for m in model.modules() if hasattr(type(m), "int8_inference"))
    out = model(ids)
    got = out[0] if isinstance(out, tuple) else out
    assert 0 < np.abs(got - want).max() < 0.05 * np.abs(want).max()
    model.int8_inference_(False)
    out = model(ids)
    np.testing.assert_array_equal(out[0] if isinstance(out, tuple) else out, want)


def test_the_torch_drop_in_runs_int8_without_gradients_only():
    torch = pytest.importorskip("torch")
    rt = pytest.importorskip("rnncore.torch")
    torch.manual_seed(0)
    m = rt.GRU(13, 70, num_layers=2)
    ours = nn.GRU(13, 70, num_layers=2).eval()
    ours.load_state_dict({k: v.detach().numpy() for k, v in m.state_dict().items()})
    ours.int8_inference = True
    x = RNG.standard_normal((9, 3, 13)).astype(np.float32)
    with torch.no_grad():
        fp32 = m(torch.from_numpy(x))[0].numpy()
    m.int8_inference = True
    with torch.no_grad():
        got = m(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(got, ours(x)[0], rtol=0, atol=1e-6)  # the same int8 engine
    assert np.abs(got - fp32).max() > 1e-5
    graded = m(torch.from_numpy(x))[0]  # a forward that records gradients stays float32
    np.testing.assert_array_equal(graded.detach().numpy(), fp32)
    with pytest.raises(ValueError, match="int8_inference: int8 inference is for float32"):
        rt.GRU(3, 4, dtype=torch.float64).int8_inference = True
    m.double()  # a float64 engine now: its forward says why int8 cannot run
    with pytest.raises(ValueError, match=r"GRU.int8_inference: .*float32"):
        with torch.no_grad():
            m(torch.from_numpy(x).double())


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_error_is_no_worse_than_pytorch_quantize_dynamic(cell):
    """Against the float32 output, over a 50-step sequence of a 128-unit layer: rnncore's int8
    error is within 1.5x of PyTorch's dynamic int8 (the same scheme)."""
    torch = pytest.importorskip("torch")
    import warnings

    torch.manual_seed(0)
    ref = getattr(torch.nn, cell)(64, 128)
    ours = getattr(nn, cell)(64, 128).eval()
    ours.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    x = RNG.standard_normal((50, 1, 64)).astype(np.float32)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notices
        # quantize_dynamic swaps children, never the module it is given: wrap the layer.
        q = torch.ao.quantization.quantize_dynamic(
            torch.nn.ModuleList([ref]), {type(ref)}, dtype=torch.qint8
        )[0]
        want = ref(torch.from_numpy(x))[0].numpy()
        theirs = q(torch.from_numpy(x))[0].numpy()
    assert type(q) is not type(ref)
    ours.int8_inference = True
    got, _ = ours(x)
    ours_err = np.abs(got - want).mean()
    theirs_err = np.abs(theirs - want).mean()
    assert ours_err < 1.5 * theirs_err, (ours_err, theirs_err)
