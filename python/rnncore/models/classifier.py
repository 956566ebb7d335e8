"""SequenceClassifier: many-to-one (sentiment): embedding -> stacked RNN -> pooling -> linear."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .. import _core
from .. import cuda as _cuda
from ..nn import CrossEntropyLoss, Dropout, Embedding, Linear, Module, inference_mode
from . import register
from ._inputs import id_batch, int_lengths
from .language_model import check_dropout, child_seeds, dtype_name, make_rnn, summed_cross_entropy

POOLINGS = ("last", "mean", "max")


class ClassifierBatch(NamedTuple):
    """One batch of a classification task.

    Attributes:
        ids: int64 [T, B] token ids, padded with the padding id past each length.
        lengths: int64 [B] in [1, T].
        labels: int64 [B] class ids.
    """

    ids: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in float64 (the engine's kernel): [..., C] -> [..., C]."""
    return _core.softmax(np.ascontiguousarray(logits, dtype=np.float64))


class TextClassifier(Module):
    """What every text classifier shares: the Trainer protocol (training_step, validation_step,
    epoch_metrics) and prediction from texts or ids. A subclass defines ``forward(ids [T, B],
    lengths [B]) -> logits [B, C]``, ``backward(dlogits)``, ``criterion``, ``embedding`` and the
    attributes ``vocab``, ``labels``, ``lowercase`` that load_checkpoint sets."""

    # ---- Trainer protocol -------------------------------------------------------------------
    def training_step(self, batch: ClassifierBatch) -> dict[str, float]:
        """batch = (ids [T, B], lengths [B], labels [B]); returns loss, count and correct."""
        ids, lengths, labels = batch
        logits = self.forward(ids, lengths)
        loss = self.criterion(logits, labels)
        self.backward(self.criterion.backward())
        correct = int((np.asarray(logits).argmax(axis=-1) == labels).sum())  # GPU: B x C back
        return {"loss": loss, "count": int(labels.size), "correct": correct}

    def validation_step(self, batch: ClassifierBatch) -> dict[str, float]:
        """Summed loss, count and correct predictions of a batch (in inference mode whatever the
        model's mode: no dropout, nothing kept for a backward)."""
        ids, lengths, labels = batch
        with inference_mode(self):
            logits = self.forward(ids, lengths)
        return {
            "loss_sum": summed_cross_entropy(logits, labels),
            "count": float(labels.size),
            "correct": float((np.asarray(logits).argmax(axis=-1) == labels).sum()),
        }

    def epoch_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        """loss (mean cross-entropy) and accuracy."""
        n = max(sums["count"], 1.0)
        return {"loss": sums["loss_sum"] / n, "accuracy": sums.get("correct", 0.0) / n}

    # ---- prediction -------------------------------------------------------------------------
    def predict_proba(
        self, inputs: Any, lengths: Any = None, *, batch_first: bool = False
    ) -> np.ndarray:
        """Class probabilities [B, C] (float64), computed in inference mode.

        Args:
            inputs: texts (a str or a list of str, tokenized as the training data and encoded
                with ``self.vocab``), a list of id sequences of any lengths, one 1-d id
                sequence, or ids int [T, B] ([B, T] with ``batch_first=True``).
            lengths: with a 2-d id array only: int [B] in [1, T], or None.

        Example::

            ckpt = load_checkpoint("runs/sst2")
            ckpt.model.predict_proba(["a great film", "dull and too long"])  # [2, C]
        """
        ids, lens, _ = id_batch(
            inputs,
            lengths,
            batch_first,
            vocab=self.vocab,
            lowercase=self.lowercase,
            pad=self.embedding.padding_idx or 0,
            where=f"{type(self).__name__}.predict_proba",
        )
        with inference_mode(self):
            return softmax(self.forward(ids, lens))

    def predict(self, inputs: Any, lengths: Any = None, *, batch_first: bool = False) -> np.ndarray:
        """The most likely class of each input, int64 [B] (``self.labels[i]`` names class i).

        Args: as :meth:`predict_proba`.
        """
        return self.predict_proba(inputs, lengths, batch_first=batch_first).argmax(axis=-1)


@register
class SequenceClassifier(TextClassifier):
    """Sequence classifier: ``embedding`` -> dropout -> ``rnn`` -> pooling -> dropout ->
    ``classifier``.

    Padding and lengths go to the engine, so a padded batch gives the same result as each
    sequence alone.

    Args:
        vocab_size, embed_dim: the embedding table (V, E).
        hidden_size: H of every recurrent layer.
        num_classes: C.
        num_layers: stacked layers L.
        cell: "lstm", "gru", "gru_v1", "rnn" or "rnn_relu".
        bidirectional: D = 2 directions.
        pooling: "last" — the top layer's final hidden states (forward direction hn[-D], then the
            reverse direction hn[-1], which has read the whole sequence backwards), [B, D*H];
            "mean" / "max" — over each sequence's valid steps of the top layer's output.
        dropout: on the embedding output, between recurrent layers and on the pooled features.
        padding_idx: id of the padding token (its embedding row stays zero), or None.
        dtype, seed: as in the layers.
        zoneout, recurrent_dropout: the recurrent regularisers of the engine (see LanguageModel).
        layer_norm: layer normalisation in the recurrence, "lstm" and "gru" (see LanguageModel).

    Shapes: ids int [T, B], lengths [B] -> logits [B, C].
    """

    MODEL_TYPE = "sequence_classifier"

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        hidden_size: int,
        num_classes: int,
        num_layers: int = 1,
        cell: str = "lstm",
        bidirectional: bool = True,
        pooling: str = "last",
        dropout: float = 0.0,
        padding_idx: int | None = 0,
        dtype: Any = "float32",
        seed: int | None = None,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        owner = "SequenceClassifier"
        if pooling not in POOLINGS:
            raise ValueError(f"{owner}: pooling must be one of {POOLINGS}, got {pooling!r}")
        self._config = dict(
            vocab_size=int(vocab_size),
            embed_dim=int(embed_dim),
            hidden_size=int(hidden_size),
            num_classes=int(num_classes),
            num_layers=int(num_layers),
            cell=cell,
            bidirectional=bool(bidirectional),
            pooling=pooling,
            dropout=check_dropout(dropout, owner),
            padding_idx=padding_idx,
            dtype=dtype_name(dtype),
            seed=seed,
        )
        for key, value in (("zoneout", zoneout), ("recurrent_dropout", recurrent_dropout)):
            if value:  # written only when used: older checkpoints and readers stay as they were
                self._config[key] = float(value)
        if layer_norm:
            self._config["layer_norm"] = True
        s = child_seeds(seed, 5, "SequenceClassifier")
        self.pooling = pooling
        self.num_directions = 2 if bidirectional else 1
        self.embedding = Embedding(
            vocab_size, embed_dim, padding_idx=padding_idx, dtype=dtype, seed=s[0]
        )
        self.drop_in = Dropout(dropout, seed=s[1], batch_axis=1)
        self.rnn = make_rnn(
            cell,
            embed_dim,
            hidden_size,
            num_layers,
            bidirectional=bidirectional,
            dropout=dropout,
            dtype=dtype,
            seed=s[2],
            zoneout=zoneout,
            recurrent_dropout=recurrent_dropout,
            layer_norm=layer_norm,
            owner=owner,
        )
        self.drop_out = Dropout(dropout, seed=s[3])
        self.classifier = Linear(
            self.num_directions * hidden_size, num_classes, dtype=dtype, seed=s[4]
        )
        self.criterion = CrossEntropyLoss()
        #: What text-level prediction needs, set by load_checkpoint from the training run (or by
        #: hand): the word Vocab, the class names and whether texts are lower-cased.
        self.vocab: Any = None
        self.labels: list[str] | None = None
        self.lowercase = True

    def config(self) -> dict[str, Any]:
        """The constructor's keyword arguments (JSON-ready)."""
        return dict(self._config)

    #: ``.to("cuda")`` moves the whole model (embedding, recurrent layers, pooling, classifier):
    #: a training step stays in the GPU's memory.
    _GPU_RESIDENT = True

    # ---- forward / backward ----------------------------------------------------------------
    def forward(self, ids: Any, lengths: Any = None) -> np.ndarray:
        """Class logits.

        Args:
            ids: int [T, B].
            lengths: int [B] in [1, T], or None (every sequence has length T).

        Returns:
            logits [B, C].
        """
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(
                f"SequenceClassifier.forward: ids must be [T, B], got shape {ids.shape}"
            )
        T, B = ids.shape
        lens = int_lengths(lengths, B, T, "SequenceClassifier.forward")
        x = self.drop_in(self.embedding(ids))
        y, state = self.rnn(x, lengths=lens)
        pooled, pool_cache = self._pool(y, state, lens)
        if self.training:
            self._save_for_backward((y.shape, state, lens, pool_cache))
        return self.classifier(self.drop_out(pooled))

    def _pool(self, y: Any, state: Any, lens: np.ndarray) -> tuple[Any, Any]:
        """The pooled features [B, D*H] of outputs y [T, B, D*H] (numpy, or device arrays on a
        GPU) and what the backward needs (max pooling: each maximum's step)."""
        T, B, F = y.shape
        D = self.num_directions
        on_gpu = isinstance(y, _cuda.DeviceArray)
        if self.pooling == "last":
            h = state[0] if isinstance(state, tuple) else state  # [L*D, B, H]
            if on_gpu:
                return _cuda.swap01(h[h.shape[0] - D :]).reshape(B, F), None
            return np.ascontiguousarray(h[-D:].transpose(1, 0, 2).reshape(B, F)), None
        # outputs past a sequence's end are left out (the engine's kernel, on either device)
        if self.pooling == "mean":
            if on_gpu:
                return _cuda.mean_pool(y, lens), None
            return _core.time_pool(np.ascontiguousarray(y), lens), None
        if on_gpu:
            return _cuda.max_pool(y, lens)
        return _core.time_pool(np.ascontiguousarray(y), lens, True)

    def backward(self, dlogits: np.ndarray) -> None:
        """Accumulate every parameter's gradient from dlogits [B, C] (one call per layer)."""
        y_shape, state, lens, pool_cache = self._pop_saved("SequenceClassifier.backward")
        T, B, F = y_shape
        D = self.num_directions
        dpooled = self.drop_out.backward(self.classifier.backward(dlogits))
        dy = None
        dstate: Any = None
        if self.pooling == "last":
            h = state[0] if isinstance(state, tuple) else state
            if isinstance(h, _cuda.DeviceArray):  # the model on a GPU
                dh = _cuda.DeviceArray.zeros(h.shape, h.dtype, h.device)
                dh[h.shape[0] - D :] = _cuda.swap01(dpooled.reshape(B, D, h.shape[2]))
            else:
                dh = np.zeros_like(h)
                dh[-D:] = dpooled.reshape(B, D, -1).transpose(1, 0, 2)
            dstate = (dh, None) if isinstance(state, tuple) else dh
        elif isinstance(dpooled, _cuda.DeviceArray):  # the model on a GPU
            if self.pooling == "mean":
                dy = _cuda.mean_pool_backward(dpooled, lens, T)
            else:
                dy = _cuda.max_pool_backward(dpooled, pool_cache, T, checked_argmax=True)
        else:
            index = lens if self.pooling == "mean" else pool_cache
            dy = _core.time_pool_backward(
                np.ascontiguousarray(dpooled), index, T, self.pooling == "max"
            )
        dx, _ = self.rnn.backward(dy, dstate)
        self.embedding.backward(self.drop_in.backward(dx))
