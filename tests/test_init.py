"""Weight initialisation: uniform, orthogonal recurrent blocks, identity (IRNN), forget_bias."""

import numpy as np
import pytest
from rnn_helpers import CELLS, make_layer, mode_of
from rnncore.reference import GATES

INPUT, HIDDEN = 5, 8


def _hh_blocks(layer, cell):
    """Every [H, H] gate block of every weight_hh, as (name, gate index, block)."""
    gates = GATES[mode_of(cell)]
    for name, w in layer.state_dict().items():
        if name.startswith("weight_hh"):
            assert w.shape == (gates * HIDDEN, HIDDEN)
            for k in range(gates):
                yield name, k, w[k * HIDDEN : (k + 1) * HIDDEN]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_uniform_init_bounds(cell, dtype):
    layer = make_layer(cell, INPUT, HIDDEN, 2, True, dtype=dtype, seed=1, init="uniform")
    bound = 1 / np.sqrt(HIDDEN)
    for name, w in layer.state_dict().items():
        assert w.dtype == np.dtype(dtype), name
        assert np.abs(w).max() <= bound * (1 + 1e-6), name
        assert np.unique(w).size > w.size // 2, f"{name} looks constant"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_orthogonal_init_blocks_are_orthogonal(cell, dtype):
    layer = make_layer(cell, INPUT, HIDDEN, 2, True, dtype=dtype, seed=2, init="orthogonal")
    tol = 1e-5 if dtype == "float32" else 1e-12
    blocks = list(_hh_blocks(layer, cell))
    for name, k, block in blocks:
        b = block.astype(np.float64)
        np.testing.assert_allclose(
            b @ b.T, np.eye(HIDDEN), rtol=0, atol=tol, err_msg=f"{name}[{k}]"
        )
        np.testing.assert_allclose(
            b.T @ b, np.eye(HIDDEN), rtol=0, atol=tol, err_msg=f"{name}[{k}]"
        )
    # the blocks are drawn independently, not one matrix repeated
    firsts = [b for _, k, b in blocks if k == 0]
    assert not np.allclose(firsts[0], firsts[1])
    # different seeds, different matrices
    other = make_layer(cell, INPUT, HIDDEN, 2, True, dtype=dtype, seed=3, init="orthogonal")
    assert not np.allclose(other.state_dict()["weight_hh_l0"], layer.state_dict()["weight_hh_l0"])


@pytest.mark.parametrize("nonlinearity", ["relu", "tanh"])
def test_identity_init_gives_identity_recurrence(nonlinearity):
    cell = "rnn_" + nonlinearity
    layer = make_layer(cell, INPUT, HIDDEN, 2, True, seed=4, init="identity")
    sd = layer.state_dict()
    hh = [k for k in sd if k.startswith("weight_hh")]
    assert len(hh) == 4
    for k in hh:
        np.testing.assert_array_equal(sd[k], np.eye(HIDDEN), err_msg=k)
    assert any(np.abs(sd[k]).max() > 0 for k in sd if k.startswith("weight_ih"))


@pytest.mark.parametrize("cell", ["lstm", "gru", "gru_reset_before"])
def test_identity_init_is_rnn_only(cell):
    with pytest.raises(ValueError, match="init"):
        make_layer(cell, INPUT, HIDDEN, init="identity")


@pytest.mark.parametrize("forget_bias", [1.0, 0.0, -2.5])
def test_forget_bias_sets_forget_slice(forget_bias):
    """The effective forget-gate bias b_ih[H:2H] + b_hh[H:2H] equals forget_bias everywhere."""
    layer = make_layer("lstm", INPUT, HIDDEN, 2, True, seed=5, forget_bias=forget_bias)
    plain = make_layer("lstm", INPUT, HIDDEN, 2, True, seed=5)
    sd, sd_plain = layer.state_dict(), plain.state_dict()
    forget = slice(HIDDEN, 2 * HIDDEN)
    sfxs = [k[len("bias_ih") :] for k in sd if k.startswith("bias_ih")]
    assert len(sfxs) == 4
    for sfx in sfxs:
        b_ih, b_hh = sd["bias_ih" + sfx], sd["bias_hh" + sfx]
        np.testing.assert_allclose(b_ih[forget] + b_hh[forget], forget_bias, rtol=0, atol=1e-15)
        # the other gates keep their usual initialisation
        for gate in (0, 2, 3):
            s = slice(gate * HIDDEN, (gate + 1) * HIDDEN)
            assert np.abs(b_ih[s]).max() <= 1 / np.sqrt(HIDDEN)
            assert np.unique(b_ih[s]).size > 1
    # the other parameters keep their usual initialisation
    for k in sd:
        if k.startswith("weight"):
            assert np.abs(sd[k]).max() <= 1 / np.sqrt(HIDDEN), k
            assert np.abs(sd_plain[k]).max() <= 1 / np.sqrt(HIDDEN), k


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_unknown_init_is_rejected(cell):
    with pytest.raises(ValueError, match="init"):
        make_layer(cell, INPUT, HIDDEN, init="xavier-ish")
