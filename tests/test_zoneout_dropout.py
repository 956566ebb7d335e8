"""Issue 14, point 3: zoneout and recurrent dropout fused in the engine, for every cell: central
differences in training mode (after manual_seed), the inference-mode expectation against the
NumPy reference, and what the masks do."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from rnn_helpers import CELLS
from rnncore import nn
from rnncore.reference import CELLS as REFERENCE_CELLS

OPTIONS = {
    "zoneout": {"zoneout": 0.3},
    "rdrop": {"recurrent_dropout": 0.4},
    "both": {"zoneout": 0.25, "recurrent_dropout": 0.3},
}


def _loss_and_grads(layer, x, lengths, state, ry, rh, seed):
    """loss = Σ y ⊙ ry + Σ h_n ⊙ rh with the masks of manual_seed(seed); and its gradients."""
    layer.manual_seed(seed)
    y, hn = layer(x, state, lengths=lengths)
    h = hn[0] if isinstance(hn, tuple) else hn
    loss = float((y * ry).sum() + (h * rh).sum())
    return loss, y, hn


@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_finite_differences_in_training_mode(cell, option):
    rng = np.random.default_rng(zlib.crc32(f"{cell}-{option}".encode()))
    layer = nn.recurrent_layer(
        cell, 2, 3, num_layers=2, bidirectional=True, dtype="float64", seed=1, **OPTIONS[option]
    )
    T, B = 5, 3
    x = rng.standard_normal((T, B, 2))
    lengths = np.array([5, 2, 4])
    lstm = CELLS[cell]["states"] == 2
    h0 = rng.standard_normal((4, B, 3))
    state = (h0, rng.standard_normal((4, B, 3))) if lstm else h0
    ry, rh = rng.standard_normal((T, B, 6)), rng.standard_normal((4, B, 3))
    layer.zero_grad()
    _, y, _ = _loss_and_grads(layer, x, lengths, state, ry, rh, seed=11)
    dstate = (rh, None) if lstm else rh
    dx, dh0 = layer.backward(ry, dstate)
    eps = 1e-6

    def numeric(array, idx):
        old = array[idx]
        array[idx] = old + eps
        up = _loss_and_grads(layer, x, lengths, state, ry, rh, seed=11)[0]
        array[idx] = old - eps
        down = _loss_and_grads(layer, x, lengths, state, ry, rh, seed=11)[0]
        array[idx] = old
        layer.discard_saved()
        return (up - down) / (2 * eps)

    flat, grads = layer.flat_parameters, layer.flat_gradients
    for i in range(0, flat.size, max(1, flat.size // 40)):
        assert numeric(flat, i) == pytest.approx(grads[i], abs=1e-6), f"parameter {i}"
    for idx in [(0, 0, 0), (1, 1, 1), (3, 2, 0), (4, 0, 1)]:
        assert numeric(x, idx) == pytest.approx(dx[idx], abs=1e-6), f"x{idx}"
    dh = dh0[0] if lstm else dh0
    for idx in [(0, 0, 0), (3, 1, 2), (2, 2, 1)]:
        assert numeric(h0, idx) == pytest.approx(dh[idx], abs=1e-6), f"h0{idx}"


def _reference_zoneout_eval(cell, layer, x, p):
    """One layer, one direction: each step's fresh state blended with the previous one."""
    _, step = REFERENCE_CELLS[cell]
    w = {k.removesuffix("_l0"): v.data for k, v in layer.named_parameters()}
    B, H = x.shape[1], layer.hidden_size
    state = tuple(np.zeros((B, H)) for _ in range(CELLS[cell]["states"]))
    ys = []
    for t in range(x.shape[0]):
        fresh, _ = step(x[t], state, w["weight_ih"], w["weight_hh"], w["bias_ih"], w["bias_hh"])
        state = tuple(p * old + (1 - p) * new for old, new in zip(state, fresh, strict=True))
        ys.append(state[0])
    return np.stack(ys)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_zoneout_in_inference_is_the_expectation(cell):
    rng = np.random.default_rng(2)
    layer = nn.recurrent_layer(cell, 3, 4, zoneout=0.35, dtype="float64", seed=3)
    layer.eval()
    x = rng.standard_normal((6, 2, 3))
    y, _ = layer(x)
    np.testing.assert_allclose(y, _reference_zoneout_eval(cell, layer, x, 0.35), atol=1e-12)
    # recurrent dropout is off in inference: the same numbers as the plain layer
    drop = nn.recurrent_layer(cell, 3, 4, recurrent_dropout=0.5, dtype="float64", seed=3).eval()
    plain = nn.recurrent_layer(cell, 3, 4, dtype="float64", seed=3).eval()
    np.testing.assert_array_equal(drop(x)[0], plain(x)[0])


def test_zoneout_in_training_keeps_each_unit_or_updates_it():
    rng = np.random.default_rng(4)
    layer = nn.GRU(3, 16, zoneout=0.5, dtype="float64", seed=5)
    _, step = REFERENCE_CELLS["gru"]
    w = {k.removesuffix("_l0"): v.data for k, v in layer.named_parameters()}
    x = rng.standard_normal((8, 4, 3))
    layer.manual_seed(0)
    y, _ = layer(x)
    prev = np.zeros((4, 16))
    kept = 0
    for t in range(8):
        (fresh,), _ = step(
            x[t], (prev,), w["weight_ih"], w["weight_hh"], w["bias_ih"], w["bias_hh"]
        )
        is_prev, is_new = np.isclose(y[t], prev, atol=1e-12), np.isclose(y[t], fresh, atol=1e-12)
        assert np.all(is_prev | is_new)
        kept += int((is_prev & ~is_new).sum())
        prev = y[t]
    assert 0.35 < kept / (8 * 4 * 16) < 0.65  # about p of the units keep their value


def test_recurrent_dropout_uses_one_mask_per_sequence_for_all_steps():
    # IRNN with no input: h_t = relu(W_hh (h_(t-1) ⊙ m)) = h_0 ⊙ m^t with W_hh = I.
    p = 0.5
    drop = nn.RNN(
        1,
        64,
        nonlinearity="relu",
        bias=False,
        init="identity",
        recurrent_dropout=p,
        dtype="float64",
    )
    dict(drop.named_parameters())["weight_ih_l0"].data[...] = 0.0
    h0 = np.ones((1, 3, 64))
    y, _ = drop(np.zeros((3, 3, 1)), h0)
    m = y[0]  # [B, H]: 0 or 1/(1-p)
    assert set(np.unique(m)) <= {0.0, 1.0 / (1 - p)}
    np.testing.assert_allclose(y[1], m * m, atol=1e-12)  # the same mask at the next step
    np.testing.assert_allclose(y[2], m * m * m, atol=1e-12)
    assert not np.array_equal(m[0], m[1])  # sequences draw their own masks
    assert 0.3 < (m == 0).mean() < 0.7
    drop.eval()  # off in inference
    np.testing.assert_allclose(drop(np.zeros((3, 3, 1)), h0)[0], 1.0, atol=0)


def test_bad_values_are_clear_errors():
    with pytest.raises(ValueError, match=r"LSTM: zoneout must be in \[0, 1\)"):
        nn.LSTM(2, 3, zoneout=1.0)
    with pytest.raises(TypeError, match="GRU: recurrent_dropout must be a number"):
        nn.GRU(2, 3, recurrent_dropout="0.1")
    with pytest.raises(ValueError, match="do not combine with proj_size"):
        nn.LSTM(2, 4, proj_size=2, zoneout=0.1)


def test_text_tasks_take_zoneout_and_recurrent_dropout(tmp_path, capsys):
    from rnncore.cli import main
    from rnncore.train import load_checkpoint

    lines = [" ".join(["a", "b"] * 4 + ["a"])] * 40
    for split in ("train", "valid", "test"):
        (tmp_path / f"ptb.{split}.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "lm"
    argv = ["train", "lm", "--data", str(tmp_path), "--out", str(out), "--no-progress"]
    argv += ["--epochs", "1", "--hidden", "8", "--embed", "8", "--batch-size", "4", "--bptt", "6"]
    argv += ["--zoneout", "0.2", "--recurrent-dropout", "0.3", "--optimizer", "adam"]
    assert main(argv) == 0, capsys.readouterr().err
    model = load_checkpoint(out / "checkpoint").model
    assert model.rnn.zoneout == 0.2 and model.rnn.recurrent_dropout == 0.3
    assert model.config()["zoneout"] == 0.2
    bad = ["train", "sentiment", "--data", str(tmp_path), "--out", str(tmp_path / "s")]
    assert main([*bad, "--zoneout", "1.5"]) == 2
    assert "--zoneout must be in [0, 1), got 1.5" in capsys.readouterr().err
