"""rnncore.torch: torch.nn.RNN/LSTM/GRU drop-ins backed by the engine, against torch.nn itself."""

import copy
import io
import itertools
import pickle
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")
rt = pytest.importorskip("rnncore.torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

T, B, I, H = 6, 4, 5, 7
F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _plain_torch_kernels():
    """torch's oneDNN RNN path costs ~0.75 s a call at these tiny sizes: use ATen's kernels."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    yield
    torch.backends.mkldnn.enabled = before


def twins(name, dtype=F64, **kw):
    """(torch.nn layer, rnncore.torch layer) built from the same torch seed: same weights."""
    torch.manual_seed(0)
    ref = getattr(torch.nn, name)(I, H, dtype=dtype, **kw)
    torch.manual_seed(0)
    ours = getattr(rt, name)(I, H, dtype=dtype, **kw)
    return ref, ours


def states_of(out):
    """The final state(s) of a call as a list of tensors."""
    return list(out[1]) if isinstance(out[1], tuple) else [out[1]]


def run(net, x, hx, weights):
    """Forward, loss = sum(y*w) + sum of squared states, backward; returns outputs and grads."""
    out = net(x, hx)
    y = out[0].data if isinstance(out[0], torch.nn.utils.rnn.PackedSequence) else out[0]
    loss = (y * weights[: y.numel()].view_as(y)).sum()
    for s in states_of(out):
        loss = loss + (s * s).sum()
    loss.backward()
    return out, {n: p.grad.clone() for n, p in net.named_parameters()}


CONFIGS = [
    ("RNN", {}),
    ("RNN", {"nonlinearity": "relu", "num_layers": 2}),
    ("LSTM", {}),
    ("LSTM", {"num_layers": 2, "bidirectional": True}),
    ("LSTM", {"proj_size": 3, "num_layers": 2, "bidirectional": True}),
    ("LSTM", {"bias": False, "batch_first": True}),
    ("GRU", {}),
    ("GRU", {"num_layers": 2, "bidirectional": True, "batch_first": True}),
]


@pytest.mark.parametrize("name,kw", CONFIGS)
@pytest.mark.parametrize("with_state", [False, True])
def test_matches_torch_outputs_and_every_gradient(name, kw, with_state):
    ref, ours = twins(name, **kw)
    assert list(ref.state_dict()) == list(ours.state_dict())
    for (n, p), (m, q) in zip(ref.named_parameters(), ours.named_parameters(), strict=True):
        assert n == m and torch.equal(p, q), n  # torch's initialisation, same generator draws
    D = 2 if kw.get("bidirectional") else 1
    L = kw.get("num_layers", 1)
    R = kw.get("proj_size") or H
    g = torch.Generator().manual_seed(1)
    shape = (B, T, I) if kw.get("batch_first") else (T, B, I)
    x0 = torch.randn(shape, generator=g, dtype=F64)
    w = torch.randn(T * B * D * R, generator=g, dtype=F64)
    h0 = torch.randn(L * D, B, R, generator=g, dtype=F64)
    c0 = torch.randn(L * D, B, H, generator=g, dtype=F64)
    results = []
    for net in (ref, ours):
        x = x0.clone().requires_grad_()
        hx = None
        if with_state:
            hs = [h0.clone().requires_grad_(), c0.clone().requires_grad_()]
            hx = tuple(hs) if name == "LSTM" else hs[0]
        out, grads = run(net, x, hx, w)
        extra = [s.grad for s in (hs if name == "LSTM" else hs[:1])] if with_state else []
        results.append((out[0], states_of(out), x.grad, extra, grads))
    (y1, s1, dx1, ds1, g1), (y2, s2, dx2, ds2, g2) = results
    torch.testing.assert_close(y2, y1, atol=1e-12, rtol=0)
    for a, b in zip(s2, s1, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    torch.testing.assert_close(dx2, dx1, atol=1e-12, rtol=0)
    for a, b in zip(ds2, ds1, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    for n in g1:
        torch.testing.assert_close(g2[n], g1[n], atol=1e-11, rtol=0, msg=n)


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_packed_sequence_in_and_out_like_torch(name, enforce_sorted):
    ref, ours = twins(name, num_layers=2, bidirectional=True)
    g = torch.Generator().manual_seed(2)
    lengths = torch.tensor([6, 6, 3, 1]) if enforce_sorted else torch.tensor([3, 6, 1, 5])
    x0 = torch.randn(T, B, I, generator=g, dtype=F64)
    w = torch.randn(T * B * 2 * H, generator=g, dtype=F64)
    got = []
    for net in (ref, ours):
        x = x0.clone().requires_grad_()
        packed = pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
        out, grads = run(net, packed, None, w)
        assert isinstance(out[0], torch.nn.utils.rnn.PackedSequence)
        got.append((out[0], states_of(out), x.grad, grads))
    (p1, s1, dx1, g1), (p2, s2, dx2, g2) = got
    assert torch.equal(p1.batch_sizes, p2.batch_sizes)
    for a, b in (
        (p1.sorted_indices, p2.sorted_indices),
        (p1.unsorted_indices, p2.unsorted_indices),
    ):
        assert (a is None and b is None) or torch.equal(a, b)
    torch.testing.assert_close(p2.data, p1.data, atol=1e-12, rtol=0)
    torch.testing.assert_close(pad_packed_sequence(p2)[0], pad_packed_sequence(p1)[0])
    for a, b in zip(s2, s1, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    torch.testing.assert_close(dx2, dx1, atol=1e-12, rtol=0)
    for n in g1:
        torch.testing.assert_close(g2[n], g1[n], atol=1e-11, rtol=0, msg=n)


def test_unbatched_input_like_torch():
    ref, ours = twins("LSTM", num_layers=2)
    x = torch.randn(T, I, dtype=F64)
    h = (torch.randn(2, H, dtype=F64), torch.randn(2, H, dtype=F64))
    (y1, (h1, c1)), (y2, (h2, c2)) = ref(x, h), ours(x, h)
    assert y2.shape == (T, H) and h2.shape == (2, H)
    for a, b in ((y1, y2), (h1, h2), (c1, c2)):
        torch.testing.assert_close(b, a, atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_an_empty_batch_gives_empty_outputs_like_torch(name):
    ref, ours = twins(name, num_layers=2, bidirectional=True, batch_first=True)
    x = torch.randn(0, T, I, dtype=F64, requires_grad=True)
    (y1, s1), (y2, s2) = ref(x), ours(x)
    assert y2.shape == y1.shape
    states = zip(
        s1 if isinstance(s1, tuple) else (s1,), s2 if isinstance(s2, tuple) else (s2,), strict=True
    )
    assert all(b.shape == a.shape for a, b in states)
    y2.sum().backward()
    assert all(p.grad is not None and not p.grad.any() for p in ours.parameters())


def _gradcheck_inputs(name, seed=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 2, 3, generator=g, dtype=F64, requires_grad=True)
    h = torch.randn(2, 2, 4, generator=g, dtype=F64, requires_grad=True)
    return x, h


@pytest.mark.parametrize(
    "make",
    [
        lambda: rt.LSTM(3, 4, bidirectional=True, dtype=F64),
        lambda: rt.GRU(3, 4, bidirectional=True, dtype=F64),
        lambda: rt.GRU(3, 4, bidirectional=True, reset_after=False, dtype=F64),
        lambda: rt.RNN(3, 4, bidirectional=True, dtype=F64),
        lambda: rt.LSTM(3, 4, bidirectional=True, layer_norm=True, dtype=F64),
        lambda: rt.GatedRNN(3, 4, gates=("input", "forget"), bidirectional=True, dtype=F64),
        lambda: rt.GatedRNN(3, 4, gates=(), bidirectional=True, dtype=F64),
    ],
    ids=["lstm", "gru", "gru_v1", "rnn", "lstm_ln", "gated_forget", "gated_residual"],
)
def test_gradcheck_float64_inputs_state_and_parameters(make):
    torch.manual_seed(0)
    m = make()
    x, h = _gradcheck_inputs(m)
    params = list(m.parameters())
    names = [n for n, _ in m.named_parameters()]
    lstm_like = isinstance(m, rt.LSTM) or getattr(m, "gates", ()) == ("input", "forget", "output")

    def fn(x, h, *ps):
        # Through functional_call, so that gradcheck's perturbed parameters are what runs.
        hx = (h, torch.zeros_like(h)) if lstm_like else h
        out = torch.func.functional_call(m, dict(zip(names, ps, strict=True)), (x, hx))
        return (out[0], *states_of(out))

    assert torch.autograd.gradcheck(fn, (x, h, *params), eps=1e-6, atol=1e-7)


def test_gradcheck_with_zoneout_dropout_at_a_fixed_seed():
    m = rt.LSTM(3, 4, num_layers=2, dropout=0.3, zoneout=0.2, dtype=F64)
    x, _ = _gradcheck_inputs(m)

    def fn(x):
        torch.manual_seed(7)  # the same masks at every call
        return m(x)[0]

    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-7)


def test_gradients_through_the_module_own_parameters_gradcheck():
    """gradcheck perturbs the parameters in place: they are the engine's buffer itself."""
    torch.manual_seed(0)
    m = rt.GRU(3, 4, num_layers=2, dtype=F64)
    x, _ = _gradcheck_inputs(m)
    w = m.weight_hh_l1

    def fn(x, w_):
        assert w_ is w
        return m(x)[0]

    assert torch.autograd.gradcheck(fn, (x, w), eps=1e-6, atol=1e-7)


def test_state_dict_both_ways_and_parameters_stay_engine_views():
    ref, ours = twins("LSTM", num_layers=2, bidirectional=True)
    torch.manual_seed(5)
    other = torch.nn.LSTM(I, H, num_layers=2, bidirectional=True, dtype=F64)
    ours.load_state_dict(other.state_dict())
    assert ours._engine.holds(list(ours.parameters()))  # copied in place, no rebinding needed
    x = torch.randn(T, B, I, dtype=F64)
    torch.testing.assert_close(ours(x)[0], other(x)[0], atol=1e-12, rtol=0)
    ref.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ref(x)[0], other(x)[0], atol=1e-12, rtol=0)
    # assign=True replaces the storage: the next forward moves the values back into the engine
    ours.load_state_dict({k: v.clone() * 2 for k, v in other.state_dict().items()}, assign=True)
    other.load_state_dict({k: v * 2 for k, v in other.state_dict().items()})
    torch.testing.assert_close(ours(x)[0], other(x)[0], atol=1e-12, rtol=0)
    assert ours._engine.holds([getattr(ours, n) for n in ours._flat_weights_names])


def test_training_steps_match_torch_with_an_optimizer():
    ref, ours = twins("GRU", dtype=torch.float32, num_layers=2, batch_first=True)
    opts = [torch.optim.Adam(net.parameters(), lr=1e-2) for net in (ref, ours)]
    g = torch.Generator().manual_seed(3)
    for _ in range(5):
        x = torch.randn(B, T, I, generator=g)
        target = torch.randn(B, T, H, generator=g)
        for net, opt in zip((ref, ours), opts, strict=True):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x)[0], target)
            loss.backward()
            opt.step()
    for p, q in zip(ref.parameters(), ours.parameters(), strict=True):
        torch.testing.assert_close(q, p, atol=2e-5, rtol=1e-4)
    assert ours._engine.holds(list(ours.parameters()))


def test_double_and_float_rebuild_the_engine_keeping_the_parameters():
    torch.manual_seed(0)
    m = rt.LSTM(I, H, num_layers=2)
    params = list(m.parameters())
    x = torch.randn(T, B, I)
    y32 = m(x)[0]
    m.double()
    assert all(p is q for p, q in zip(params, m.parameters(), strict=True))  # same objects
    assert all(p.dtype == F64 for p in m.parameters()) and m._engine.dtype == F64
    y64 = m(x.double())[0]
    assert y64.dtype == F64
    torch.testing.assert_close(y64.float(), y32, atol=1e-5, rtol=0)
    opt = torch.optim.SGD(
        m.parameters(), lr=0.1
    )  # an optimizer after the switch updates the engine
    m(x.double())[0].sum().backward()
    opt.step()
    ref = torch.nn.LSTM(I, H, num_layers=2, dtype=F64)
    ref.load_state_dict(m.state_dict())
    torch.testing.assert_close(m(x.double())[0], ref(x.double())[0], atol=1e-12, rtol=0)
    m.float()
    assert m(x)[0].dtype == torch.float32


def test_dropout_follows_train_eval_and_torch_seed():
    torch.manual_seed(0)
    m = rt.LSTM(I, H, num_layers=3, dropout=0.5)
    x = torch.randn(T, B, I)
    torch.manual_seed(1)
    a = m(x)[0]
    torch.manual_seed(1)
    b = m(x)[0]
    c = m(x)[0]
    assert torch.equal(a, b) and not torch.equal(a, c)  # torch.manual_seed decides the masks
    m.eval()
    ref = torch.nn.LSTM(I, H, num_layers=3, dropout=0.5).eval()
    ref.load_state_dict(m.state_dict())
    torch.testing.assert_close(m(x)[0], ref(x)[0], atol=1e-6, rtol=0)
    # eval mode with gradients: no dropout, and the gradients equal torch's
    xr = x.clone().requires_grad_()
    m(xr)[0].sum().backward()
    xt = x.clone().requires_grad_()
    ref(xt)[0].sum().backward()
    torch.testing.assert_close(xr.grad, xt.grad, atol=1e-6, rtol=0)


def test_backwards_in_any_order_and_forwards_without_backward():
    torch.manual_seed(0)
    m = rt.LSTM(I, H, dtype=F64)
    xs = [torch.randn(T, B, I, dtype=F64, requires_grad=True) for _ in range(3)]
    outs = [m(x)[0] for x in xs]
    _ = m(torch.randn(T, B, I, dtype=F64))  # never backpropagated: freed with its graph
    outs[0].sum().backward()  # the oldest first: not the engine stack's order
    outs[2].pow(2).sum().backward()
    expected = []
    for k, f in ((0, lambda y: y.sum()), (2, lambda y: y.pow(2).sum())):
        x = xs[k].detach().clone().requires_grad_()
        ref = torch.nn.LSTM(I, H, dtype=F64)
        ref.load_state_dict(m.state_dict())
        f(ref(x)[0]).backward()
        expected.append(x.grad)
    torch.testing.assert_close(xs[0].grad, expected[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(xs[2].grad, expected[1], atol=1e-12, rtol=0)
    assert xs[1].grad is None
    assert m._engine.core.saved_forwards == 0  # nothing left on the engine's own stack


def test_retain_graph_second_backward_recomputes_and_agrees():
    torch.manual_seed(0)
    m = rt.GRU(I, H, num_layers=2, dropout=0.3, dtype=F64)
    x = torch.randn(T, B, I, dtype=F64, requires_grad=True)
    y = m(x)[0]
    (g1,) = torch.autograd.grad(y.sum(), x, retain_graph=True)
    (g2,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(g1, g2, atol=0, rtol=0)


def test_in_place_edits_of_saved_tensors_are_refused_by_torch():
    m = rt.LSTM(I, H, dtype=F64)
    x = torch.randn(T, B, I, dtype=F64, requires_grad=True)
    y = m(x)[0]
    y.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
    y = m(x)[0]
    with torch.no_grad():
        m.weight_hh_l0.add_(1.0)  # an optimizer step between forward and backward
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_double_backward_is_refused_clearly():
    m = rt.RNN(I, H, dtype=F64)
    x = torch.randn(T, B, I, dtype=F64, requires_grad=True)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(m(x)[0].pow(2).sum(), x, create_graph=True)


def test_no_grad_and_inference_mode_keep_nothing():
    m = rt.LSTM(I, H, num_layers=2, dropout=0.2)
    x = torch.randn(T, B, I)
    with torch.no_grad():
        y = m(x)[0]
    with torch.inference_mode():
        z = m(x)[0]
    assert not y.requires_grad and not z.requires_grad
    assert m._engine.core.saved_forwards == 0


def test_functional_call_leaves_the_module_parameters_alone():
    torch.manual_seed(0)
    m = rt.GRU(I, H, dtype=F64)
    ref = torch.nn.GRU(I, H, dtype=F64)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    new = {k: torch.randn_like(v) for k, v in before.items()}
    x = torch.randn(T, B, I, dtype=F64)
    got = torch.func.functional_call(m, new, (x,))[0]
    want = torch.func.functional_call(ref, new, (x,))[0]
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k
    ref.load_state_dict(before)
    torch.testing.assert_close(m(x)[0], ref(x)[0], atol=1e-12, rtol=0)


def test_deepcopy_pickle_and_torch_save():
    torch.manual_seed(0)
    m = rt.LSTM(I, H, num_layers=2, proj_size=3)
    x = torch.randn(T, B, I)
    y = m(x)[0]
    for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        torch.testing.assert_close(clone(x)[0], y, atol=0, rtol=0)
        with torch.no_grad():
            clone.weight_ih_l0.add_(1.0)  # its own engine: the original is untouched
        torch.testing.assert_close(m(x)[0], y, atol=0, rtol=0)
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    fresh = rt.LSTM(I, H, num_layers=2, proj_size=3)
    fresh.load_state_dict(torch.load(buf))
    torch.testing.assert_close(fresh(x)[0], y, atol=0, rtol=0)


def test_gated_rnn_with_every_gate_is_torch_lstm():
    torch.manual_seed(0)
    g = rt.GatedRNN(I, H, gates=("input", "forget", "output"), num_layers=2, dtype=F64)
    ref = torch.nn.LSTM(I, H, num_layers=2, dtype=F64)
    ref.load_state_dict(g.state_dict())
    x = torch.randn(T, B, I, dtype=F64)
    (y1, (h1, c1)), (y2, (h2, c2)) = g(x), ref(x)
    for a, b in ((y1, y2), (h1, h2), (c1, c2)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    small = rt.GatedRNN(I, H, gates=("input",))
    y, h = small(torch.randn(T, B, I))
    assert y.shape == (T, B, H) and h.shape == (1, B, H)
    assert "gates=('input',)" in repr(small)


def test_extras_layer_norm_parameters_and_reset_before_gru():
    torch.manual_seed(0)
    m = rt.LSTM(I, H, num_layers=2, layer_norm=True)
    names = [n for n, _ in m.named_parameters()]
    assert "ln_weight_ih_l1" in names and "ln_bias_c_l0" in names
    assert torch.equal(m.ln_weight_hh_l0, torch.ones(4 * H))
    assert "layer_norm=True" in repr(m)
    gru = rt.GRU(I, H, reset_after=False)
    assert "reset_after=False" in repr(gru)
    y, h = gru(torch.randn(T, B, I))
    assert y.shape == (T, B, H)


def test_threads_each_with_their_own_graph():
    torch.manual_seed(0)
    m = rt.LSTM(I, H, dtype=F64)
    ref = torch.nn.LSTM(I, H, dtype=F64)
    ref.load_state_dict(m.state_dict())
    xs = [torch.randn(T, B, I, dtype=F64) for _ in range(4)]
    grads = [None] * 4
    errors = []

    def work(k):
        try:
            for _ in range(5):
                x = xs[k].clone().requires_grad_()
                m(x)[0].pow(2).sum().backward()
                grads[k] = x.grad
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k in range(4):
        x = xs[k].clone().requires_grad_()
        ref(x)[0].pow(2).sum().backward()
        torch.testing.assert_close(grads[k], x.grad, atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    "call,err,match",
    [
        (lambda m: m(torch.randn(T, B, I, dtype=F64)), TypeError, "input dtype"),
        (lambda m: m(torch.randn(T, B, I + 1)), ValueError, "input_size=5"),
        (lambda m: m(torch.randn(T, I, B, 1)), ValueError, "3-d"),
        (lambda m: m(np.zeros((T, B, I), np.float32)), TypeError, "torch.Tensor"),
        (lambda m: m(torch.randn(T, B, I), torch.zeros(1, B, H)), TypeError, r"tuple \(h_0, c_0\)"),
        (lambda m: m(torch.randn(T, B, I), (torch.zeros(1, B + 1, H),) * 2), ValueError, "h0"),
        (lambda m: m(torch.randn(T, B, I), (torch.zeros(B, H),) * 2), ValueError, "3-d"),
    ],
)
def test_bad_calls_name_the_argument(call, err, match):
    m = rt.LSTM(I, H)
    with pytest.raises(err, match=match):
        call(m)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="zoneout"):
        rt.LSTM(I, H, zoneout=1.5)
    with pytest.raises(ValueError, match="proj_size"):
        rt.LSTM(I, H, proj_size=2, zoneout=0.1)
    with pytest.raises(ValueError, match="layer_norm"):
        rt.GRU(I, H, reset_after=False, layer_norm=True)
    with pytest.raises(ValueError, match="gates"):
        rt.GatedRNN(I, H, gates=("output",))
    with pytest.raises(TypeError, match="dtype"):
        rt.LSTM(I, H, dtype=torch.float16)
    with pytest.raises(RuntimeError, match="training mode"):
        m = rt.LSTM(I, H, num_layers=1, zoneout=0.1).eval()
        m(torch.randn(T, B, I, requires_grad=True))


def test_modules_are_torch_modules():
    for name, kw in itertools.product(("RNN", "LSTM", "GRU"), [{}]):
        m = getattr(rt, name)(I, H, **kw)
        assert isinstance(m, getattr(torch.nn, name))
        assert repr(m) == repr(getattr(torch.nn, name)(I, H, **kw))
