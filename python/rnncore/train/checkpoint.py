"""Checkpoints: a directory with the weights, the config and the training state, written atomically.

Layout of a checkpoint directory::

    model.safetensors       the model's state_dict() (each shared buffer once, see below)
    checkpoint.json         format, version, model_type/model_config, dtype, vocab(s), extra,
                            epoch, step, metrics, rng state, optimizer/scheduler state, trainer
    optimizer.safetensors   optimizer buffers "state.<param index>.<buffer>" (when saved)

Writing goes to a temporary directory next to the target; every file is fsync'ed, then the
directory, then the old checkpoint (if any) is moved aside, the new one renamed into place, and
the old one deleted. A crash at any point leaves either the previous checkpoint in place or,
within the instant between the two renames, in the backup ``.<name>.old-<pid>`` next to it, which
:func:`load_checkpoint` falls back to.

Weight tying: parameters whose data are the same memory (e.g. a decoder using the embedding's
matrix) are stored once, under the first name met; ``checkpoint.json`` lists the others in
``"tied"`` (alias -> stored name) and loading fills them from the stored tensor. A model can also
declare ties it implements by copying, with a ``tied_parameters`` attribute or method returning
{alias: name}.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .. import _core, _version
from .. import cuda as _cuda
from ..nn import Module, ParameterBudgetError, parameter_budget
from ..serialization import (
    SafetensorsError,
    load_safetensors,
    save_safetensors,
    strict_json_loads,
)
from . import _jsonable
from .rng import get_rng_state, set_rng_state

__all__ = [
    "FORMAT",
    "VERSION",
    "MODEL_FILE",
    "META_FILE",
    "OPTIMIZER_FILE",
    "CheckpointError",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "resolve_checkpoint",
    "model_tensors",
    "tied_parameters",
]

# The layout is declared once, in the engine (rnncore/checkpoint_format.h), which the C++ loaders
# read; these are its values.
_LAYOUT = _core.checkpoint_format()
FORMAT: str = _LAYOUT["format"]
VERSION: int = _LAYOUT["version"]
MODEL_FILE: str = _LAYOUT["model_file"]
META_FILE: str = _LAYOUT["meta_file"]
OPTIMIZER_FILE: str = _LAYOUT["optimizer_file"]
TENSORS_FORMAT: str = _LAYOUT["tensors_format"]

PathLike = str | os.PathLike


class CheckpointError(ValueError):
    """A checkpoint that cannot be read (missing part, truncated, corrupted, wrong format), or a
    checkpoint that does not fit the model/optimizer it is restored into. The message names the
    file."""


# What interpreting a damaged file's contents can raise anywhere below (a wrong type where a dict
# was expected, a missing key, a number too large, JSON nested too deep, a constructor refusing a
# config value): each becomes a CheckpointError naming the file, as the C++ loader does.
_CONTENT_ERRORS = (
    TypeError,
    ValueError,
    KeyError,
    AttributeError,
    IndexError,
    OverflowError,
    RecursionError,
)


@contextlib.contextmanager
def _reading(file: Path, what: str) -> Iterator[None]:
    """Turns the errors of interpreting ``file``'s contents into CheckpointError."""
    try:
        yield
    except (CheckpointError, ParameterBudgetError):  # already say what is wrong
        raise
    except _CONTENT_ERRORS as e:
        raise CheckpointError(f"{file}: {what}: {type(e).__name__}: {e}") from None


# ---- tied parameters --------------------------------------------------------------------------
def _address(a: Any) -> int:
    if isinstance(a, _cuda.DeviceArray):
        return a.ptr
    return int(a.__array_interface__["data"][0])


def _overlap(a: Any, b: Any) -> bool:
    """Whether two parameter arrays share memory: numpy's test for host arrays, address ranges
    on one device for DeviceArrays (read in place: nothing is copied), False across the two."""
    if isinstance(a, _cuda.DeviceArray) or isinstance(b, _cuda.DeviceArray):
        if not (isinstance(a, _cuda.DeviceArray) and isinstance(b, _cuda.DeviceArray)):
            return False
        if a.device != b.device or not a.nbytes or not b.nbytes:
            return False
        return a.ptr < b.ptr + b.nbytes and b.ptr < a.ptr + a.nbytes
    return bool(np.shares_memory(a, b))


def tied_parameters(model: Module) -> dict[str, str]:
    """{alias: stored name} for the parameters of ``model`` that are another parameter's memory.

    Found by comparing the parameters' memory (same start, shape and dtype: the same buffer), plus
    whatever the model declares in a ``tied_parameters`` attribute or method.

    Raises:
        ValueError: two parameters partly overlap (no way to store them apart).
    """
    ties: dict[str, str] = {}
    owners: list[tuple[str, Any]] = []
    for name, p in model.named_parameters():
        d = p.data
        for other, od in owners:
            if not _overlap(d, od):
                continue
            if _address(d) == _address(od) and d.shape == od.shape and d.dtype == od.dtype:
                ties[name] = other
                break
            raise ValueError(f"parameters {other} and {name} partly overlap in memory")
        else:
            owners.append((name, d))
    declared = getattr(model, "tied_parameters", None)
    if callable(declared):
        declared = declared()
    if declared:
        ties.update({str(k): str(v) for k, v in dict(declared).items()})
    return ties


def model_tensors(model: Module) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors a checkpoint stores for ``model``: (state_dict without tied aliases, ties).

    Returns:
        ({name: copy of the array}, {alias: stored name}).
    """
    ties = tied_parameters(model)
    state = model.state_dict()
    return {k: v for k, v in state.items() if k not in ties}, ties


# ---- atomic directory writes ------------------------------------------------------------------
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _write_json(path: Path, obj: Any) -> None:
    """Strict JSON (no NaN/Infinity), fsync'ed."""
    text = json.dumps(obj, indent=1, allow_nan=False, ensure_ascii=False)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")
        f.flush()
        os.fsync(f.fileno())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _siblings(target: Path, kind: str) -> list[Path]:
    """Temporary (kind "tmp") or backup ("old") directories of ``target`` in its parent."""
    prefix = f".{target.name}.{kind}-"
    try:
        return [p for p in target.parent.iterdir() if p.name.startswith(prefix) and p.is_dir()]
    except OSError:
        return []


def _sibling_pid(p: Path) -> int | None:
    try:
        return int(p.name.rsplit("-", 2)[-2])  # .<name>.<kind>-<pid>-<random>
    except (ValueError, IndexError):
        return None


def _remove_stale(target: Path, kind: str) -> None:
    """Delete leftovers (``kind`` "tmp" or "old") of earlier failed writes of ``target``: those
    of this process (one write of a target at a time) and of processes that are gone."""
    for p in _siblings(target, kind):
        pid = _sibling_pid(p)
        if pid is not None and (pid == os.getpid() or not _pid_alive(pid)):
            shutil.rmtree(p, ignore_errors=True)


def _recover(target: Path) -> None:
    """Put back the newest backup when a writer died between its two renames."""
    if target.exists():
        return
    backups = [b for b in _siblings(target, "old") if _is_checkpoint(b)]
    if backups:
        os.rename(max(backups, key=lambda b: b.stat().st_mtime), target)


def _is_checkpoint(path: Path) -> bool:
    return (path / META_FILE).is_file()


def _commit(tmp: Path, target: Path) -> None:
    """Move the complete ``tmp`` directory to ``target``, keeping the old one until then."""
    if target.exists():
        backup = target.parent / f".{target.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.rename(target, backup)
        try:
            os.rename(tmp, target)
        except BaseException:
            os.rename(backup, target)
            raise
        _fsync_dir(target.parent)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        os.rename(tmp, target)
        _fsync_dir(target.parent)


# ---- save -------------------------------------------------------------------------------------
def _vocab_dict(vocab: Any, where: str) -> Any:
    if vocab is None or isinstance(vocab, Mapping):
        return None if vocab is None else dict(vocab)
    to_dict = getattr(vocab, "to_dict", None)
    if to_dict is None:
        raise TypeError(f"{where} must be a Vocab, a dict or None, got {type(vocab).__name__}")
    return to_dict()


def _optimizer_parts(optimizer: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    sd = optimizer.state_dict()
    tensors: dict[str, np.ndarray] = {}
    steps: dict[str, int] = {}
    for idx, entry in sd["state"].items():
        for key, value in entry.items():
            if key == "step":
                steps[str(int(idx))] = int(value)
            else:
                tensors[f"state.{int(idx)}.{key}"] = np.asarray(value)
    meta = {
        "file": OPTIMIZER_FILE,
        "class": type(optimizer).__name__,
        "param_groups": _jsonable.encode(sd["param_groups"], "optimizer.param_groups"),
        "steps": steps,
        "skipped_steps": int(sd.get("skipped_steps", 0)),
    }
    return meta, tensors


def save_checkpoint(
    path: PathLike,
    model: Module,
    *,
    optimizer: Any = None,
    scheduler: Any = None,
    vocab: Any = None,
    vocabs: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    epoch: int | None = None,
    step: int | None = None,
    metrics: Mapping[str, Any] | None = None,
    rng: bool | Mapping[str, Any] = True,
    trainer_state: Mapping[str, Any] | None = None,
    model_type: str | None = None,
    model_config: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory at ``path``, atomically (see the module docstring).

    Args:
        path: the checkpoint directory (created; an existing checkpoint there is replaced only
            once the new one is complete; an existing non-checkpoint directory is refused).
        model: the Module; its ``MODEL_TYPE`` and ``config()`` (if it has them, as
            :mod:`rnncore.models` classes do) make it rebuildable by :func:`load_checkpoint`.
        optimizer: an rnncore.optim optimizer whose state to keep (buffers in
            optimizer.safetensors), or None.
        scheduler: an LR scheduler whose state to keep, or None.
        vocab: a :class:`rnncore.data.Vocab` (or its ``to_dict()``), or None.
        vocabs: {name: Vocab} for models with several (e.g. source/target), or None.
        extra: any JSON-able dict the task wants back (numpy numbers and arrays allowed).
        epoch, step: training progress (completed epochs, optimizer steps).
        metrics: {name: number} at this point.
        rng: True: the random state of ``model`` (:func:`rnncore.train.rng.get_rng_state`);
            a dict: that state; False: none.
        trainer_state: the :class:`rnncore.train.Trainer`'s own state (for resuming), or None.
        model_type, model_config: override ``model.MODEL_TYPE`` / ``model.config()``.

    Returns:
        The checkpoint directory as a Path.
    """
    target = Path(path)
    where = f"save_checkpoint({os.fspath(target)!r})"
    if not isinstance(model, Module):
        raise TypeError(f"{where}: model must be an rnncore.nn.Module, got {type(model).__name__}")
    if target.exists():
        if not target.is_dir():
            raise ValueError(f"{where}: {target} exists and is not a directory")
        if any(target.iterdir()) and not _is_checkpoint(target):
            raise ValueError(
                f"{where}: {target} is a non-empty directory without {META_FILE}; refusing to "
                "replace it (give a path of its own to the checkpoint)"
            )
    tensors, ties = model_tensors(model)
    if model_type is None:
        model_type = getattr(model, "MODEL_TYPE", None)
    if model_config is None and callable(getattr(model, "config", None)):
        model_config = model.config()
    dtypes = {str(v.dtype) for v in tensors.values()}
    if rng is True:
        rng_state: Any = get_rng_state({"model": model})
    elif rng is False or rng is None:
        rng_state = None
    else:
        rng_state = dict(rng)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "rnncore_version": _version.__version__,
        "model_type": model_type,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "model_config": _jsonable.encode(model_config, "model_config"),
        "dtype": dtypes.pop() if len(dtypes) == 1 else sorted(dtypes),
        "tied": ties,
        "vocab": _vocab_dict(vocab, f"{where}: vocab"),
        "vocabs": None
        if vocabs is None
        else {k: _vocab_dict(v, f"{where}: vocabs[{k!r}]") for k, v in vocabs.items()},
        "extra": _jsonable.encode(extra, "extra"),
        "epoch": None if epoch is None else int(epoch),
        "step": None if step is None else int(step),
        "metrics": _jsonable.encode(metrics, "metrics"),
        "rng": _jsonable.encode(rng_state, "rng"),
        "optimizer": None,
        "scheduler": None,
        "trainer": _jsonable.encode(trainer_state, "trainer_state"),
    }
    opt_tensors = None
    if optimizer is not None:
        meta["optimizer"], opt_tensors = _optimizer_parts(optimizer)
    if scheduler is not None:
        meta["scheduler"] = {
            "class": type(scheduler).__name__,
            "state": _jsonable.encode(scheduler.state_dict(), "scheduler"),
        }
    target.parent.mkdir(parents=True, exist_ok=True)
    _recover(target)
    _remove_stale(target, "tmp")
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_safetensors(
            tmp / MODEL_FILE,
            tensors,
            {"format": TENSORS_FORMAT, "model_type": model_type or ""},
            fsync=True,
        )
        if opt_tensors is not None:
            save_safetensors(
                tmp / OPTIMIZER_FILE, opt_tensors, {"format": TENSORS_FORMAT}, fsync=True
            )
        _write_json(tmp / META_FILE, meta)  # last: its presence marks a complete checkpoint
        _fsync_dir(tmp)
        _commit(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _remove_stale(target, "old")
    return target


# ---- load -------------------------------------------------------------------------------------
def resolve_checkpoint(path: PathLike, prefer: tuple[str, ...] = ("best", "last")) -> Path:
    """The checkpoint directory that ``path`` stands for.

    ``path`` may be a checkpoint directory itself, or a Trainer's ``checkpoint_dir`` holding
    ``best/`` and ``last/`` (the first of ``prefer`` present is taken). When a checkpoint
    directory is missing because a writer crashed between its two renames, its backup is used.

    Raises:
        FileNotFoundError: nothing there, naming the checkpoint.json looked for.
    """
    p = Path(path)
    if _is_checkpoint(p):
        return p
    for sub in prefer:
        if _is_checkpoint(p / sub):
            return p / sub
    backups = [b for b in _siblings(p, "old") if _is_checkpoint(b)] if not p.exists() else []
    if backups:
        return max(backups, key=lambda b: b.stat().st_mtime)
    if p.is_dir():
        raise FileNotFoundError(
            f"no checkpoint at {p}: missing {p / META_FILE} (and no "
            f"{', '.join(prefer)} subdirectory with one)"
        )
    raise FileNotFoundError(f"no checkpoint at {p}: missing {p / META_FILE}")


def _read_meta(directory: Path) -> dict[str, Any]:
    file = directory / META_FILE
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{file}: not UTF-8 text ({e}); corrupted checkpoint") from None
    try:
        meta = strict_json_loads(text)
    except (ValueError, RecursionError) as e:
        raise CheckpointError(
            f"{file}: not valid JSON ({e}); the checkpoint is truncated or corrupted"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{file}: not an rnncore checkpoint (format != {FORMAT!r})")
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"{file}: checkpoint version {meta.get('version')!r} is not supported "
            f"(this rnncore reads version {VERSION})"
        )
    tied = meta.get("tied")
    if tied is not None and not (
        isinstance(tied, dict) and all(isinstance(v, str) for v in tied.values())
    ):
        raise CheckpointError(f"{file}: tied must be an object of parameter names")
    if not isinstance(meta.get("model_type"), (str, type(None))):
        raise CheckpointError(f"{file}: model_type must be a string or null")
    return meta


def _read_tensors(file: Path) -> dict[str, np.ndarray]:
    if not file.is_file():
        raise CheckpointError(f"{file}: missing from the checkpoint")
    try:
        tensors, _ = load_safetensors(file)
    except SafetensorsError as e:
        raise CheckpointError(f"{e}; the checkpoint is truncated or corrupted") from None
    return tensors


class Checkpoint:
    """A loaded checkpoint (from :func:`load_checkpoint`).

    Attributes:
        path: the checkpoint directory.
        model: the model with the weights loaded (and its random state restored).
        model_type, model_config, dtype: as saved.
        vocab: a :class:`rnncore.data.Vocab`, or None; vocabs: {name: Vocab} or None.
        extra, epoch, step, metrics: as saved (None when not saved).
        rng: the saved random state (see :mod:`rnncore.train.rng`), or None.
        trainer_state: the Trainer's state, or None.
        meta: the whole decoded checkpoint.json.
    """

    def __init__(self, path: Path, meta: dict[str, Any], model: Module | None) -> None:
        from ..data import Vocab

        self.path = path
        self.meta = meta
        self.model = model
        self.model_type = meta.get("model_type")
        self.model_config = _jsonable.decode(meta.get("model_config"))
        self.dtype = meta.get("dtype")
        self.vocab = None if meta.get("vocab") is None else Vocab.from_dict(meta["vocab"])
        vocabs = meta.get("vocabs")
        self.vocabs = None if vocabs is None else {k: Vocab.from_dict(v) for k, v in vocabs.items()}
        self.extra = _jsonable.decode(meta.get("extra"))
        self.epoch = meta.get("epoch")
        self.step = meta.get("step")
        self.metrics = _jsonable.decode(meta.get("metrics"))
        self.rng = _jsonable.decode(meta.get("rng"))
        self.trainer_state = _jsonable.decode(meta.get("trainer"))

    def __repr__(self) -> str:
        return (
            f"Checkpoint({os.fspath(self.path)!r}, model_type={self.model_type!r}, "
            f"epoch={self.epoch}, step={self.step})"
        )

    def restore_optimizer(self, optimizer: Any) -> None:
        """Load the saved optimizer state into ``optimizer`` (built on the same parameters).

        Raises:
            CheckpointError: no optimizer state saved, another optimizer class, or a mismatch.
        """
        info = self.meta.get("optimizer")
        file = self.path / OPTIMIZER_FILE
        if info is None:
            raise CheckpointError(f"{self.path / META_FILE}: no optimizer state was saved")
        if not isinstance(info, dict) or info.get("class") != type(optimizer).__name__:
            saved = info.get("class") if isinstance(info, dict) else info
            raise CheckpointError(
                f"{self.path / META_FILE}: the optimizer state is {saved}'s, "
                f"cannot restore it into {type(optimizer).__name__}"
            )
        tensors = _read_tensors(file)
        with _reading(self.path / META_FILE, "optimizer"):
            state: dict[int, dict[str, Any]] = {
                int(i): {"step": int(s)} for i, s in info.get("steps", {}).items()
            }
            for name, arr in tensors.items():
                parts = name.split(".")
                if len(parts) != 3 or parts[0] != "state" or int(parts[1]) not in state:
                    raise CheckpointError(f"{file}: unexpected tensor {name!r}")
                state[int(parts[1])][parts[2]] = arr
            sd = {
                "state": state,
                "param_groups": _jsonable.decode(info["param_groups"]),
                "skipped_steps": int(info.get("skipped_steps", 0)),
            }
        try:
            optimizer.load_state_dict(sd)
        except (ValueError, TypeError, KeyError) as e:
            raise CheckpointError(f"{file}: does not fit this optimizer: {e}") from None

    def restore_scheduler(self, scheduler: Any) -> None:
        """Load the saved LR-scheduler state into ``scheduler`` (same class).

        Raises:
            CheckpointError: none saved, or another class.
        """
        info = self.meta.get("scheduler")
        if info is None:
            raise CheckpointError(f"{self.path / META_FILE}: no scheduler state was saved")
        if not isinstance(info, dict) or info.get("class") != type(scheduler).__name__:
            raise CheckpointError(
                f"{self.path / META_FILE}: the scheduler state is not {type(scheduler).__name__}'s"
            )
        with _reading(self.path / META_FILE, "scheduler"):
            scheduler.load_state_dict(_jsonable.decode(info["state"]))

    def restore_rng(self, objects: Mapping[str, Any], *, restore_global: bool = False) -> list[str]:
        """Restore the saved random state into ``objects`` (e.g. ``{"model": model}``), and
        numpy's global random state only with ``restore_global``; returns the paths restored
        (see :func:`rnncore.train.rng.set_rng_state`)."""
        if not self.rng:
            return []
        return set_rng_state(self.rng, objects, restore_global=restore_global)


def load_checkpoint(
    path: PathLike, model: Module | None = None, *, restore_rng: bool = True
) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: the checkpoint directory, or a Trainer checkpoint_dir (its ``best/`` is taken,
            else ``last/``).
        model: load the weights into this model instead of building one with
            ``rnncore.models.build(model_type, model_config)`` (needed for models that are not
            registered).
        restore_rng: also restore the model's random state (dropout generators and counters).

    Every error of reading or interpreting the files is a CheckpointError naming the file.
    A model built here comes back in inference mode (``eval()``), with the run's vocabulary,
    class names and lower-casing attached where it has them (so ``ckpt.model.predict(texts)``
    works); a model passed in keeps its mode.

    Returns:
        A :class:`Checkpoint`.

    Raises:
        FileNotFoundError: no checkpoint there.
        CheckpointError: a file of it is truncated, corrupted or does not fit the model (the
            message names the file).
    """
    directory = resolve_checkpoint(path)
    meta = _read_meta(directory)
    tensors = _read_tensors(directory / MODEL_FILE)
    built_here = model is None
    if model is None:
        model_type = meta.get("model_type")
        if model_type is None:
            raise CheckpointError(
                f"{directory / META_FILE}: the model ({meta.get('model_class')}) has no "
                "MODEL_TYPE; pass the model to load_checkpoint(path, model=...)"
            )
        from .. import models

        with _reading(directory / META_FILE, "model_config"):
            config = _jsonable.decode(meta.get("model_config")) or {}
        # The model may hold no more parameters than the file stores (each tied alias counted
        # again): an inflated model_config fails here, before anything big is allocated.
        stored = {k: int(v.size) for k, v in tensors.items()}
        budget = sum(stored.values()) + sum(
            stored.get(t, 0) for t in (meta.get("tied") or {}).values()
        )
        try:
            with parameter_budget(budget), _reading(directory / META_FILE, "model_config"):
                if not isinstance(config, dict):
                    raise TypeError(f"must be an object, got {type(config).__name__}")
                model = models.build(model_type, config)
        except ParameterBudgetError as e:
            raise CheckpointError(
                f"{directory / META_FILE}: model_config does not fit {MODEL_FILE}, which holds "
                f"{budget} parameters ({e})"
            ) from None
        except MemoryError:
            raise CheckpointError(
                f"{directory / META_FILE}: model_config asks for more memory than this machine "
                f"has ({MODEL_FILE} holds {budget} parameters)"
            ) from None
    with _reading(directory / META_FILE, "tied"):
        ties = dict(meta.get("tied") or {})
    ties.update(tied_parameters(model))
    for alias, stored in ties.items():
        if alias not in tensors and stored in tensors:
            tensors[alias] = tensors[stored]
    own = {name for name, _ in model.named_parameters()}
    state = {k: v for k, v in tensors.items() if k in own or k not in ties}
    try:
        model.load_state_dict(state, strict=True)
    except (KeyError, ValueError, TypeError) as e:
        msg = e.args[0] if e.args else str(e)
        raise CheckpointError(f"{directory / MODEL_FILE}: does not fit the model: {msg}") from None
    with _reading(directory / META_FILE, "checkpoint fields"):
        ckpt = Checkpoint(directory, meta, model)
    if restore_rng:
        with _reading(directory / META_FILE, "rng"):
            ckpt.restore_rng({"model": model})
    if built_here:
        model.eval()  # ready to predict; call model.train() to train on
    _attach_text_meta(model, ckpt)
    return ckpt


def _attach_text_meta(model: Module, ckpt: Checkpoint) -> None:
    """Give a text model what its text-level predict needs (the run's Vocab, class names and
    lower-casing), where the model has such an attribute and it is still unset."""
    extra = ckpt.extra if isinstance(ckpt.extra, Mapping) else {}
    labels = extra.get("labels")
    for attr, value in (
        ("vocab", ckpt.vocab),
        ("labels", list(labels) if isinstance(labels, list) else None),
        ("char_vocab", (ckpt.vocabs or {}).get("chars")),
    ):
        if value is not None and hasattr(model, attr) and getattr(model, attr) is None:
            setattr(model, attr, value)
    if isinstance(extra.get("lowercase"), bool) and hasattr(model, "lowercase"):
        model.lowercase = extra["lowercase"]
