"""Checkpoints: directory layout per the contract, round trips (weights, optimizer, scheduler,
vocab, random state), weight tying, atomic writes that survive a crash, clear errors for
damaged files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import rnncore
from rnncore import nn, optim
from rnncore.optim import lr_scheduler
from rnncore.serialization import load_safetensors
from rnncore.train import CheckpointError, load_checkpoint, save_checkpoint
from rnncore.train import checkpoint as ckpt_mod
from train_helpers import TinyLM, anbn_stream, lm_batches


def _trained(model, steps=3, lr=0.01):
    opt = optim.Adam(model.parameters(), lr=lr)
    sched = lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for x, y in list(lm_batches(anbn_stream(40), 4, 6))[:steps]:
        opt.zero_grad()
        model.training_step((x, y))
        opt.step()
        sched.step()
    return opt, sched


def _params(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def test_layout_and_round_trip_of_everything(tmp_path):
    model = TinyLM(vocab_size=3, num_layers=2, dropout=0.2, seed=3)
    opt, sched = _trained(model)
    vocab = rnncore.data.Vocab(["a", "b", "<eos>"], eos="<eos>")
    path = save_checkpoint(
        tmp_path / "ck", model, optimizer=opt, scheduler=sched, vocab=vocab,
        extra={"task": "lm", "sizes": np.array([1, 2]), "inf": float("inf")},
        epoch=4, step=12, metrics={"val_loss": np.float32(1.5), "ppl": 4.48},
    )  # fmt: skip
    assert sorted(os.listdir(path)) == [
        "checkpoint.json",
        "model.safetensors",
        "optimizer.safetensors",
    ]
    meta = json.loads((path / "checkpoint.json").read_text())
    assert meta["format"] == "rnncore.checkpoint" and meta["version"] == 1
    assert meta["model_type"] == "test_tiny_lm" and meta["dtype"] == "float32"
    assert meta["model_config"] == model.config()
    assert meta["epoch"] == 4 and meta["step"] == 12 and meta["vocab"] == vocab.to_dict()
    for key in ("rng", "optimizer", "scheduler", "metrics", "extra"):
        assert meta[key] is not None
    # The weights file is standard safetensors with the contract's dotted names.
    st = pytest.importorskip("safetensors.numpy")
    stored = st.load_file(str(path / "model.safetensors"))
    assert {"embedding.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l1", "decoder.weight"} <= set(
        stored
    )
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(stored[k], v)

    ck = load_checkpoint(path)  # rebuilt through rnncore.models.build
    assert type(ck.model) is TinyLM and ck.model is not model
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(ck.model.state_dict()[k], v)
    assert ck.vocab == vocab and ck.epoch == 4 and ck.step == 12
    assert ck.extra["task"] == "lm" and ck.extra["inf"] == float("inf")
    np.testing.assert_array_equal(ck.extra["sizes"], [1, 2])
    assert ck.metrics == {"val_loss": 1.5, "ppl": 4.48}

    # Optimizer and scheduler continue exactly: one more step on both copies agrees bitwise.
    assert not ck.model.training  # a loaded model is ready to predict; train() to go on
    ck.model.train()
    opt2 = optim.Adam(ck.model.parameters(), lr=0.5)
    sched2 = lr_scheduler.StepLR(opt2, step_size=7, gamma=0.9)
    ck.restore_optimizer(opt2)
    ck.restore_scheduler(sched2)
    assert sched2.get_last_lr() == sched.get_last_lr() and sched2.last_epoch == sched.last_epoch
    batch = next(iter(lm_batches(anbn_stream(40, seed=5), 4, 6)))
    for m, o, s in ((model, opt, sched), (ck.model, opt2, sched2)):
        m.carrier.reset()
        o.zero_grad()
        m.training_step(batch)
        o.step()
        s.step()
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(ck.model.state_dict()[k], v, err_msg=k)


def test_random_state_round_trip_gives_the_same_dropout_masks(tmp_path):
    model = TinyLM(vocab_size=3, num_layers=2, dropout=0.5, seed=1)
    _trained(model, steps=2)
    save_checkpoint(tmp_path / "ck", model)
    x = np.array([[0, 1, 2, 0]] * 5)
    expected, _ = model(x)  # training mode: both dropouts active, generators advance
    other = TinyLM(vocab_size=3, num_layers=2, dropout=0.5, seed=99)  # different seeds
    ck = load_checkpoint(tmp_path / "ck", model=other)
    got, _ = ck.model(x)
    np.testing.assert_array_equal(got, expected)
    assert (
        other.rnn._calls == model.rnn._calls and other.rnn._dropout_seed == model.rnn._dropout_seed
    )


def test_loading_a_checkpoint_leaves_numpy_global_random_state_alone(tmp_path):
    """A Trainer's checkpoint records np.random's global state for its own resume; loading the
    model elsewhere must not rewind the program's global generator (only the model's state)."""
    from rnncore.train.rng import get_rng_state

    model = TinyLM(vocab_size=3, num_layers=2, dropout=0.5, seed=1)
    np.random.seed(7)
    rng = get_rng_state({"model": model}, include_global=True)
    save_checkpoint(tmp_path / "ck", model, rng=rng)
    np.random.seed(42)
    expect = np.random.rand(3)
    np.random.seed(42)
    ck = load_checkpoint(tmp_path / "ck", model=TinyLM(vocab_size=3, num_layers=2, seed=5))
    np.testing.assert_array_equal(np.random.rand(3), expect)
    assert ck.model.rnn._dropout_seed == model.rnn._dropout_seed  # the model's state did load
    assert "numpy.random" in ck.restore_rng({}, restore_global=True)  # on request


def test_tied_weights_are_stored_once_and_stay_tied(tmp_path):
    model = TinyLM(vocab_size=5, embed_dim=8, hidden_size=8, tie_weights=True, seed=2)
    assert model.decoder.weight is model.embedding.weight
    _trained(model, steps=2)
    path = save_checkpoint(tmp_path / "ck", model)
    stored, _ = load_safetensors(path / "model.safetensors")
    assert "decoder.weight" not in stored and "decoder.bias" in stored
    assert json.loads((path / "checkpoint.json").read_text())["tied"] == {
        "decoder.weight": "embedding.weight"
    }
    ck = load_checkpoint(path)
    m = ck.model
    np.testing.assert_array_equal(m.embedding.weight.data, model.embedding.weight.data)
    assert np.shares_memory(m.decoder.weight.data, m.embedding.weight.data)
    x = np.array([[0, 1], [2, 3], [4, 0]])
    np.testing.assert_array_equal(m(x)[0], model(x)[0])


def test_declared_ties_are_honoured(tmp_path):
    """A model that ties by copying declares it; the alias is left out and filled on load."""

    class Copying(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3, seed=0)
            self.b = nn.Linear(3, 3, seed=1)
            self.b.weight.data[...] = self.a.weight.data
            self.tied_parameters = {"b.weight": "a.weight"}

    m = Copying()
    path = save_checkpoint(tmp_path / "ck", m)
    assert "b.weight" not in load_safetensors(path / "model.safetensors")[0]
    m2 = Copying()
    m2.a.weight.data[...] = 0
    m2.b.weight.data[...] = 0
    load_checkpoint(path, model=m2)
    np.testing.assert_array_equal(m2.b.weight.data, m.a.weight.data)


def test_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = TinyLM(vocab_size=3, seed=0)
    path = tmp_path / "ck"
    save_checkpoint(path, model, epoch=1)
    good = _params(model)
    opt, _ = _trained(model)

    real = ckpt_mod._write_json

    def crash_halfway(p, obj):  # writes half of checkpoint.json, then the "power fails"
        real(p, obj)
        data = Path(p).read_bytes()
        Path(p).write_bytes(data[: len(data) // 2])
        raise OSError("simulated crash")

    monkeypatch.setattr(ckpt_mod, "_write_json", crash_halfway)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(path, model, optimizer=opt, epoch=2)
    monkeypatch.undo()
    ck = load_checkpoint(path)
    assert ck.epoch == 1
    for k, v in good.items():
        np.testing.assert_array_equal(ck.model.state_dict()[k], v)
    assert sorted(os.listdir(tmp_path)) == ["ck"]  # no temporary directory left behind

    # A crash between moving the old checkpoint aside and renaming the new one into place:
    # the old one is found in its backup, and the next save puts things right.
    def die_after_backup(tmp, target):
        os.rename(target, target.parent / f".{target.name}.old-{os.getpid()}-deadbeef")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_mod, "_commit", die_after_backup)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, epoch=3)
    monkeypatch.undo()
    assert not path.exists()
    assert load_checkpoint(path).epoch == 1
    save_checkpoint(path, model, epoch=4)
    assert load_checkpoint(path).epoch == 4
    assert sorted(os.listdir(tmp_path)) == ["ck"]


def test_damaged_checkpoints_raise_errors_naming_the_file(tmp_path):
    model = TinyLM(vocab_size=3, seed=0)
    opt, _ = _trained(model)
    path = save_checkpoint(tmp_path / "ck", model, optimizer=opt)

    weights = path / "model.safetensors"
    raw = weights.read_bytes()
    weights.write_bytes(raw[: len(raw) - 10])
    with pytest.raises(CheckpointError, match="model.safetensors.*truncated"):
        load_checkpoint(path)
    weights.write_bytes(raw)

    opt_file = path / "optimizer.safetensors"
    opt_file.write_bytes(opt_file.read_bytes()[:20])
    ck = load_checkpoint(path)
    with pytest.raises(CheckpointError, match="optimizer.safetensors"):
        ck.restore_optimizer(optim.Adam(ck.model.parameters(), lr=0.1))
    with pytest.raises(CheckpointError, match="Adam's, cannot restore it into SGD"):
        ck.restore_optimizer(optim.SGD(ck.model.parameters(), lr=0.1))
    with pytest.raises(CheckpointError, match="no scheduler state"):
        ck.restore_scheduler(lr_scheduler.StepLR(optim.SGD(ck.model.parameters(), lr=1), 1))

    meta = path / "checkpoint.json"
    text = meta.read_text()
    meta.write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match="checkpoint.json: not valid JSON"):
        load_checkpoint(path)
    meta.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(CheckpointError, match="not an rnncore checkpoint"):
        load_checkpoint(path)
    meta.write_text(text.replace('"version": 1', '"version": 99'))
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(path)
    meta.write_text(text)
    os.remove(weights)
    with pytest.raises(CheckpointError, match="model.safetensors: missing"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="checkpoint.json"):
        load_checkpoint(tmp_path / "nowhere")


def test_mismatched_model_unregistered_model_and_unsafe_target(tmp_path):
    model = TinyLM(vocab_size=3, hidden_size=16, seed=0)
    path = save_checkpoint(tmp_path / "ck", model)
    with pytest.raises(CheckpointError, match="model.safetensors: does not fit the model"):
        load_checkpoint(path, model=TinyLM(vocab_size=3, hidden_size=8))

    plain = nn.Linear(2, 3, seed=0)
    path2 = save_checkpoint(tmp_path / "lin", plain)
    with pytest.raises(CheckpointError, match="no MODEL_TYPE; pass the model"):
        load_checkpoint(path2)
    lin = nn.Linear(2, 3, seed=5)
    load_checkpoint(path2, model=lin)
    np.testing.assert_array_equal(lin.weight.data, plain.weight.data)

    precious = tmp_path / "mydata"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="refusing to replace it"):
        save_checkpoint(precious, model)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_trainer_checkpoint_dir_resolves_to_best_then_last(tmp_path):
    model = TinyLM(vocab_size=3, seed=0)
    save_checkpoint(tmp_path / "run" / "last", model, epoch=5)
    assert load_checkpoint(tmp_path / "run").epoch == 5
    save_checkpoint(tmp_path / "run" / "best", model, epoch=3)
    assert load_checkpoint(tmp_path / "run").epoch == 3


def test_checkpoint_json_with_a_duplicate_member_is_refused(tmp_path):
    """As the C++ loader does: Python's json would silently keep the last of the two."""
    model = nn.Linear(3, 2, seed=0)
    save_checkpoint(tmp_path / "ck", model)
    meta = tmp_path / "ck" / "checkpoint.json"
    text = meta.read_text()
    meta.write_text(text.replace('"version": 1,', '"version": 1, "version": 1,', 1))
    with pytest.raises(CheckpointError, match='duplicate member "version"'):
        load_checkpoint(tmp_path / "ck", nn.Linear(3, 2))


@pytest.mark.parametrize(
    "key,value",
    [("hidden_size", 8000), ("hidden_size", 2**29), ("num_layers", 2**32 + 1),
     ("vocab_size", 2**40), ("embed_dim", 10**7)],
)  # fmt: skip
def test_inflated_model_config_is_refused_before_allocating(tmp_path, key, value):
    """Issue 13: a 40 KB sentiment checkpoint with hidden_size 8000 peaked at 19.6 GB (73 s)
    before its shape error. The model may not allocate more parameters than the file holds."""
    from rnncore.models import SequenceClassifier

    model = SequenceClassifier(50, 8, 6, 3, num_layers=1, seed=0)
    save_checkpoint(tmp_path / "ck", model)
    meta_file = tmp_path / "ck" / "checkpoint.json"
    meta = json.loads(meta_file.read_text())
    meta["model_config"][key] = value
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not fit model.safetensors"):
        load_checkpoint(tmp_path / "ck")
    assert load_checkpoint(tmp_path / "ck", SequenceClassifier(50, 8, 6, 3, num_layers=1))


@pytest.mark.parametrize(
    "cell,layers,bidir,bias,proj",
    [(cell, *case) for cell in ("rnn", "lstm", "gru", "gru_v1")
     for case in ((1, False, True, 0), (3, True, False, 0))]
    + [("lstm", 2, True, True, 2), ("lstm", 2, False, True, 3)],
)  # fmt: skip
def test_recurrent_parameter_count_matches_the_engine(cell, layers, bidir, bias, proj):
    """The budget check's count (computed without allocating) is the engine's layout's size."""
    kw = {"proj_size": proj} if proj else {}
    layer = rnncore.nn.recurrent_layer(
        cell, 5, 7, num_layers=layers, bidirectional=bidir, bias=bias, **kw
    )
    assert layer._num_parameters() == layer.flat_parameters.size
    with nn.parameter_budget(layer.flat_parameters.size - 1):
        with pytest.raises(nn.ParameterBudgetError):
            rnncore.nn.recurrent_layer(
                cell, 5, 7, num_layers=layers, bidirectional=bidir, bias=bias, **kw
            )
