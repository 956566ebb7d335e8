"""Issue 14, point 2: layer_norm=True for LSTM and GRU, fused in the engine's step: the forward
against the NumPy reference, central differences of every gradient (layers, directions, ragged
lengths, states, a projection, zoneout and recurrent dropout, the multi-threaded step), and the
refusals."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import rnncore
from rnncore import nn
from rnncore.reference import layer_norm_lstm_cell, reference_cell_forward

LN_CELLS = ("lstm", "gru")


def _layer(cell, input_size, hidden, seed=1, **kw):
    layer = nn.recurrent_layer(
        cell, input_size, hidden, dtype="float64", seed=seed, layer_norm=True, **kw
    )
    # Gains of 1 and a zero shift would hide a gradient that forgot them: randomise every one.
    rng = np.random.default_rng(seed)
    for name, p in layer.named_parameters():
        if name.startswith("ln_"):
            p.data[...] = rng.uniform(0.5, 1.5, p.shape) * rng.choice([-1, 1], p.shape)
    return layer


def _state(rng, cell, L, B, layer):
    h0 = rng.standard_normal((L, B, layer.state_size))
    return (h0, rng.standard_normal((L, B, layer.hidden_size))) if cell == "lstm" else h0


@pytest.mark.parametrize(("cell", "proj"), [("lstm", 0), ("gru", 0), ("lstm", 3)])
def test_forward_matches_the_numpy_reference(cell, proj):
    rng = np.random.default_rng(zlib.crc32(f"{cell}{proj}".encode()))
    kw = {"proj_size": proj} if proj else {}
    layer = _layer(cell, 4, 6, num_layers=2, bidirectional=True, **kw).eval()
    x = rng.standard_normal((7, 3, 4))
    lengths = np.array([7, 3, 5])
    state = _state(rng, cell, 4, 3, layer)
    y, hn = layer(x, state, lengths=lengths)
    weights = {k: v.data for k, v in layer.named_parameters()}
    h0, c0 = state if cell == "lstm" else (state, None)
    ry, rh, rc = reference_cell_forward(
        cell, x, weights, num_layers=2, bidirectional=True, lengths=lengths, h0=h0, c0=c0
    )
    np.testing.assert_allclose(y, ry, atol=1e-12)
    np.testing.assert_allclose(hn[0] if cell == "lstm" else hn, rh, atol=1e-12)
    if cell == "lstm":
        np.testing.assert_allclose(hn[1], rc, atol=1e-12)


def test_reference_normalises_what_the_paper_says():
    """The reference's LSTM step against the equations written out once more, by hand."""
    rng = np.random.default_rng(3)
    B, I, H = 2, 3, 4
    x, h, c = rng.standard_normal((B, I)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    w_ih, w_hh = rng.standard_normal((4 * H, I)), rng.standard_normal((4 * H, H))
    b = rng.standard_normal(4 * H)
    g_ih, g_hh, g_c, b_c = (rng.standard_normal(n) for n in (4 * H, 4 * H, H, H))

    def ln(v):
        mu = v.sum(1, keepdims=True) / v.shape[1]
        sd = np.sqrt(((v - mu) ** 2).sum(1, keepdims=True) / v.shape[1] + 1e-5)
        return (v - mu) / sd

    a = g_ih * ln(x @ w_ih.T) + g_hh * ln(h @ w_hh.T) + b
    s = 1 / (1 + np.exp(-a))
    c2 = s[:, H : 2 * H] * c + s[:, :H] * np.tanh(a[:, 2 * H : 3 * H])
    h2 = s[:, 3 * H :] * np.tanh(g_c * ln(c2) + b_c)
    got_h, got_c, _ = layer_norm_lstm_cell(x, h, c, w_ih, w_hh, b, 0 * b, g_ih, g_hh, g_c, b_c)
    np.testing.assert_allclose(got_h, h2, atol=1e-13)
    np.testing.assert_allclose(got_c, c2, atol=1e-13)


CONFIGS = {
    # name: (cell, hidden, layer kwargs, batch, lengths)
    "lstm-bi-ragged": ("lstm", 5, {"num_layers": 2, "bidirectional": True}, 3, [5, 2, 4]),
    "gru-bi-ragged": ("gru", 5, {"num_layers": 2, "bidirectional": True}, 3, [5, 2, 4]),
    "lstm-proj": ("lstm", 6, {"num_layers": 2, "proj_size": 2}, 2, None),
    "lstm-zoneout": ("lstm", 5, {"zoneout": 0.3, "bidirectional": True}, 3, [5, 3, 4]),
    "gru-rdrop": ("gru", 5, {"recurrent_dropout": 0.4, "num_layers": 2}, 3, [2, 5, 4]),
    "lstm-nobias": ("lstm", 4, {"bias": False}, 2, None),
    # Wide enough that the step runs on a team of threads (partial row statistics, barriers).
    "lstm-team": ("lstm", 64, {}, 8, None),
    "gru-team": ("gru", 80, {"bidirectional": True}, 8, [5, 5, 4, 3, 5, 2, 5, 1]),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_finite_differences(name):
    cell, H, kw, B, lengths = CONFIGS[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    layer = _layer(cell, 3, H, **kw)
    L = kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
    T = 5
    x = rng.standard_normal((T, B, 3))
    state = _state(rng, cell, L, B, layer)
    ry = rng.standard_normal((T, B, layer.state_size * (2 if kw.get("bidirectional") else 1)))
    rh = rng.standard_normal((L, B, layer.state_size))
    stochastic = "zoneout" in kw or "recurrent_dropout" in kw

    def loss():
        if stochastic:
            layer.manual_seed(11)
        y, hn = layer(x, state, lengths=lengths)
        h = hn[0] if cell == "lstm" else hn
        return float((y * ry).sum() + (h * rh).sum())

    layer.train()
    layer.zero_grad()
    loss()
    dx, dstate = layer.backward(ry, (rh, None) if cell == "lstm" else rh)
    if not stochastic:
        layer.eval()  # the same function, and nothing saved per probe
    eps = 1e-6

    def numeric(array, idx):
        old = array[idx]
        array[idx] = old + eps
        up = loss()
        array[idx] = old - eps
        down = loss()
        array[idx] = old
        layer.discard_saved()
        return (up - down) / (2 * eps)

    grads = {n: p.grad for n, p in layer.named_parameters()}
    for n, p in layer.named_parameters():
        flat, g = p.data.reshape(-1), grads[n].reshape(-1)
        for i in rng.choice(flat.size, min(flat.size, 6), replace=False):
            assert numeric(flat, i) == pytest.approx(g[i], abs=1e-6, rel=1e-5), f"{n}[{i}]"
    for _ in range(6):
        idx = tuple(int(rng.integers(s)) for s in x.shape)
        assert numeric(x, idx) == pytest.approx(dx[idx], abs=1e-6, rel=1e-5), f"x{idx}"
    h0, dh0 = (state[0], dstate[0]) if cell == "lstm" else (state, dstate)
    for _ in range(4):
        idx = tuple(int(rng.integers(s)) for s in h0.shape)
        assert numeric(h0, idx) == pytest.approx(dh0[idx], abs=1e-6, rel=1e-5), f"h0{idx}"
    if cell == "lstm":
        for _ in range(4):
            idx = tuple(int(rng.integers(s)) for s in state[1].shape)
            assert numeric(state[1], idx) == pytest.approx(dstate[1][idx], abs=1e-6, rel=1e-5)


@pytest.mark.parametrize("cell", LN_CELLS)
def test_thread_counts_agree(cell):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 16, 8)).astype(np.float32)
    dy = rng.standard_normal((6, 16, 2 * 96)).astype(np.float32)
    out = []
    for threads in (1, 2):
        before = rnncore.set_num_threads(threads)
        try:
            layer = nn.recurrent_layer(cell, 8, 96, bidirectional=True, seed=4, layer_norm=True)
            layer.train()
            y, _ = layer(x)
            dx, _ = layer.backward(dy)
            out.append((y, dx, layer.flat_gradients.copy()))
        finally:
            rnncore.set_num_threads(before)
    for a, b in zip(out[0], out[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_parameters_names_and_initial_values():
    lstm = nn.LSTM(3, 4, bidirectional=True, layer_norm=True)
    names = [n for n, _ in lstm.named_parameters()]
    assert names[4:8] == ["ln_weight_ih_l0", "ln_weight_hh_l0", "ln_weight_c_l0", "ln_bias_c_l0"]
    params = dict(lstm.named_parameters())
    assert params["ln_weight_ih_l0"].shape == (16,)
    assert params["ln_weight_c_l0_reverse"].shape == (4,)
    assert np.all(params["ln_weight_hh_l0"].data == 1.0)
    assert np.all(params["ln_bias_c_l0"].data == 0.0)
    assert lstm.flat_parameters.size == lstm._num_parameters()
    gru = nn.GRU(3, 4, num_layers=2, layer_norm=True)
    assert [n for n, _ in gru.named_parameters() if n.startswith("ln_")] == [
        "ln_weight_ih_l0",
        "ln_weight_hh_l0",
        "ln_weight_ih_l1",
        "ln_weight_hh_l1",
    ]
    assert "layer_norm=True" in repr(gru)


def test_normalisation_makes_the_step_scale_free():
    """What the norm buys: once the pre-activations dwarf ε, scaling W_ih and W_hh by 10 more
    leaves the output unchanged (no bias to break the symmetry)."""
    rng = np.random.default_rng(8)
    layer = nn.LSTM(3, 8, dtype="float64", seed=2, layer_norm=True, bias=False).eval()
    x = rng.standard_normal((6, 2, 3))
    h0, c0 = np.zeros((1, 2, 8)), rng.standard_normal((1, 2, 8))
    ys = []
    for scale in (100.0, 10.0):
        for n, p in layer.named_parameters():
            if n.startswith("weight"):
                p.data[...] *= scale
        ys.append(layer(x, (h0, c0))[0])
    np.testing.assert_allclose(ys[0], ys[1], atol=1e-7)


def test_refusals_name_the_argument():
    with pytest.raises(ValueError, match="layer_norm is for the cells lstm, gru.*reset_after=True"):
        nn.GRU(3, 4, reset_after=False, layer_norm=True)
    with pytest.raises(TypeError, match="layer_norm must be True or False"):
        nn.LSTM(3, 4, layer_norm="yes")
    with pytest.raises(TypeError):
        nn.RNN(3, 4, layer_norm=True)  # not an RNN option at all
    with pytest.raises(ValueError, match="layer_norm is for the cells lstm, gru, got cell rnn"):
        rnncore._core.RecurrentF32("rnn", 3, 4, 1, False, True, 0.0, layer_norm=True)


def test_state_dict_round_trip(tmp_path):
    from rnncore.serialization import load_safetensors, save_safetensors

    layer = _layer("lstm", 3, 5, bidirectional=True)
    path = tmp_path / "ln.safetensors"
    save_safetensors(path, layer.state_dict())
    again = nn.LSTM(3, 5, bidirectional=True, dtype="float64", layer_norm=True)
    again.load_state_dict(load_safetensors(path)[0])
    for (n, a), (_, b) in zip(layer.named_parameters(), again.named_parameters(), strict=True):
        np.testing.assert_array_equal(a.data, b.data, err_msg=n)
    with pytest.raises(KeyError, match="unexpected keys"):
        nn.LSTM(3, 5, bidirectional=True, dtype="float64").load_state_dict(layer.state_dict())


@pytest.mark.parametrize("cell", LN_CELLS)
def test_repeated_team_runs_give_the_same_bits(cell):
    """The step's threads exchange partial row statistics: a race between one step's readers and
    the next step's writers shows as gradients that differ from run to run."""
    before = rnncore.set_num_threads(2)
    try:
        rng = np.random.default_rng(9)
        layer = _layer(cell, 3, 80).train()
        x, dy = rng.standard_normal((12, 8, 3)), rng.standard_normal((12, 8, 80))
        first = None
        for _ in range(25):
            layer.zero_grad()
            layer(x)
            dx, _ = layer.backward(dy)
            got = (dx, layer.flat_gradients.copy())
            if first is None:
                first = got
            for a, b in zip(first, got, strict=True):
                np.testing.assert_array_equal(a, b)
    finally:
        rnncore.set_num_threads(before)


def test_text_tasks_take_layer_norm(tmp_path, capsys):
    from rnncore.cli import main
    from rnncore.train import load_checkpoint

    lines = [" ".join(["a", "b"] * 4 + ["a"])] * 40
    for split in ("train", "valid", "test"):
        (tmp_path / f"ptb.{split}.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "lm"
    argv = ["train", "lm", "--data", str(tmp_path), "--out", str(out), "--no-progress"]
    argv += ["--epochs", "1", "--hidden", "8", "--embed", "8", "--batch-size", "4", "--bptt", "6"]
    argv += ["--layer-norm", "--cell", "gru", "--optimizer", "adam"]
    assert main(argv) == 0, capsys.readouterr().err
    model = load_checkpoint(out / "checkpoint").model
    assert model.rnn.layer_norm and model.config()["layer_norm"] is True
    assert any(n.startswith("rnn.ln_weight_hh") for n, _ in model.named_parameters())
    bad = ["train", "lm", "--data", str(tmp_path), "--out", str(tmp_path / "x")]
    assert main([*bad, "--layer-norm", "--cell", "gru_v1"]) == 2
    assert "--layer-norm needs --cell lstm or gru, got --cell gru_v1" in capsys.readouterr().err
