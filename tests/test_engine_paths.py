"""Engine paths the small-shape suites do not reach: multi-threaded steps, every GEMM backend,
and the per-step gradient-norm diagnostic."""

from __future__ import annotations

import numpy as np
import pytest
import rnncore
from rnncore import _blas, _core

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True, scope="module")
def _plain_torch_kernels():
    """ATen's own CPU kernels as the reference: torch's oneDNN LSTM path is far slower at
    these sizes (see test_torch_parity.py)."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    yield
    torch.backends.mkldnn.enabled = before


CELLS = {
    "rnn": (rnncore.nn.RNN, torch.nn.RNN, {}),
    "lstm": (rnncore.nn.LSTM, torch.nn.LSTM, {}),
    "gru": (rnncore.nn.GRU, torch.nn.GRU, {}),
}


def _pair(cell, I, H, layers, bi, seed=0):
    ours_cls, torch_cls, kw = CELLS[cell]
    ours = ours_cls(I, H, num_layers=layers, bidirectional=bi, dtype="float64", seed=seed, **kw)
    ref = torch_cls(I, H, num_layers=layers, bidirectional=bi, dtype=torch.float64)
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    return ours, ref


def _torch_run(ref, x, lengths, dy):
    xt = torch.tensor(x, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        xt, torch.tensor(lengths), enforce_sorted=False
    )
    y, _ = ref(packed)
    y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, total_length=x.shape[0])
    (y * torch.tensor(dy)).sum().backward()
    return (
        y.detach().numpy(),
        xt.grad.numpy(),
        {k: p.grad.numpy() for k, p in ref.named_parameters()},
    )


def _ours_run(ours, x, lengths, rng, threads):
    """Forward and backward (with a random dy drawn from rng) at the given engine threads."""
    before = rnncore.set_num_threads(threads)
    try:
        y, _ = ours(x, lengths=lengths)
        dy = rng.standard_normal(y.shape).astype(y.dtype)
        dx, _ = ours.backward(dy)
    finally:
        rnncore.set_num_threads(before)
    return y, dy, dx


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_threaded_steps_match_torch(cell, threads, bidirectional):
    # Large enough that with 2 threads the bidirectional layers run their directions side by side
    # and the unidirectional steps are split by hidden units (H=90: an uneven split).
    T, B, I, H = 12, 24, 5, 90
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, I))
    lengths = rng.integers(1, T + 1, size=B)
    lengths[0] = T
    ours, ref = _pair(cell, I, H, 2, bidirectional)
    y, dy, dx = _ours_run(ours, x, lengths, rng, threads)
    ty, tdx, tgrads = _torch_run(ref, x, lengths, dy)
    np.testing.assert_allclose(y, ty, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dx, tdx, rtol=0, atol=1e-12)
    for p in ours.parameters():
        np.testing.assert_allclose(p.grad, tgrads[p.name], rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("backend", ["eigen", "openblas"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_gemm_backend_matches_torch(backend, dtype):
    """Each GEMM backend gives PyTorch's outputs and gradients on a stacked, bidirectional,
    ragged batch at 2 threads, large enough for the multi-threaded steps and the split
    products."""
    T, B, I, H = 10, 24, 12, 72
    rng = np.random.default_rng(2)
    x = rng.standard_normal((T, B, I))
    lengths = rng.permutation(np.arange(B) % T + 1)
    ours, ref = _pair("lstm", I, H, 2, True, seed=3)
    if dtype == "float32":
        ours = rnncore.nn.LSTM(I, H, num_layers=2, bidirectional=True, seed=3)
        ref = ref.float()
        ref.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
        x = x.astype(np.float32)
    try:
        used = rnncore.set_gemm_backend(backend)
        assert used.startswith(backend), used
        y, dy, dx = _ours_run(ours, x, lengths, rng, threads=2)
    finally:
        _blas.load()
    ty, tdx, tgrads = _torch_run(ref, x, lengths, dy)
    tol = dict(rtol=2e-4, atol=2e-5) if dtype == "float32" else dict(rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(y, ty, **tol)
    np.testing.assert_allclose(dx, tdx, **tol)
    for p in ours.parameters():
        np.testing.assert_allclose(p.grad, tgrads[p.name], **tol)


def test_gemm_backend_choice_is_checked():
    """An unknown backend is refused with the valid names and leaves the engine's as it was."""
    before = rnncore.gemm_backend()
    with pytest.raises(ValueError, match="set_gemm_backend: name must be one of"):
        rnncore.set_gemm_backend("blis")
    assert _core.gemm_backend() == before
    try:
        assert rnncore.set_gemm_backend("eigen") == "eigen" == _core.gemm_backend()
    finally:
        _blas.load()
    assert rnncore.gemm_backend() == before


def test_step_grad_norms_equal_unrolled_torch():
    """||dL/dh_t|| per step, checked against torch.nn.LSTMCell unrolled with retained grads."""
    T, B, I, H = 9, 4, 3, 6
    rng = np.random.default_rng(3)
    ours = rnncore.nn.LSTM(I, H, num_layers=2, dtype="float64", seed=5)
    x = rng.standard_normal((T, B, I))
    y, _ = ours(x)
    dy = np.zeros_like(y)
    dy[-1] = rng.standard_normal((B, H))  # many-to-one: gradient enters at the last step only
    ours.record_step_grad_norms = True
    ours.backward(dy)
    norms = ours.step_grad_norms
    assert norms.shape == (2, T)

    sd = {k: torch.from_numpy(v) for k, v in ours.state_dict().items()}
    inp = torch.tensor(x)
    hs_per_layer = []
    for layer in range(2):
        cell = torch.nn.LSTMCell(inp.shape[-1], H, dtype=torch.float64)
        cell.load_state_dict(
            {k.replace(f"_l{layer}", ""): v for k, v in sd.items() if k.endswith(f"_l{layer}")}
        )
        h = c = torch.zeros(B, H, dtype=torch.float64)
        outs = []
        for t in range(T):
            h, c = cell(inp[t], (h, c))
            h.retain_grad()
            outs.append(h)
        hs_per_layer.append(outs)
        inp = torch.stack(outs)
    (hs_per_layer[-1][-1] * torch.tensor(dy[-1])).sum().backward()
    for layer in range(2):
        expected = [float(h.grad.norm()) for h in hs_per_layer[layer]]
        np.testing.assert_allclose(norms[layer], expected, rtol=1e-10)
    # The lesson: the gradient shrinks going back in time from where it entered.
    assert norms[1, 0] < norms[1, -1]


def _float32_matches_torch(cell, x, lengths, hidden, bidirectional, threads, seed, grad_atol):
    """A 2-layer float32 layer of ours and torch's with the same weights: outputs, dx and every
    parameter gradient agree to float32 rounding. x [T, B, I] float32."""
    ours_cls, torch_cls, _ = CELLS[cell]
    ours = ours_cls(x.shape[2], hidden, num_layers=2, bidirectional=bidirectional, seed=seed)
    ref = torch_cls(x.shape[2], hidden, num_layers=2, bidirectional=bidirectional)
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    rng = np.random.default_rng(seed)
    y, dy, dx = _ours_run(ours, x, lengths, rng, threads)
    ty, tdx, tgrads = _torch_run(ref, x, lengths, dy)
    np.testing.assert_allclose(y, ty, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(dx, tdx, rtol=1e-4, atol=2e-5)
    for p in ours.parameters():
        np.testing.assert_allclose(p.grad, tgrads[p.name], rtol=1e-3, atol=grad_atol)


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("batch", [1, 2, 3, 4])
@pytest.mark.parametrize(("hidden", "threads"), [(40, 2), (150, 2), (150, 1), (300, 1)])
@pytest.mark.parametrize("steps", [3, 9, 33])
def test_small_batch_matrix_vector_path_float32(cell, batch, hidden, threads, steps):
    """Batches of <= 4 use matrix-vector products: short calls on W_hh in place (under 32 steps
    with the AVX-512 kernels, under 5 with the AVX2 ones), longer ones on W_hh packed in panels
    of 128 (AVX-512) or 64 (AVX2) outputs, one template per batch size. Each thread packs its
    H/threads units per gate: 20, 75, 150 and 300 leave partial transpose tiles, partial panels
    and masked lanes."""
    T, I = steps, 7
    rng = np.random.default_rng(4)
    x = rng.standard_normal((T, batch, I)).astype(np.float32)
    lengths = [T] + [int(v) for v in rng.integers(1, T + 1, size=batch - 1)]
    _float32_matches_torch(cell, x, lengths, hidden, True, threads, seed=1, grad_atol=1e-4)


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("B", "H"), [(13, 45), (7, 300)])
def test_packed_weight_steps_float32(cell, bidirectional, threads, B, H):
    """float32 batches > 4 run the per-step products on packed weights (AVX-512 or AVX2 CPUs):
    13 rows (AVX-512 tiles of 7 and 6 rows, AVX2 tiles of 5, 4, 4), H=45 (a partial 32-column
    panel, masked halves); H=300 runs the product over R=300 in two k blocks (256 + 44 on AVX2)."""
    T, I = 8, 6
    rng = np.random.default_rng(5)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    lengths = [T] + [int(v) for v in rng.integers(1, T + 1, size=B - 1)]
    _float32_matches_torch(cell, x, lengths, H, bidirectional, threads, seed=2, grad_atol=2e-4)


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize(("steps", "batch"), [(1, 1), (1, 4), (2, 2), (3, 5)])
@pytest.mark.parametrize("threads", [1, 2])
def test_decoding_shaped_calls_float32(cell, steps, batch, threads):
    """Calls of a step or two with a batch of a few (decoding a token at a time): with at most 4
    rows in all the input projection is one matrix-vector product per row on W_ih as it lies,
    and the steps multiply W_hh in place (no packing). H=300 gives both threads units."""
    I, H = 24, 300
    x = np.random.default_rng(8).standard_normal((steps, batch, I)).astype(np.float32)
    _float32_matches_torch(cell, x, [steps] * batch, H, True, threads, seed=4, grad_atol=2e-4)


@pytest.mark.parametrize(("batch", "steps"), [(3, 7), (3, 40), (13, 7)])
def test_gru_reset_before_float32_matches_float64(batch, steps):
    """GRU reset_after=False has no torch twin: float32 (packed GEMM, packed and in-place
    matrix-vector paths) against the float64 engine, itself checked by finite differences and the
    NumPy reference."""
    T, I, H = steps, 5, 45
    rng = np.random.default_rng(6)
    layers = [
        rnncore.nn.GRU(I, H, num_layers=2, bidirectional=True, reset_after=False, dtype=dt, seed=3)
        for dt in ("float32", "float64")
    ]
    layers[0].load_state_dict(layers[1].state_dict())
    x = rng.standard_normal((T, batch, I))
    dy = rng.standard_normal((T, batch, 2 * H))
    lengths = [T] + [int(v) for v in rng.integers(1, T + 1, size=batch - 1)]
    out = []
    for layer in layers:
        dt = layer.dtype
        y, _ = layer(x.astype(dt), lengths=lengths)
        dx, _ = layer.backward(dy.astype(dt))
        out.append((y, dx, layer.flat_gradients.copy()))
    for a, b in zip(out[0], out[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=2e-4)


_VARIANT_SCRIPT = """
import json, sys
import numpy as np
import rnncore
rng = np.random.default_rng(7)
layer = rnncore.nn.GRU(5, 40, num_layers=2, bidirectional=True, seed=3)
x = rng.standard_normal((6, 7, 5)).astype(np.float32)
y, h = layer(x, lengths=[6, 5, 5, 3, 2, 2, 1])
dx, _ = layer.backward(np.ones_like(y))
print(json.dumps({"variant": rnncore.engine_variant(), "y": float(np.abs(y).sum()),
                  "dx": float(np.abs(dx).sum()), "g": float(np.abs(layer.flat_gradients).sum())}))
"""


def test_every_engine_variant_the_cpu_runs_gives_the_same_numbers():
    """The wheel carries portable, AVX2 and AVX-512 builds of the engine (rnncore._native picks
    one); each that this CPU can run must compute the same function."""
    import json
    import os
    import subprocess
    import sys

    from rnncore import _native

    flags = _native.cpu_flags()
    runnable = ["baseline"] + [name for name, needs in _native._VARIANTS if needs <= flags]
    results = {}
    for name in runnable:
        env = dict(os.environ, RNNCORE_ISA=name)
        out = subprocess.run(
            [sys.executable, "-c", _VARIANT_SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        results[name] = json.loads(out.stdout)
        assert results[name]["variant"] == name
    base = results["baseline"]
    for name, r in results.items():
        for key in ("y", "dx", "g"):
            assert r[key] == pytest.approx(base[key], rel=1e-5), (name, key)


def test_a_forced_variant_the_cpu_cannot_run_is_refused_with_a_warning():
    """RNNCORE_ISA naming an engine this CPU lacks (or no engine) warns and falls back instead
    of dying of an illegal instruction."""
    import os
    import subprocess
    import sys

    from rnncore import _native

    flags = _native.cpu_flags()
    cases = [("sse", "is not one of baseline, avx2, avx512")]
    cases += [(name, "this CPU lacks") for name, needs in _native._VARIANTS if not needs <= flags]
    for forced, says in cases:
        out = subprocess.run(
            [sys.executable, "-c", "import rnncore, rnncore._native as n; print(n.variant)"],
            env=dict(os.environ, RNNCORE_ISA=forced),
            capture_output=True,
            text=True,
            check=True,
        )
        assert says in out.stderr, out.stderr
        runnable = {"baseline"} | {n for n, needs in _native._VARIANTS if needs <= flags}
        assert out.stdout.strip() in runnable
