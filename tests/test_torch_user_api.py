"""Issue 18, points 1-4: rnncore.nn called the way a PyTorch user calls torch.nn (hx as the second
argument, shared layers, cells, containers, the class axis of the loss), checked against torch."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from rnncore import nn

torch = pytest.importorskip("torch")


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def _torch_copy(ours: nn.Module, theirs: torch.nn.Module) -> torch.nn.Module:
    theirs = theirs.double()  # before loading: a float32 module would round the weights
    theirs.load_state_dict({k: _t(v) for k, v in ours.state_dict().items()})
    return theirs


# ---- 1. the call: forward(input, hx=None, *, lengths=None) ------------------------------------
def test_lstm_takes_hx_as_second_argument_like_torch():
    rng = np.random.default_rng(0)
    lstm = nn.LSTM(3, 4, num_layers=2, dtype="float64", seed=1)
    ref = _torch_copy(lstm, torch.nn.LSTM(3, 4, num_layers=2))
    x = rng.standard_normal((5, 2, 3))
    h0, c0 = rng.standard_normal((2, 2, 4)), rng.standard_normal((2, 2, 4))
    y, (hn, cn) = lstm(x, (h0, c0))
    ty, (thn, tcn) = ref(_t(x), (_t(h0), _t(c0)))
    np.testing.assert_allclose(y, ty.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(cn, tcn.detach().numpy(), atol=1e-12)
    y2, _ = lstm(x, hx=(h0, c0))
    y3, _ = lstm(x, state=(h0, c0))  # the earlier keyword still works
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(y, y3)
    y4, _ = lstm(x, (h0, c0), lengths=[5, 3])
    np.testing.assert_array_equal(y4[3:, 1], 0.0)


def test_lengths_passed_positionally_is_a_clear_error():
    gru = nn.GRU(3, 4)
    x = np.zeros((5, 2, 3), dtype=np.float32)
    with pytest.raises(TypeError, match="looks like sequence lengths.*lengths="):
        gru(x, np.array([5, 3]))
    with pytest.raises(TypeError, match="looks like sequence lengths"):
        nn.LSTM(3, 4)(x, [5, 3])
    with pytest.raises(TypeError, match="not both"):
        gru(x, np.zeros((1, 2, 4), np.float32), state=np.zeros((1, 2, 4), np.float32))


# ---- 2. shared layers: every call's gradient, edits after forward ------------------------------
def test_linear_called_twice_before_backward_gets_both_gradients():
    rng = np.random.default_rng(2)
    lin = nn.Linear(4, 3, dtype="float64", seed=0)
    ref = _torch_copy(lin, torch.nn.Linear(4, 3))
    a, b = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    ga, gb = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    lin(a)
    lin(b)
    assert lin.saved_forwards == 2
    dxb = lin.backward(gb)
    dxa = lin.backward(ga)
    ta, tb = _t(a).requires_grad_(), _t(b).requires_grad_()
    (ref(ta) * _t(ga)).sum().add((ref(tb) * _t(gb)).sum()).backward()
    np.testing.assert_allclose(lin.weight.grad, ref.weight.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(lin.bias.grad, ref.bias.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(dxa, ta.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(dxb, tb.grad.numpy(), atol=1e-12)
    with pytest.raises(RuntimeError, match="no training-mode forward left"):
        lin.backward(ga)


def test_editing_inputs_after_forward_does_not_change_gradients():
    rng = np.random.default_rng(3)
    lin = nn.Linear(4, 3, dtype="float64", seed=0)
    x, g = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    lin(x)
    lin.backward(g)
    expected = lin.weight.grad.copy()
    lin.zero_grad()
    lin(x)
    x *= 10  # the caller reuses its buffer
    lin.backward(g)
    np.testing.assert_allclose(lin.weight.grad, expected, atol=1e-12)

    emb = nn.Embedding(10, 3, dtype="float64")
    ids = np.array([[1, 2], [3, 1]])
    emb(ids)
    ids[:] = 7
    emb.backward(np.ones((2, 2, 3)))
    assert emb.weight.grad[7].sum() == 0.0
    np.testing.assert_allclose(emb.weight.grad[1], 2.0)


def test_recurrent_layer_shared_across_two_calls_matches_torch():
    rng = np.random.default_rng(4)
    gru = nn.GRU(3, 4, dtype="float64", seed=2, bidirectional=True)
    ref = _torch_copy(gru, torch.nn.GRU(3, 4, bidirectional=True))
    a, b = rng.standard_normal((6, 2, 3)), rng.standard_normal((4, 3, 3))
    ya, _ = gru(a, lengths=[6, 2])
    yb, _ = gru(b)
    ga, gb = rng.standard_normal(ya.shape), rng.standard_normal(yb.shape)
    dxb, _ = gru.backward(gb)
    dxa, _ = gru.backward(ga)
    ta, tb = _t(a).requires_grad_(), _t(b).requires_grad_()
    packed = torch.nn.utils.rnn.pack_padded_sequence(ta, torch.tensor([6, 2]))
    tya, _ = torch.nn.utils.rnn.pad_packed_sequence(ref(packed)[0], total_length=6)
    ((tya * _t(ga)).sum() + (ref(tb)[0] * _t(gb)).sum()).backward()
    for name, p in gru.named_parameters():
        np.testing.assert_allclose(p.grad, getattr(ref, name).grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(dxa, ta.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(dxb, tb.grad.numpy(), atol=1e-10)


def test_unconsumed_forwards_are_dropped_by_a_mode_change_and_discard_saved():
    lin = nn.Linear(2, 2)
    x = np.ones((1, 2), np.float32)
    lin(x)
    lin(x)
    lin.eval()
    lin.train()
    assert lin.saved_forwards == 0
    lstm = nn.LSTM(2, 3)
    lstm(np.ones((2, 1, 2), np.float32))
    assert lstm.saved_forwards == 1
    lstm.discard_saved()
    assert lstm.saved_forwards == 0
    with pytest.raises(RuntimeError, match="training-mode forward"):
        lstm.backward(np.ones((2, 1, 3), np.float32))
    with nn.inference_mode(lin):  # a temporary inference keeps what is saved
        lin(x)
    assert lin.training and lin.saved_forwards == 0


def test_training_forwards_without_backward_warn_before_they_fill_the_memory(monkeypatch):
    """Predictions in training mode keep every call's gates: the layer warns once (by bytes,
    long before the 10,000-forward count), names the way out, and the memory is counted."""
    from rnncore.nn import module

    lstm = nn.LSTM(4, 8, num_layers=2)
    x = np.ones((5, 3, 4), np.float32)
    lstm(x)
    one = lstm._core.saved_bytes
    assert one >= 4 * 5 * 3 * 4 * 8 * 2  # the gates of 2 layers, float32
    monkeypatch.setattr(module, "SAVED_BYTES_WARNING", 3 * one)
    lstm(x)
    lstm(x)
    assert lstm._core.saved_bytes == 3 * one
    with pytest.warns(ResourceWarning, match=r"LSTM: 4 training-mode forwards .* call eval\(\)"):
        lstm(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lstm(x)  # once per layer
    lstm.backward(np.ones((5, 3, 8), np.float32))
    assert lstm._core.saved_bytes == 4 * one
    lstm.discard_saved()
    assert lstm._core.saved_bytes == 0
    monkeypatch.undo()
    assert module.SAVED_BYTES_WARNING == 1 << 30


# ---- 3. cells and containers --------------------------------------------------------------------
@pytest.mark.parametrize(
    "ours, theirs",
    [
        (nn.LSTMCell, torch.nn.LSTMCell),
        (nn.GRUCell, torch.nn.GRUCell),
        (nn.RNNCell, torch.nn.RNNCell),
    ],
)
def test_cell_stepped_through_time_matches_torch(ours, theirs):
    rng = np.random.default_rng(5)
    T, B, I, H = 5, 3, 2, 4
    cell = ours(I, H, dtype="float64", seed=3)
    ref = theirs(I, H)
    assert sorted(cell.state_dict()) == sorted(ref.state_dict())
    ref = _torch_copy(cell, ref)
    x = rng.standard_normal((T, B, I))
    g = rng.standard_normal((T, B, H))  # loss = Σ_t <h_t, g_t>
    lstm = ours is nn.LSTMCell
    state, outs = None, []
    for t in range(T):
        state = cell(x[t], state)
        outs.append(state[0] if lstm else state)
    assert cell.saved_forwards == T
    # backward in reverse step order: dh_t = g_t + the gradient flowing back from step t+1
    dx = np.zeros_like(x)
    carry = (np.zeros((B, H)), np.zeros((B, H))) if lstm else np.zeros((B, H))
    for t in reversed(range(T)):
        if lstm:
            dx[t], carry = cell.backward((g[t] + carry[0], carry[1]))
        else:
            dx[t], carry = cell.backward(g[t] + carry)
    tx = _t(x).requires_grad_()
    tstate, tloss = None, 0.0
    for t in range(T):
        tstate = ref(tx[t], tstate)
        tloss = tloss + ((tstate[0] if lstm else tstate) * _t(g[t])).sum()
    tloss.backward()
    np.testing.assert_allclose(outs[-1], (tstate[0] if lstm else tstate).detach().numpy(), 1e-12)
    for name, p in cell.named_parameters():
        np.testing.assert_allclose(p.grad, getattr(ref, name).grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(dx, tx.grad.numpy(), atol=1e-10)


def test_cell_unbatched_input_like_torch():
    cell = nn.GRUCell(2, 3, dtype="float64", seed=0)
    ref = _torch_copy(cell, torch.nn.GRUCell(2, 3))
    x, h = np.array([0.5, -1.0]), np.array([0.1, 0.2, 0.3])
    np.testing.assert_allclose(cell(x, h), ref(_t(x), _t(h)).detach().numpy(), atol=1e-12)
    dx, dh = cell.backward(np.ones(3))
    assert dx.shape == (2,) and dh.shape == (3,)
    with pytest.raises(ValueError, match=r"\[H\]"):
        cell(x, np.zeros((1, 3)))


def test_sequential_and_modulelist_match_torch_names_and_gradients():
    rng = np.random.default_rng(6)
    mlp = nn.Sequential(nn.Linear(4, 5, dtype="float64"), nn.Linear(5, 2, dtype="float64"))
    ref = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Linear(5, 2))
    assert list(mlp.state_dict()) == list(ref.state_dict())
    ref = _torch_copy(mlp, ref)
    x, g = rng.standard_normal((3, 4)), rng.standard_normal((3, 2))
    np.testing.assert_allclose(mlp(x), ref(_t(x)).detach().numpy(), atol=1e-12)
    dx = mlp.backward(g)
    tx = _t(x).requires_grad_()
    (ref(tx) * _t(g)).sum().backward()
    np.testing.assert_allclose(dx, tx.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(mlp[0].weight.grad, ref[0].weight.grad.numpy(), atol=1e-12)

    layers = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
    assert len(layers) == 2 and [n for n, _ in layers.named_parameters()][:2] == [
        "0.weight",
        "0.bias",
    ]
    layers.eval()
    assert not layers[1].training
    with pytest.raises(TypeError, match="item 0 must be an rnncore.nn.Module"):
        nn.ModuleList([torch.nn.Linear(2, 2)])
    with pytest.raises(TypeError, match="returned a tuple"):
        nn.Sequential(nn.LSTM(2, 2))(np.zeros((1, 1, 2), np.float32))


# ---- 4. the class axis of the cross-entropy ------------------------------------------------------
def test_cross_entropy_with_torch_layout_is_right_or_refused():
    rng = np.random.default_rng(7)
    N, C, T = 2, 5, 4
    logits = rng.standard_normal((N, C, T))
    targets = rng.integers(0, C, size=(N, T))
    expected = torch.nn.functional.cross_entropy(_t(logits), _t(targets)).item()
    crit = nn.CrossEntropyLoss()
    assert crit(logits, targets) == pytest.approx(expected, rel=1e-12)
    tl = _t(logits).requires_grad_()
    torch.nn.functional.cross_entropy(tl, _t(targets)).backward()
    np.testing.assert_allclose(crit.backward(), tl.grad.numpy(), atol=1e-12)

    square = rng.standard_normal((N, 3, 3))  # C == T: both layouts fit
    square_t = rng.integers(0, 3, size=(N, 3))
    with pytest.raises(ValueError, match="fit both layouts.*class_axis"):
        crit(square, square_t)
    torch_loss = torch.nn.functional.cross_entropy(_t(square), _t(square_t)).item()
    assert nn.CrossEntropyLoss(class_axis=1)(square, square_t) == pytest.approx(torch_loss)
    with pytest.raises(ValueError, match="targets must have shape"):
        nn.CrossEntropyLoss(class_axis=-1)(logits, targets)


def _two_calls(model, make_inputs, seed):
    """Gradients of (call a, call b, backward b, backward a) and of two separate pairs."""
    rng = np.random.default_rng(seed)
    a, b = make_inputs(rng), make_inputs(rng)
    ga = gb = None
    grads = []
    for stacked in (False, True):
        model.zero_grad()
        if stacked:
            la, lb = model(*a), model(*b)
            model.backward(gb)
            model.backward(ga)
        else:
            la = model(*a)
            ga = rng.standard_normal(la.shape) if ga is None else ga
            model.backward(ga)
            lb = model(*b)
            gb = rng.standard_normal(lb.shape) if gb is None else gb
            model.backward(gb)
        grads.append({n: p.grad.copy() for n, p in model.named_parameters()})
    return grads


def test_models_called_twice_before_backward_get_both_gradients():
    from rnncore.models import Seq2Seq, SequenceClassifier

    clf = SequenceClassifier(12, 5, 4, 3, pooling="max", dtype="float64", seed=0)
    pairs, stacked = _two_calls(
        clf, lambda r: (r.integers(1, 12, size=(6, 2)), np.array([6, 3])), seed=1
    )
    for name in pairs:
        np.testing.assert_allclose(stacked[name], pairs[name], atol=1e-12, err_msg=name)

    s2s = Seq2Seq(10, 11, 4, 5, bidirectional=True, attention="general", dtype="float64", seed=0)

    def inputs(r):
        return r.integers(4, 10, size=(5, 2)), np.array([5, 4]), r.integers(4, 11, size=(3, 2))

    pairs, stacked = _two_calls(s2s, inputs, seed=2)
    for name in pairs:
        np.testing.assert_allclose(stacked[name], pairs[name], atol=1e-12, err_msg=name)
