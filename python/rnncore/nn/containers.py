"""Containers of modules: Sequential (a chain with forward and backward) and ModuleList."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from .module import Module


def _checked(module: Any, owner: str, index: int) -> Module:
    if not isinstance(module, Module):
        raise TypeError(
            f"{owner}: item {index} must be an rnncore.nn.Module, got {type(module).__name__}"
        )
    return module


class ModuleList(Module):
    """A list of modules whose parameters count as this module's (PyTorch's ``nn.ModuleList``).

    Parameters are named ``"{index}.{name}"`` (``layers.0.weight`` inside a model), as PyTorch
    names them, so state_dicts move across. It has no forward: the owner decides how to call its
    modules.
    """

    def __init__(self, modules: Iterable[Module] = ()) -> None:
        super().__init__()
        self._items: list[Module] = []
        self.extend(modules)

    def children(self) -> Iterator[tuple[str, Module]]:
        """(str(index), module) for every item."""
        for i, m in enumerate(self._items):
            yield str(i), m

    def append(self, module: Module) -> ModuleList:
        """Add ``module`` at the end (its mode follows this list's). Returns self."""
        m = _checked(module, type(self).__name__, len(self._items))
        m.train(self.training)
        self._items.append(m)
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        """Append every module of ``modules``. Returns self."""
        for m in modules:
            self.append(m)
        return self

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._items)

    def __getitem__(self, index: int) -> Module:
        return self._items[index]


class Sequential(ModuleList):
    """Modules applied one after the other: ``forward(x)`` feeds each output to the next module,
    ``backward(dy)`` runs the modules' backwards in reverse order (PyTorch's ``nn.Sequential``).

    Every module must take one array and return one array (Linear, Dropout, Embedding as the
    first, or a model of the same kind); a recurrent layer returns ``(y, state)`` and belongs in a
    model of its own. Shapes: those of the chain, x [..., I] -> y [..., O].

    Example::

        mlp = Sequential(Linear(8, 16), Dropout(0.1), Linear(16, 2))
        y = mlp(x)              # x [B, 8] -> y [B, 2]
        dx = mlp.backward(dy)   # dy [B, 2] -> dx [B, 8]; gradients accumulate
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__(modules)

    def forward(self, x: Any) -> Any:
        """Apply every module in order; returns the last one's output."""
        for m in self._items:
            x = m(x)
            if isinstance(x, tuple):
                raise TypeError(
                    f"Sequential.forward: {type(m).__name__} returned a tuple; Sequential chains "
                    "modules of one input and one output (use a recurrent layer in a model)"
                )
        return x

    def backward(self, dy: Any) -> Any:
        """Backward of every module in reverse order; returns the first module's input gradient
        (None when that module is an Embedding)."""
        for m in reversed(self._items):
            dy = m.backward(dy)  # type: ignore[attr-defined]
        return dy

    def extra_repr(self) -> str:
        return ""
