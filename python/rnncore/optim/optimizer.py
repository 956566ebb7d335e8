"""The Optimizer base: parameter groups, flat runs of parameters, state_dict, non-finite skipping.

Grouping choice. Parameters arrive as :class:`rnncore.nn.Parameter` objects whose ``data`` and
``grad`` are numpy views. Within each parameter group, consecutive parameters whose data lie next to
each other in memory, and whose gradients do too (same dtype, C-contiguous), form one *run*: a flat
1-d view over all of them. A recurrent layer (one flat buffer per layer), a Linear (weight and bias
in one buffer) or an Embedding is therefore one run, and an optimizer step is one engine call per
run, whatever the number of parameter arrays. Parameters that are not adjacent simply form runs of
their own (one engine call per array). The optimizer's state (moments, momentum buffers) is flat
per run as well; ``state_dict`` still reports it per parameter, PyTorch-style, so a checkpoint does
not depend on how the parameters happened to be laid out.

Frozen parameters (``requires_grad = False``, see :class:`rnncore.nn.Parameter`) are skipped as
PyTorch skips a parameter whose grad is None: no update (weight decay included), no state, no step
count. A run never mixes frozen and trainable parameters: a run whose members disagree (a
parameter frozen or unfrozen after the optimizer was built) is cut into runs that agree before the
next step, each keeping its slice of the state.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .. import _core
from .. import cuda as _cuda


def _number(value: Any, name: str, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{owner}: {name} must be a number, got {type(value).__name__}")
    v = float(value)
    if math.isnan(v):
        raise ValueError(f"{owner}: {name} must not be NaN")
    return v


def check_finite(value: Any, name: str, owner: str) -> float:
    """``value`` as a finite float, else TypeError/ValueError naming ``name``."""
    v = _number(value, name, owner)
    if not math.isfinite(v):
        raise ValueError(f"{owner}: {name} must be finite, got {value}")
    return v


def check_positive(value: Any, name: str, owner: str) -> float:
    """``value`` as a float > 0 and finite, else TypeError/ValueError naming ``name``."""
    v = _number(value, name, owner)
    if not (v > 0.0 and math.isfinite(v)):
        raise ValueError(f"{owner}: {name} must be > 0 and finite, got {value}")
    return v


def check_nonneg(value: Any, name: str, owner: str) -> float:
    """``value`` as a float >= 0 and finite, else TypeError/ValueError naming ``name``."""
    v = _number(value, name, owner)
    if not (v >= 0.0 and math.isfinite(v)):
        raise ValueError(f"{owner}: {name} must be >= 0 and finite, got {value}")
    return v


def check_unit(value: Any, name: str, owner: str) -> float:
    """``value`` as a float in [0, 1), else TypeError/ValueError naming ``name``."""
    v = _number(value, name, owner)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{owner}: {name} must be in [0, 1), got {value}")
    return v


#: Optimizer state buffers that accumulate squares (Adam's second moment, RMSprop's and
#: Adadelta's averages, Adagrad's sum): never negative in a state an optimizer wrote.
_SQUARE_STATES = frozenset({"exp_avg_sq", "max_exp_avg_sq", "square_avg", "acc_delta", "sum"})


def _address(a: Any) -> int:
    if isinstance(a, _cuda.DeviceArray):
        return a.ptr
    return int(a.__array_interface__["data"][0])


def _flat_view(first: Any, size: int) -> Any:
    """A 1-d view of ``size`` elements starting at ``first``'s data. Only called for spans whose
    every byte belongs to one of the run's (adjacent, contiguous) arrays."""
    if isinstance(first, _cuda.DeviceArray):  # a parameter on a GPU: its module's flat buffer
        return first._view(0, (size,))
    base = first.reshape(-1)
    if size == base.size:
        return base
    return np.lib.stride_tricks.as_strided(base, shape=(size,), strides=(base.itemsize,))


def _moved(run: _Run) -> bool:
    """Whether the run's first parameter has other arrays than when the run was built (its
    module moved to another device since)."""
    p = run.params[0]
    return p.data is not run.source[0] or p.grad is not run.source[1]


def _all_finite(grads: list[Any]) -> bool:
    """No NaN or infinity among host and device gradient arrays."""
    host = [g for g in grads if not isinstance(g, _cuda.DeviceArray)]
    device = [g for g in grads if isinstance(g, _cuda.DeviceArray)]
    return (not host or _core.all_finite(host)) and (not device or _cuda.all_finite(device))


def _trainable(p: Any) -> bool:
    """A parameter's ``requires_grad`` (objects without one train)."""
    return bool(getattr(p, "requires_grad", True))


class _Run:
    """A flat span of adjacent parameters of one group: data [P], grad [P], state buffers [P]."""

    __slots__ = ("data", "grad", "members", "params", "state", "step", "source")

    def __init__(
        self,
        data: np.ndarray,
        grad: np.ndarray,
        members: list[tuple[int, int, int, tuple[int, ...]]],
        params: list[Any],
    ):
        self.data = data
        self.grad = grad
        self.members = members  # (param index, offset, size, shape)
        self.params = params  # the Parameter of each member
        self.state: dict[str, np.ndarray] = {}
        self.step = 0
        # The first member's array objects when the run was built: a module that moves gives
        # its parameters new ones (an identity test per step, see Optimizer._follow_moved...).
        self.source = (params[0].data, params[0].grad)

    @property
    def trainable(self) -> bool:
        """Whether the members train (runs are kept uniform, see :func:`_split_run`)."""
        return _trainable(self.params[0])

    @property
    def ops(self) -> Any:
        """Where the run's update runs: the CPU engine (``_core``), or the GPU
        (``rnncore.cuda``'s functions of the same names and arguments) for parameters there."""
        return _cuda if isinstance(self.data, _cuda.DeviceArray) else _core


def _split_run(run: _Run, labels: list[Any]) -> list[_Run]:
    """``run`` cut wherever ``labels`` (one per member) changes; each piece views its span of the
    parameters and keeps a copy of its slice of the state, and the step count. [run] if uniform."""
    if all(label == labels[0] for label in labels):
        return [run]
    pieces = []
    start = 0
    for k in range(1, len(labels) + 1):
        if k < len(labels) and labels[k] == labels[start]:
            continue
        members = run.members[start:k]
        lo, hi = members[0][1], members[-1][1] + members[-1][2]
        piece = _Run(
            run.data[lo:hi],
            run.grad[lo:hi],
            [(i, off - lo, size, shape) for i, off, size, shape in members],
            run.params[start:k],
        )
        piece.state = {key: buf[lo:hi].copy() for key, buf in run.state.items()}
        piece.step = run.step
        pieces.append(piece)
        start = k
    return pieces


def _split_frozen(runs: list[_Run]) -> list[_Run]:
    """``runs`` with every run that mixes frozen and trainable parameters cut apart."""
    return [piece for run in runs for piece in _split_run(run, [_trainable(p) for p in run.params])]


def _build_runs(params: list[Any], first_index: int) -> list[_Run]:
    runs: list[_Run] = []
    pending: list[tuple[int, Any]] = []  # (index, param) of the run being built
    end_d = end_g = -1

    def close() -> None:
        if not pending:
            return
        first = pending[0][1]
        size = sum(p.data.size for _, p in pending)
        members, off = [], 0
        for i, p in pending:
            members.append((i, off, p.data.size, p.data.shape))
            off += p.data.size
        runs.append(
            _Run(
                _flat_view(first.data, size),
                _flat_view(first.grad, size),
                members,
                [p for _, p in pending],
            )
        )
        pending.clear()

    for k, p in enumerate(params):
        d, g = p.data, p.grad
        if d.size == 0:
            continue
        if (
            pending
            and d.dtype == pending[0][1].data.dtype
            and type(d) is type(pending[0][1].data)
            and _address(d) == end_d
            and _address(g) == end_g
        ):
            pending.append((first_index + k, p))
        else:
            close()
            pending.append((first_index + k, p))
        end_d = _address(d) + d.nbytes
        end_g = _address(g) + g.nbytes
    close()
    return runs


class Optimizer:
    """Base of rnncore's optimizers, shaped like ``torch.optim.Optimizer``.

    Args:
        params: an iterable of Parameters (e.g. ``model.parameters()``), or of dicts
            ``{"params": [...], <hyperparameter overrides>}`` for several groups.
        defaults: the hyperparameters every group starts from.
        skip_nonfinite: when True, ``step()`` first checks every gradient (one engine pass) and,
            if any is NaN or infinite, changes nothing and counts the step in ``skipped_steps``.

    ``param_groups`` is a list of dicts; their hyperparameters (``'lr'`` in particular, which the
    schedulers edit) are read at every ``step()``.
    """

    def __init__(self, params: Any, defaults: dict[str, Any], skip_nonfinite: bool = False) -> None:
        owner = type(self).__name__
        if isinstance(params, np.ndarray) or hasattr(params, "data") and hasattr(params, "grad"):
            raise TypeError(
                f"{owner}: params must be an iterable of Parameters or of dicts, got a single "
                f"{type(params).__name__} (wrap it in a list)"
            )
        if not isinstance(params, Iterable):
            raise TypeError(f"{owner}: params must be an iterable, got {type(params).__name__}")
        groups = list(params)
        if not groups:
            raise ValueError(f"{owner}: params is an empty list (nothing to optimize)")
        if not all(isinstance(g, Mapping) for g in groups):
            if any(isinstance(g, Mapping) for g in groups):
                raise TypeError(f"{owner}: params must be all Parameters or all dicts, not a mix")
            groups = [{"params": groups}]
        self.defaults = dict(defaults)
        self.skip_nonfinite = bool(skip_nonfinite)
        self.skipped_steps = 0
        self.param_groups: list[dict[str, Any]] = []
        self._runs: list[list[_Run]] = []
        self._ranges: list[tuple[int, int, str]] = []  # byte ranges of every parameter's data
        self._count = 0
        self._relocating = False
        for g in groups:
            self.add_param_group(g)

    # ---- groups ----------------------------------------------------------------------------
    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Add a group ``{"params": [...], ...}``; missing hyperparameters come from defaults."""
        owner = type(self).__name__
        self._follow_moved_parameters()  # the overlap check below reads the current addresses
        if not isinstance(param_group, Mapping) or "params" not in param_group:
            raise TypeError(f"{owner}: a param group must be a dict with a 'params' key")
        group = dict(param_group)
        plist = group["params"]
        if isinstance(plist, np.ndarray) or hasattr(plist, "grad"):
            plist = [plist]
        plist = list(plist)
        if not plist:
            raise ValueError(f"{owner}: a param group has an empty 'params' list")
        ranges = list(self._ranges)
        for k, p in enumerate(plist):
            d, g = getattr(p, "data", None), getattr(p, "grad", None)
            name = getattr(p, "name", f"params[{k}]")
            on_gpu = isinstance(d, _cuda.DeviceArray) and isinstance(g, _cuda.DeviceArray)
            if not on_gpu and (not isinstance(d, np.ndarray) or not isinstance(g, np.ndarray)):
                raise TypeError(
                    f"{owner}: params[{k}] must be a Parameter (numpy .data and .grad, or "
                    f"DeviceArrays on a GPU), got {type(p).__name__}"
                )
            if d.dtype not in (np.float32, np.float64) or g.dtype != d.dtype:
                raise TypeError(
                    f"{owner}: parameter {name}: data and grad must both be float32 or float64, "
                    f"got {d.dtype} and {g.dtype}"
                )
            if d.shape != g.shape:
                raise ValueError(
                    f"{owner}: parameter {name}: data {d.shape} and grad {g.shape} differ"
                )
            if on_gpu and d.device != g.device:
                raise ValueError(f"{owner}: parameter {name}: data and grad on different devices")
            if not on_gpu and not (d.flags.c_contiguous and g.flags.c_contiguous):
                raise ValueError(f"{owner}: parameter {name}: data and grad must be C-contiguous")
            if not on_gpu and not (d.flags.writeable and g.flags.writeable):
                raise ValueError(f"{owner}: parameter {name}: data and grad must be writable")
            if d.size:
                ranges.append((_address(d), _address(d) + d.nbytes, name))
        ranges.sort()
        for (_s0, e0, n0), (s1, _e1, n1) in zip(ranges, ranges[1:], strict=False):
            if s1 < e0:
                raise ValueError(
                    f"{owner}: parameters {n0} and {n1} share memory (a parameter listed twice, "
                    "or in two groups)"
                )
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        group["params"] = plist
        # A new group must start with lr > 0; a schedule may later bring it down to 0.
        check_positive(group.get("lr"), "lr", owner)
        self._check_group(group)
        self._ranges = ranges
        self._runs.append(_split_frozen(_build_runs(plist, self._count)))
        self._count += len(plist)
        self.param_groups.append(group)

    def _check_group(self, group: dict[str, Any]) -> None:
        """Validate (and normalise) a group's hyperparameters, raising ValueError or TypeError
        naming the key. ``lr`` >= 0 is enough here: a loaded checkpoint may hold a scheduled 0."""

    @property
    def num_engine_calls(self) -> int:
        """Engine calls one ``step()`` makes: the number of flat runs over all groups."""
        return sum(len(r) for r in self._runs)

    # ---- steps -----------------------------------------------------------------------------
    def _all_runs(self) -> list[_Run]:
        return [r for runs in self._runs for r in runs]

    def _follow_moved_parameters(self) -> None:
        """Rebuilds the runs over the parameters' current arrays when a module moved
        (``Module.to``) since they were built, each parameter keeping its step count and state,
        copied to where it now lives: as in PyTorch, an optimizer built before ``model.to()``
        goes on working (a step over the old arrays would change nothing the model reads)."""
        if self._relocating or not any(_moved(r) for r in self._all_runs()):
            return
        self._relocating = True
        old_runs, old_ranges = self._runs, self._ranges
        try:
            by_index = {int(k): e for k, e in self.state_dict()["state"].items()}
            runs, start = [], 0
            for group in self.param_groups:
                runs.append(_split_frozen(_build_runs(group["params"], start)))
                start += len(group["params"])
            owner = f"{type(self).__name__}: following moved parameters"
            new_runs, states = self._restore_plan(runs, by_index, owner, check_values=False)
            for run, step, bufs in states:
                run.step, run.state = step, bufs
            self._runs = new_runs
            self._ranges = sorted(
                (_address(p.data), _address(p.data) + p.data.nbytes, getattr(p, "name", ""))
                for group in self.param_groups
                for p in group["params"]
                if p.data.size
            )
        except BaseException:
            self._runs, self._ranges = old_runs, old_ranges
            raise
        finally:
            self._relocating = False

    def zero_grad(self) -> None:
        """Set every gradient of every group to zero (one fill per run)."""
        self._follow_moved_parameters()
        for run in self._all_runs():
            run.grad[...] = 0

    def step(self) -> bool:
        """Apply one update to every trainable parameter of every group (frozen ones, with
        ``requires_grad = False``, are left alone).

        Returns:
            True when applied; False when skipped because ``skip_nonfinite`` is set and some
            trainable gradient is NaN or infinite (``skipped_steps`` then grows by one; nothing
            changes).
        """
        self._follow_moved_parameters()
        self._runs = [_split_frozen(runs) for runs in self._runs]  # a flag changed since
        if self.skip_nonfinite and not _all_finite(
            [r.grad for r in self._all_runs() if r.trainable]
        ):
            self.skipped_steps += 1
            return False
        for gi, (group, runs) in enumerate(zip(self.param_groups, self._runs, strict=True)):
            try:
                self._check_step_group(group)
                for run in runs:
                    if not run.trainable:
                        continue
                    run.step += 1
                    self._update(run, group)
            except (ValueError, TypeError) as e:
                raise type(e)(f"{type(self).__name__}.step: param_groups[{gi}]: {e}") from None
        return True

    def _check_step_group(self, group: dict[str, Any]) -> None:
        lr = group.get("lr")
        if isinstance(lr, bool) or not isinstance(lr, (int, float, np.integer, np.floating)):
            raise TypeError(f"lr must be a number, got {type(lr).__name__}")
        if not (lr >= 0 and math.isfinite(lr)):
            raise ValueError(f"lr must be >= 0 and finite, got {lr}")

    def _update(self, run: _Run, group: dict[str, Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _buffer(self, run: _Run, key: str, fill: float = 0.0) -> np.ndarray:
        """The run's state buffer ``key``, created (filled with ``fill``) on first use."""
        buf = run.state.get(key)
        if buf is None:
            if isinstance(run.data, _cuda.DeviceArray):  # the state lives with the parameters
                buf = _cuda.DeviceArray(run.data.shape, run.data.dtype, run.data.device)
                buf.fill(fill)
            else:
                buf = np.full(run.data.shape, fill, dtype=run.data.dtype)
            run.state[key] = buf
        return buf

    # ---- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A deep copy of the optimizer's state, PyTorch-shaped.

        Returns:
            ``{"state": {index: {"step": int, <buffer name>: array shaped like the parameter}},
            "param_groups": [{<hyperparameters>, "params": [indices]}], "skipped_steps": int}``
            with indices counting the parameters over all groups in order. Parameters that have
            not been stepped yet have no entry, as in PyTorch.
        """
        self._follow_moved_parameters()
        state: dict[int, dict[str, Any]] = {}
        for run in self._all_runs():
            if run.step == 0 and not run.state:
                continue
            for idx, off, size, shape in run.members:
                entry: dict[str, Any] = {"step": run.step}
                for key, buf in run.state.items():  # numpy copies, wherever the state lives
                    entry[key] = np.array(buf[off : off + size].reshape(shape), copy=True)
                state[idx] = entry
        groups = []
        start = 0
        for group in self.param_groups:
            g = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            g["params"] = list(range(start, start + len(group["params"])))
            start += len(group["params"])
            groups.append(g)
        return {"state": state, "param_groups": groups, "skipped_steps": self.skipped_steps}

    def _restore_plan(
        self,
        runs: list[list[_Run]],
        by_index: Mapping[int, Mapping[str, Any]],
        owner: str,
        check_values: bool,
    ) -> tuple[list[list[_Run]], list[tuple[_Run, int, dict[str, Any]]]]:
        """``runs`` cut where the states ``by_index`` (parameter index -> {"step", buffers})
        differ, and each piece's (step, flat buffers), on the device of its parameters; nothing
        is changed. check_values: refuse NaN/inf buffers and negative averages of squares (a
        damaged file), not needed for states this optimizer holds itself."""

        def signature(e: Mapping[str, Any] | None) -> Any:
            return None if e is None else (int(e["step"]), frozenset(k for k in e if k != "step"))

        # Runs cut where the states differ (a parameter that was frozen for a while has none,
        # or fewer steps), so that each run's members share step and buffers.
        new_runs = [
            [
                piece
                for run in group_runs
                for piece in _split_run(run, [signature(by_index.get(i)) for i, *_ in run.members])
            ]
            for group_runs in runs
        ]
        new_states: list[tuple[_Run, int, dict[str, Any]]] = []
        for run in (r for group_runs in new_runs for r in group_runs):
            entries = [by_index.get(idx) for idx, *_ in run.members]
            if entries[0] is None:
                new_states.append((run, 0, {}))
                continue
            step, keys = signature(entries[0])
            bufs: dict[str, Any] = {}
            for key in keys:
                flat = np.empty(run.data.shape, dtype=run.data.dtype)
                for (idx, off, size, shape), e in zip(run.members, entries, strict=True):
                    arr = np.asarray(e[key])
                    if arr.shape != shape:
                        raise ValueError(
                            f"{owner}: state '{key}' of parameter {idx} has shape {arr.shape}, "
                            f"expected {shape}"
                        )
                    flat[off : off + size] = arr.reshape(-1)
                # A damaged file must not turn the next step's parameters into NaN.
                if check_values and not np.isfinite(flat).all():
                    raise ValueError(f"{owner}: state '{key}' holds NaN or infinite values")
                if check_values and key in _SQUARE_STATES and (flat < 0).any():
                    raise ValueError(
                        f"{owner}: state '{key}' holds negative values (it averages squares)"
                    )
                if isinstance(run.data, _cuda.DeviceArray):
                    flat = _cuda.to_device(flat, run.data.device, run.data.dtype)
                bufs[key] = flat
            new_states.append((run, step, bufs))
        return new_runs, new_states

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` (hyperparameters, step counts and buffers), checking group
        and parameter sizes. The following steps are then identical to the saved optimizer's."""
        owner = f"{type(self).__name__}.load_state_dict"
        self._follow_moved_parameters()
        if not isinstance(state_dict, Mapping) or "param_groups" not in state_dict:
            raise TypeError(f"{owner}: expected a dict from state_dict()")
        saved_groups = list(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"{owner}: {len(saved_groups)} param groups saved, the optimizer has "
                f"{len(self.param_groups)}"
            )
        for i, (sg, g) in enumerate(zip(saved_groups, self.param_groups, strict=True)):
            if len(sg["params"]) != len(g["params"]):
                raise ValueError(
                    f"{owner}: param group {i} has {len(sg['params'])} parameters saved, "
                    f"{len(g['params'])} here"
                )
        saved_state = state_dict.get("state", {})
        # Map saved indices to ours by position (like PyTorch).
        index_map: dict[int, int] = {}
        start = 0
        for sg in saved_groups:
            for k, saved_index in enumerate(sg["params"]):
                index_map[int(saved_index)] = start + k
            start += len(sg["params"])
        by_index: dict[int, Mapping[str, Any]] = {}
        for key, entry in dict(saved_state).items():
            if int(key) not in index_map:
                raise ValueError(f"{owner}: state for unknown parameter index {key}")
            if not isinstance(entry, Mapping) or "step" not in entry:
                raise ValueError(f"{owner}: state for parameter {key} has no 'step'")
            by_index[index_map[int(key)]] = entry

        for key, e in by_index.items():
            step = e["step"]
            ok = not isinstance(step, bool) and isinstance(step, (int, float, np.number))
            if not (ok and math.isfinite(step) and step >= 0 and float(step).is_integer()):
                raise ValueError(
                    f"{owner}: state 'step' of parameter {key} must be an integer >= 0, got "
                    f"{step!r}"
                )

        new_runs, new_states = self._restore_plan(self._runs, by_index, owner, check_values=True)
        new_groups = []
        for sg, g in zip(saved_groups, self.param_groups, strict=True):
            ng = {k: copy.deepcopy(v) for k, v in sg.items() if k != "params"}
            ng["params"] = g["params"]
            self._check_group(ng)
            new_groups.append(ng)
        self._runs = new_runs
        for run, step, bufs in new_states:
            run.step = step
            run.state = bufs
        for g, ng in zip(self.param_groups, new_groups, strict=True):
            g.clear()
            g.update(ng)
        self.skipped_steps = int(state_dict.get("skipped_steps", 0))

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k != "params":
                    lines.append(f"    {k}: {g[k]}")
        return "\n".join(lines) + "\n)"
