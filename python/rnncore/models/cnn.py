"""KimCNN: Kim (2014)'s convolutional sentence classifier, the lecture's non-recurrent baseline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..nn import Conv1d, CrossEntropyLoss, Dropout, Embedding, Linear, ModuleList
from . import register
from ._inputs import int_lengths
from .classifier import TextClassifier
from .language_model import check_dropout, child_seeds, dtype_name


@register
class KimCNN(TextClassifier):
    """Kim (2014), CNN-rand: word vectors -> 1-d convolutions of several widths (``maps`` filters
    each) -> ReLU -> max over time -> dropout -> linear.

    Each convolution is "wide" (padding w - 1 at both ends, as Kim's code pads every sentence),
    so a sentence shorter than a filter still has windows, and the max runs over the windows
    that touch the sentence only: the batch's padding never wins it. Kim also rescales each
    row of the output layer's weight to an L2 norm of at most ``max_norm`` after every update;
    :meth:`after_step` does that (the Trainer calls it).

    Args:
        vocab_size, embed_dim: the embedding table (V, E); Kim: E = 300, random init.
        num_classes: C.
        widths: the filters' widths in words; Kim: (3, 4, 5).
        maps: filters per width; Kim: 100.
        dropout: on the pooled features (Kim: 0.5), training only.
        padding_idx: the padding id (its embedding row stays zero), or None.
        max_norm: the output layer's row-norm limit (Kim: 3.0), or None for none.
        dtype, seed: as in the layers.

    Shapes: ids int [T, B] (time-major, like SequenceClassifier), lengths [B] -> logits [B, C].
    """

    MODEL_TYPE = "kim_cnn"

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        num_classes: int,
        widths: Sequence[int] = (3, 4, 5),
        maps: int = 100,
        dropout: float = 0.5,
        padding_idx: int | None = 0,
        max_norm: float | None = 3.0,
        dtype: Any = "float32",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        owner = "KimCNN"
        widths = [int(w) for w in widths]
        if not widths or min(widths) < 1:
            raise ValueError(f"{owner}: widths must be filter widths >= 1, got {widths}")
        if max_norm is not None and not max_norm > 0:
            raise ValueError(f"{owner}: max_norm must be > 0 or None, got {max_norm}")
        self._config = dict(
            vocab_size=int(vocab_size),
            embed_dim=int(embed_dim),
            num_classes=int(num_classes),
            widths=widths,
            maps=int(maps),
            dropout=check_dropout(dropout, owner),
            padding_idx=padding_idx,
            max_norm=None if max_norm is None else float(max_norm),
            dtype=dtype_name(dtype),
            seed=seed,
        )
        s = child_seeds(seed, len(widths) + 3, "KimCNN")
        self.embedding = Embedding(
            vocab_size, embed_dim, padding_idx=padding_idx, dtype=dtype, seed=s[0]
        )
        # Kim's random word vectors: U(-0.25, 0.25) (about the variance of word2vec's)
        emb = self.embedding.weight.data
        emb[...] = np.random.default_rng(s[0]).uniform(-0.25, 0.25, emb.shape)
        if padding_idx is not None:
            emb[padding_idx] = 0.0
        self.convs = ModuleList(
            Conv1d(embed_dim, maps, w, padding=w - 1, channels_last=True, dtype=dtype, seed=seed_w)
            for w, seed_w in zip(widths, s[3:], strict=True)
        )
        self.drop = Dropout(dropout, seed=s[1])
        self.classifier = Linear(len(widths) * int(maps), num_classes, dtype=dtype, seed=s[2])
        self.criterion = CrossEntropyLoss(class_axis=-1)
        self.widths = widths
        self.max_norm = self._config["max_norm"]
        self.vocab: Any = None
        self.labels: list[str] | None = None
        self.lowercase = True

    def config(self) -> dict[str, Any]:
        """The constructor's keyword arguments (JSON-ready)."""
        return dict(self._config)

    def forward(self, ids: Any, lengths: Any = None) -> np.ndarray:
        """Class logits [B, C] for ids int [T, B] and lengths [B] in [1, T] (None: all T)."""
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"KimCNN.forward: ids must be [T, B], got shape {ids.shape}")
        T, B = ids.shape
        lens = int_lengths(lengths, B, T, "KimCNN.forward")
        if lens.size and (lens.min() < 1 or lens.max() > T):
            raise ValueError(
                f"KimCNN.forward: lengths must be [B={B}] integers in [1, T={T}] for ids "
                f"[T, B] (time-major), got {lens!r}"
            )
        x = self.embedding(ids)  # [T, B, E]
        valid = np.arange(T)[:, None] < lens[None, :]  # [T, B]
        # words past a sentence's end read as the zero vectors of Kim's padding
        x = np.ascontiguousarray((x * valid[:, :, None]).transpose(1, 0, 2))  # [B, T, E]
        pooled, argmax = [], []
        for conv, w in zip(self.convs, self.widths, strict=True):
            y = conv(x)  # [B, T + w - 1, maps]
            windows = np.arange(y.shape[1])[None, :] < (lens + w - 1)[:, None]  # [B, Lo]
            masked = np.where(windows[:, :, None], y, -np.inf)
            idx = masked.argmax(axis=1)  # [B, maps]
            top = np.take_along_axis(y, idx[:, None, :], axis=1)[:, 0, :]
            pooled.append(np.maximum(top, 0))  # ReLU then max = max then ReLU
            argmax.append((idx, y.shape))
        h = np.concatenate(pooled, axis=1)
        if self.training:
            self._save_for_backward((argmax, h > 0, valid))
        return self.classifier(self.drop(h))

    def backward(self, dlogits: np.ndarray) -> None:
        """Accumulate every parameter's gradient from dlogits [B, C]."""
        argmax, alive, valid = self._pop_saved("KimCNN.backward")
        dh = self.drop.backward(self.classifier.backward(dlogits)) * alive
        maps = self._config["maps"]
        dx = None
        for i, conv in enumerate(self.convs):
            idx, y_shape = argmax[i]
            dy = np.zeros(y_shape, dtype=dh.dtype)
            np.put_along_axis(dy, idx[:, None, :], dh[:, None, i * maps : (i + 1) * maps], axis=1)
            d = conv.backward(dy)
            dx = d if dx is None else dx + d
        # words past a sentence's end were zeroed in forward: no gradient reaches them
        self.embedding.backward(np.ascontiguousarray(dx.transpose(1, 0, 2) * valid[:, :, None]))

    def after_step(self) -> None:
        """Kim's constraint: each row of the output weight rescaled to L2 norm <= max_norm."""
        if self.max_norm is None:
            return
        w = self.classifier.weight.data
        norms = np.sqrt((w.astype(np.float64) ** 2).sum(axis=1, keepdims=True))
        w *= np.minimum(1.0, self.max_norm / np.maximum(norms, 1e-12)).astype(w.dtype)
