"""LanguageModel: embedding -> stacked RNN/LSTM/GRU -> linear over the vocabulary (word or char).

Also the pieces the other task models share: :func:`make_rnn` (a cell name of a config -> a
recurrent layer) and :func:`child_seeds`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _core
from ..nn import CELLS as nn_cells
from ..nn import (
    GRU,
    LSTM,
    RNN,
    CrossEntropyLoss,
    Dropout,
    Embedding,
    Linear,
    Module,
    inference_mode,
    recurrent_layer,
)
from ..nn._checks import check_seed
from ..nn.layers import _FlatModule, _owned, one_call_at_a_time
from ..nn.recurrent import FORGET_GATE_CELLS
from . import register

#: cell names of model configs: the engine's registry (rnncore.nn.CELLS)
CELLS = tuple(nn_cells)


def make_rnn(
    cell: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    *,
    bidirectional: bool = False,
    dropout: float = 0.0,
    dtype: Any = "float32",
    seed: int | None = None,
    init: str = "uniform",
    forget_bias: float | None = None,
    proj_size: int = 0,
    zoneout: float = 0.0,
    recurrent_dropout: float = 0.0,
    layer_norm: bool = False,
    owner: str = "model",
) -> RNN | LSTM | GRU:
    """A time-major recurrent layer for a config's cell name; every task model builds its own here.

    Args:
        cell: a registered cell (:data:`rnncore.nn.CELLS`): "rnn" (tanh), "rnn_relu", "lstm",
            "gru" (reset after, PyTorch's) or "gru_v1" (reset before, Cho et al. 2014).
        dropout: between stacked layers (the engine's), training only.
        init: "uniform", "orthogonal" or "identity" (RNN cells only: IRNN).
        forget_bias: cells with a forget gate ("lstm", "gated-forget"), e.g. 1.0; else None.
        proj_size: LSTM only: the size P of its projected h (0: none; see rnncore.nn.LSTM).
        zoneout, recurrent_dropout: the engine's recurrent regularisers (see rnncore.nn.LSTM).
        layer_norm: "lstm" and "gru" only: layer normalisation in the recurrence (Ba et al.
            2016; see rnncore.nn.LSTM).
        owner: the model's name, for error messages.

    Shapes: x [T, B, input_size] -> y [T, B, D*R], R = proj_size or hidden_size.
    """
    if cell not in CELLS:
        raise ValueError(f"{owner}: cell must be one of {sorted(CELLS)}, got {cell!r}")
    if cell not in FORGET_GATE_CELLS and forget_bias is not None:
        raise ValueError(
            f"{owner}: forget_bias needs a cell with a forget gate {FORGET_GATE_CELLS}, got cell "
            f"{cell!r}"
        )
    if cell != "lstm" and proj_size:
        raise ValueError(f"{owner}: proj_size is for the lstm cell only, got cell {cell!r}")
    extra: dict[str, Any] = {"forget_bias": forget_bias} if forget_bias is not None else {}
    if proj_size:
        extra["proj_size"] = proj_size
    if zoneout:
        extra["zoneout"] = zoneout
    if recurrent_dropout:
        extra["recurrent_dropout"] = recurrent_dropout
    if layer_norm:
        if not nn_cells[cell]["layer_norm"]:
            have = tuple(n for n, c in nn_cells.items() if c["layer_norm"])
            raise ValueError(f"{owner}: layer_norm is for the cells {have}, got cell {cell!r}")
        extra["layer_norm"] = True
    return recurrent_layer(
        cell,
        input_size,
        hidden_size,
        num_layers=num_layers,
        bidirectional=bidirectional,
        dropout=dropout if num_layers > 1 else 0.0,
        dtype=dtype,
        seed=seed,
        init=init,
        **extra,
    )


def child_seeds(seed: int | None, n: int, owner: str = "model") -> list[int | None]:
    """n independent seeds derived from ``seed`` (all None when seed is None)."""
    if check_seed(seed, owner) is None:
        return [None] * n
    return [int(s) for s in np.random.default_rng(seed).integers(0, 2**31 - 1, size=n)]


def check_dropout(p: Any, owner: str) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0 <= p < 1:
        raise ValueError(f"{owner}: dropout must be a number in [0, 1), got {p!r}")
    return float(p)


def dtype_name(dtype: Any) -> str:
    """'float32' or 'float64' (the config spelling of a dtype)."""
    name = np.dtype(dtype).name
    if name not in ("float32", "float64"):
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return name


class TiedDecoder(_FlatModule):
    """The output layer of a weight-tied language model: logits = x · embedding.weightᵀ + bias.

    Owns only ``bias`` [V]; the weight is the embedding's Parameter (so a checkpoint has
    ``decoder.bias`` and no ``decoder.weight``), and backward accumulates into the embedding's
    gradient. Shapes: x [..., E] -> [..., V].
    """

    def __init__(self, embedding: Embedding) -> None:
        super().__init__()
        # The Parameter, not the module: a Module attribute would be walked as a child and its
        # weight listed twice.
        self._weight = embedding.weight
        self.in_features = embedding.embedding_dim
        self.out_features = embedding.num_embeddings
        self.dtype = embedding.dtype
        self._allocate(self.dtype, [("bias", (self.out_features,))])
        # The embedding's lock: both modules accumulate into embedding.weight.grad.
        self._call_lock = embedding._call_lock
        self.bias = self._parameters[0]  # starts at zero

    _FOLLOWS_RESIDENT = True

    @one_call_at_a_time
    def forward(self, x: np.ndarray) -> np.ndarray:
        """Logits [..., V] of x [..., E] (a training forward keeps x, see ``Module``). On a GPU
        (with the embedding), device arrays in and out."""
        if self.device != "cpu":
            return self._device_linear_forward(x, self._weight, self.bias, "TiedDecoder.forward")
        xc = np.ascontiguousarray(x)
        lead = xc.shape[:-1]
        x2 = xc.reshape(-1, self.in_features)
        y = _core.linear_forward(x2, self._weight.data, self.bias.data)
        if self.training:
            self._save_for_backward((_owned(x2, x), lead))
        return y.reshape(lead + (self.out_features,))

    @one_call_at_a_time
    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dx [..., E] of the newest unconsumed forward; gradients accumulate into the
        embedding's weight.grad and ``bias.grad``."""
        if self.device != "cpu":
            return self._device_linear_backward(dy, self._weight, self.bias, "TiedDecoder.backward")
        x2, lead = self._pop_saved("TiedDecoder.backward")
        dx = _core.linear_backward(
            np.ascontiguousarray(dy).reshape(-1, self.out_features),
            x2,
            self._weight.data,
            self._weight.grad,
            self.bias.grad,
            True,
        )
        return dx.reshape(lead + (self.in_features,))

    def extra_repr(self) -> str:
        s = f"in_features={self.in_features}, out_features={self.out_features}, tied"
        return s + (f", device='{self.device}'" if self.device != "cpu" else "")


def summed_cross_entropy(
    logits: np.ndarray, targets: np.ndarray, ignore_index: int = -100
) -> float:
    """Summed cross-entropy of logits [..., C] against targets [...], without a gradient."""
    crit = CrossEntropyLoss(ignore_index=ignore_index, reduction="sum", class_axis=-1)
    crit.eval()
    return crit(logits, targets)


def _copy_state(state: Any) -> Any:
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.copy() for s in state)
    return state.copy()


def _host_state(state: Any) -> Any:
    """A carried state as numpy arrays (device arrays copied back)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(np.asarray(s) for s in state)
    return np.asarray(state)


def _state_batch(state: Any) -> int:
    return (state[0] if isinstance(state, tuple) else state).shape[1]


@register
class LanguageModel(Module):
    """Next-token model: ``embedding`` -> dropout -> ``rnn`` -> dropout -> ``decoder``.

    Word or character level (the vocabulary decides). Trained with truncated BPTT: batches are
    consecutive windows of a batchified stream (:class:`rnncore.data.BPTTBatches`), and
    :meth:`training_step` starts each window from the previous window's final state (detached:
    no gradient flows back into the previous window); :meth:`on_epoch_start` resets it, and
    validation carries its own state the same way.

    Args:
        vocab_size: V.
        embed_dim: E.
        hidden_size: H of every recurrent layer.
        num_layers: stacked layers.
        cell: "lstm", "gru", "gru_v1", "rnn" or "rnn_relu".
        dropout: probability on the embedding output, between recurrent layers and on the top
            layer's output (Zaremba et al. 2014's non-recurrent dropout), training only.
        tie_weights: the decoder uses ``embedding.weight`` (Press & Wolf 2017); needs
            embed_dim == R (R = proj_size or hidden_size).
        dtype: "float32" or "float64".
        seed: seed of the initialisation and dropout masks.
        proj_size: LSTM only: P > 0 projects each layer's h to P values (LSTMP, Sak et al. 2014;
            the decoder then reads P features). The C++ LanguageModel loads it too.
        zoneout: each recurrent unit keeps its previous value with this probability in training
            (Krueger et al. 2016; inference uses the expectation, the C++ loader too).
        recurrent_dropout: one dropout mask per sequence on h entering the recurrent weights
            (Gal & Ghahramani 2016), training only.
        layer_norm: "lstm" and "gru": layer normalisation of both sides' pre-activations (and
            the LSTM's cell state) in every step (Ba et al. 2016). The C++ LanguageModel loads it.

    Shapes: ids int [T, B] -> logits [T, B, V]; state h [L, B, R] (LSTM: (h, c), c [L, B, H]).
    """

    MODEL_TYPE = "language_model"
    # .to("cuda") moves the embedding, the recurrent layers and the decoder: a training step
    # (forward, loss, backward) stays in the GPU's memory, device arrays between the layers.
    _GPU_RESIDENT = True

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        hidden_size: int,
        num_layers: int = 2,
        cell: str = "lstm",
        dropout: float = 0.0,
        tie_weights: bool = False,
        dtype: Any = "float32",
        seed: int | None = None,
        proj_size: int = 0,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        owner = "LanguageModel"
        features = proj_size or hidden_size  # what the decoder reads
        if tie_weights and embed_dim != features:
            what = "proj_size" if proj_size else "hidden_size"
            raise ValueError(
                f"{owner}: tie_weights needs embed_dim == {what}, got {embed_dim} and {features}"
            )
        self._config = dict(
            vocab_size=int(vocab_size),
            embed_dim=int(embed_dim),
            hidden_size=int(hidden_size),
            num_layers=int(num_layers),
            cell=cell,
            dropout=check_dropout(dropout, owner),
            tie_weights=bool(tie_weights),
            dtype=dtype_name(dtype),
            seed=seed,
        )
        # Written only when used: older checkpoints and readers stay as they were.
        for key, value in (
            ("proj_size", int(proj_size)),
            ("zoneout", float(zoneout)),
            ("recurrent_dropout", float(recurrent_dropout)),
            ("layer_norm", bool(layer_norm)),
        ):
            if value:
                self._config[key] = value
        s = child_seeds(seed, 5, "LanguageModel")
        self.embedding = Embedding(vocab_size, embed_dim, dtype=dtype, seed=s[0])
        self.drop_in = Dropout(dropout, seed=s[1], batch_axis=1)
        self.rnn = make_rnn(
            cell,
            embed_dim,
            hidden_size,
            num_layers,
            dropout=dropout,
            dtype=dtype,
            seed=s[2],
            proj_size=proj_size,
            zoneout=zoneout,
            recurrent_dropout=recurrent_dropout,
            layer_norm=layer_norm,
            owner=owner,
        )
        self.drop_out = Dropout(dropout, seed=s[3], batch_axis=1)
        if tie_weights:
            self.decoder: Linear | TiedDecoder = TiedDecoder(self.embedding)
        else:
            self.decoder = Linear(features, vocab_size, dtype=dtype, seed=s[4])
        self.criterion = CrossEntropyLoss(class_axis=-1)
        #: True for a character model: epoch_metrics then adds bits per character ("bpc")
        self.char_level = False
        self._train_state: Any = None
        self._eval_state: Any = None

    # ---- construction -----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The constructor's keyword arguments (JSON-ready)."""
        return dict(self._config)

    def _move_to(self, device: str) -> None:
        """The carried truncated-BPTT states follow the layers (host copies for the CPU; a GPU
        layer uploads host states itself)."""
        if device == "cpu":
            self._train_state = _host_state(self._train_state)
            self._eval_state = _host_state(self._eval_state)

    @property
    def vocab_size(self) -> int:
        return self._config["vocab_size"]

    def init_uniform(self, scale: float, seed: int | None = None) -> None:
        """Every parameter ~ U(-scale, scale) (Zaremba et al. 2014 use 0.1 for the small model)."""
        rng = np.random.default_rng(check_seed(seed, "LanguageModel.init_uniform"))
        for p in self.parameters():
            p.data[...] = rng.uniform(-scale, scale, size=p.shape)

    # ---- forward / backward ----------------------------------------------------------------
    def forward(self, ids: Any, state: Any = None) -> tuple[np.ndarray, Any]:
        """Logits for the next token at every position.

        Args:
            ids: int [T, B] token ids.
            state: initial recurrent state, or None for zeros.

        Returns:
            logits [T, B, V] and the final state.
        """
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"LanguageModel.forward: ids must be [T, B], got shape {ids.shape}")
        x = self.drop_in(self.embedding(ids))
        y, state = self.rnn(x, state=state)
        return self.decoder(self.drop_out(y)), state

    def backward(self, dlogits: np.ndarray) -> None:
        """Accumulate every parameter's gradient from dlogits [T, B, V] (one call per layer)."""
        dy = self.drop_out.backward(self.decoder.backward(dlogits))
        dx, _ = self.rnn.backward(dy)
        self.embedding.backward(self.drop_in.backward(dx))

    # ---- Trainer protocol -------------------------------------------------------------------
    def on_epoch_start(self, training: bool) -> None:
        """Reset the carried truncated-BPTT state of training (or of evaluation)."""
        if training:
            self._train_state = None
        else:
            self._eval_state = None

    def _carried(self, state: Any, batch: int) -> Any:
        return state if state is not None and _state_batch(state) == batch else None

    @staticmethod
    def _window(batch: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of a BPTT window, both int [T, B] of one shape, else TypeError/ValueError."""
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise TypeError(f"{where}: batch must be a pair (x [T, B], y [T, B])")
        x, y = np.asarray(batch[0]), np.asarray(batch[1])
        if x.ndim != 2 or y.shape != x.shape:
            raise ValueError(
                f"{where}: batch must be (x [T, B], y [T, B]) of one shape, got {x.shape} and "
                f"{y.shape}"
            )
        return x, y

    def training_step(self, batch: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
        """One truncated-BPTT window: batch = (x [T, B], y [T, B]) with y the next tokens."""
        x, y = self._window(batch, "LanguageModel.training_step")
        logits, state = self.forward(x, self._carried(self._train_state, x.shape[1]))
        loss = self.criterion(logits, y)
        self.backward(self.criterion.backward())
        self._train_state = _copy_state(state)  # detached: backward never goes past this window
        return {"loss": loss, "count": int(y.size)}

    def validation_step(self, batch: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
        """Summed NLL of a window, carrying the evaluation state across windows (in inference
        mode whatever the model's mode: no dropout, nothing kept for a backward)."""
        x, y = self._window(batch, "LanguageModel.validation_step")
        with inference_mode(self):
            logits, state = self.forward(x, self._carried(self._eval_state, x.shape[1]))
        loss_sum = summed_cross_entropy(logits, y)
        self._eval_state = _copy_state(state)
        return {"loss_sum": loss_sum, "count": float(y.size)}

    def epoch_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        """loss (mean NLL in nats), ppl = exp(loss) and, for a character model, bpc."""
        loss = sums["loss_sum"] / max(sums["count"], 1.0)
        out = {"loss": loss, "ppl": math.exp(min(loss, 700.0))}
        if self.char_level:
            out["bpc"] = loss / math.log(2.0)
        return out

    # ---- generation -------------------------------------------------------------------------
    def sample(
        self,
        prompt_ids: Any,
        n: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
    ) -> np.ndarray:
        """Continue a prompt by ``n`` tokens, each drawn from the model's next-token distribution.

        The prompt runs through the network in one call; then each new token is one call (it
        depends on the previous one).

        Args:
            prompt_ids: 1-D ids, at least one (e.g. ``<eos>`` to start a fresh sentence).
            n: tokens to generate, >= 0.
            temperature: > 0 divides the logits (lower = more conservative); 0 = greedy.
            top_k: draw only among the k most likely tokens; None = all.
            seed: seed of the draws (None: fresh entropy). A float32 model draws the same tokens
                as the C++ ``LanguageModel::sample`` of its checkpoint with the same seed.

        Returns:
            int64 [n], the generated ids (without the prompt).
        """
        where = "LanguageModel.sample"
        raw = np.asarray(prompt_ids)
        if raw.size and (raw.dtype == bool or raw.dtype.kind not in "iu"):
            raise TypeError(f"{where}: prompt_ids must be integer token ids, got dtype {raw.dtype}")
        if raw.ndim > 1:
            raise ValueError(f"{where}: prompt_ids must be 1-D, got shape {raw.shape}")
        ids = raw.astype(np.int64).reshape(-1)
        if ids.size == 0:
            raise ValueError(f"{where}: prompt_ids is empty; give at least one token")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"{where}: n must be an integer >= 0, got {n!r}")
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, (int, float, np.integer, np.floating))
            or not temperature >= 0
        ):
            raise ValueError(f"{where}: temperature must be >= 0, got {temperature!r}")
        if top_k is not None and (
            isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1
        ):
            raise ValueError(f"{where}: top_k must be an integer >= 1 or None, got {top_k!r}")
        # The engine's sampler (the C++ LanguageModel's): the same seed draws the same tokens.
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
        sampler = _core.Sampler(int(seed) % 2**64)
        out = np.empty(int(n), dtype=np.int64)
        with inference_mode(self):
            lp, state = self._next_log_probs(ids, None)
            for i in range(int(n)):
                out[i] = sampler.draw(lp, float(temperature), top_k or 0)
                lp, state = self._next_log_probs(out[i : i + 1], state)
        return out

    def _next_log_probs(self, ids: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """log p(next token) [V] after the 1-D ids, and the state: the decoder reads only the last
        step, as the C++ LanguageModel does, so both compute the same floats (eval mode)."""
        y, state = self.rnn(self.embedding(ids[:, None]), state=state)
        return _core.log_softmax(np.asarray(self.decoder(y[-1])))[0], state
