"""Issue 22, part 1: Conv1d in the engine (against torch.nn.Conv1d) and Kim's CNN for sentence
classification (gradients, padding never winning the max, the max-norm constraint, the
sentiment task's --model cnn, checkpoints)."""

from __future__ import annotations

import numpy as np
import pytest
from rnncore import _core, nn
from rnncore.models import KimCNN
from rnncore.models.classifier import ClassifierBatch

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("kernel", "padding"), [(1, 0), (3, 0), (3, 2), (5, 4), (4, 1)])
def test_conv1d_matches_torch(channels_last, kernel, padding):
    rng = np.random.default_rng(kernel * 10 + padding)
    conv = nn.Conv1d(
        6, 4, kernel, padding=padding, dtype="float64", seed=1, channels_last=channels_last
    ).train()
    ref = torch.nn.Conv1d(6, 4, kernel, padding=padding, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(conv.weight.data))
        ref.bias.copy_(torch.from_numpy(conv.bias.data))
    x = rng.standard_normal((3, 6, 7))  # PyTorch's [N, C, L]
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    dy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.from_numpy(dy))

    def ours(a):  # our layout of an [N, C, L] array
        return np.ascontiguousarray(a.transpose(0, 2, 1)) if channels_last else a

    y = conv(ours(x))
    np.testing.assert_allclose(ours(y), yt.detach().numpy(), atol=1e-12)
    dx = conv.backward(ours(dy))
    np.testing.assert_allclose(ours(dx), xt.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(conv.weight.grad, ref.weight.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(conv.bias.grad, ref.bias.grad.numpy(), atol=1e-12)


def test_conv1d_float32_and_threads_at_kims_sizes():
    """A batch of sentences at Kim's sizes: float32 against float64, and the engine's threads
    (im2col and col2im split over the team) against one thread."""
    import rnncore

    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 31, 300))
    w = rng.standard_normal((100, 300, 5)) * 0.05
    b = rng.standard_normal(100)
    dy = rng.standard_normal((20, 35, 100))
    outs = []
    for threads in (1, 2):
        before = rnncore.set_num_threads(threads)
        try:
            y = _core.conv1d_forward(
                x.astype(np.float32), w.astype(np.float32), b.astype(np.float32), 4
            )
            dw = np.zeros(w.shape, np.float32)
            dx = _core.conv1d_backward(
                dy.astype(np.float32), x.astype(np.float32), w.astype(np.float32), dw, None, 4
            )
            outs.append((y, dx, dw))
        finally:
            rnncore.set_num_threads(before)
    y64 = _core.conv1d_forward(x, w, b, 4)
    dw64 = np.zeros_like(w)
    dx64 = _core.conv1d_backward(dy, x, w, dw64, None, 4)
    for got in outs:
        np.testing.assert_allclose(got[0], y64, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got[1], dx64, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got[2], dw64, rtol=1e-4, atol=2e-3)


def test_conv1d_refusals_name_the_argument():
    conv = nn.Conv1d(3, 2, 4)
    with pytest.raises(ValueError, match="shorter than kernel_size 4"):
        conv(np.zeros((1, 3, 2), np.float32))
    with pytest.raises(ValueError, match=r"x must be \[N, C, L\] with C=3"):
        conv(np.zeros((1, 5, 8), np.float32))
    with pytest.raises(TypeError, match="dtype float32"):
        conv(np.zeros((1, 3, 8)))
    with pytest.raises(ValueError, match="padding must be an integer >= 0"):
        nn.Conv1d(3, 2, 4, padding=-1)
    with pytest.raises(ValueError, match="padding: must be >= 0"):
        _core.conv1d_forward(np.zeros((1, 8, 3)), np.zeros((2, 3, 4)), None, -2)


def _batch(rng, V, lengths):
    T = max(lengths)
    ids = np.zeros((T, len(lengths)), np.int64)
    for b, n in enumerate(lengths):
        ids[:n, b] = rng.integers(1, V, n)
    return ids, np.array(lengths)


def test_kim_cnn_gradients_by_finite_differences():
    rng = np.random.default_rng(3)
    model = KimCNN(12, 5, 3, widths=(2, 3), maps=4, dropout=0.0, dtype="float64", seed=2)
    ids, lengths = _batch(rng, 12, [6, 1, 3])
    labels = np.array([0, 2, 1])
    model.train()
    model.zero_grad()
    model.training_step(ClassifierBatch(ids, lengths, labels))
    grads = {n: p.grad.copy() for n, p in model.named_parameters()}

    def loss():
        model.eval()
        out = model.criterion(model.forward(ids, lengths), labels)
        model.train()
        return out

    eps = 1e-6
    for name, p in model.named_parameters():
        flat, g = p.data.reshape(-1), grads[name].reshape(-1)
        for i in rng.choice(flat.size, min(6, flat.size), replace=False):
            if name.startswith("embedding") and i // 5 == 0:
                continue  # the padding row: held at zero
            old = flat[i]
            flat[i] = old + eps
            up = loss()
            flat[i] = old - eps
            down = loss()
            flat[i] = old
            assert (up - down) / (2 * eps) == pytest.approx(g[i], abs=1e-7), f"{name}[{i}]"


def test_padding_never_wins_the_max():
    """A sentence gives the same logits alone and in a batch padded far past its end, even when
    every real window's activation is negative (a max over padding windows would give 0)."""
    rng = np.random.default_rng(4)
    model = KimCNN(20, 6, 2, widths=(3,), maps=5, dropout=0.0, dtype="float64", seed=1).eval()
    conv = model.convs[0]
    conv.bias.data[...] = -5.0  # every window that sees a word is negative before the ReLU
    short = rng.integers(1, 20, 2)
    ids, lengths = _batch(rng, 20, [9, 2])
    ids[:2, 1] = short
    alone = model.forward(short[:, None], np.array([2]))
    padded = model.forward(ids, lengths)
    np.testing.assert_allclose(padded[1], alone[0], atol=1e-12)
    # a sentence shorter than the filter still has windows (wide convolution)
    one = model.forward(np.array([[7]]), np.array([1]))
    assert np.isfinite(one).all()


def test_max_norm_after_each_step():
    model = KimCNN(10, 4, 2, widths=(2,), maps=3, max_norm=0.5, seed=0)
    model.classifier.weight.data[...] = 10.0
    model.after_step()
    norms = np.linalg.norm(model.classifier.weight.data, axis=1)
    np.testing.assert_allclose(norms, 0.5, rtol=1e-6)
    small = KimCNN(10, 4, 2, widths=(2,), maps=3, max_norm=0.5, seed=0)
    small.classifier.weight.data[...] = 0.01
    before = small.classifier.weight.data.copy()
    small.after_step()
    np.testing.assert_array_equal(small.classifier.weight.data, before)  # inside: untouched
    with pytest.raises(ValueError, match="max_norm must be > 0"):
        KimCNN(10, 4, 2, max_norm=0.0)
    with pytest.raises(ValueError, match="widths must be filter widths >= 1"):
        KimCNN(10, 4, 2, widths=())


def _sst_folder(tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    good, bad = ["great", "fine", "lovely", "fun"], ["dull", "awful", "boring", "bad"]
    for split, n in (("train", 120), ("dev", 30), ("test", 30)):
        lines = []
        for i in range(n):
            label = i % 2
            words = list(rng.choice(good if label else bad, 3)) + ["film"] * int(rng.integers(0, 4))
            rng.shuffle(words)
            lines.append(f"{label} {' '.join(words)}")
        (tmp_path / f"stsa.binary.{split}").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_sentiment_task_trains_the_cnn(tmp_path, capsys):
    from rnncore.cli import main
    from rnncore.train import load_checkpoint

    data = _sst_folder(tmp_path / "sst")
    out = tmp_path / "cnn"
    argv = ["train", "sentiment", "--data", str(data), "--out", str(out), "--no-progress"]
    argv += ["--model", "cnn", "--embed", "16", "--maps", "8", "--epochs", "8", "--lr", "0.01"]
    assert main(argv) == 0, capsys.readouterr().err
    import json

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.9  # the words decide the label: easy
    # the CNN's defaults where the user gave none, the user's value where given
    assert metrics["options"]["batch_size"] == 50 and metrics["options"]["dropout"] == 0.5
    assert metrics["options"]["lr"] == 0.01
    ckpt = load_checkpoint(out / "checkpoint")
    assert isinstance(ckpt.model, KimCNN) and ckpt.model.config()["widths"] == [3, 4, 5]
    assert list(ckpt.model.predict(["great lovely film", "boring awful film"])) == [1, 0]
    capsys.readouterr()
    bad = ["train", "sentiment", "--data", str(data), "--out", str(tmp_path / "x")]
    assert main([*bad, "--model", "cnn", "--layer-norm"]) == 2
    assert "--layer-norm apply to --model rnn, not cnn" in capsys.readouterr().err
    assert main([*bad, "--model", "cnn", "--widths", "3,x"]) == 2
    assert "--widths must be comma-separated integers >= 1" in capsys.readouterr().err
