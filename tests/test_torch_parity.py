"""rnncore layers against torch.nn.RNN/LSTM/GRU: outputs, final states and every gradient."""

import itertools

import numpy as np
import pytest
from rnn_helpers import (
    TORCH_CELLS,
    assert_close,
    is_lstm,
    join_state,
    make_layer,
    mode_of,
    param_by_name,
    random_lengths,
    random_state,
    split_state,
)

torch = pytest.importorskip("torch")

STEPS, BATCH, INPUT, HIDDEN = 6, 4, 5, 7


@pytest.fixture(autouse=True, scope="module")
def _plain_torch_kernels():
    """Compare with ATen's own CPU kernels: at these tiny sizes torch's oneDNN LSTM path
    costs ~0.75 s per call here (100x ATen's), which would dominate the suite."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    yield
    torch.backends.mkldnn.enabled = before


def _torch_twin(cell, layer, num_layers, bidirectional, bias, batch_first, dtype):
    input_size, hidden = layer.state_dict()["weight_ih_l0"].shape[1], layer.hidden_size
    """A torch layer with the rnncore layer's weights (copied through state_dict)."""
    kw = dict(
        num_layers=num_layers,
        bias=bias,
        batch_first=batch_first,
        bidirectional=bidirectional,
        dtype=getattr(torch, dtype),
    )
    if getattr(layer, "proj_size", 0):
        kw["proj_size"] = layer.proj_size
    if cell.startswith("rnn_"):
        net = torch.nn.RNN(input_size, hidden, nonlinearity=cell[4:], **kw)
    else:
        net = getattr(torch.nn, mode_of(cell))(input_size, hidden, **kw)
    sd = layer.state_dict()
    assert list(sd) == [k for k, _ in net.named_parameters()], "state_dict names/order"
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in sd.items()})
    return net


def _torch_run(cell, net, x, lengths, state, batch_first, r_y, r_h, r_c):
    """Forward + backward of loss = sum(y*r_y) + sum(h*r_h) (+ sum(c*r_c)) in torch.

    Returns numpy (y, h, c, dx, dh0, dc0, {param name: grad}); the initial state is
    always a leaf (zeros when state is None) so that its gradient exists.
    """
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    h0, c0 = split_state(cell, state)
    shape = r_h.shape
    h0t = torch.from_numpy(h0.copy() if h0 is not None else np.zeros(shape, x.dtype))
    h0t.requires_grad_(True)
    c0t = None
    if is_lstm(cell):
        c0t = torch.from_numpy(c0.copy() if c0 is not None else np.zeros(r_c.shape, x.dtype))
        c0t.requires_grad_(True)
    st = (h0t, c0t) if is_lstm(cell) else h0t
    if lengths is None:
        y, out_state = net(xt, st)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.as_tensor(lengths), batch_first=batch_first, enforce_sorted=False
        )
        yp, out_state = net(packed, st)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(
            yp, batch_first=batch_first, total_length=x.shape[1 if batch_first else 0]
        )
    h, c = out_state if is_lstm(cell) else (out_state, None)
    loss = (y * torch.from_numpy(r_y)).sum() + (h * torch.from_numpy(r_h)).sum()
    if c is not None:
        loss = loss + (c * torch.from_numpy(r_c)).sum()
    net.zero_grad()
    loss.backward()
    grads = {k: p.grad.numpy().copy() for k, p in net.named_parameters()}
    return (
        y.detach().numpy(),
        h.detach().numpy(),
        None if c is None else c.detach().numpy(),
        xt.grad.numpy(),
        h0t.grad.numpy(),
        None if c0t is None else c0t.grad.numpy(),
        grads,
    )


CASES = [
    (cell, dtype, num_layers, bi, use_lengths, use_state, batch_first)
    for cell, dtype, num_layers, bi, use_lengths, use_state, batch_first in itertools.product(
        TORCH_CELLS, ["float32", "float64"], [1, 2], [False, True], [False, True], [False, True],
        [False, True],
    )
]  # fmt: skip


@pytest.mark.parametrize(
    "cell,dtype,num_layers,bidirectional,use_lengths,use_state,batch_first", CASES
)
def test_matches_torch(cell, dtype, num_layers, bidirectional, use_lengths, use_state, batch_first):
    _check_against_torch(
        cell, dtype, num_layers, bidirectional, use_lengths, use_state, batch_first, bias=True
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", TORCH_CELLS)
def test_matches_torch_without_bias(cell, dtype):
    _check_against_torch(cell, dtype, 2, True, True, True, False, bias=False)


@pytest.mark.parametrize("cell", TORCH_CELLS)
def test_matches_torch_larger_sizes(cell):
    """Odd sizes big enough for the engine's blocking and threading to matter."""
    _check_against_torch(cell, "float64", 2, True, True, True, False, True, sizes=(29, 21, 13, 24))


def _check_against_torch(
    cell, dtype, num_layers, bidirectional, use_lengths, use_state, batch_first, bias,
    sizes=(STEPS, BATCH, INPUT, HIDDEN), proj_size=0,
):  # fmt: skip
    steps, batch, input_size, hidden = sizes
    size = proj_size or hidden  # R: the width of h
    dirs = 2 if bidirectional else 1
    rng = np.random.default_rng(2024)
    layer = make_layer(
        cell, input_size, hidden, num_layers, bidirectional, dtype=dtype, seed=5, bias=bias,
        batch_first=batch_first, **({"proj_size": proj_size} if proj_size else {}),
    )  # fmt: skip
    shape = (batch, steps, input_size) if batch_first else (steps, batch, input_size)
    x = rng.standard_normal(shape).astype(dtype)
    lengths = random_lengths(rng, batch, steps) if use_lengths else None
    state = None
    if use_state:
        state = random_state(rng, cell, num_layers, dirs, batch, hidden, dtype)
        if proj_size:  # h is [L*D, B, P], c stays [L*D, B, H]
            state = (rng.standard_normal((num_layers * dirs, batch, size)).astype(dtype), state[1])
    y_shape = shape[:2] + (dirs * size,)
    r_y = rng.standard_normal(y_shape).astype(dtype)
    r_h = rng.standard_normal((num_layers * dirs, batch, size)).astype(dtype)
    r_c = None
    if is_lstm(cell):
        r_c = rng.standard_normal((num_layers * dirs, batch, hidden)).astype(dtype)

    net = _torch_twin(cell, layer, num_layers, bidirectional, bias, batch_first, dtype)
    want_y, want_h, want_c, want_dx, want_dh0, want_dc0, want_grads = _torch_run(
        cell, net, x, lengths, state, batch_first, r_y, r_h, r_c
    )

    layer.train()
    layer.zero_grad()
    y, st = layer(x, lengths=lengths, state=state)
    h, c = split_state(cell, st)
    assert y.dtype == np.dtype(dtype) and y.shape == y_shape
    assert_close(y, want_y, dtype, "y")
    assert_close(h, want_h, dtype, "h_n")
    if is_lstm(cell):
        assert_close(c, want_c, dtype, "c_n")

    dx, dstate = layer.backward(r_y, dstate=join_state(cell, r_h, r_c))
    assert np.asarray(dx).dtype == np.dtype(dtype)
    assert_close(dx, want_dx, dtype, "dx")
    if use_state:
        dh0, dc0 = split_state(cell, dstate)
        assert_close(dh0, want_dh0, dtype, "dh0")
        if is_lstm(cell):
            assert_close(dc0, want_dc0, dtype, "dc0")
    params = param_by_name(layer)
    assert set(params) == set(want_grads)
    for name, g in want_grads.items():
        assert params[name].grad.dtype == np.dtype(dtype)
        assert_close(params[name].grad, g, dtype, f"d{name}")


@pytest.mark.parametrize(
    "dtype,num_layers,bidirectional,use_lengths,use_state,batch_first",
    [
        (dtype, num_layers, bi, use_lengths, use_state, batch_first)
        for dtype, num_layers, bi, use_lengths, use_state, batch_first in itertools.product(
            ["float32", "float64"], [1, 2], [False, True], [False, True], [False, True], [False]
        )
    ] + [("float64", 2, True, True, True, True), ("float32", 2, True, True, False, True)],
)  # fmt: skip
def test_lstm_projection_matches_torch(
    dtype, num_layers, bidirectional, use_lengths, use_state, batch_first
):
    """proj_size (LSTMP): outputs, final (h, c) and every gradient, weight_hr included."""
    _check_against_torch(
        "lstm", dtype, num_layers, bidirectional, use_lengths, use_state, batch_first, bias=True,
        proj_size=3,
    )  # fmt: skip


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    "sizes",
    [(9, 6, 7, 64), (40, 3, 5, 48), (5, 2, 5, 48), (36, 40, 8, 64)],
    ids=["split-units", "small-batch-packed", "small-batch-in-place", "both-directions-at-once"],
)
def test_lstm_projection_matches_torch_larger_sizes(threads, sizes):
    """The engine's step paths (units and projection columns split over threads, the small-batch
    matrix-vector kernels, directions side by side) with a projection."""
    import rnncore

    before = rnncore.set_num_threads(threads)
    try:
        for dtype, use_lengths in (("float64", True), ("float32", False)):
            _check_against_torch(
                "lstm", dtype, 2, True, use_lengths, True, False, True, sizes=sizes, proj_size=40
            )
    finally:
        rnncore.set_num_threads(before)


@pytest.mark.parametrize("cell", TORCH_CELLS)
def test_default_init_matches_torch_distribution(cell):
    """init='uniform' draws from U(-1/sqrt(H), 1/sqrt(H)) like torch: bounds and spread."""
    hidden = 16
    layer = make_layer(cell, 8, hidden, 2, True, dtype="float64", seed=11)
    bound = 1 / np.sqrt(hidden)
    values = np.concatenate([v.ravel() for v in layer.state_dict().values()])
    assert np.abs(values).max() <= bound
    # U(-b, b) has variance b^2/3; thousands of draws pin it down to a few percent
    assert abs(values.var() / (bound**2 / 3) - 1) < 0.1
    assert abs(values.mean()) < 0.05 * bound
