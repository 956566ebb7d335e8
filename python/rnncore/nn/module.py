"""The Module base class and Parameter: what every layer and model of rnncore.nn is built from."""

from __future__ import annotations

import contextlib
import contextvars
import threading
import warnings
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from .. import cuda as _cuda

# Parameters that modules built in this context may still allocate (None: no limit); see
# parameter_budget.
_budget: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "rnncore_parameter_budget", default=None
)


class ParameterBudgetError(ValueError):
    """A module asked for more parameters than the active :func:`parameter_budget` allows."""


@contextlib.contextmanager
def parameter_budget(n: int) -> Iterator[None]:
    """Modules built inside the block allocate at most ``n`` parameters in all.

    A module that would go past it raises :class:`ParameterBudgetError` *before* allocating:
    ``load_checkpoint`` builds a model from an untrusted model_config with the budget of what the
    file holds, so an inflated size (hidden_size 8000 in a 40 KB file) fails at once instead of
    allocating gigabytes before the shape check.
    """
    token = _budget.set([int(n)])
    try:
        yield
    finally:
        _budget.reset(token)


def reserve_parameters(n: int, owner: str) -> None:
    """Takes ``n`` parameters from the active budget (if any); ParameterBudgetError past it."""
    left = _budget.get()
    if left is None:
        return
    if n > left[0]:
        raise ParameterBudgetError(
            f"{owner}: needs {n} parameters, more than the {left[0]} left of the budget"
        )
    left[0] -= n


@contextlib.contextmanager
def inference_mode(module: Any) -> Iterator[Any]:
    """Runs the block with ``module`` and everything below it in inference mode, then restores
    each one's mode, without dropping forwards saved for a backward (``eval()``/``train()``
    would). What the models' ``predict`` methods use::

        with inference_mode(model):
            probs = model.predict_proba(texts)

    An object that is not a :class:`Module` but has ``training`` and ``train(mode)`` (a model of
    the Trainer's protocol) goes through ``train(False)`` and back.
    """
    if not isinstance(module, Module):
        if not callable(getattr(module, "train", None)):
            raise TypeError(f"inference_mode: module must be a Module, got {type(module).__name__}")
        was = bool(getattr(module, "training", True))
        module.train(False)
        try:
            yield module
        finally:
            module.train(was)
        return
    modes = [(m, m.training) for m in module.modules()]
    for m, _ in modes:
        m.training = False
    try:
        yield module
    finally:
        for m, mode in modes:
            m.training = mode


class Parameter:
    """A named parameter: ``data`` and ``grad`` are numpy views into the owner's flat buffers.

    Writing into ``data`` in place (``p.data[...] = v``) changes the layer; rebinding the attribute
    is not allowed, so a view can never silently detach from the engine.

    ``requires_grad`` (default True) is PyTorch's flag: a parameter with ``requires_grad = False``
    is frozen. The optimizers leave it and its state untouched (weight decay included), and
    gradient clipping and norms leave its gradient out, as PyTorch does for a parameter whose
    grad is None; :meth:`Module.parameters` still lists it (``state_dict`` too). Layers may skip
    accumulating its gradient (``Embedding`` does).
    """

    __slots__ = ("_name", "_data", "_grad", "_requires_grad")

    def __init__(self, name: str, data: np.ndarray, grad: np.ndarray) -> None:
        if data.shape != grad.shape:
            raise ValueError(f"Parameter {name}: data {data.shape} and grad {grad.shape} differ")
        self._name = name
        self._data = data
        self._grad = grad
        self._requires_grad = True

    @property
    def requires_grad(self) -> bool:
        """False: frozen (no optimizer updates; left out of clipping and gradient norms)."""
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(
                f"Parameter {self._name}: requires_grad must be a bool, got {type(value).__name__}"
            )
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad: bool = True) -> Parameter:
        """Set :attr:`requires_grad` in place; returns self (PyTorch's spelling)."""
        self.requires_grad = requires_grad
        return self

    @property
    def name(self) -> str:
        return self._name

    @property
    def data(self) -> np.ndarray:
        return self._data

    @property
    def grad(self) -> np.ndarray:
        return self._grad

    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    def __repr__(self) -> str:
        frozen = "" if self._requires_grad else ", requires_grad=False"
        return (
            f"Parameter({self._name}, shape={self._data.shape}, dtype={self._data.dtype}{frozen})"
        )


def _array_bytes(context: Any, depth: int = 3) -> int:
    """Bytes of the arrays in a saved context (numpy arrays or DeviceArrays, or tuples/lists/
    dicts of them)."""
    if isinstance(context, (np.ndarray, _cuda.DeviceArray)):
        return int(context.nbytes)
    if depth == 0:
        return 0
    if isinstance(context, dict):
        context = context.values()
    elif not isinstance(context, (tuple, list)):
        return 0
    return sum(_array_bytes(c, depth - 1) for c in context)


#: A module holding more unconsumed training forwards than this warns once (ResourceWarning):
#: forwards whose backward never comes (say, predictions in training mode) pile up otherwise.
SAVED_FORWARDS_WARNING = 10_000
#: ... or whose saved forwards hold more than this many bytes: an LSTM(200, 200, num_layers=2)
#: training call on 20 x 20 tokens keeps 3.7 MB, a CrossEntropyLoss over 700 x 10k logits 28 MB,
#: so predictions in training mode would otherwise fill the memory long before 10,000 calls.
SAVED_BYTES_WARNING = 1 << 30


class Module:
    """Base of layers and models: explicit ``forward``/``backward``, parameters, modes, state.

    Subclasses register their own parameters in ``self._parameters`` (a list of
    :class:`Parameter`) and hold child modules as attributes; ``parameters()`` walks both.

    Saved forwards: every training-mode forward keeps what its backward needs, and each
    ``backward`` consumes the newest forward not yet consumed (last in, first out, the order in
    which reverse-mode differentiation visits calls). So a module used several times before
    backward (a tied or shared layer, one projection applied at every decoder step, a cell stepped
    through time) gets every call's gradient, provided the backwards come in reverse order of the
    forwards. A backward with no forward left is a RuntimeError. ``eval()``/``train()`` changing
    the mode, and :meth:`discard_saved`, drop the forwards a backward never consumed. Forwards
    whose backward never comes (predictions in training mode) pile up: a module warns once
    (ResourceWarning) when its unconsumed forwards pass 10,000 or hold over 1 GiB. The models'
    ``predict``, decoding and ``validation_step`` methods run in :func:`inference_mode`, which
    keeps nothing and drops nothing.
    """

    def __init__(self) -> None:
        self.training = True
        self._parameters: list[Parameter] = []
        # (thread id, context, its arrays' bytes) per training forward, and their total bytes
        self._saved: list[tuple[int, Any, int]] = []
        self._saved_bytes = 0
        self._saved_warned = False

    # ---- saved forwards (for subclasses) -------------------------------------------------------
    def _save_for_backward(self, context: Any) -> None:
        """Push one training forward's context (call in training mode only)."""
        size = _array_bytes(context)
        self._saved.append((threading.get_ident(), context, size))
        # A list emptied elsewhere (a mode change, discard_saved) left a stale total behind.
        self._saved_bytes = size if len(self._saved) == 1 else self._saved_bytes + size
        self._check_saved(len(self._saved), self._saved_bytes, 5)

    def _check_saved(self, count: int, nbytes: int, stacklevel: int = 4) -> None:
        """Warn once per module (ResourceWarning) when ``count`` unconsumed training forwards
        holding ``nbytes`` pass SAVED_FORWARDS_WARNING or SAVED_BYTES_WARNING; ``stacklevel`` 4
        names the caller of ``module(x)`` from a subclass's forward."""
        if self._saved_warned or (
            count <= SAVED_FORWARDS_WARNING and nbytes <= SAVED_BYTES_WARNING
        ):
            return
        self._saved_warned = True
        warnings.warn(
            f"{type(self).__name__}: {count} training-mode forwards wait for a backward, holding "
            f"{nbytes / 2**30:.1f} GiB; call eval() (or use inference_mode()) for forwards "
            "without backward, or discard_saved()",
            ResourceWarning,
            stacklevel=stacklevel,
        )

    def _pop_saved(self, where: str) -> Any:
        """The newest unconsumed forward's context, consumed (errors: :meth:`_peek_saved`)."""
        context = self._peek_saved(where)
        self._saved_bytes -= self._saved.pop()[2]
        return context

    def _peek_saved(self, where: str) -> Any:
        """The newest unconsumed forward's context, left in place (to check a backward's
        arguments before consuming it); RuntimeError naming ``where`` if none, or if that forward
        ran in another thread (its gradients would silently mix two batches)."""
        if not self._saved:
            raise RuntimeError(
                f"{where}: no training-mode forward left to backpropagate through (each forward "
                "allows one backward; eval(), train() changing the mode and discard_saved() drop "
                "unconsumed forwards)"
            )
        thread, context, _ = self._saved[-1]
        if thread != threading.get_ident():
            raise RuntimeError(
                f"{where}: the training forward it would consume ran in another thread; a thread "
                "can only backpropagate through its own forward (use one module per thread)"
            )
        return context

    @property
    def saved_forwards(self) -> int:
        """How many training forwards of this module (not its children) wait for a backward."""
        return len(self._saved)

    def discard_saved(self) -> None:
        """Drop every unconsumed training forward of this module and its children."""
        self._discard_own_saved()
        for _, child in self.children():
            child.discard_saved()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def manual_seed(self, seed: int) -> Module:
        """Reseed every random draw of this module and the modules below it (dropout masks, the
        engine's dropout between layers, initialisation): after ``m.manual_seed(s)`` the next
        forwards draw the same masks as after any other ``m.manual_seed(s)``, so runs repeat and
        finite-difference checks work in training mode. Each submodule gets its own stream,
        derived from ``seed`` and its dotted name. Returns self.
        """
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"manual_seed: seed must be an integer, got {type(seed).__name__}")
        if seed < 0:
            raise ValueError(f"manual_seed: seed must be >= 0, got {seed}")
        for name, m in self._named_modules():
            child = np.random.SeedSequence([int(seed), zlib.crc32(name.encode("utf-8"))])
            m._reseed(int(child.generate_state(1, np.uint64)[0]))
        return self

    def _reseed(self, seed: int) -> None:
        """Restart this module's own random streams from ``seed`` (see :meth:`manual_seed`)."""
        if hasattr(self, "_rng"):
            self._rng = np.random.default_rng(seed)

    def _named_modules(self) -> Iterator[tuple[str, Module]]:
        seen: set[int] = set()

        def walk(m: Module, name: str) -> Iterator[tuple[str, Module]]:
            if id(m) not in seen:
                seen.add(id(m))
                yield name, m
                for child_name, child in m.children():
                    yield from walk(child, f"{name}.{child_name}" if name else child_name)

        return walk(self, "")

    def modules(self) -> Iterator[Module]:
        """This module and every module below it, depth first."""
        yield self
        for _, child in self.children():
            yield from child.modules()

    def children(self) -> Iterator[tuple[str, Module]]:
        """Direct child modules as (attribute name, module), in definition order."""
        for key, value in vars(self).items():
            if isinstance(value, Module):
                yield key, value
            elif (
                isinstance(value, (list, tuple))
                and value
                and all(isinstance(v, Module) for v in value)
            ):
                for i, v in enumerate(value):
                    yield f"{key}.{i}", v

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """All parameters of this module and its children, with dotted names."""
        for p in self._parameters:
            yield prefix + p.name, p
        for name, child in self.children():
            yield from child.named_parameters(prefix + name + ".")

    def parameters(self) -> list[Parameter]:
        """List of every :class:`Parameter` (views; no copies)."""
        return [p for _, p in self.named_parameters()]

    def zero_grad(self) -> None:
        """Set every parameter gradient to zero."""
        for p in self.parameters():
            p.grad[...] = 0

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Freeze (False) or unfreeze (True) every parameter of this module and the modules
        below it (see :class:`Parameter`); returns self, as PyTorch's."""
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def train(self, mode: bool = True) -> Module:
        """Training mode (forward keeps what backward needs; dropout active). Returns self.

        A module whose mode changes drops its unconsumed saved forwards (see the class doc).
        """
        if self.training != bool(mode):
            self._discard_own_saved()
        self.training = bool(mode)
        for _, child in self.children():
            child.train(mode)
        return self

    def _discard_own_saved(self) -> None:
        self._saved.clear()

    def eval(self) -> Module:
        """Inference mode: forward keeps nothing, backward is not possible. Returns self."""
        return self.train(False)

    #: Whether this module runs wholly on a GPU when moved there: then ``to`` moves every layer
    #: inside that can run on one (Embedding, Linear, tied decoders, the recurrent layers), and
    #: its forward and backward pass device arrays between them (LanguageModel,
    #: SequenceClassifier, SequenceTagger, Captioner, Seq2Seq, Forecaster,
    #: SequenceRegressor; a lone Linear or Embedding). Otherwise only the recurrent layers move
    #: and numpy arrays connect the rest.
    _GPU_RESIDENT = False

    def to(self, device: str) -> Module:
        """Move the layers that can run on ``device`` there; returns self (PyTorch's spelling).

        The recurrent layers move ("cpu", "cuda", "cuda-sim"). In a model that runs wholly on a
        GPU (every model of rnncore.models with recurrent layers: the language model, the text
        classifier, the tagger, the captioner, the translator, the forecaster, the sequence
        regressor) the embedding and output layers move too (a tagger's
        CRF stays on the host): their parameters
        and gradients then live in the GPU's memory (:class:`rnncore.cuda.DeviceArray` views)
        and a training step never crosses to the host; in the other models the remaining layers
        run on the CPU (numpy arrays connect them). Parameters keep their values and names, but
        their arrays are new: build optimizers after moving, as in PyTorch. Unconsumed saved
        forwards are dropped. Raises what ``device=`` in a layer's constructor raises for an
        unusable device.
        """
        resident = self._GPU_RESIDENT or device == "cpu"
        movers = [
            m
            for _, m in self._named_modules()
            if resident or not getattr(m, "_FOLLOWS_RESIDENT", False)
        ]
        for m in movers:  # refusals (int8 inference on a GPU, ...) before anything moves
            m._check_move(device)
        # (module, its device, whether its recurrent parameters lived on that device)
        moved: list[tuple[Module, str, bool]] = []
        try:
            for m in movers:
                before = getattr(m, "device", "cpu")
                kept = getattr(m, "_dparams", None) is not None
                moved.append((m, before, kept))
                m._move_to(device)
            if self._GPU_RESIDENT:  # the recurrent layers' parameters join the others there
                for m in movers:
                    keep = getattr(m, "_keep_on_device", None)
                    if keep is not None:
                        keep(device != "cpu")
        except BaseException:  # e.g. out of GPU memory half-way: put back what moved
            for m, before, kept in reversed(moved):
                with contextlib.suppress(Exception):
                    m._move_to(before)
                    if kept:
                        m._keep_on_device(True)  # type: ignore[attr-defined]
            raise
        self.discard_saved()  # what a backward would read lives where the layers were
        return self

    def _check_move(self, device: str) -> None:
        """Raises what would stop this module moving to ``device`` (nothing by default)."""

    def _move_to(self, device: str) -> None:
        """This module's own part of :meth:`to` (nothing: it runs on the CPU)."""

    def int8_inference_(self, on: bool = True) -> Module:
        """Int8 inference for every recurrent layer inside (see
        :attr:`rnncore.nn.LSTM.int8_inference`): their inference forwards multiply by W_ih and
        W_hh in int8, as ``torch.ao.quantization.quantize_dynamic`` does; training is unchanged
        and the parameters stay float32. The other layers are left as they are. Returns self.

        Raises ValueError naming the layer if one cannot (float64, or on a GPU).
        """
        for name, m in self._named_modules():
            if hasattr(type(m), "int8_inference"):
                try:
                    m.int8_inference = on  # type: ignore[attr-defined]
                except ValueError as e:
                    raise ValueError(f"int8_inference_: {name or 'the module'}: {e}") from None
        return self

    def state_dict(self) -> dict[str, np.ndarray]:
        """{name: copy of the parameter array} (numpy arrays, wherever the parameters live)."""
        return {name: np.array(p.data, copy=True) for name, p in self.named_parameters()}

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> None:
        """Copy arrays into the parameters, checking names and shapes.

        Args:
            state: {name: array-like} as returned by :meth:`state_dict` (or PyTorch's, as numpy).
            strict: when True, missing or unexpected names raise KeyError.
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"load_state_dict: state must be a mapping, got {type(state).__name__}")
        own = dict(self.named_parameters())
        if strict:
            missing = sorted(set(own) - set(state))
            unexpected = sorted(set(state) - set(own))
            if missing or unexpected:
                raise KeyError(
                    f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}"
                )
        for name, value in state.items():
            if name not in own:
                continue
            arr = np.asarray(value)
            p = own[name]
            if arr.shape != p.shape:
                raise ValueError(
                    f"load_state_dict: {name} has shape {arr.shape}, expected {p.shape}"
                )
            if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
                raise TypeError(f"load_state_dict: {name} must be real numbers, got {arr.dtype}")
            p.data[...] = arr

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        kids = list(self.children())
        if not kids:
            return lines[0] + ")"
        for name, child in kids:
            lines.append(f"  ({name}): " + repr(child).replace("\n", "\n  "))
        return "\n".join(lines) + "\n)"
