"""Captioner: one-to-many generation, a decoder conditioned on one feature vector per example.

Layout: time-major, T caption steps, B batch, F features, E embedding, H hidden, L layers. The
features set the decoder's initial state (h0 = tanh(W_h f + b_h) for every layer; an LSTM's c0 =
W_c f + b_c) and, with ``feed_features``, are concatenated to every step's input (as in
Vinyals et al. 2015 / Karpathy's "show and tell" variants). Training uses teacher forcing over
the whole caption at once; greedy and beam-search decoding step one token at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import cuda as _cuda
from .. import nn
from ..nn._checks import check_seed
from . import register
from .language_model import make_rnn
from .seq2seq import append_to_steps, beam_search, teacher_forcing_batch
from .sequence_regressor import on_device_of


@register
class Captioner(nn.Module):
    """Feature vector -> caption.

    Args:
        feature_dim: F, the size of each example's feature vector.
        vocab_size: V of the caption vocabulary.
        embed_dim, hidden_size, num_layers: E, H, L of the decoder.
        cell: "lstm", "gru", "gru_v1", "rnn" or "rnn_relu".
        feed_features: also feed the features to every step (concatenated to the embedding).
        dropout: on the embeddings and before the output layer (training only).
        padding_idx, bos_id, eos_id: special ids of the caption vocabulary.
        dtype, seed: as for the layers.

    Submodules (checkpoint names): ``init_h`` (Linear F -> L*H), ``init_c`` (LSTM only),
    ``embedding``, ``rnn``, ``output`` (Linear H -> V).
    Batches for the Trainer: ``(features [B, F], tgt_in [T, B], tgt_out [T, B])`` as made by
    :meth:`make_batch`.
    """

    MODEL_TYPE = "captioner"
    #: ``.to("cuda")`` moves the whole captioner: features copied over once per batch, the
    #: initial states, inputs, logits and loss computed there; decoding reads each step's
    #: log-probabilities back to choose tokens.
    _GPU_RESIDENT = True

    def __init__(
        self,
        feature_dim: int,
        vocab_size: int,
        embed_dim: int = 64,
        hidden_size: int = 128,
        num_layers: int = 1,
        cell: str = "lstm",
        feed_features: bool = False,
        dropout: float = 0.0,
        padding_idx: int = 0,
        bos_id: int = 2,
        eos_id: int = 3,
        dtype: str = "float32",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self._config = dict(
            feature_dim=feature_dim,
            vocab_size=vocab_size,
            embed_dim=embed_dim,
            hidden_size=hidden_size,
            num_layers=num_layers,
            cell=cell,
            feed_features=bool(feed_features),
            dropout=float(dropout),
            padding_idx=padding_idx,
            bos_id=bos_id,
            eos_id=eos_id,
            dtype=str(np.dtype(dtype)),
            seed=seed,
        )
        self.dtype = np.dtype(dtype)
        self.F, self.E, self.H, self.L = feature_dim, embed_dim, hidden_size, num_layers
        self.is_lstm = cell == "lstm"
        self.feed_features = bool(feed_features)
        self.pad_id, self.bos_id, self.eos_id = padding_idx, bos_id, eos_id
        seed = check_seed(seed, "Captioner")
        seeds = iter(int(s) for s in np.random.default_rng(seed).integers(0, 2**31 - 1, 8))
        LH = num_layers * hidden_size
        self.init_h = nn.Linear(feature_dim, LH, dtype=dtype, seed=next(seeds))
        self.init_c = (
            nn.Linear(feature_dim, LH, dtype=dtype, seed=next(seeds)) if self.is_lstm else None
        )
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx, dtype, next(seeds))
        rnn_in = embed_dim + (feature_dim if self.feed_features else 0)
        self.rnn = make_rnn(cell, rnn_in, hidden_size, num_layers, dtype=dtype, seed=next(seeds))
        self.output = nn.Linear(hidden_size, vocab_size, dtype=dtype, seed=next(seeds))
        self.emb_dropout = nn.Dropout(dropout, seed=next(seeds), batch_axis=1)
        self.out_dropout = nn.Dropout(dropout, seed=next(seeds), batch_axis=1)
        self.criterion = nn.CrossEntropyLoss(ignore_index=padding_idx, class_axis=-1)
        self._h0: np.ndarray | None = None

    def config(self) -> dict[str, Any]:
        """Constructor keyword arguments (JSON-ready)."""
        return dict(self._config)

    def make_batch(
        self, features: np.ndarray, captions: Sequence[Sequence[int]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features [B, F], tgt_in [T, B], tgt_out [T, B]) from id sequences (no specials)."""
        feats = np.asarray(features, dtype=self.dtype)
        if feats.ndim != 2 or feats.shape != (len(captions), self.F):
            raise ValueError(
                f"Captioner.make_batch: features must be [B={len(captions)}, F={self.F}], got "
                f"{feats.shape}"
            )
        tgt_in, tgt_out, _ = teacher_forcing_batch(
            captions, bos_id=self.bos_id, eos_id=self.eos_id, pad_id=self.pad_id
        )
        return feats, tgt_in, tgt_out

    # ---- forward / backward ----------------------------------------------------------------
    def _initial_state(self, feats: Any) -> Any:
        B = feats.shape[0]
        on_gpu = isinstance(feats, _cuda.DeviceArray)

        def layers(a: Any) -> Any:  # [B, L*H] -> [L, B, H]
            if on_gpu:
                return _cuda.swap01(a.reshape(B, self.L, self.H))
            return np.ascontiguousarray(a.reshape(B, self.L, self.H).transpose(1, 0, 2))

        pre = self.init_h(feats)
        h0 = _cuda.tanh(pre) if on_gpu else np.tanh(pre)
        self._h0 = h0
        if self.is_lstm:
            return layers(h0), layers(self.init_c(feats))
        return layers(h0)

    def _features(self, features: Any) -> Any:
        """features [B, F] in the model's dtype, on its GPU when it lives on one."""
        feats = np.ascontiguousarray(np.asarray(features), dtype=self.dtype)
        if feats.ndim != 2 or feats.shape[1] != self.F:
            raise ValueError(f"Captioner: features must be [B, F={self.F}], got {feats.shape}")
        return on_device_of(feats, self.output)

    def forward(self, features: Any, tgt_in: Any, tgt_lengths: Any = None) -> np.ndarray:
        """Logits [T, B, V] of every caption step given the previous gold tokens."""
        feats = self._features(features)
        tgt_in = np.asarray(tgt_in)
        T, B = tgt_in.shape
        state0 = self._initial_state(feats)
        x = self.emb_dropout(self.embedding(tgt_in))
        if self.feed_features:
            x = append_to_steps(x, feats)
        if tgt_lengths is None:
            tgt_lengths = np.full(B, T, dtype=np.int64)
        out, _ = self.rnn(x, lengths=np.asarray(tgt_lengths, dtype=np.int64), state=state0)
        if self.training:
            self._save_for_backward(self._h0)
        return self.output(self.out_dropout(out))

    def backward(self, dlogits: np.ndarray) -> None:
        """Backward of the newest unconsumed training forward; gradients accumulate in every
        parameter."""
        h0 = self._pop_saved("Captioner.backward")
        dout = self.out_dropout.backward(self.output.backward(dlogits))
        dx, dstate0 = self.rnn.backward(dout)
        on_gpu = isinstance(dx, _cuda.DeviceArray)
        if self.feed_features:  # the features themselves are inputs: their part is dropped
            if on_gpu:
                dx = _cuda.split_last(dx, [self.E, dx.shape[-1] - self.E])[0]
            else:
                dx = np.ascontiguousarray(dx[..., : self.E])
        self.embedding.backward(self.emb_dropout.backward(dx))
        dh0, dc0 = dstate0 if self.is_lstm else (dstate0, None)
        B = dh0.shape[1]

        def flat(d: Any) -> Any:  # [L, B, H] -> [B, L*H]
            if on_gpu:
                return _cuda.swap01(d).reshape(B, self.L * self.H)
            return np.ascontiguousarray(d.transpose(1, 0, 2).reshape(B, self.L * self.H))

        if on_gpu:
            self.init_h.backward(_cuda.tanh_backward(flat(dh0), h0))
        else:
            self.init_h.backward(flat(dh0) * (1.0 - h0**2))
        if self.is_lstm:
            self.init_c.backward(flat(dc0))

    # ---- Trainer protocol ------------------------------------------------------------------
    def _loss(self, batch: Any) -> tuple[float, np.ndarray, np.ndarray]:
        feats, tgt_in, tgt_out = batch
        tgt_out = np.asarray(tgt_out)
        lengths = (tgt_out != self.pad_id).sum(axis=0)
        logits = self.forward(feats, tgt_in, lengths)
        return self.criterion(logits, tgt_out), logits, tgt_out

    def training_step(self, batch: Any) -> dict[str, float]:
        """Teacher-forced cross-entropy (mean over caption tokens incl. <eos>) and backward."""
        self.train()
        loss, _, _ = self._loss(batch)
        self.backward(self.criterion.backward())
        return {"loss": loss, "count": float(self.criterion.count)}

    def validation_step(self, batch: Any) -> dict[str, float]:
        """Summed token loss, token count, correct tokens and exactly right captions."""
        with nn.inference_mode(self):
            loss, logits, tgt_out = self._loss(batch)
        count = float(self.criterion.count)
        valid = tgt_out != self.pad_id
        right = (np.asarray(logits).argmax(-1) == tgt_out) | ~valid
        return {
            "loss_sum": loss * count,
            "count": count,
            "correct": float((right & valid).sum()),
            "sequences": float(tgt_out.shape[1]),
            "sequences_correct": float(right.all(axis=0).sum()),
        }

    def epoch_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        """Token loss, token accuracy and teacher-forced exact match of whole captions."""
        count = max(sums.get("count", 0.0), 1.0)
        metrics = {"loss": sums["loss_sum"] / count}
        if "correct" in sums:  # validation only: training steps skip the argmax
            metrics["token_accuracy"] = sums["correct"] / count
        if sums.get("sequences"):
            metrics["exact_match"] = sums["sequences_correct"] / sums["sequences"]
        return metrics

    # ---- decoding --------------------------------------------------------------------------
    def _step(self, tokens: np.ndarray, state: Any, setup: dict[str, Any]) -> tuple[Any, Any]:
        x = self.embedding(tokens[None, :])
        if setup.get("context") is not None:
            x = append_to_steps(x, setup["context"])
        out, state = self.rnn(x, state=state)
        logits = np.asarray(self.output(out[0]), dtype=np.float64)
        logits -= logits.max(axis=-1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True)), state

    def _setup(self, feats: np.ndarray) -> dict[str, Any]:
        return {
            "state": self._initial_state(feats),
            "context": feats if self.feed_features else None,
        }

    def greedy_decode(self, features: Any, max_len: int = 30) -> list[list[int]]:
        """The most likely token at every step for a batch of features [B, F]; B id lists
        without <bos>/<eos> (at most max_len steps, the <eos> step included)."""
        feats = self._features(features)
        with nn.inference_mode(self):
            setup = self._setup(feats)
            state = setup["state"]
            tokens = np.full(feats.shape[0], self.bos_id, dtype=np.int64)
            done = np.zeros(feats.shape[0], dtype=bool)
            steps = []
            for _ in range(max_len):
                logp, state = self._step(tokens, state, setup)
                tokens = logp.argmax(axis=-1)
                steps.append(tokens)
                done |= tokens == self.eos_id
                if done.all():
                    break
        rows = np.stack(steps, axis=1).tolist() if steps else [[] for _ in range(len(feats))]
        return [r[: r.index(self.eos_id)] if self.eos_id in r else r for r in rows]

    def beam_search(
        self, features: Any, beam_width: int = 5, max_len: int = 30, length_penalty: float = 1.0
    ) -> tuple[list[int], float]:
        """Beam search for one feature vector [F] (see :meth:`Seq2Seq.beam_search`); width 1
        equals :meth:`greedy_decode`. Returns (ids without specials, normalised score)."""
        if isinstance(beam_width, bool) or not isinstance(beam_width, (int, np.integer)):
            raise TypeError(
                f"Captioner.beam_search: beam_width must be an integer, got {beam_width!r}"
            )
        if beam_width < 1:
            raise ValueError(f"Captioner.beam_search: beam_width must be >= 1, got {beam_width}")
        feats = self._features(np.asarray(features).reshape(1, -1))
        with nn.inference_mode(self):
            return beam_search(
                self._step,
                self._setup(feats),
                self.bos_id,
                self.eos_id,
                beam_width,
                max_len,
                length_penalty,
            )

    def caption(
        self, features: Any, *, beam_width: int = 1, max_len: int = 30, batch_size: int = 256
    ) -> list[list[int]]:
        """Captions (id lists) for features [N, F]: greedy when beam_width == 1, else beam."""
        feats = self._features(features)
        if beam_width == 1:
            out: list[list[int]] = []
            for i in range(0, len(feats), batch_size):
                out.extend(self.greedy_decode(feats[i : i + batch_size], max_len))
            return out
        return [self.beam_search(f, beam_width, max_len)[0] for f in feats]
