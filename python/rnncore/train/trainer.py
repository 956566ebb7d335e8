"""The Trainer: epochs of training_step calls with clipping, scheduling, validation, early stopping,
checkpoints that resume exactly, metrics history (JSON, CSV, plots) and a divergence check.

A model trained here implements ``training_step(batch) -> {"loss", "count", ...}`` (forward, loss
and backward; gradients accumulate) and ``validation_step(batch) -> {"loss_sum", "count", ...}``
(sums), optionally ``epoch_metrics(sums) -> dict`` and ``on_epoch_start(training)``; see
:class:`Trainer`. Per optimizer step the Trainer adds only a few engine calls of its own
(zero_grad, one gradient norm over all parameters, the clip, the optimizer step).

Data parallel over MPI (:mod:`rnncore.distributed`): launched by ``mpiexec``, every rank runs a
Trainer on its own slice of each global batch; one allreduce per step leaves every rank with the
gradient of the whole global batch, so that clipping, the optimizer and the schedules do the same
everywhere. Rank 0 alone logs and writes files.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .. import distributed as _dist
from ..nn import Module, inference_mode
from ..optim import clip_grad_norm as _clip_grad_norm
from ..optim import clip_grad_value as _clip_grad_value
from ..optim import grad_norm as _grad_norm
from ..optim.lr_scheduler import ReduceLROnPlateau
from . import _jsonable
from .checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from .diagnostics import _figure_class
from .rng import get_rng_state, set_rng_state

__all__ = ["Trainer", "TrainingDiverged", "plot_history", "write_history"]

Batches = Iterable[Any] | Callable[[], Iterable[Any]]


def _merge_rank_rng(states: list[Mapping[str, Any]]) -> dict[str, Any]:
    """One checkpoint's random state from every rank's (indexed by rank): rank 0's entries as
    they are (a 1-process run reads them), rank r's under "rank<r>/<path>"."""
    merged = dict(states[0])
    for r, state in enumerate(states[1:], start=1):
        merged.update({f"rank{r}/{k}": v for k, v in state.items()})
    return merged


def _rank_rng(state: Mapping[str, Any], rank: int) -> dict[str, Any]:
    """Rank ``rank``'s random state in a merged one: the unprefixed entries (rank 0's),
    overridden by those under "rank<rank>/"."""
    own_prefix = f"rank{rank}/"
    base = {k: v for k, v in state.items() if not re.match(r"rank\d+/", k)}
    base.update({k[len(own_prefix) :]: v for k, v in state.items() if k.startswith(own_prefix)})
    return base


class TrainingDiverged(RuntimeError):
    """The loss (or the gradient norm) became NaN or infinite.

    Attributes:
        epoch: the epoch (1-based) in which it happened.
        step: the batch within that epoch (1-based).
        global_step: batches seen since the start of training (1-based).
        value: the non-finite value.
    """

    def __init__(self, message: str, *, epoch: int, step: int, global_step: int, value: float):
        super().__init__(message)
        self.epoch = epoch
        self.step = step
        self.global_step = global_step
        self.value = value


# ---- history files ----------------------------------------------------------------------------
def _replace_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def _history_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix.lower() in (".json", ".csv"):
        return p.with_suffix(".json"), p.with_suffix(".csv")
    return p.with_name(p.name + ".json"), p.with_name(p.name + ".csv")


def write_history(history: list[Mapping[str, Any]], path: str | os.PathLike) -> tuple[Path, Path]:
    """Write the per-epoch history as JSON and CSV.

    Args:
        history: list of per-epoch dicts (:meth:`Trainer.fit`'s result).
        path: "dir/metrics.json" or "dir/metrics.csv" (both files are written, with the two
            suffixes), or a name without suffix (".json"/".csv" appended).

    Returns:
        (json path, csv path). JSON: ``{"history": [...]}`` with NaN/inf as null; CSV: one row
        per epoch, columns in order of first appearance, empty cells for missing values.
    """
    json_path, csv_path = _history_paths(path)
    rows = [_jsonable.plain(dict(r)) for r in history]
    _replace_text(json_path, json.dumps({"history": rows}, indent=1) + "\n")
    columns: list[str] = []
    for r in rows:
        columns.extend(k for k in r if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
    _replace_text(csv_path, buf.getvalue())
    return json_path, csv_path


def plot_history(history: list[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Plot the training curves of a history and save the figure (PNG unless the suffix says
    otherwise).

    One panel for the loss (train and validation), one per other metric (e.g. val_ppl,
    val_accuracy, with its train_ counterpart when present) and one for the learning rate (log
    scale). Needs matplotlib (``pip install rnncore[plot]``), imported on first use.

    Args:
        history: list of per-epoch dicts with "epoch" and metric keys.
        path: the image file.

    Returns:
        ``path`` as a Path.
    """
    Figure = _figure_class()
    from matplotlib.ticker import MaxNLocator

    rows = [dict(r) for r in history]
    if not rows:
        raise ValueError("plot_history: the history is empty")
    epochs = [r.get("epoch", i + 1) for i, r in enumerate(rows)]
    keys: list[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)

    def series(key: str) -> list[float]:
        out = []
        for r in rows:
            v = r.get(key)
            out.append(float(v) if isinstance(v, (int, float)) and v is not None else math.nan)
        return out

    metric_names = ["loss"]
    for k in keys:
        for prefix in ("val_", "train_"):
            if k.startswith(prefix) and k[len(prefix) :] not in metric_names:
                metric_names.append(k[len(prefix) :])
    panels = [(m, [p + m for p in ("train_", "val_") if p + m in keys]) for m in metric_names]
    panels = [(m, ks) for m, ks in panels if ks]
    if "lr" in keys:
        panels.append(("learning rate", ["lr"]))
    cols = min(3, len(panels))
    nrows = -(-len(panels) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * nrows))
    for i, (title, ks) in enumerate(panels):
        ax = fig.add_subplot(nrows, cols, i + 1)
        for k in ks:
            ax.plot(epochs, series(k), marker="o", markersize=3, label=k)
        if title == "learning rate" and all(v > 0 for v in series("lr") if not math.isnan(v)):
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    return out


# ---- argument checks --------------------------------------------------------------------------
def _positive(value: Any, name: str, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"Trainer: {name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"Trainer: {name} must be > 0 and finite, got {value}")
    return v


def _count(value: Any, name: str, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"Trainer: {name} must be an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"Trainer: {name} must be >= 1, got {value}")
    return int(value)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _number(value: Any, key: str, where: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        if isinstance(value, np.ndarray) and value.size == 1:
            return float(value.reshape(-1)[0])
        raise TypeError(f"{where}: {key!r} must be a number, got {type(value).__name__}")
    return float(value)


def print_flushed(message: str) -> None:
    """The Trainer's default ``log``: print and flush, so that a pipe or a file sees each line
    when it is written, not when the buffer fills."""
    print(message, flush=True)


def _duration(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def default_epoch_metrics(sums: Mapping[str, float]) -> dict[str, float]:
    """{"loss": loss_sum / count} (NaN when count is 0)."""
    count = float(sums.get("count", 0.0))
    return {"loss": float(sums.get("loss_sum", math.nan)) / count if count else math.nan}


class Trainer:
    """Train a model with an optimizer for a number of epochs.

    The model implements ``training_step(batch) -> {"loss": float (mean over the batch's counted
    items), "count": items, ...extra summable numbers}`` (forward + loss + backward; the Trainer
    zeroes the gradients before and steps the optimizer after), ``validation_step(batch) ->
    {"loss_sum": float, "count": float, ...other sums}``, and optionally ``epoch_metrics(sums)
    -> dict`` (default ``{"loss": loss_sum / count}``; e.g. a language model adds "ppl"),
    ``on_epoch_start(training: bool)`` (e.g. reset the truncated-BPTT state) and ``after_step()``
    (called after every optimizer step: a constraint on the weights, as KimCNN's max-norm).

    Args:
        model: an rnncore.nn.Module with the methods above.
        optimizer: an rnncore.optim optimizer over (some of) the model's parameters.
        scheduler: an LR scheduler, or None. Stepped once per epoch after validation
            (ReduceLROnPlateau gets the monitored metric), or once per optimizer step with
            ``scheduler_interval="step"`` (warm-ups).
        epochs: number of epochs (>= 1); training may stop earlier (early stopping).
        clip_grad_norm: rescale the gradients when their global L2 norm exceeds this (> 0;
            Mikolov's rule: g <- g * max_norm / norm), or None.
        clip_grad_value: clamp each gradient element to [-v, v] (> 0), or None. Applied before
            the norm clip when both are given.
        early_stopping_patience: stop after this many epochs (>= 1) without improvement of the
            monitored metric, or None.
        monitor: the metric deciding "best" and early stopping: validation's ``monitor`` (e.g.
            "loss", "ppl", "accuracy"), or training's when there is no validation data. A name
            with a "val_"/"train_" prefix picks explicitly.
        mode: "min" (losses) or "max" (accuracies).
        checkpoint_dir: when given, ``checkpoint_dir/best`` holds the checkpoint of the best
            epoch so far and ``checkpoint_dir/last`` the latest epoch's, both complete (model,
            optimizer, scheduler, random state, trainer state) for :meth:`fit` ``resume_from``.
        metrics_path: when given, the history is rewritten after every epoch as JSON and CSV
            (see :func:`write_history`).
        progress: show a tqdm progress bar (loss and items/s) on a terminal; never when stderr
            is not a TTY.
        stop_on_nonfinite: raise :class:`TrainingDiverged` on a NaN/inf loss or gradient norm;
            False: skip that step (no update) and count it in ``skipped_steps``.
        seed: seeds ``trainer.rng`` (a numpy Generator the data pipeline may use) and numpy's
            global generator, both saved in checkpoints. The model's randomness comes from the
            model's own seeds.
        log: called with one summary line per epoch, the progress lines and notes, or None for
            silence (default: print, flushed).
        log_every: a progress line (epoch, step, running loss, items/s, ETA of the epoch) every
            this many training steps (>= 1), or None.
        log_interval: a progress line when this many seconds (> 0) have passed since the last
            one, or None. Progress lines are written unless the progress bar is drawn on the
            terminal stdout is on (then the bar shows the same), e.g. when stdout goes to a pipe
            or file: ``| tail`` or a batch job's log then sees the epoch advance.
        scheduler_interval: "epoch" or "step".
        plot_path: when given, :func:`plot_history` draws the curves there at the end of
            :meth:`fit`, and after an epoch when the last drawing is 30 s old or more (drawing
            takes ~0.3 s, too much to repeat after every short epoch).
        vocab, vocabs, extra: stored in every checkpoint (see :func:`save_checkpoint`).
        distributed: None (default): data parallel when this process is one of several MPI
            ranks (see :func:`rnncore.distributed.init`); False: train alone whatever launched
            this process; True: MPI's world, even of one rank. In a world of several ranks: every
            rank starts from rank 0's parameters; each must be given its own slice of every
            global batch (:func:`rnncore.distributed.shard_batches`; a None batch is an empty
            slice), and the same number of batches; the gradients are averaged over all ranks'
            items (weighted by ``count``) with one allreduce per step; training and validation
            metrics are reduced over the ranks; only rank 0 logs and writes history, plots and
            checkpoints (:meth:`save` is collective: call it on every rank). Every rank keeps
            the same random streams: dropout masks are keyed by an example's index in the global
            batch (:mod:`rnncore.nn.keyed`; the sharded batches say where each slice starts), so
            an example's mask does not depend on the number of ranks, and an N-rank run draws
            what one process with the same global batches draws; checkpoints keep the random
            state, so resuming is exact.

    Attributes:
        history: list of per-epoch dicts: epoch, steps, train_loss (and train_<metric> from
            ``epoch_metrics`` of the training sums), val_<metric>..., lr (of the epoch's last
            step), grad_norm (mean pre-clip norm), skipped_steps, seconds, tokens_per_s (items
            per second of training, when the model reports "count"); in a distributed run also
            allreduce_seconds (rank 0's time in the gradient allreduces, waiting for the
            slowest rank included).
        epoch: completed epochs. global_step: optimizer steps taken (skipped ones included).
        best: the best monitored value; best_epoch: its epoch. skipped_steps: total skipped.
    """

    def __init__(
        self,
        model: Module,
        optimizer: Any,
        *,
        scheduler: Any = None,
        epochs: int = 10,
        clip_grad_norm: float | None = None,
        clip_grad_value: float | None = None,
        early_stopping_patience: int | None = None,
        monitor: str = "loss",
        mode: str = "min",
        checkpoint_dir: str | os.PathLike | None = None,
        metrics_path: str | os.PathLike | None = None,
        progress: bool = True,
        stop_on_nonfinite: bool = True,
        seed: int | None = None,
        log: Callable[[str], Any] | None = print_flushed,
        log_every: int | None = None,
        log_interval: float | None = 30.0,
        scheduler_interval: str = "epoch",
        plot_path: str | os.PathLike | None = None,
        vocab: Any = None,
        vocabs: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
        distributed: bool | None = None,
    ) -> None:
        if not callable(getattr(model, "training_step", None)):
            raise TypeError(
                f"Trainer: model {type(model).__name__} must implement training_step(batch)"
            )
        groups = getattr(optimizer, "param_groups", None)
        if not groups or not callable(getattr(optimizer, "step", None)):
            raise TypeError(
                f"Trainer: optimizer must be an rnncore.optim optimizer, got "
                f"{type(optimizer).__name__}"
            )
        for i, g in enumerate(groups):
            lr = g.get("initial_lr", g.get("lr"))
            _positive(lr, f"optimizer.param_groups[{i}]['lr'] (lr)", allow_none=False)
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.epochs = _count(epochs, "epochs", allow_none=False)
        self.clip_grad_norm = _positive(clip_grad_norm, "clip_grad_norm (max_norm)")
        self.clip_grad_value = _positive(clip_grad_value, "clip_grad_value")
        self.early_stopping_patience = _count(early_stopping_patience, "early_stopping_patience")
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"Trainer: monitor must be a metric name, got {monitor!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"Trainer: mode must be 'min' or 'max', got {mode!r}")
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(
                f"Trainer: scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}"
            )
        if scheduler_interval == "step" and isinstance(scheduler, ReduceLROnPlateau):
            raise ValueError("Trainer: ReduceLROnPlateau needs scheduler_interval='epoch'")
        if plot_path is not None:
            _figure_class()  # fail now, not after the first epoch
        self.monitor = monitor
        self.mode = mode
        self.scheduler_interval = scheduler_interval
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.metrics_path = metrics_path
        self.plot_path = plot_path
        self.progress = bool(progress)
        self.stop_on_nonfinite = bool(stop_on_nonfinite)
        self.seed = seed
        self.log = log
        self.log_every = _count(log_every, "log_every")
        self.log_interval = _positive(log_interval, "log_interval (seconds)")
        self.vocab, self.vocabs, self.extra = vocab, vocabs, extra
        self.rng = np.random.default_rng(seed)
        if seed is not None:
            np.random.seed(seed % 2**32)
        self._params = [p for g in groups for p in g["params"]]
        self.history: list[dict[str, Any]] = []
        self.epoch = 0
        self.global_step = 0
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self.skipped_steps = 0
        self.stopped_early = False
        self._pending_rng: dict[str, Any] | None = None
        self._plotted = -math.inf  # when the curves were last drawn (perf_counter seconds)
        self._plotted_epoch = -1
        self.world = _dist.init(distributed)
        self._reducer: _dist.GradientReducer | None = None
        if self.world.size > 1:
            self._reducer = _dist.GradientReducer(self._params, self.world)
            _dist.broadcast_parameters(model, self.world)
            self._share_random_state()  # the same streams on every rank, whatever their seeds

    @property
    def writes(self) -> bool:
        """Whether this process logs and writes files: always, except on ranks other than 0 of a
        distributed run."""
        return self.world.rank == 0

    # ---- helpers ------------------------------------------------------------------------------
    def _say(self, msg: str) -> None:
        if self.log is not None and self.writes:
            self.log(msg)

    @staticmethod
    def _iterate(batches: Batches, name: str) -> Iterable[Any]:
        if callable(batches) and not isinstance(batches, Iterable):
            return batches()
        if not isinstance(batches, Iterable):
            raise TypeError(
                f"Trainer: {name} must be a re-iterable (list, BPTTBatches, ...) or a "
                f"zero-argument callable returning an iterator, got {type(batches).__name__}"
            )
        return batches

    @staticmethod
    def _check_reiterable(batches: Batches | None, name: str) -> None:
        if isinstance(batches, Iterator):
            raise TypeError(
                f"Trainer: {name} is an iterator (it would be empty after the first epoch); "
                "pass a list, a re-iterable object, or a zero-argument callable that returns a "
                "fresh iterator"
            )

    def _rng_objects(self, train: Any = None, val: Any = None) -> dict[str, Any]:
        return {
            "model": self.model,
            "trainer.rng": self.rng,
            "train_batches": train,
            "val_batches": val,
        }

    def _is_better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def _monitored(self, row: Mapping[str, Any]) -> float:
        m = self.monitor
        if m.startswith(("val_", "train_")):
            key = m
        else:
            key = f"val_{m}" if f"val_{m}" in row else f"train_{m}"
        if key not in row:
            raise KeyError(
                f"Trainer: monitored metric {m!r} is not among this epoch's metrics "
                f"{sorted(k for k in row if k.startswith(('val_', 'train_')))}"
            )
        return float(row[key])

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        """The Trainer's own progress (history, counters, early-stopping state), JSON-ready."""
        return {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "skipped_steps": self.skipped_steps,
            "stopped_early": self.stopped_early,
            "history": [dict(r) for r in self.history],
            "monitor": self.monitor,
            "mode": self.mode,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s values."""
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.best = None if state.get("best") is None else float(state["best"])
        self.best_epoch = state.get("best_epoch")
        self.bad_epochs = int(state.get("bad_epochs", 0))
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self.stopped_early = bool(state.get("stopped_early", False))
        self.history = [dict(r) for r in state.get("history", [])]

    # ---- checkpoints --------------------------------------------------------------------------
    def save(
        self,
        path: str | os.PathLike,
        metrics: Mapping[str, Any] | None = None,
        train_batches: Any = None,
        val_batches: Any = None,
    ) -> Path | None:
        """Write a complete, resumable checkpoint of the current state to ``path``.

        Args:
            path: the checkpoint directory.
            metrics: stored as the checkpoint's metrics (default: the last history row).
            train_batches, val_batches: data objects whose random state to include.

        Returns:
            The directory written. In a distributed run this is a collective (every rank calls
            it: rank 0 gathers the others' random states, stored as "rank<r>/..." entries) and
            only rank 0 writes; the others return None.
        """
        rng = get_rng_state(self._rng_objects(train_batches, val_batches), include_global=True)
        if self.world.size > 1:
            states = self.world.gather_object(rng)
            if not self.writes:
                return None
            rng = _merge_rank_rng(states)
        return save_checkpoint(
            path,
            self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            vocab=self.vocab,
            vocabs=self.vocabs,
            extra=self.extra,
            epoch=self.epoch,
            step=self.global_step,
            metrics=metrics
            if metrics is not None
            else (self.history[-1] if self.history else None),
            rng=rng,
            trainer_state=self.state_dict(),
        )

    def load(self, path: str | os.PathLike) -> Any:
        """Restore a checkpoint written by this Trainer (or :meth:`save`) to continue training.

        Args:
            path: a checkpoint directory, or a checkpoint_dir (its ``last/`` is taken, else
                ``best/``).

        Restores the model's weights, the optimizer and scheduler state, the random state of
        the model, of ``trainer.rng`` and numpy's global generator now (that of the data
        pipeline when :meth:`fit` starts), and the Trainer's history and counters, so that
        :meth:`fit` continues exactly as the interrupted run would have.

        In a distributed run this is a collective: rank 0 reads the checkpoint (only it needs
        the files) and sends weights, optimizer, scheduler and Trainer state to the others;
        each rank takes back its own random state (a rank that a checkpoint of fewer ranks has
        no entries for takes rank 0's: the model's streams are the same on every rank).

        Returns:
            The :class:`rnncore.train.checkpoint.Checkpoint` (None on ranks other than 0).
        """
        world = self.world
        ckpt = None
        if world.rank == 0:
            directory = resolve_checkpoint(path, prefer=("last", "best"))
            ckpt = load_checkpoint(directory, model=self.model, restore_rng=False)
            if ckpt.meta.get("optimizer") is not None:
                ckpt.restore_optimizer(self.optimizer)
            if self.scheduler is not None and ckpt.meta.get("scheduler") is not None:
                ckpt.restore_scheduler(self.scheduler)
            if ckpt.trainer_state is not None:
                self.load_state_dict(ckpt.trainer_state)
            else:
                self.epoch = int(ckpt.epoch or 0)
                self.global_step = int(ckpt.step or 0)
        saved_rng = ckpt.rng if ckpt is not None else None
        if world.size > 1:
            saved_rng = self._share_loaded_state(saved_rng)
        rng = _rank_rng(saved_rng or {}, world.rank)
        if rng:
            set_rng_state(rng, self._rng_objects())
            self._pending_rng = rng
        if ckpt is not None:
            self._say(f"resumed from {ckpt.path} (epoch {self.epoch}, step {self.global_step})")
        return ckpt

    def _share_loaded_state(self, rng: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """Send what rank 0 restored (weights, optimizer, scheduler, Trainer state) to the other
        ranks; returns the checkpoint's random state (every rank's entries) on every rank."""
        world = self.world
        state = None
        if world.rank == 0:
            state = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
                "trainer": self.state_dict(),
                "rng": rng,
            }
        state = world.broadcast_object(state)
        _dist.broadcast_parameters(self.model, world)
        if world.rank != 0:
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state["scheduler"] is not None:
                self.scheduler.load_state_dict(state["scheduler"])
            self.load_state_dict(state["trainer"])
        return state["rng"]

    def _share_random_state(self) -> None:
        """Give every rank rank 0's model random state (a collective). A rank whose slice of a
        step was empty ran no forward, so its layers' call counters, which key the masks, fell
        behind; rank 0's slice is never empty unless every rank's is."""
        world = self.world
        state = get_rng_state({"model": self.model}) if world.rank == 0 else None
        set_rng_state(world.broadcast_object(state), {"model": self.model})

    # ---- training -----------------------------------------------------------------------------
    def _progress_bar(self, batches: Any, epoch: int) -> Any:
        if not self.progress or not self.writes or not _isatty(sys.stderr):
            return None
        from tqdm import tqdm

        total = len(batches) if hasattr(batches, "__len__") else None
        return tqdm(
            total=total,
            desc=f"epoch {epoch}/{self.epochs}",
            unit="batch",
            leave=False,
            dynamic_ncols=True,
            file=sys.stderr,
        )

    def _diverged(self, what: str, value: float, epoch: int, step: int) -> None:
        msg = (
            f"Trainer: training diverged: {what} is {value} at epoch {epoch}, step {step} "
            f"(global step {self.global_step + 1}); lower the learning rate, clip gradients "
            "(clip_grad_norm=...), or pass stop_on_nonfinite=False to skip such steps"
        )
        raise TrainingDiverged(
            msg, epoch=epoch, step=step, global_step=self.global_step + 1, value=value
        )

    def _train_epoch(self, train_batches: Batches, epoch: int) -> dict[str, Any]:
        model, opt = self.model, self.optimizer
        model.train()
        if callable(getattr(model, "on_epoch_start", None)):
            model.on_epoch_start(True)
        after_step = getattr(model, "after_step", None)
        after_step = after_step if callable(after_step) else None
        batches = self._iterate(train_batches, "train_batches")
        bar = self._progress_bar(batches, epoch)
        total = len(batches) if hasattr(batches, "__len__") else None
        lines = (
            self.log is not None
            and (self.log_every is not None or self.log_interval is not None)
            and (bar is None or not _isatty(sys.stdout))
        )
        sums: dict[str, float] = {"loss_sum": 0.0, "count": 0.0}
        has_count = True
        steps = skipped = 0
        norm_sum = 0.0
        norm_n = 0
        reducer = self._reducer
        reduce_start = reducer.seconds if reducer is not None else 0.0
        start = time.perf_counter()
        last_line = start
        try:
            for step, batch in enumerate(batches, start=1):
                if lines and step > 1:
                    now = time.perf_counter()
                    every, interval = self.log_every, self.log_interval
                    if (every is not None and (step - 1) % every == 0) or (
                        interval is not None and now - last_line >= interval
                    ):
                        self._say(
                            self._step_line(epoch, step - 1, total, sums, has_count, now - start)
                        )
                        last_line = now
                opt.zero_grad()
                if batch is None and reducer is not None:
                    # this rank's slice of the global batch is empty: nothing to add, but the
                    # step's allreduce needs every rank
                    out = {"loss": 0.0, "count": 0.0}
                else:
                    out = model.training_step(batch)
                if not isinstance(out, Mapping) or "loss" not in out:
                    raise TypeError(
                        f"Trainer: {type(model).__name__}.training_step must return a dict with "
                        f"'loss' (and 'count'), got {type(out).__name__}"
                    )
                where = f"{type(model).__name__}.training_step"
                loss = _number(out["loss"], "loss", where)
                if "count" in out:
                    count = _number(out["count"], "count", where)
                else:
                    count, has_count = 1.0, False
                if reducer is not None:  # every rank now holds the global batch's gradient
                    count, loss = reducer.allreduce(count, loss)
                    if reducer.empty_slices:
                        self._share_random_state()
                bad = None if math.isfinite(loss) else ("the loss", loss)
                norm = math.nan
                if bad is None:
                    if self.clip_grad_value is not None:
                        _clip_grad_value(self._params, self.clip_grad_value)
                    if self.clip_grad_norm is not None:
                        norm = _clip_grad_norm(self._params, self.clip_grad_norm)
                    else:
                        norm = _grad_norm(self._params)
                    if not math.isfinite(norm):
                        bad = ("the gradient norm", norm)
                if bad is not None:
                    if self.stop_on_nonfinite:
                        self._diverged(bad[0], bad[1], epoch, step)
                    opt.zero_grad()
                    skipped += 1
                    self.skipped_steps += 1
                    self.global_step += 1
                    self._say(
                        f"epoch {epoch}, step {step}: {bad[0]} is {bad[1]}; step skipped "
                        f"({self.skipped_steps} so far)"
                    )
                    continue
                opt.step()
                if after_step is not None:  # a constraint on the weights (KimCNN's max-norm)
                    after_step()
                if self.scheduler is not None and self.scheduler_interval == "step":
                    self.scheduler.step()
                self.global_step += 1
                steps += 1
                norm_sum += norm
                norm_n += 1
                sums["loss_sum"] += loss * count
                sums["count"] += count
                for k, v in out.items():
                    if k not in ("loss", "count"):
                        sums[k] = sums.get(k, 0.0) + _number(v, k, where)
                if bar is not None:
                    elapsed = max(time.perf_counter() - start, 1e-9)
                    avg = sums["loss_sum"] / sums["count"] if sums["count"] else math.nan
                    bar.set_postfix(
                        loss=f"{avg:.4f}", items_s=f"{sums['count'] / elapsed:.0f}", refresh=False
                    )
                    bar.update(1)  # redraws (postfix included) at most every 0.1 s
        finally:
            if bar is not None:
                bar.close()
        seconds = time.perf_counter() - start
        if reducer is not None:  # loss_sum and count are global already; the other sums are not
            local = {k: v for k, v in sums.items() if k not in ("loss_sum", "count")}
            sums.update(_dist.allreduce_sums(local, self.world))
        metrics_fn = getattr(model, "epoch_metrics", None)
        train_metrics = metrics_fn(dict(sums)) if callable(metrics_fn) else None
        if not train_metrics or "loss" not in train_metrics:
            train_metrics = {**default_epoch_metrics(sums), **(train_metrics or {})}
        row: dict[str, Any] = {"epoch": epoch, "steps": steps}
        row.update({f"train_{k}": float(v) for k, v in train_metrics.items()})
        row["lr"] = self._lr()
        row["grad_norm"] = norm_sum / norm_n if norm_n else math.nan
        row["skipped_steps"] = skipped
        row["train_seconds"] = seconds
        if has_count:
            row["tokens_per_s"] = sums["count"] / seconds if seconds > 0 else math.nan
        if reducer is not None:
            row["allreduce_seconds"] = reducer.seconds - reduce_start
        return row

    def evaluate(self, batches: Batches) -> dict[str, float]:
        """Run ``validation_step`` over ``batches`` (eval mode) and return the epoch metrics.

        Args:
            batches: a re-iterable of batches or a zero-argument callable returning one.

        Returns:
            ``model.epoch_metrics(sums)`` (default ``{"loss": loss_sum / count}``), where sums
            adds up every number the validation steps returned (over all ranks in a distributed
            run: a collective, call it on every rank with each rank's slices).
        """
        model = self.model
        step_fn = getattr(model, "validation_step", None)
        if not callable(step_fn):
            raise TypeError(
                f"Trainer: model {type(model).__name__} must implement validation_step(batch) "
                "to be evaluated"
            )
        # Inference mode without eval(): a forward saved for a backward still to come survives.
        with inference_mode(model):
            if callable(getattr(model, "on_epoch_start", None)):
                model.on_epoch_start(False)
            sums: dict[str, float] = {}
            where = f"{type(model).__name__}.validation_step"
            for batch in self._iterate(batches, "batches"):
                if batch is None:  # an empty slice of a global batch (distributed)
                    continue
                out = step_fn(batch)
                if not isinstance(out, Mapping):
                    raise TypeError(f"{where} must return a dict of sums, got {type(out).__name__}")
                for k, v in out.items():
                    sums[k] = sums.get(k, 0.0) + _number(v, k, where)
            if self.world.size > 1:  # every rank saw its slices: the metrics are of their union
                sums = _dist.allreduce_sums(sums, self.world)
            metrics_fn = getattr(model, "epoch_metrics", None)
            metrics = metrics_fn(dict(sums)) if callable(metrics_fn) else None
            if metrics is None:
                metrics = default_epoch_metrics(sums)
            return {k: float(v) for k, v in metrics.items()}

    def fit(
        self,
        train_batches: Batches,
        val_batches: Batches | None = None,
        *,
        resume_from: str | os.PathLike | None = None,
    ) -> list[dict[str, Any]]:
        """Train for the remaining epochs.

        Args:
            train_batches: a re-iterable of batches (iterated once per epoch: a list,
                ``rnncore.data.BPTTBatches``, ...) or a zero-argument callable returning a fresh
                iterable per epoch. An object with ``set_epoch(i)`` gets it before epoch i
                (counting from 0) so its shuffling depends on the epoch only.
            val_batches: the same for validation after every epoch, or None.
            resume_from: a checkpoint (or checkpoint_dir) to continue from, see :meth:`load`.

        Returns:
            ``self.history``: one dict per epoch (see the class docstring).

        Raises:
            TrainingDiverged: a NaN/inf loss or gradient norm with ``stop_on_nonfinite``.
        """
        self._check_reiterable(train_batches, "train_batches")
        self._check_reiterable(val_batches, "val_batches")
        if resume_from is not None:
            self.load(resume_from)
        if self._pending_rng:
            set_rng_state(self._pending_rng, self._rng_objects(train_batches, val_batches))
            self._pending_rng = None
        if self.stopped_early:
            self._say(f"early stopping already triggered at epoch {self.epoch}; nothing to do")
            return self.history
        while self.epoch < self.epochs:
            epoch = self.epoch + 1
            epoch_start = time.perf_counter()
            set_epoch = getattr(train_batches, "set_epoch", None)
            if callable(set_epoch):
                set_epoch(self.epoch)
            row = self._train_epoch(train_batches, epoch)
            if val_batches is not None:
                row.update({f"val_{k}": v for k, v in self.evaluate(val_batches).items()})
            value = self._monitored(row)
            if self.scheduler is not None and self.scheduler_interval == "epoch":
                if isinstance(self.scheduler, ReduceLROnPlateau):
                    self.scheduler.step(value)
                else:
                    self.scheduler.step()
            row["seconds"] = time.perf_counter() - epoch_start
            self.epoch = epoch
            self.history.append(row)
            improved = self._is_better(value)
            if improved:
                self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            else:
                self.bad_epochs += 1
            patience = self.early_stopping_patience
            if patience is not None and self.bad_epochs >= patience:
                self.stopped_early = True
            self._say(self._summary(row, improved))
            if self.metrics_path is not None and self.writes:
                write_history(self.history, self.metrics_path)
            if (
                self.plot_path is not None
                and self.writes
                and time.perf_counter() - self._plotted >= 30.0
            ):
                self._plot()
            if self.checkpoint_dir is not None:
                if improved:
                    self.save(self.checkpoint_dir / "best", row, train_batches, val_batches)
                self.save(self.checkpoint_dir / "last", row, train_batches, val_batches)
            if self.stopped_early:
                self._say(
                    f"early stopping: no improvement of {self.monitor} for {self.bad_epochs} "
                    f"epochs (best {self.best:.6g} at epoch {self.best_epoch})"
                )
                break
        if (
            self.plot_path is not None
            and self.writes
            and self.history
            and self._plotted_epoch != self.epoch
        ):
            self._plot()
        return self.history

    def _plot(self) -> None:
        plot_history(self.history, self.plot_path)
        self._plotted = time.perf_counter()
        self._plotted_epoch = self.epoch

    def _step_line(
        self,
        epoch: int,
        step: int,
        total: int | None,
        sums: Mapping[str, float],
        has_count: bool,
        elapsed: float,
    ) -> str:
        """``epoch 2/10  step 300/1200  loss 1.2345  5210 items/s  ETA 3m05s`` after ``step``
        steps of the epoch (the loss is the epoch's running mean)."""
        parts = [f"epoch {epoch}/{self.epochs}", f"step {step}" + (f"/{total}" if total else "")]
        avg = sums["loss_sum"] / sums["count"] if sums["count"] else math.nan
        parts.append(f"loss {avg:.4f}")
        elapsed = max(elapsed, 1e-9)
        if has_count:
            parts.append(f"{sums['count'] / elapsed:.0f} items/s")
        else:
            parts.append(f"{step / elapsed:.1f} steps/s")
        if total:
            parts.append(f"ETA {_duration(elapsed / step * max(total - step, 0))}")
        return "  ".join(parts)

    def _summary(self, row: Mapping[str, Any], improved: bool) -> str:
        parts = [f"epoch {row['epoch']}/{self.epochs}"]
        for k, v in row.items():
            if k.startswith(("train_", "val_")) and k != "train_seconds":
                parts.append(f"{k} {v:.4f}")
        parts.append(f"lr {row['lr']:.3g}")
        if "tokens_per_s" in row:
            parts.append(f"{row['tokens_per_s']:.0f} items/s")
        parts.append(f"{row['seconds']:.1f} s")
        if row.get("skipped_steps"):
            parts.append(f"{row['skipped_steps']} skipped")
        if improved:
            parts.append("*")
        return "  ".join(parts)
