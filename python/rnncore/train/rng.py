"""Random-number state of models and data pipelines: capture it and put it back, for exact resumes.

rnncore's layers draw their randomness from numpy Generators they own (``_rng`` of the layers,
Dropout's mask generator) and from counters (a recurrent layer's dropout masks come from
``(_dropout_seed, _calls)``). Rather than a method on every Module, this module walks objects and
reads those known attributes:

- every ``numpy.random.Generator`` or ``RandomState`` among an object's attributes;
- the integer counters named in :data:`COUNTERS`, plus any a class lists in ``_rng_state_attrs``;
- for Modules, their children (recursively); for other objects (data pipelines), nested plain
  objects, the ``__self__`` of bound methods and the closure variables of functions, so
  ``lambda: batches(rng)`` is covered too.

The state is a flat dict ``{"<object>.<path>": {"kind": ..., ...}}`` of JSON-ready values
(see :mod:`rnncore.train._jsonable` for the big integers).
"""

from __future__ import annotations

import types
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ..nn import Module

__all__ = ["COUNTERS", "named_modules", "get_rng_state", "set_rng_state"]

#: Integer attributes that are part of a layer's random state (recurrent dropout: the layer's
#: seed and its call counter).
COUNTERS = ("_dropout_seed", "_calls")

_MAX_DEPTH = 4


def named_modules(module: Module, prefix: str = "") -> Iterator[tuple[str, Module]]:
    """``module`` and every descendant once, as (dotted name, module); the root's name is
    ``prefix`` (default "")."""
    seen: set[int] = set()

    def walk(m: Module, name: str) -> Iterator[tuple[str, Module]]:
        if id(m) in seen:
            return
        seen.add(id(m))
        yield name, m
        for child_name, child in m.children():
            yield from walk(child, f"{name}.{child_name}" if name else child_name)

    yield from walk(module, prefix)


def _children(obj: Any) -> Iterator[tuple[str, Any, Any, str]]:
    """(name, value, owner, attribute) of what ``obj`` holds that may carry random state; the
    value is ``getattr(owner, attribute)`` (a closure variable's owner is its cell)."""
    if isinstance(obj, (types.FunctionType, types.MethodType)):
        if isinstance(obj, types.MethodType):
            yield "__self__", obj.__self__, obj, "__self__"
            obj = obj.__func__
        if obj.__closure__:
            for var, cell in zip(obj.__code__.co_freevars, obj.__closure__, strict=True):
                try:
                    value = cell.cell_contents
                except ValueError:  # empty cell
                    continue
                yield f"<{var}>", value, cell, "cell_contents"
        return
    d = getattr(obj, "__dict__", None)
    if not isinstance(d, dict):
        return
    if isinstance(obj, Module):
        names = dict(obj.children())
        for key, value in d.items():
            if key not in names:
                yield key, value, obj, key
        for key, value in names.items():
            yield key, value, None, key
        return
    for key, value in d.items():
        yield key, value, obj, key


def _is_walkable(value: Any) -> bool:
    if isinstance(value, (Module, types.FunctionType, types.MethodType)):
        return True
    if (
        isinstance(value, (type, types.ModuleType, np.ndarray))
        or callable(value)
        and not hasattr(value, "__dict__")
    ):
        return False
    return hasattr(value, "__dict__") and not type(value).__module__.startswith(
        ("numpy", "builtins")
    )


def _walk(obj: Any, path: str, out: dict[str, tuple[str, Any, Any]], seen: set[int], depth: int):
    """Collect ``{path: (kind, owner, attribute)}`` for the random state reachable from obj."""
    if id(obj) in seen or depth > _MAX_DEPTH:
        return
    seen.add(id(obj))
    counters = COUNTERS + tuple(getattr(type(obj), "_rng_state_attrs", ()))
    for key, value, owner, attr in _children(obj):
        where = f"{path}.{key}"
        if isinstance(value, np.random.Generator):
            out.setdefault(where, ("generator", owner, attr))
        elif isinstance(value, np.random.RandomState):
            out.setdefault(where, ("random_state", owner, attr))
        elif (
            key in counters
            and owner is obj
            and isinstance(value, (int, np.integer))
            and not isinstance(value, bool)
        ):
            out.setdefault(where, ("int", owner, attr))
        elif _is_walkable(value):
            _walk(value, where, out, seen, depth + (0 if isinstance(value, Module) else 1))


def _collect(objects: Mapping[str, Any]) -> dict[str, tuple[str, Any, Any]]:
    out: dict[str, tuple[str, Any, Any]] = {}
    seen: set[int] = set()
    for name, obj in objects.items():
        if obj is None:
            continue
        if isinstance(obj, np.random.Generator):
            out[name] = ("generator", None, obj)
        elif isinstance(obj, np.random.RandomState):
            out[name] = ("random_state", None, obj)
        else:
            _walk(obj, name, out, seen, 0)
    return out


def _read(kind: str, owner: Any, key: Any) -> Any:
    value = key if owner is None else getattr(owner, key)
    if kind == "generator":
        return value.bit_generator.state
    if kind == "random_state":
        return value.get_state(legacy=False)
    return int(value)


def get_rng_state(objects: Mapping[str, Any], *, include_global: bool = False) -> dict[str, Any]:
    """The random state reachable from ``objects``.

    Args:
        objects: {name: object}; each a Module, a data pipeline object or function, or a
            Generator itself. The name prefixes the paths (e.g. ``{"model": model}`` gives
            ``"model.rnn._rng"``).
        include_global: also record numpy's global legacy generator (``np.random.seed``) as
            ``"numpy.random"``.

    Returns:
        {path: {"kind": "generator" | "random_state" | "int", "state": ...}}, ready for
        :func:`rnncore.train._jsonable.encode`.
    """
    state = {
        path: {"kind": kind, "state": _read(kind, owner, key)}
        for path, (kind, owner, key) in _collect(objects).items()
    }
    if include_global:
        state["numpy.random"] = {
            "kind": "global",
            "state": np.random.get_state(legacy=False),
        }
    return state


def set_rng_state(
    state: Mapping[str, Any], objects: Mapping[str, Any], *, restore_global: bool = True
) -> list[str]:
    """Put back a :func:`get_rng_state` result into the same-shaped ``objects``.

    Only entries whose path exists under ``objects`` are restored (so the model part and the data
    part can be restored at different times); ``"numpy.random"`` (numpy's global generator) is
    restored when present and ``restore_global``.

    Args:
        state: from :func:`get_rng_state` (after a JSON round trip through ``_jsonable``).
        objects: {name: object} as given to :func:`get_rng_state`.
        restore_global: whether to restore numpy's global random state too (a resumed run
            does; loading a model into a program with its own use of np.random does not).

    Returns:
        The paths restored.

    Raises:
        ValueError: an entry's kind differs from what the object holds now (a different model).
    """
    found = _collect(objects)
    done = []
    for path, entry in state.items():
        kind, value = entry["kind"], entry["state"]
        if path == "numpy.random" and kind == "global":
            if restore_global:
                np.random.set_state(_legacy_tuple(value))
                done.append(path)
            continue
        if path not in found:
            continue
        have, owner, key = found[path]
        if have != kind:
            raise ValueError(f"set_rng_state: {path} is a {have} here but a {kind} was saved")
        target = key if owner is None else getattr(owner, key)
        if kind == "generator":
            target.bit_generator.state = value
        elif kind == "random_state":
            target.set_state(_legacy_tuple(value))
        else:
            setattr(owner, key, int(value))
        done.append(path)
    return done


def _legacy_tuple(d: Mapping[str, Any]) -> tuple:
    """A RandomState state dict (legacy=False form) as the tuple ``set_state`` also accepts."""
    st = d["state"]
    return (
        d["bit_generator"],
        np.asarray(st["key"], dtype=np.uint32),
        int(st["pos"]),
        int(d.get("has_gauss", 0)),
        float(d.get("gauss", 0.0)),
    )
