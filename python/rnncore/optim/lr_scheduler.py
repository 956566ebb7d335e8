"""Learning-rate schedules that edit ``optimizer.param_groups[i]['lr']``, shaped like torch's.

StepLR, ExponentialLR and CosineAnnealingLR give the same learning rates as their torch
namesakes, computed in closed form from the epoch (torch chains each value from the previous
one; the two agree to rounding). Being closed-form, a schedule overrides manual edits of 'lr' at
its next step, and two schedules on one optimizer do not multiply: compose a warm-up with another
schedule through ``LinearWarmup(..., after=other)``. ReduceLROnPlateau reacts to a metric and is
multiplicative, as in torch. Usage, once per epoch (or per batch)::

    opt.step(); sched.step()          # ReduceLROnPlateau: sched.step(val_loss)
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from .optimizer import Optimizer


def _int(value: Any, name: str, owner: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{owner}: {name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value}")
    return int(value)


def _float(value: Any, name: str, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{owner}: {name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{owner}: {name} must be finite, got {value}")
    return v


def _optimizer(opt: Any, owner: str) -> Optimizer:
    if not isinstance(opt, Optimizer):
        raise TypeError(
            f"{owner}: optimizer must be an rnncore.optim optimizer, got {type(opt).__name__}"
        )
    return opt


class LRScheduler:
    """Base of the epoch-driven schedules: ``lr_i = f(base_lr_i, last_epoch)``.

    Construction records each group's starting lr as ``'initial_lr'`` (kept if already there, so
    several schedules see the same base) and applies epoch 0. ``step()`` advances one epoch.

    Args:
        optimizer: an rnncore.optim optimizer.

    To resume, build the schedule as at the start and call :meth:`load_state_dict`.
    """

    def __init__(self, optimizer: Optimizer) -> None:
        owner = type(self).__name__
        self.optimizer = _optimizer(optimizer, owner)
        self.last_epoch = -1
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [float(g["initial_lr"]) for g in optimizer.param_groups]
        self._last_lr: list[float] = []
        self.step()

    def lr_at(self, epoch: int) -> list[float]:  # pragma: no cover - abstract
        """The learning rate of every group at ``epoch`` (>= 0)."""
        raise NotImplementedError

    def step(self) -> None:
        """Advance one epoch and write the new learning rates into the optimizer."""
        self.last_epoch += 1
        lrs = self.lr_at(self.last_epoch)
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self._last_lr = list(lrs)

    def get_last_lr(self) -> list[float]:
        """The learning rates the last ``step()`` (or the construction) set, one per group."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimizer, as plain Python values (deep copy)."""
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`. The optimizer's own lr comes from its state_dict."""
        if not isinstance(state_dict, dict) or "last_epoch" not in state_dict:
            raise TypeError(
                f"{type(self).__name__}.load_state_dict: expected a dict from state_dict()"
            )
        self.__dict__.update(copy.deepcopy(state_dict))


class StepLR(LRScheduler):
    """lr = base_lr · gamma^(epoch // step_size) (torch.optim.lr_scheduler.StepLR).

    Args:
        optimizer: the optimizer.
        step_size: epochs between decays, >= 1.
        gamma: decay factor > 0.
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = _int(step_size, "step_size", "StepLR", 1)
        self.gamma = _float(gamma, "gamma", "StepLR")
        if self.gamma <= 0:
            raise ValueError(f"StepLR: gamma must be > 0, got {gamma}")
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> list[float]:
        return [b * self.gamma ** (epoch // self.step_size) for b in self.base_lrs]


class ExponentialLR(LRScheduler):
    """lr = base_lr · gamma^epoch (torch.optim.lr_scheduler.ExponentialLR).

    Args:
        optimizer: the optimizer.
        gamma: decay factor > 0.
    """

    def __init__(self, optimizer: Optimizer, gamma: float) -> None:
        self.gamma = _float(gamma, "gamma", "ExponentialLR")
        if self.gamma <= 0:
            raise ValueError(f"ExponentialLR: gamma must be > 0, got {gamma}")
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> list[float]:
        return [b * self.gamma**epoch for b in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base_lr - eta_min)·(1 + cos(π·epoch/T_max))/2
    (torch.optim.lr_scheduler.CosineAnnealingLR, SGDR without restarts; past T_max the cosine
    rises again, as in torch).

    Args:
        optimizer: the optimizer.
        T_max: half period in epochs, >= 1.
        eta_min: the lowest lr, >= 0.
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:
        self.T_max = _int(T_max, "T_max", "CosineAnnealingLR", 1)
        self.eta_min = _float(eta_min, "eta_min", "CosineAnnealingLR")
        if self.eta_min < 0:
            raise ValueError(f"CosineAnnealingLR: eta_min must be >= 0, got {eta_min}")
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> list[float]:
        c = (1 + math.cos(math.pi * epoch / self.T_max)) / 2
        return [self.eta_min + (b - self.eta_min) * c for b in self.base_lrs]


class LinearWarmup(LRScheduler):
    """Linear warm-up from start_factor·base_lr to base_lr over ``warmup_steps`` steps, then
    constant, or handed over to another schedule.

    lr(t) = base_lr · (start_factor + (1 - start_factor)·t/warmup_steps) for t <= warmup_steps
    (torch's LinearLR with end_factor=1). After that, without ``after`` the lr stays base_lr; with
    ``after`` (a schedule built on the same optimizer beforehand) each step advances ``after``
    instead, so step warmup_steps + k uses after's epoch k — torch's
    ``SequentialLR([LinearLR(...), after], milestones=[warmup_steps])``.

    Args:
        optimizer: the optimizer.
        warmup_steps: >= 1.
        start_factor: in [0, 1]; 0 (the default) starts from lr 0.
        after: the schedule to continue with, or None.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int,
        start_factor: float = 0.0,
        after: LRScheduler | None = None,
    ) -> None:
        owner = "LinearWarmup"
        self.warmup_steps = _int(warmup_steps, "warmup_steps", owner, 1)
        self.start_factor = _float(start_factor, "start_factor", owner)
        if not 0.0 <= self.start_factor <= 1.0:
            raise ValueError(f"{owner}: start_factor must be in [0, 1], got {start_factor}")
        if after is not None:
            if not isinstance(after, LRScheduler):
                raise TypeError(
                    f"{owner}: after must be an LRScheduler, got {type(after).__name__}"
                )
            if after.optimizer is not optimizer:
                raise ValueError(f"{owner}: after must schedule the same optimizer")
        self.after = after
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> list[float]:
        t = min(epoch, self.warmup_steps)
        f = self.start_factor + (1.0 - self.start_factor) * t / self.warmup_steps
        return [b * f for b in self.base_lrs]

    def step(self) -> None:
        if self.after is None or self.last_epoch + 1 <= self.warmup_steps:
            super().step()
            return
        self.last_epoch += 1
        self.after.step()
        self._last_lr = self.after.get_last_lr()

    def state_dict(self) -> dict[str, Any]:
        state = {
            k: copy.deepcopy(v) for k, v in self.__dict__.items() if k not in ("optimizer", "after")
        }
        state["after"] = None if self.after is None else self.after.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not isinstance(state_dict, dict) or "last_epoch" not in state_dict:
            raise TypeError("LinearWarmup.load_state_dict: expected a dict from state_dict()")
        state = dict(state_dict)
        after_state = state.pop("after", None)
        if (after_state is None) != (self.after is None):
            raise ValueError(
                "LinearWarmup.load_state_dict: 'after' schedule present in only one of "
                "the saved state and this scheduler"
            )
        self.__dict__.update(copy.deepcopy(state))
        if self.after is not None:
            self.after.load_state_dict(after_state)


class ReduceLROnPlateau:
    """Multiply the lr by ``factor`` when a metric stops improving
    (torch.optim.lr_scheduler.ReduceLROnPlateau, same rules).

    After more than ``patience`` epochs without improvement (better than the best by
    ``threshold``, relative or absolute), lr_i = max(lr_i·factor, min_lr_i) when that changes it
    by more than ``eps``; then ``cooldown`` epochs pass before bad epochs count again.

    Args:
        optimizer: the optimizer.
        mode: 'min' (a loss) or 'max' (an accuracy).
        factor: in (0, 1).
        patience: epochs >= 0.
        threshold: >= 0.
        threshold_mode: 'rel' or 'abs'.
        cooldown: epochs >= 0.
        min_lr: >= 0, one number or one per group.
        eps: >= 0, the smallest change applied.

    Usage: ``sched.step(val_loss)`` once per evaluation.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | list[float] = 0.0,
        eps: float = 1e-8,
    ) -> None:
        owner = "ReduceLROnPlateau"
        self.optimizer = _optimizer(optimizer, owner)
        if mode not in ("min", "max"):
            raise ValueError(f"{owner}: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(
                f"{owner}: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}"
            )
        self.factor = _float(factor, "factor", owner)
        if not 0.0 < self.factor < 1.0:
            raise ValueError(f"{owner}: factor must be in (0, 1), got {factor}")
        self.patience = _int(patience, "patience", owner, 0)
        self.cooldown = _int(cooldown, "cooldown", owner, 0)
        self.threshold = _float(threshold, "threshold", owner)
        if self.threshold < 0:
            raise ValueError(f"{owner}: threshold must be >= 0, got {threshold}")
        self.eps = _float(eps, "eps", owner)
        if self.eps < 0:
            raise ValueError(f"{owner}: eps must be >= 0, got {eps}")
        n = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != n:
                raise ValueError(f"{owner}: min_lr has {len(min_lr)} values for {n} param groups")
            self.min_lrs = [_float(v, "min_lr", owner) for v in min_lr]
        else:
            self.min_lrs = [_float(min_lr, "min_lr", owner)] * n
        if any(v < 0 for v in self.min_lrs):
            raise ValueError(f"{owner}: min_lr must be >= 0, got {min_lr}")
        self.mode = mode
        self.threshold_mode = threshold_mode
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0
        self._last_lr = [float(g["lr"]) for g in optimizer.param_groups]

    def _is_better(self, a: float, best: float) -> bool:
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    @property
    def in_cooldown(self) -> bool:
        """True while bad epochs are not being counted after a reduction."""
        return self.cooldown_counter > 0

    def step(self, metrics: float) -> None:
        """Record one evaluation of the metric and reduce the lr if it has plateaued.

        Args:
            metrics: the monitored value (a number; NaN never counts as an improvement).
        """
        try:
            current = float(metrics)
        except (TypeError, ValueError):
            raise TypeError(
                f"ReduceLROnPlateau.step: metrics must be a number, got {type(metrics).__name__}"
            ) from None
        self.last_epoch += 1
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for i, group in enumerate(self.optimizer.param_groups):
                old = float(group["lr"])
                new = max(old * self.factor, self.min_lrs[i])
                if old - new > self.eps:
                    group["lr"] = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [float(g["lr"]) for g in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        """The learning rates after the last ``step``, one per group."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimizer, as plain Python values (deep copy)."""
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        if not isinstance(state_dict, dict) or "best" not in state_dict:
            raise TypeError("ReduceLROnPlateau.load_state_dict: expected a dict from state_dict()")
        self.__dict__.update(copy.deepcopy(state_dict))


__all__ = [
    "LRScheduler",
    "StepLR",
    "ExponentialLR",
    "CosineAnnealingLR",
    "LinearWarmup",
    "ReduceLROnPlateau",
]
