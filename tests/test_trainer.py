"""The Trainer: learning end to end, exact resumes, determinism, clipping, schedules, early
stopping, divergence handling, metrics files, plots, progress bar and argument checks."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time

import numpy as np
import pytest
from rnncore import nn, optim
from rnncore.optim import lr_scheduler
from rnncore.train import (
    Trainer,
    TrainingDiverged,
    get_rng_state,
    load_checkpoint,
    plot_history,
    set_rng_state,
)
from train_helpers import TinyLM, anbn_stream, lm_batches

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ---- a scripted model: exact control over losses and gradients ---------------------------------
class Scripted(nn.Module):
    """One weight [1, 4]. Each training batch is the gradient to accumulate; losses come from
    ``train_losses`` (per call, default 1.0) and ``val_losses`` (per evaluation)."""

    def __init__(self, train_losses=(), val_losses=(), metric=None):
        super().__init__()
        self.lin = nn.Linear(4, 1, bias=False, dtype="float64", seed=0)
        self.train_losses = list(train_losses)
        self.val_losses = list(val_losses)
        self.metric = metric
        self.calls = 0
        self.evals = -1  # on_epoch_start(False) comes before each evaluation

    def training_step(self, batch):
        loss = self.train_losses[self.calls] if self.calls < len(self.train_losses) else 1.0
        self.calls += 1
        self.lin.weight.grad[...] += batch
        return {"loss": loss, "count": 2, "correct": 1}

    def validation_step(self, batch):
        loss = self.val_losses[self.evals] if self.evals < len(self.val_losses) else 1.0
        return {"loss_sum": loss * 2.0, "count": 2.0}

    def on_epoch_start(self, training):
        if not training:
            self.evals += 1

    def epoch_metrics(self, sums):
        out = {"loss": sums["loss_sum"] / sums["count"]}
        if self.metric is not None:
            out[self.metric] = -out["loss"]
        return out


def _grads(*rows):
    return [np.asarray(r, dtype=np.float64).reshape(1, 4) for r in rows]


def _trainer(model, lr=0.1, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("log", None)
    return Trainer(model, optim.SGD(model.parameters(), lr=lr), **kw)


# ---- learning --------------------------------------------------------------------------------
def test_lstm_language_model_learns_anbn_with_tbptt_and_clipping(tmp_path):
    """Embedding -> LSTM -> Linear trained statefully (truncated BPTT, windows of 25) with Adam and
    clipping on strings a^k b^k <eos>, k in [1, 8]. A bigram model cannot beat 0.48 nats/token;
    counting reaches the optimum 0.21 (log 8 nats per 10-token string). Stated level: < 0.27."""
    train = lm_batches(anbn_stream(600, seed=0), 16, 25)
    val = lm_batches(anbn_stream(150, seed=1), 8, 25)
    model = TinyLM(vocab_size=3, embed_dim=8, hidden_size=24, seed=0)
    trainer = Trainer(
        model, optim.Adam(model.parameters(), lr=0.02), epochs=6, clip_grad_norm=1.0,
        checkpoint_dir=tmp_path / "ck", metrics_path=tmp_path / "metrics.json",
        progress=False, log=None,
    )  # fmt: skip
    history = trainer.fit(train, val)
    assert len(history) == 6
    assert history[-1]["val_loss"] < 0.27 and history[0]["train_loss"] > 0.45
    assert history[-1]["val_ppl"] == pytest.approx(math.exp(history[-1]["val_loss"]))
    for key in ("epoch", "steps", "train_loss", "val_loss", "lr", "grad_norm", "seconds",
                "tokens_per_s", "skipped_steps"):  # fmt: skip
        assert key in history[-1]
    assert history[-1]["steps"] == len(train) and history[-1]["tokens_per_s"] > 0

    # Best checkpoint: a fresh model from it scores the best validation loss again.
    ck = load_checkpoint(tmp_path / "ck")
    assert ck.epoch == trainer.best_epoch and ck.metrics["val_loss"] == trainer.best
    again = Trainer(ck.model, optim.Adam(ck.model.parameters()), progress=False, log=None)
    assert again.evaluate(val)["loss"] == pytest.approx(trainer.best, rel=1e-6)

    saved = json.loads((tmp_path / "metrics.json").read_text())["history"]
    assert [r["val_loss"] for r in saved] == [r["val_loss"] for r in history]
    rows = list(csv.DictReader(io.StringIO((tmp_path / "metrics.csv").read_text())))
    assert len(rows) == 6 and float(rows[-1]["val_loss"]) == pytest.approx(history[-1]["val_loss"])


# ---- exact resume and determinism ------------------------------------------------------------
def _resume_setup(model_seed, data_seed, trainer_seed, ckdir):
    """Two-layer LSTM LM with dropout (inter-layer and on the output), Adam + StepLR, and a
    training set reshuffled every epoch by a Generator captured in a closure."""
    windows = list(lm_batches(anbn_stream(120, seed=0), 6, 8))
    rng = np.random.default_rng(data_seed)

    def train_batches():
        return [windows[i] for i in rng.permutation(len(windows))]

    model = TinyLM(vocab_size=3, hidden_size=12, num_layers=2, dropout=0.3, seed=model_seed)
    opt = optim.Adam(model.parameters(), lr=0.01)
    sched = lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    trainer = Trainer(
        model, opt, scheduler=sched, epochs=4, clip_grad_norm=0.5, checkpoint_dir=ckdir,
        seed=trainer_seed, progress=False, log=None,
    )  # fmt: skip
    val = lm_batches(anbn_stream(30, seed=1), 3, 8)
    return model, trainer, train_batches, val


def _losses(history):
    return [(r["train_loss"], r["val_loss"], r["lr"], r["grad_norm"]) for r in history]


def test_interrupted_run_resumed_from_its_last_checkpoint_matches_bitwise(tmp_path):
    model_a, trainer_a, train_a, val_a = _resume_setup(0, 7, 3, tmp_path / "a")
    history_a = trainer_a.fit(train_a, val_a)
    steps_per_epoch = history_a[0]["steps"]

    model_b, trainer_b, train_b, val_b = _resume_setup(0, 7, 3, tmp_path / "b")
    original = model_b.training_step

    def crash(batch):  # the run dies in the middle of epoch 3
        if len(model_b.step_losses) == 2 * steps_per_epoch + 3:
            raise KeyboardInterrupt
        return original(batch)

    model_b.training_step = crash
    with pytest.raises(KeyboardInterrupt):
        trainer_b.fit(train_b, val_b)
    assert (
        load_checkpoint(tmp_path / "b" / "last", model=TinyLM(3, 8, 12, 2, dropout=0.3)).epoch == 2
    )

    # A new process: other seeds everywhere; everything comes back from the checkpoint.
    model_c, trainer_c, train_c, val_c = _resume_setup(11, 12, 13, tmp_path / "b")
    history_c = trainer_c.fit(train_c, val_c, resume_from=tmp_path / "b")
    assert _losses(history_c) == _losses(history_a)
    assert model_c.step_losses == model_a.step_losses[2 * steps_per_epoch :]
    for k, v in model_a.state_dict().items():
        np.testing.assert_array_equal(model_c.state_dict()[k], v, err_msg=k)
    assert trainer_c.global_step == trainer_a.global_step and trainer_c.epoch == 4


def test_same_seeds_same_losses():
    runs = []
    for _ in range(2):
        model, trainer, train, val = _resume_setup(5, 6, 7, None)
        trainer.epochs = 2
        runs.append((_losses(trainer.fit(train, val)), model.step_losses))
    assert runs[0] == runs[1]
    model, trainer, train, val = _resume_setup(5, 8, 7, None)  # another data order
    trainer.epochs = 2
    trainer.fit(train, val)
    assert model.step_losses != runs[0][1]


def test_rng_state_reaches_closures_objects_and_modules():
    class Pipeline:
        def __init__(self, seed):
            self.sampler = type("Sampler", (), {})()
            self.sampler._rng = np.random.default_rng(seed)

        def batches(self):
            return self.sampler._rng.permutation(5)

    gen = np.random.default_rng(1)
    closure = lambda: gen.random(3)  # noqa: E731
    pipe = Pipeline(2)
    drop = nn.Dropout(0.5, seed=3)
    objects = {"data": closure, "pipe": pipe.batches, "drop": drop}
    state = get_rng_state(objects)
    assert set(state) == {
        "data.<gen>",
        "pipe.__self__.sampler._rng",
        "drop._dropout_seed",  # Dropout's masks are keyed by (seed, call count, position)
        "drop._calls",
    }
    first = (closure(), pipe.batches(), drop(np.ones(6)))
    assert set_rng_state(state, objects) == sorted(state, key=list(state).index)
    second = (closure(), pipe.batches(), drop(np.ones(6)))
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


# ---- clipping, divergence --------------------------------------------------------------------
def test_clip_by_global_norm_and_by_value():
    model = Scripted()
    w0 = model.lin.weight.data.copy()
    trainer = _trainer(model, epochs=1, clip_grad_norm=1.0)
    history = trainer.fit([_grads([3, 4, 0, 0])[0]])
    np.testing.assert_allclose(model.lin.weight.data - w0, [[-0.06, -0.08, 0, 0]], rtol=1e-5)
    assert history[0]["grad_norm"] == pytest.approx(5.0)  # the norm before clipping

    model = Scripted()
    w0 = model.lin.weight.data.copy()
    _trainer(model, epochs=1, clip_grad_value=1.0).fit(_grads([3, -4, 0.5, 0]))
    np.testing.assert_allclose(model.lin.weight.data - w0, [[-0.1, 0.1, -0.05, 0]], rtol=1e-12)


def test_nonfinite_loss_stops_training_naming_epoch_and_step():
    losses = [1.0] * 4 + [1.0, 1.0, math.nan]  # epoch 2, step 3 (4 batches per epoch)
    model = Scripted(train_losses=losses)
    trainer = _trainer(model, epochs=3)
    with pytest.raises(TrainingDiverged, match=r"the loss is nan at epoch 2, step 3") as info:
        trainer.fit(_grads(*[[1, 0, 0, 0]] * 4))
    e = info.value
    assert isinstance(e, RuntimeError)
    assert (e.epoch, e.step, e.global_step) == (2, 3, 7) and math.isnan(e.value)
    assert len(trainer.history) == 1


def test_nonfinite_gradient_also_diverges():
    model = Scripted()
    with pytest.raises(TrainingDiverged, match="the gradient norm is inf at epoch 1, step 2"):
        _trainer(model, epochs=1).fit(_grads([1, 0, 0, 0], [np.inf, 0, 0, 0]))


def test_nonfinite_steps_are_skipped_and_counted_when_asked():
    model = Scripted(train_losses=[2.0, math.inf, 4.0, 6.0])
    w0 = model.lin.weight.data.copy()
    trainer = _trainer(model, epochs=1, stop_on_nonfinite=False, lr=1.0)
    history = trainer.fit(_grads([1, 0, 0, 0], [0, 100, 0, 0], [0, 0, 1, 0], [np.nan] * 4))
    np.testing.assert_array_equal(model.lin.weight.data - w0, [[-1, 0, -1, 0]])  # no 100, no nan
    assert history[0]["skipped_steps"] == 2 and trainer.skipped_steps == 2
    assert history[0]["steps"] == 2 and history[0]["train_loss"] == 3.0  # mean of 2 and 4
    assert trainer.global_step == 4


# ---- schedules, early stopping, monitoring ---------------------------------------------------
def test_per_epoch_schedule_and_plateau_gets_the_monitored_metric():
    model = Scripted()
    opt = optim.SGD(model.parameters(), lr=0.1)
    sched = lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    history = Trainer(model, opt, scheduler=sched, epochs=5, progress=False, log=None).fit(
        _grads([0, 0, 0, 0]) * 3
    )
    assert [r["lr"] for r in history] == [0.1, 0.1, 0.05, 0.05, 0.025]

    model = Scripted(val_losses=[1.0, 0.5, 0.5, 0.5, 0.5])
    opt = optim.SGD(model.parameters(), lr=0.1)
    plateau = lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1)
    history = Trainer(model, opt, scheduler=plateau, epochs=5, progress=False, log=None).fit(
        _grads([0, 0, 0, 0]), _grads([0, 0, 0, 0])
    )
    assert plateau.best == 0.5  # it saw the validation losses
    assert [r["lr"] for r in history] == [0.1, 0.1, 0.1, 0.1, 0.05]


def test_per_step_schedule():
    model = Scripted()
    opt = optim.SGD(model.parameters(), lr=0.4)
    warm = lr_scheduler.LinearWarmup(opt, warmup_steps=4)
    history = Trainer(
        model, opt, scheduler=warm, scheduler_interval="step", epochs=2, progress=False, log=None
    ).fit(_grads([0, 0, 0, 0]) * 2)
    assert [r["lr"] for r in history] == pytest.approx([0.2, 0.4])


def test_early_stopping_keeps_the_best_checkpoint_and_resume_respects_it(tmp_path):
    model = Scripted(val_losses=[1.0, 0.5, 0.6, 0.7, 0.4, 0.3])
    trainer = _trainer(model, epochs=6, early_stopping_patience=2, checkpoint_dir=tmp_path)
    history = trainer.fit(_grads([1, 0, 0, 0]), _grads([0, 0, 0, 0]))
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert trainer.stopped_early and trainer.best == 0.5 and trainer.best_epoch == 2
    assert load_checkpoint(tmp_path / "best", model=Scripted()).epoch == 2
    assert load_checkpoint(tmp_path / "last", model=Scripted()).epoch == 4
    again = _trainer(Scripted(), epochs=6, early_stopping_patience=2)
    assert len(again.fit(_grads([1, 0, 0, 0]), resume_from=tmp_path)) == 4


def test_monitor_max_metric_and_train_fallback():
    model = Scripted(val_losses=[1.0, 0.8, 0.9], metric="score")  # score = -loss
    trainer = _trainer(model, epochs=3, monitor="score", mode="max")
    trainer.fit(_grads([0, 0, 0, 0]), _grads([0, 0, 0, 0]))
    assert trainer.best == -0.8 and trainer.best_epoch == 2

    trainer = _trainer(Scripted(train_losses=[3.0, 2.0, 2.5]), epochs=3)  # no validation data
    history = trainer.fit(_grads([0, 0, 0, 0]))
    assert trainer.best_epoch == 2 and "val_loss" not in history[0]

    with pytest.raises(KeyError, match="monitored metric 'accuracy'"):
        _trainer(Scripted(), epochs=1, monitor="accuracy").fit(_grads([0, 0, 0, 0]))


# ---- files, plots, progress, logging ---------------------------------------------------------
def test_metrics_json_csv_and_plot(tmp_path):
    model = Scripted(val_losses=[1.0, 0.5, 0.25])
    trainer = _trainer(model, epochs=3, metrics_path=tmp_path / "m.csv")
    history = trainer.fit(_grads([1, 0, 0, 0]), _grads([0, 0, 0, 0]))
    saved = json.loads((tmp_path / "m.json").read_text())["history"]
    assert [r["val_loss"] for r in saved] == [1.0, 0.5, 0.25]
    assert saved == json.loads(json.dumps(history))
    rows = list(csv.DictReader(io.StringIO((tmp_path / "m.csv").read_text())))
    assert [float(r["val_loss"]) for r in rows] == [1.0, 0.5, 0.25]
    assert list(rows[0])[:3] == ["epoch", "steps", "train_loss"]
    model = Scripted(metric="accuracy")
    _trainer(model, epochs=2, plot_path=tmp_path / "p.png").fit(_grads([1, 0, 0, 0]), [0])
    assert (tmp_path / "p.png").read_bytes()[:8] == PNG_SIGNATURE
    with pytest.raises(ValueError, match="empty"):
        plot_history([], tmp_path / "e.png")


class _FakeTTY(io.StringIO):
    def isatty(self):
        return True


class _Slow(Scripted):
    def training_step(self, batch):
        time.sleep(0.06)  # tqdm redraws at most every 0.1 s
        return super().training_step(batch)


def test_progress_bar_only_on_a_terminal(monkeypatch, capsys):
    batches = _grads(*[[0, 0, 0, 0]] * 3)
    _trainer(_Slow(), epochs=1, progress=True).fit(batches)
    assert capsys.readouterr().err == ""  # pytest's stderr is not a TTY

    fake = _FakeTTY()
    monkeypatch.setattr(sys, "stderr", fake)
    _trainer(_Slow(), epochs=1, progress=True).fit(batches)
    text = fake.getvalue()
    assert "epoch 1/1" in text and "loss=" in text and "items_s=" in text
    fake2 = _FakeTTY()
    monkeypatch.setattr(sys, "stderr", fake2)
    _trainer(Scripted(), epochs=1, progress=False).fit(batches)
    assert fake2.getvalue() == ""


def test_log_lines(capsys):
    Trainer(Scripted(), optim.SGD(Scripted().parameters(), lr=0.1), epochs=1, progress=False)
    model = Scripted()
    Trainer(model, optim.SGD(model.parameters(), lr=0.1), epochs=2, progress=False).fit(
        _grads([1, 0, 0, 0]), _grads([0, 0, 0, 0])
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("epoch 1/2") and "val_loss 1.0000" in out[0] and "lr 0.1" in out[0]


# ---- argument checks -------------------------------------------------------------------------
def test_bad_arguments_are_named():
    model = Scripted()
    opt = optim.SGD(model.parameters(), lr=0.1)
    opt.param_groups[0]["lr"] = 0.0
    with pytest.raises(ValueError, match=r"lr.*must be > 0"):
        Trainer(model, opt)
    opt = optim.SGD(model.parameters(), lr=0.1)
    for kwargs, exc, message in [
        ({"clip_grad_norm": 0.0}, ValueError, "clip_grad_norm \\(max_norm\\) must be > 0"),
        ({"clip_grad_norm": -1}, ValueError, "clip_grad_norm"),
        ({"clip_grad_value": 0}, ValueError, "clip_grad_value must be > 0"),
        ({"clip_grad_norm": "1"}, TypeError, "clip_grad_norm"),
        ({"epochs": 0}, ValueError, "epochs must be >= 1"),
        ({"early_stopping_patience": 0}, ValueError, "early_stopping_patience"),
        ({"mode": "up"}, ValueError, "mode must be 'min' or 'max'"),
        ({"scheduler_interval": "batch"}, ValueError, "scheduler_interval"),
        ({"scheduler": lr_scheduler.ReduceLROnPlateau(opt), "scheduler_interval": "step"},
         ValueError, "ReduceLROnPlateau needs"),
    ]:  # fmt: skip
        with pytest.raises(exc, match=message):
            Trainer(model, opt, **kwargs)
    with pytest.raises(TypeError, match="must implement training_step"):
        Trainer(nn.Linear(2, 2), opt)
    with pytest.raises(TypeError, match="optimizer must be an rnncore.optim optimizer"):
        Trainer(model, object())
    trainer = Trainer(model, opt, progress=False, log=None)
    with pytest.raises(TypeError, match="is an iterator"):
        trainer.fit(iter(_grads([0, 0, 0, 0])))
    with pytest.raises(TypeError, match="must be a re-iterable"):
        trainer.fit(5)
    with pytest.raises(TypeError, match="must implement validation_step"):
        Trainer(_NoVal(), optim.SGD(_NoVal().parameters(), lr=1)).evaluate([1])


class _NoVal(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(1, 1)

    def training_step(self, batch):
        return {"loss": 0.0}
