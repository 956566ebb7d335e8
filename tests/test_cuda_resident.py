"""Models and layers whose parameters live on the GPU (Module.to of a model that runs wholly
there: the language model, classifier, tagger, forecaster, sequence regressor; a lone Linear or
Embedding): their training steps, optimizer state,
clipping, checkpoints and generation against the same model on the CPU. On "cuda-sim" everywhere,
on "cuda" where a GPU is visible (skipped otherwise)."""

from __future__ import annotations

import numpy as np
import pytest
from gpu_helpers import DEVICES
from rnncore import cuda, nn, optim
from rnncore.models import LanguageModel

TOL = dict(rtol=1e-10, atol=1e-12)  # float64: the CUDA issue's tolerance


def lm(seed=3, **kw):
    cfg = dict(vocab_size=17, embed_dim=6, hidden_size=6, num_layers=2, dropout=0.3)
    cfg.update(kw)
    return LanguageModel(**cfg, dtype="float64", seed=seed)


def params_of(model):
    return {n: np.asarray(p.data) for n, p in model.named_parameters()}


def windows(n=3, T=5, B=4, V=17, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))) for _ in range(n)]


def train(model, opt, batches, clip=0.5):
    losses, norms = [], []
    for batch in batches:
        for m in model.modules():
            m.zero_grad() if hasattr(m, "zero_grad") else None
        losses.append(model.training_step(batch)["loss"])
        norms.append(optim.clip_grad_norm(model.parameters(), clip))
        opt.step()
    return losses, norms


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "kw, make_opt",
    [
        ({}, lambda p: optim.Adam(p, lr=0.02)),
        ({"cell": "gru", "tie_weights": True}, lambda p: optim.SGD(p, lr=0.5, momentum=0.9)),
        ({"proj_size": 4, "embed_dim": 4}, lambda p: optim.RMSprop(p, lr=0.01, centered=True)),
        ({"cell": "rnn", "num_layers": 1}, lambda p: optim.Adagrad(p, lr=0.1)),
    ],
)
def test_a_language_model_trains_on_the_gpu_as_on_the_cpu(device, kw, make_opt):
    cpu, gpu = lm(**kw), lm(**kw).to(device)
    for m in (gpu.embedding, gpu.decoder, gpu.rnn):
        assert m.device == device
    assert all(isinstance(p.data, cuda.DeviceArray) for p in gpu.parameters())
    opt_c, opt_g = make_opt(cpu.parameters()), make_opt(gpu.parameters())
    batches = windows()
    lc, nc = train(cpu, opt_c, batches)
    lg, ng = train(gpu, opt_g, batches)
    np.testing.assert_allclose(lg, lc, **TOL)
    np.testing.assert_allclose(ng, nc, **TOL)
    want = params_of(cpu)
    for name, value in params_of(gpu).items():
        np.testing.assert_allclose(value, want[name], **TOL, err_msg=name)
    # validation (carried state, summed loss) and generation agree too
    v = windows(1, seed=9)[0]
    assert gpu.validation_step(v)["loss_sum"] == pytest.approx(
        cpu.validation_step(v)["loss_sum"], rel=1e-10
    )
    np.testing.assert_array_equal(gpu.sample([1, 2], 6, seed=4), cpu.sample([1, 2], 6, seed=4))


@pytest.mark.parametrize("device", DEVICES)
def test_optimizer_state_and_checkpoints_leave_the_gpu_as_numpy(device, tmp_path):
    from rnncore.train.checkpoint import load_checkpoint, save_checkpoint

    cpu, gpu = lm(), lm().to(device)
    opt_c, opt_g = optim.Adam(cpu.parameters(), lr=0.02), optim.Adam(gpu.parameters(), lr=0.02)
    batches = windows(4)
    train(cpu, opt_c, batches[:2])
    train(gpu, opt_g, batches[:2])
    sd_g, sd_c = opt_g.state_dict(), opt_c.state_dict()
    for idx, entry in sd_c["state"].items():
        for key, value in entry.items():
            got = sd_g["state"][idx][key]
            assert isinstance(got, (int, np.ndarray))
            np.testing.assert_allclose(got, value, **TOL)
    state = gpu.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    # fresh models and optimizers resume from the saved states: on the GPU as on the CPU
    resumed, cpu = lm(seed=99).to(device), lm(seed=99)
    resumed.load_state_dict(state)
    cpu.load_state_dict(state)
    opt_r, opt_c = optim.Adam(resumed.parameters(), lr=0.02), optim.Adam(cpu.parameters(), lr=0.02)
    opt_r.load_state_dict(sd_g)
    opt_c.load_state_dict(sd_c)
    train(cpu, opt_c, batches[2:])
    train(resumed, opt_r, batches[2:])
    want = params_of(cpu)
    for name, value in params_of(resumed).items():
        np.testing.assert_allclose(value, want[name], **TOL, err_msg=name)
    # checkpoints are device-free: saved from the GPU, loaded on the CPU
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "ck", resumed))
    for name, value in params_of(ckpt.model).items():
        np.testing.assert_allclose(value, want[name], **TOL)
    back = resumed.to("cpu")
    assert all(isinstance(p.data, np.ndarray) for p in back.parameters())
    for name, value in params_of(back).items():
        np.testing.assert_allclose(value, want[name], **TOL)


@pytest.mark.parametrize("device", DEVICES)
def test_skip_nonfinite_and_clipping_read_device_gradients(device):
    gpu = lm().to(device)
    opt = optim.SGD(gpu.parameters(), lr=0.1, skip_nonfinite=True)
    gpu.training_step(windows(1)[0])
    before = params_of(gpu)
    gpu.decoder.bias.grad[...] = np.full(17, np.nan)
    assert not optim.all_finite(gpu.parameters())
    assert opt.step() is False and opt.skipped_steps == 1
    for name, value in params_of(gpu).items():
        np.testing.assert_array_equal(value, before[name])
    opt.zero_grad()
    assert optim.grad_norm(gpu.parameters()) == 0.0
    gpu.decoder.bias.grad[...] = np.full(17, 10.0)
    optim.clip_grad_value(gpu.parameters(), 2.0)
    np.testing.assert_array_equal(np.asarray(gpu.decoder.bias.grad), np.full(17, 2.0))


@pytest.mark.parametrize("device", DEVICES)
def test_linear_and_embedding_alone_on_the_gpu(device):
    x = np.random.default_rng(1).standard_normal((3, 4, 5))
    ids = np.array([[1, 0, 6], [6, 6, 2]])
    for make in (
        lambda d: nn.Linear(5, 7, dtype="float64", seed=2, device=d),
        lambda d: nn.Embedding(8, 5, padding_idx=6, dtype="float64", seed=2, device=d),
    ):
        c, g = make("cpu"), make(device)
        assert g.device == device and isinstance(g.weight.data, cuda.DeviceArray)
        inp = x if isinstance(c, nn.Linear) else ids
        yc = c(inp)
        yd = g(cuda.to_device(inp, device, "int64") if inp is ids else cuda.to_device(inp, device))
        assert isinstance(yd, cuda.DeviceArray)
        np.testing.assert_allclose(yd.numpy(), yc, **TOL)
        dy = np.random.default_rng(3).standard_normal(yc.shape)
        dc = c.backward(dy)
        dd = g.backward(cuda.to_device(dy, device))
        if dc is not None:
            np.testing.assert_allclose(dd.numpy(), dc, **TOL)
        for pc, pg in zip(c.parameters(), g.parameters(), strict=True):
            np.testing.assert_allclose(np.asarray(pg.grad), pc.grad, **TOL)
    lin = nn.Linear(5, 7, dtype="float64", seed=2, device=device)
    host = lin(x)  # host arrays in, host arrays out (copied)
    assert isinstance(host, np.ndarray)
    assert isinstance(lin.backward(np.ones((3, 4, 7))), np.ndarray)
    with pytest.raises(TypeError, match="Linear.forward: x must have dtype float64"):
        lin(x.astype(np.float32))
    with pytest.raises(ValueError, match=r"x must have shape \[\.\.\., I=5\]"):
        lin(cuda.to_device(np.ones((2, 4)), device))
    emb = nn.Embedding(8, 5, device=device)
    with pytest.raises(ValueError, match=r"input ids: id 8 at index \(1, 0\) is out of range"):
        emb(np.array([[0, 1], [8, 2]]))


@pytest.mark.parametrize("device", DEVICES)
def test_what_moves_with_a_model(device):
    from rnncore.models import KimCNN, SequenceClassifier, SequenceTagger

    clf = SequenceClassifier(11, 4, 5, 3, pooling="max").to(device)
    assert clf.rnn.device == clf.embedding.device == clf.classifier.device == device
    assert all(isinstance(p.data, cuda.DeviceArray) for p in clf.parameters())
    # a model with layers that have no GPU version (Conv1d) stays on the CPU: moving it does
    # nothing
    kim = KimCNN(vocab_size=11, embed_dim=4, num_classes=3).to(device)
    assert kim.embedding.device == "cpu"
    # a tagger's CRF stays on the host beside the rest on the GPU
    tagger = SequenceTagger(11, 4, 5, 3, crf=True).to(device)
    assert tagger.rnn.device == tagger.embedding.device == tagger.classifier.device == device
    assert isinstance(tagger.crf.transitions.data, np.ndarray)
    chars = SequenceTagger(11, 4, 5, 3, char_vocab_size=9, char_embed_dim=3, char_hidden_size=2)
    chars.to(device)
    assert chars.char_embedding.device == chars.char_rnn.device == device


@pytest.mark.parametrize("device", DEVICES)
def test_step_grad_norms_of_a_model_on_the_gpu(device):
    """The vanishing-gradient diagnostic (||dL/dh_t|| per layer and step) of a model wholly on
    the GPU is the CPU's."""
    cpu, gpu = lm(), lm().to(device)
    for model in (cpu, gpu):
        model.rnn.record_step_grad_norms = True
        model.training_step(windows(1)[0])
    assert gpu.rnn.step_grad_norms.shape == (2, 5)
    np.testing.assert_allclose(gpu.rnn.step_grad_norms, cpu.rnn.step_grad_norms, **TOL)


def test_charlm_trains_on_the_gpu_as_on_the_cpu(tmp_path, capsys):
    """`rnncore train charlm --device cuda-sim`: the whole language model on the device, the
    same metrics as on the CPU (float32), and a checkpoint the CPU samples from."""
    import json

    from rnncore.cli import main

    text = tmp_path / "input.txt"
    text.write_text("the cat sat on the mat. a dog ran.\n" * 30, encoding="utf-8")
    opts = (
        "--no-progress --epochs 2 --hidden 12 --embed 12 --layers 2 --batch-size 4 --bptt 12 "
        "--eval-batch-size 2 --lr 0.01 --dropout 0.2 --clip 0.5 --threads 1"
    ).split()
    runs = {}
    for dev in ("cpu", "cuda-sim"):
        out = tmp_path / dev
        args = ["train", "charlm", "--data", str(text), "--out", str(out), "--device", dev]
        assert main(args + opts) == 0, capsys.readouterr().err
        runs[dev] = json.loads((out / "metrics.json").read_text())
    for split in ("valid", "test"):
        assert runs["cuda-sim"][split]["loss"] == pytest.approx(
            runs["cpu"][split]["loss"], rel=1e-5
        )
    assert main(["sample", "--length", "10", str(tmp_path / "cuda-sim")]) == 0


def test_charlm_resumes_on_the_gpu_bit_identical(tmp_path, capsys):
    """A GPU run stopped after epoch 1 and resumed (model and optimizer state back onto the
    device) ends with the bytes of the run that never stopped."""
    from rnncore.cli import main
    from rnncore.serialization import load_safetensors

    text = tmp_path / "input.txt"
    text.write_text("the cat sat on the mat. a dog ran.\n" * 30, encoding="utf-8")
    opts = (
        "--no-progress --hidden 12 --embed 8 --layers 2 --batch-size 4 --bptt 12 --dropout 0.2 "
        "--eval-batch-size 2 --device cuda-sim --optimizer adam"
    ).split()
    whole, split = tmp_path / "whole", tmp_path / "split"
    base = ["train", "charlm", "--data", str(text)]
    assert main([*base, "--out", str(whole), "--epochs", "2", *opts]) == 0
    assert main([*base, "--out", str(split), "--epochs", "1", *opts]) == 0
    assert main([*base, "--out", str(split), "--epochs", "2", "--resume", *opts]) == 0
    a, _ = load_safetensors(whole / "checkpoint" / "last" / "model.safetensors")
    b, _ = load_safetensors(split / "checkpoint" / "last" / "model.safetensors")
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].tobytes() == b[name].tobytes(), name


@pytest.mark.parametrize("device", DEVICES)
def test_onnx_export_of_a_gpu_model_is_the_cpu_models(device):
    pytest.importorskip("onnx")
    from rnncore.onnx import to_onnx

    cpu, gpu = lm(tie_weights=True), lm(tie_weights=True).to(device)
    (a,) = to_onnx(cpu)
    (b,) = to_onnx(gpu)
    assert a.SerializeToString() == b.SerializeToString()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "cell, layers, pooling",
    [("lstm", 2, "last"), ("gru", 1, "last"), ("lstm", 1, "mean"), ("gru", 2, "max")],
)
def test_a_classifier_trains_on_the_gpu_as_on_the_cpu(device, cell, layers, pooling):
    """SequenceClassifier runs wholly on the GPU (the final states transposed there, or the
    outputs pooled over each sequence's steps); padded batches with lengths, bidirectional,
    dropout."""
    from rnncore.models import SequenceClassifier
    from rnncore.models.classifier import ClassifierBatch

    def make():
        return SequenceClassifier(
            vocab_size=19,
            embed_dim=6,
            hidden_size=5,
            num_classes=4,
            num_layers=layers,
            cell=cell,
            pooling=pooling,
            dropout=0.25,
            dtype="float64",
            seed=2,
        )

    cpu, gpu = make(), make().to(device)
    assert gpu.embedding.device == gpu.classifier.device == device
    opt_c, opt_g = optim.AdamW(cpu.parameters(), lr=0.05), optim.AdamW(gpu.parameters(), lr=0.05)
    rng = np.random.default_rng(1)
    for _ in range(3):
        lengths = rng.integers(1, 7, 5)
        ids = rng.integers(1, 19, (6, 5))
        ids[np.arange(6)[:, None] >= lengths[None, :]] = 0
        batch = ClassifierBatch(ids, lengths, rng.integers(0, 4, 5))
        outs = []
        for model, opt in ((cpu, opt_c), (gpu, opt_g)):
            opt.zero_grad()
            outs.append(model.training_step(batch))
            optim.clip_grad_norm(model.parameters(), 1.0)
            opt.step()
        assert outs[1]["loss"] == pytest.approx(outs[0]["loss"], rel=1e-10)
        assert outs[1]["correct"] == outs[0]["correct"]
    want = params_of(cpu)
    for name, value in params_of(gpu).items():
        np.testing.assert_allclose(value, want[name], **TOL, err_msg=name)
    seqs = [[3, 4, 5], [7], [1, 2, 3, 4, 5, 6]]
    np.testing.assert_allclose(gpu.predict_proba(seqs), cpu.predict_proba(seqs), **TOL)
    v = cpu.validation_step(batch)
    w = gpu.validation_step(batch)
    assert w["loss_sum"] == pytest.approx(v["loss_sum"], rel=1e-10) and w["correct"] == v["correct"]


def same_training(cpu, gpu, batches, make_opt=lambda p: optim.Adam(p, lr=0.02), clip=0.5):
    """Trains both models on ``batches`` (training_step, clipping, a step): equal losses and
    parameters to float64's tolerance."""
    opts = make_opt(cpu.parameters()), make_opt(gpu.parameters())
    for batch in batches:
        outs = []
        for model, opt in zip((cpu, gpu), opts, strict=True):
            opt.zero_grad()
            outs.append(model.training_step(batch))
            optim.clip_grad_norm(model.parameters(), clip)
            opt.step()
        assert outs[1]["loss"] == pytest.approx(outs[0]["loss"], rel=1e-10)
        assert outs[1].get("correct") == outs[0].get("correct")
    want = params_of(cpu)
    for name, value in params_of(gpu).items():
        np.testing.assert_allclose(value, want[name], **TOL, err_msg=name)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode, cell", [("many_to_one", "lstm"), ("many_to_many", "gru")])
def test_a_forecaster_trains_on_the_gpu_as_on_the_cpu(device, mode, cell):
    """The forecaster wholly on the GPU: windows copied over, MSE and its gradient there."""
    from rnncore.models import Forecaster

    def make():
        return Forecaster(
            2, 5, horizon=3, num_layers=2, cell=cell, mode=mode, dtype="float64", seed=1
        )

    cpu, gpu = make(), make().to(device)
    assert gpu.head.device == gpu.rnn.device == device
    rng = np.random.default_rng(0)
    shape = (4, 3) if mode == "many_to_one" else (6, 4, 3)
    batches = [(rng.standard_normal((6, 4, 2)), rng.standard_normal(shape)) for _ in range(3)]
    same_training(cpu, gpu, batches)
    x = batches[0][0]
    out = gpu.predict(x)
    assert isinstance(out, np.ndarray)  # predictions come back to the host
    np.testing.assert_allclose(out, cpu.predict(x), **TOL)
    v, w = cpu.validation_step(batches[1]), gpu.validation_step(batches[1])
    assert w["loss_sum"] == pytest.approx(v["loss_sum"], rel=1e-10)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "kw",
    [
        dict(readout="last", loss="mse", output_size=1),
        dict(readout="all", loss="cross_entropy", output_size=4, vocab_size=9),
        dict(readout="last", loss="cross_entropy", output_size=3, cell="rnn_relu"),
    ],
)
def test_a_sequence_regressor_trains_on_the_gpu_as_on_the_cpu(device, kw):
    from rnncore.models import SequenceRegressor

    def make():
        return SequenceRegressor(3, 6, dtype="float64", seed=2, **kw)

    cpu, gpu = make(), make().to(device)
    assert gpu.head.device == device
    rng = np.random.default_rng(1)
    lengths = np.array([6, 3, 2, 1])
    batches = []
    for _ in range(3):
        x = rng.integers(0, 9, (6, 4)) if "vocab_size" in kw else rng.standard_normal((6, 4, 3))
        if kw["loss"] == "mse":
            y = rng.standard_normal((4, 1))
        elif kw["readout"] == "all":
            y = rng.integers(0, kw["output_size"], (6, 4))
        else:
            y = rng.integers(0, kw["output_size"], 4)
        batches.append((x, y, lengths))
    same_training(cpu, gpu, batches, lambda p: optim.RMSprop(p, lr=0.01))
    x = batches[0][0]
    np.testing.assert_allclose(gpu.predict(x, lengths), cpu.predict(x, lengths), **TOL)
    v, w = cpu.validation_step(batches[2]), gpu.validation_step(batches[2])
    assert w == pytest.approx(v, rel=1e-10)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("crf, chars", [(False, False), (True, False), (False, True), (True, True)])
def test_a_tagger_trains_on_the_gpu_as_on_the_cpu(device, crf, chars):
    """A tagger wholly on the GPU (a CRF on the host beside it; the words' character features
    placed and their gradients gathered on the device): training, validation with entity
    counts, decoding and probabilities as on the CPU."""
    from rnncore.models import SequenceTagger
    from rnncore.models.tagger import TaggerBatch

    names = ["O", "B-X", "I-X", "B-Y", "I-Y"]

    def make():
        extra = dict(char_vocab_size=12, char_embed_dim=4, char_hidden_size=3) if chars else {}
        return SequenceTagger(
            15,
            6,
            5,
            5,
            num_layers=2,
            dropout=0.2,
            crf=crf,
            tag_names=names,
            dtype="float64",
            seed=3,
            **extra,
        )

    cpu, gpu = make(), make().to(device)
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(3):
        lengths = rng.integers(1, 7, 5)
        ids = rng.integers(1, 15, (6, 5))
        tags = rng.choice([0, 1, 3], (6, 5))  # B- tags and O only: a path every CRF allows
        past = np.arange(6)[:, None] >= lengths[None, :]
        ids[past], tags[past] = 0, -100
        words = int(lengths.sum())
        char_lengths = rng.integers(1, 5, words) if chars else None
        char_ids = rng.integers(1, 12, (4, words)) if chars else None
        if chars:
            char_ids[np.arange(4)[:, None] >= char_lengths[None, :]] = 0
        batches.append(TaggerBatch(ids, lengths, tags, char_ids, char_lengths))
    same_training(cpu, gpu, batches, lambda p: optim.SGD(p, lr=0.3, momentum=0.9))
    b = batches[-1]
    assert gpu.validation_step(b) == pytest.approx(cpu.validation_step(b), rel=1e-10)
    args = (b.ids, b.lengths, b.chars, b.char_lengths)
    np.testing.assert_array_equal(gpu.predict(*args), cpu.predict(*args))
    np.testing.assert_allclose(gpu.predict_proba(*args), cpu.predict_proba(*args), **TOL)


def test_sentiment_trains_on_the_gpu_as_on_the_cpu(tmp_path, capsys):
    """`rnncore train sentiment --device cuda-sim` (a last-pooling classifier: wholly on the
    device) gives the CPU's metrics, and its checkpoint predicts on the CPU."""
    import json

    from rnncore import data
    from rnncore.cli import main

    d = tmp_path / "sst"
    d.mkdir()
    for i, split in enumerate(("train", "dev", "test")):
        ex = data.synthetic_sentiment(80 if split == "train" else 30, seed=i)
        lines = [f"{y} {' '.join(t)}" for t, y in ex]
        (d / f"stsa.binary.{split}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    opts = "--no-progress --epochs 2 --hidden 8 --embed 8 --lr 0.01 --dropout 0.2 --threads 1"
    runs = {}
    for dev in ("cpu", "cuda-sim"):
        out = tmp_path / dev
        args = ["train", "sentiment", "--data", str(d), "--out", str(out), "--device", dev]
        assert main(args + opts.split()) == 0, capsys.readouterr().err
        runs[dev] = json.loads((out / "metrics.json").read_text())
    for split in ("valid", "test"):
        assert runs["cuda-sim"][split]["loss"] == pytest.approx(
            runs["cpu"][split]["loss"], rel=1e-5
        )
        assert runs["cuda-sim"][split]["accuracy"] == runs["cpu"][split]["accuracy"]
    assert main(["predict", str(tmp_path / "cuda-sim"), "a wonderful film"]) == 0


@pytest.mark.parametrize("device", DEVICES)
def test_moving_carries_the_truncated_bptt_state_and_drops_saved_forwards(device):
    gpu, cpu = lm().to(device), lm()
    a, b = windows(2)
    for m in (gpu, cpu):
        m.training_step(a)
        m.validation_step(b)
    gpu.to("cpu")  # the carried states come back as numpy arrays
    assert gpu.validation_step(a)["loss_sum"] == pytest.approx(
        cpu.validation_step(a)["loss_sum"], rel=1e-10
    )
    gpu.training_step(b)
    gpu.to(device)
    logits, _ = gpu(np.zeros((3, 2), int))
    gpu.criterion(logits, np.zeros((3, 2), int))
    gpu.to("cpu")  # no forward of the old device is kept, in any module
    assert not any(m._saved for m in gpu.modules())
    with pytest.raises(RuntimeError):
        gpu.criterion.backward()


@pytest.mark.parametrize("device", DEVICES)
def test_a_refused_move_moves_nothing(device):
    m32 = LanguageModel(17, 6, 6, num_layers=2, seed=1)
    m32.int8_inference_(True)
    with pytest.raises(ValueError, match="int8 inference runs on the CPU engine"):
        m32.to(device)
    assert {x.device for x in (m32.embedding, m32.rnn, m32.decoder)} == {"cpu"}
    m32.eval()
    m32(np.zeros((3, 2), int))  # still a working CPU model


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("order", ["built before to()", "moved back and forth"])
def test_an_optimizer_follows_its_parameters_across_moves(device, order):
    """As in PyTorch, an optimizer keeps working after model.to(): its runs follow the
    parameters to their new arrays with the state (moments, step counts) copied along."""
    cpu, gpu = lm(), lm()
    opt_c, opt_g = optim.Adam(cpu.parameters(), lr=0.05), optim.Adam(gpu.parameters(), lr=0.05)
    batches = windows(4)
    if order == "built before to()":
        gpu.to(device)
        train(cpu, opt_c, batches)
        train(gpu, opt_g, batches)
    else:
        train(cpu, opt_c, batches[:2])
        train(gpu, opt_g, batches[:2])
        gpu.to(device)
        train(cpu, opt_c, batches[2:3])
        train(gpu, opt_g, batches[2:3])
        gpu.to("cpu")
        train(cpu, opt_c, batches[3:])
        train(gpu, opt_g, batches[3:])
    want = params_of(cpu)
    for name, value in params_of(gpu).items():
        np.testing.assert_allclose(value, want[name], **TOL, err_msg=name)


@pytest.mark.parametrize("device", DEVICES)
def test_checkpoint_ties_and_small_device_details(device, tmp_path):
    from rnncore.train.checkpoint import save_checkpoint, tied_parameters

    gpu = lm(tie_weights=True).to(device)
    assert tied_parameters(gpu) == tied_parameters(lm(tie_weights=True))
    calls = []
    numpy = cuda.DeviceArray.numpy
    cuda.DeviceArray.numpy = lambda self: (calls.append(1), numpy(self))[1]
    try:
        save_checkpoint(tmp_path / "ck", gpu)
    finally:
        cuda.DeviceArray.numpy = numpy
    assert len(calls) <= len(list(gpu.parameters()))  # each parameter read back once
    assert cuda.to_device(np.array(2.5), device).shape == ()  # 0-d stays 0-d
    z = cuda.DeviceArray.zeros((2,), np.float64, device)
    z[...] = -0.0
    assert np.signbit(z.numpy()).all()
    emb = nn.Embedding(8, 3, device=device)
    with pytest.raises(ValueError, match=r"Embedding.forward: input ids: id 9 at index \(1, 0\)"):
        emb(cuda.to_device(np.array([[1, 2], [9, 3]]), device, "int64"))
    assert f"device='{device}'" in repr(gpu.decoder) and f"device='{device}'" in repr(emb)


@pytest.mark.parametrize("device", DEVICES)
def test_an_optimizer_that_cannot_follow_a_move_keeps_its_state(device):
    lin = nn.Linear(3, 2, dtype="float64", seed=0)
    opt = optim.Adam(lin.parameters(), lr=0.01)
    lin.weight.grad[...] = 1.0
    opt.step()
    opt.step()
    lin.to(device)
    opt.param_groups[0]["lr"] = -1.0
    with pytest.raises(ValueError, match=r"Adam.step: param_groups\[0\]: lr must be"):
        opt.step()
    opt.param_groups[0]["lr"] = 0.01
    assert {k: v["step"] for k, v in opt.state_dict()["state"].items()} == {0: 2, 1: 2}
    # a parameter listed again after the move is still refused
    with pytest.raises(ValueError, match="share memory"):
        opt.add_param_group({"params": [lin.weight]})
    # an infinite second moment (a float32 overflow) moves with the rest
    lin32 = nn.Linear(3, 2, seed=0)
    opt32 = optim.Adam(lin32.parameters(), lr=0.01)
    lin32.weight.grad[...] = 1e30
    opt32.step()
    lin32.to(device)
    opt32.zero_grad()
    assert np.isinf(opt32.state_dict()["state"][0]["exp_avg_sq"]).all()


@pytest.mark.parametrize("device", DEVICES)
def test_a_failed_move_back_leaves_the_gpu_model_as_it_was(device):
    m = lm().to(device)
    m.decoder._move_to = lambda d: (_ for _ in ()).throw(MemoryError("half-way"))
    with pytest.raises(MemoryError):
        m.to("cpu")
    del m.decoder._move_to
    assert {x.device for x in (m.embedding, m.rnn, m.decoder)} == {device}
    assert all(isinstance(p.data, cuda.DeviceArray) for p in m.parameters())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "kw",
    [dict(cell="lstm", num_layers=2, feed_features=True), dict(cell="gru", dropout=0.3)],
)
def test_a_captioner_trains_and_decodes_on_the_gpu_as_on_the_cpu(device, kw):
    """The captioner wholly on the GPU: the initial states from the features (tanh there),
    features fed to every step, teacher-forced training; greedy and beam decoding (states
    selected on the device) give the CPU's captions."""
    from rnncore.models import Captioner

    def make():
        return Captioner(5, 11, embed_dim=4, hidden_size=6, dtype="float64", seed=4, **kw)

    cpu, gpu = make(), make().to(device)
    assert gpu.init_h.device == gpu.output.device == gpu.rnn.device == device
    rng = np.random.default_rng(2)
    batches = []
    for _ in range(3):
        caps = [list(rng.integers(4, 11, rng.integers(1, 5))) for _ in range(4)]
        batches.append(cpu.make_batch(rng.standard_normal((4, 5)), caps))
    same_training(cpu, gpu, batches, lambda p: optim.Adam(p, lr=0.05))
    b = batches[-1]
    assert gpu.validation_step(b) == pytest.approx(cpu.validation_step(b), rel=1e-10)
    feats = rng.standard_normal((3, 5))
    assert gpu.caption(feats, max_len=6) == cpu.caption(feats, max_len=6)
    assert gpu.caption(feats, beam_width=3, max_len=6) == cpu.caption(
        feats, beam_width=3, max_len=6
    )
    ids_g, score_g = gpu.beam_search(feats[0], beam_width=2, max_len=5)
    ids_c, score_c = cpu.beam_search(feats[0], beam_width=2, max_len=5)
    assert ids_g == ids_c and score_g == pytest.approx(score_c, rel=1e-10)


SEQ2SEQ_CONFIGS = [
    dict(cell="lstm", bidirectional=True, attention="general", context=True, num_layers=2),
    dict(cell="gru", bidirectional=True, bridge="sum", attention="dot", reverse_source=True),
    dict(cell="rnn", attention="dot", context=True, dropout=0.2),
    dict(cell="lstm", bidirectional=True, bridge="sum", context=True),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kw", SEQ2SEQ_CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
def test_a_translator_trains_and_decodes_on_the_gpu_as_on_the_cpu(device, kw):
    """Seq2Seq wholly on the GPU: encoder, bridge (linear or sum), context fed to every step,
    Luong attention (batched products and the masked softmax over padded sources on the
    device); training, attention weights, greedy and beam decoding equal to the CPU's."""
    from rnncore.models import Seq2Seq

    def make():
        return Seq2Seq(13, 11, embed_dim=5, hidden_size=6, dtype="float64", seed=5, **kw)

    cpu, gpu = make(), make().to(device)
    assert gpu.encoder.device == gpu.output.device == gpu.tgt_embedding.device == device
    rng = np.random.default_rng(3)

    def sentences(n, vocab):
        return [list(rng.integers(4, vocab, rng.integers(1, 6))) for _ in range(n)]

    batches = [cpu.make_batch(sentences(4, 13), sentences(4, 11)) for _ in range(3)]
    same_training(cpu, gpu, batches, lambda p: optim.Adam(p, lr=0.05))
    b = batches[-1]
    assert gpu.validation_step(b) == pytest.approx(cpu.validation_step(b), rel=1e-10)
    if kw.get("attention"):
        np.testing.assert_allclose(
            gpu.attention_weights(*b[:3]), cpu.attention_weights(*b[:3]), **TOL
        )
    sources = sentences(3, 13)
    assert gpu.translate(sources, max_len=6) == cpu.translate(sources, max_len=6)
    ids_g, score_g = gpu.beam_search(sources[0], beam_width=3, max_len=6)
    ids_c, score_c = cpu.beam_search(sources[0], beam_width=3, max_len=6)
    assert ids_g == ids_c and score_g == pytest.approx(score_c, rel=1e-10)


def _same_metrics_on_both_devices(tmp_path, capsys, argv, keys, section="test"):
    """Runs ``rnncore train`` with argv on "cpu" and "cuda-sim": the same metrics.json
    ``section`` (float32 rounding apart)."""
    import json

    from rnncore.cli import main

    runs = {}
    for dev in ("cpu", "cuda-sim"):
        out = tmp_path / dev
        assert main([*argv, "--out", str(out), "--device", dev]) == 0, capsys.readouterr().err
        runs[dev] = json.loads((out / "metrics.json").read_text())[section]
    for key in keys:
        assert runs["cuda-sim"][key] == pytest.approx(runs["cpu"][key], rel=1e-4, abs=1e-6), key
    return runs


def test_forecast_and_tagger_tasks_train_on_the_gpu_as_on_the_cpu(tmp_path, capsys):
    """`rnncore train forecast|tagger --device cuda-sim`: the models wholly on the device (the
    tagger's CRF on the host), the CPU's test metrics; the tagger with and without character
    features."""
    from rnncore import data

    v = 100 + 10 * np.sin(np.arange(60) * 2 * np.pi / 12) + np.arange(60) * 0.3
    csv = tmp_path / "series.csv"
    csv.write_text("y\n" + "\n".join(f"{x:.3f}" for x in v) + "\n", encoding="utf-8")
    _same_metrics_on_both_devices(
        tmp_path / "f",
        capsys,
        [
            "train",
            "forecast",
            "--data",
            str(csv),
            "--no-progress",
            "--epochs",
            "2",
            "--hidden",
            "6",
            "--season",
            "12",
            "--threads",
            "1",
        ],
        ["mae", "rmse"],
        section="forecast",
    )
    conll = tmp_path / "conll"
    conll.mkdir()
    for i, split in enumerate(("train", "valid", "test")):
        lines = ["-DOCSTART- -X- -X- O", ""]
        for toks, tags in data.synthetic_tagging(40 if split == "train" else 12, seed=i):
            lines += [f"{w} NN I-NP {t}" for w, t in zip(toks, tags, strict=True)] + [""]
        (conll / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _same_metrics_on_both_devices(
        tmp_path / "t",
        capsys,
        [
            "train",
            "tagger",
            "--data",
            str(conll),
            "--no-progress",
            "--epochs",
            "2",
            "--hidden",
            "6",
            "--embed",
            "6",
            "--no-char-features",
            "--crf",
            "--batch-size",
            "8",
            "--threads",
            "1",
        ],
        ["loss", "accuracy", "f1"],
    )
    chars = "--char-embed 4 --char-hidden 4 --batch-size 8 --threads 1 --no-progress --epochs 2"
    _same_metrics_on_both_devices(
        tmp_path / "c",
        capsys,
        ["train", "tagger", "--data", str(conll), "--hidden", "6", "--embed", "6", *chars.split()],
        ["loss", "accuracy", "f1"],
    )


def test_seq2seq_task_trains_on_the_gpu_as_on_the_cpu(tmp_path, capsys):
    """`rnncore train seq2seq --device cuda-sim` (attention, the whole translator on the
    device): the CPU's test loss and BLEU."""
    pairs = [
        ("i am cold .", "j ai froid ."),
        ("you are tall .", "tu es grand ."),
        ("i am here .", "je suis ici ."),
        ("you are here .", "tu es ici ."),
    ]
    data = tmp_path / "pairs.tsv"
    data.write_text("\n".join(f"{s}\t{t}" for s, t in pairs * 8) + "\n", encoding="utf-8")
    opts = (
        "--no-progress --epochs 2 --hidden 8 --embed 8 --layers 1 --threads 1 --attention general"
    )
    runs = _same_metrics_on_both_devices(
        tmp_path, capsys, ["train", "seq2seq", "--data", str(data), *opts.split()], ["loss"]
    )
    assert set(runs["cpu"]) == set(runs["cuda-sim"])
    for key, value in runs["cpu"].items():
        if isinstance(value, float):
            assert runs["cuda-sim"][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
