"""Seq2Seq: an encoder-decoder for translation, with optional context vector and Luong attention.

Layout: time-major, S source steps, T target steps, B batch, E embedding, H hidden, L layers,
D encoder directions, V vocabulary. The encoder reads the (optionally reversed) source; its final
state becomes the decoder's initial state; the decoder is trained with teacher forcing, every
step of the target at once (no per-step Python loop: attention over all decoder steps is one
batched matmul). Greedy and beam-search decoding step the decoder one token at a time, which is
inherent to autoregressive generation.

Sutskever et al. 2014 (reversed source, final state -> decoder), Cho et al. 2014 (context vector
fed to every decoder step), Luong et al. 2015 (global attention, "dot" and "general" scores,
attentional hidden state h~ = tanh(W_c [c; h])).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import cuda as _cuda
from .. import nn
from ..nn._checks import check_seed
from . import register
from ._inputs import int_lengths
from .language_model import make_rnn

ATTENTION = (None, "dot", "general")
BRIDGES = ("linear", "sum")


def reverse_padded(ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Reverse each column of ids [S, B] within its length; padding stays at the end."""
    S, B = ids.shape
    s = np.arange(S)[:, None]
    lens = np.asarray(lengths, dtype=np.int64)[None, :]
    src_index = np.where(s < lens, lens - 1 - s, s)
    return ids[src_index, np.arange(B)[None, :]]


def teacher_forcing_batch(
    targets: Sequence[Sequence[int]], *, bos_id: int, eos_id: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decoder inputs and targets for teacher forcing.

    Args:
        targets: B id sequences (without specials); each may be empty.
    Returns:
        (inputs int64 [T, B] = <bos> y_1 .. y_n, outputs int64 [T, B] = y_1 .. y_n <eos>, both
        padded with pad_id; lengths int64 [B] = n + 1), T = max(n) + 1.
    """
    lengths = np.array([len(t) + 1 for t in targets], dtype=np.int64)
    T, B = int(lengths.max()), len(targets)
    inputs = np.full((T, B), pad_id, dtype=np.int64)
    outputs = np.full((T, B), pad_id, dtype=np.int64)
    for b, t in enumerate(targets):
        n = len(t)
        inputs[0, b] = bos_id
        inputs[1 : n + 1, b] = t
        outputs[:n, b] = t
        outputs[n, b] = eos_id
    return inputs, outputs, lengths


def on_gpu(a: Any) -> bool:
    """Whether ``a`` lives in a GPU's memory (a model moved there whole)."""
    return isinstance(a, _cuda.DeviceArray)


def transpose01(a: Any) -> Any:
    """[n0, n1, n] -> [n1, n0, n]: a numpy view, or a copy on the device."""
    return _cuda.swap01(a) if on_gpu(a) else a.transpose(1, 0, 2)


def append_to_steps(x: Any, v: Any) -> Any:
    """Step inputs x [T, B, E] with v [B, F] appended to every step: [T, B, E+F] (on a GPU one
    gather and one concatenation there)."""
    T, B = x.shape[0], v.shape[0]
    if on_gpu(x):
        rows = np.broadcast_to(np.arange(B, dtype=np.int64), (T, B))
        return _cuda.concat_last([x, _cuda.embedding(rows, v, checked_ids=True)])
    return np.concatenate([x, np.broadcast_to(v, (T,) + v.shape)], axis=-1)


class _LuongAttention:
    """Global attention over a memory, vectorised over every query step (shared by the models).

    Not a Module: its parameters belong to the owning model (``attn`` for "general" scores and
    ``attn_combine`` = W_c), so the checkpoint names stay flat.
    """

    @staticmethod
    def keys(score: str, memory: np.ndarray, attn: nn.Linear | None) -> np.ndarray:
        """Keys [B, S, H] of the memory [B, S, H]: itself ("dot") or W_a m ("general")."""
        return memory if score == "dot" else attn(memory)

    @staticmethod
    def forward(
        q: np.ndarray,
        memory: np.ndarray,
        keys: np.ndarray,
        mask: np.ndarray,
        combine: nn.Linear,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """h~ = tanh(W_c [c_t; h_t]) with c_t = softmax(h_t · k_s) · m_s over valid s.

        Args:
            q: decoder states [B, T, H]; memory, keys: [B, S, H]; mask: bool [B, S], True for
            valid source steps.
        Returns:
            (h~ [B, T, H], cache for ``backward``; ``cache["weights"]`` [B, T, S] are the
            attention weights).
        """
        if on_gpu(q):  # the same steps on the device (batched products, masked softmax)
            scores = _cuda.bmm(q, keys, transpose_b=True)
            weights = _cuda.masked_softmax(scores, np.asarray(mask).sum(axis=1))
            context = _cuda.bmm(weights, memory)
            h_tilde = _cuda.tanh(combine(_cuda.concat_last([context, q])))
            return h_tilde, {
                "q": q,
                "memory": memory,
                "keys": keys,
                "weights": weights,
                "h": h_tilde,
            }
        scores = np.matmul(q, keys.transpose(0, 2, 1))  # [B, T, S]
        scores = np.where(mask[:, None, :], scores, -np.inf)
        scores -= scores.max(axis=-1, keepdims=True)
        weights = np.exp(scores)
        weights /= weights.sum(axis=-1, keepdims=True)
        context = np.matmul(weights, memory)  # [B, T, H]
        h_tilde = np.tanh(combine(np.concatenate([context, q], axis=-1)))
        return h_tilde, {"q": q, "memory": memory, "keys": keys, "weights": weights, "h": h_tilde}

    @staticmethod
    def backward(
        dh_tilde: np.ndarray, cache: dict[str, np.ndarray], combine: nn.Linear
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gradients (dq [B, T, H], dmemory [B, S, H], dkeys [B, S, H]) of ``forward``."""
        q, memory, keys, w = cache["q"], cache["memory"], cache["keys"], cache["weights"]
        H = q.shape[-1]
        if on_gpu(dh_tilde):
            dcat = combine.backward(_cuda.tanh_backward(dh_tilde, cache["h"]))
            dcontext, dq = _cuda.split_last(dcat, [H, H])
            dweights = _cuda.bmm(dcontext, memory, transpose_b=True)  # [B, T, S]
            dmemory = _cuda.bmm(w, dcontext, transpose_a=True)  # [B, S, H]
            dscores = _cuda.softmax_backward(dweights, w)
            _cuda.bmm(dscores, keys, out=dq)  # dq +=
            return dq, dmemory, _cuda.bmm(dscores, q, transpose_a=True)
        dcat = combine.backward(dh_tilde * (1.0 - cache["h"] ** 2))
        dcontext, dq = dcat[..., :H], dcat[..., H:].copy()
        dweights = np.matmul(dcontext, memory.transpose(0, 2, 1))  # [B, T, S]
        dmemory = np.matmul(w.transpose(0, 2, 1), dcontext)  # [B, S, H]
        dscores = w * (dweights - (dweights * w).sum(axis=-1, keepdims=True))
        dq += np.matmul(dscores, keys)
        dkeys = np.matmul(dscores.transpose(0, 2, 1), q)
        return dq, dmemory, dkeys


@register
class Seq2Seq(nn.Module):
    """Encoder-decoder with teacher forcing, greedy and beam-search decoding.

    Args:
        src_vocab_size, tgt_vocab_size: vocabulary sizes.
        embed_dim: E of both embeddings.
        hidden_size: H of encoder (per direction) and decoder.
        num_layers: L of encoder and decoder (layer l of the decoder starts from layer l of the
            encoder).
        cell: "lstm", "gru", "gru_v1", "rnn" or "rnn_relu" (both sides).
        bidirectional: a bidirectional encoder. Its two final states per layer are combined into
            the decoder's: ``bridge="linear"`` -- h0 = tanh(W_b [h_fwd; h_bwd] + b) (and for an
            LSTM c0 = W_bc [c_fwd; c_bwd] + b_c, a second Linear); ``bridge="sum"`` -- h_fwd +
            h_bwd (no parameters). Its outputs are summed over the two directions into the
            attention memory [S, B, H].
        attention: None, "dot" (score h_t · m_s) or "general" (h_t · W_a m_s), Luong et al.
            2015, with the source lengths masking the padding.
        context: feed the encoder's summary (the decoder's initial top-layer hidden state) to
            every decoder step, concatenated to the target embedding (Cho et al. 2014).
        reverse_source: read each source sentence backwards (Sutskever et al. 2014).
        dropout: dropout on both embeddings' outputs and before the output layer (training).
        padding_idx: the pad id of both vocabularies (ignored by the loss).
        bos_id, eos_id: begin / end of sentence ids of the target vocabulary.
        dtype, seed: "float32" / "float64"; seed of every initialisation.

    Submodules (checkpoint names): ``src_embedding``, ``encoder``, ``bridge`` / ``bridge_c``
    (bidirectional, linear bridge), ``tgt_embedding``, ``decoder``, ``attn`` ("general"),
    ``attn_combine`` (attention), ``output``.

    Batches for the Trainer: ``(src [S, B], src_lengths [B], tgt_in [T, B], tgt_out [T, B])``
    as made by :meth:`make_batch` (target padding = ``padding_idx``).
    """

    MODEL_TYPE = "seq2seq"
    #: ``.to("cuda")`` moves the whole translator: encoder, bridge, decoder and attention (batched
    #: products and the masked softmax on the device); decoding reads each step's
    #: log-probabilities back to choose the tokens.
    _GPU_RESIDENT = True

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        embed_dim: int = 128,
        hidden_size: int = 256,
        num_layers: int = 1,
        cell: str = "lstm",
        bidirectional: bool = False,
        attention: str | None = None,
        context: bool = False,
        bridge: str = "linear",
        reverse_source: bool = False,
        dropout: float = 0.0,
        padding_idx: int = 0,
        bos_id: int = 2,
        eos_id: int = 3,
        dtype: str = "float32",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if attention not in ATTENTION:
            raise ValueError(f"Seq2Seq: attention must be one of {ATTENTION}, got {attention!r}")
        if bridge not in BRIDGES:
            raise ValueError(f"Seq2Seq: bridge must be one of {BRIDGES}, got {bridge!r}")
        self._config = dict(
            src_vocab_size=src_vocab_size,
            tgt_vocab_size=tgt_vocab_size,
            embed_dim=embed_dim,
            hidden_size=hidden_size,
            num_layers=num_layers,
            cell=cell,
            bidirectional=bool(bidirectional),
            attention=attention,
            context=bool(context),
            bridge=bridge,
            reverse_source=bool(reverse_source),
            dropout=float(dropout),
            padding_idx=padding_idx,
            bos_id=bos_id,
            eos_id=eos_id,
            dtype=str(np.dtype(dtype)),
            seed=seed,
        )
        self.dtype = np.dtype(dtype)
        self.H, self.E, self.L = hidden_size, embed_dim, num_layers
        self.D = 2 if bidirectional else 1
        self.is_lstm = cell == "lstm"
        self.attention = attention
        self.use_context = bool(context)
        self.reverse_source = bool(reverse_source)
        self.pad_id, self.bos_id, self.eos_id = padding_idx, bos_id, eos_id
        seed = check_seed(seed, "Seq2Seq")
        seeds = iter(int(s) for s in np.random.default_rng(seed).integers(0, 2**31 - 1, 12))
        H, E = hidden_size, embed_dim
        self.src_embedding = nn.Embedding(src_vocab_size, E, padding_idx, dtype, next(seeds))
        self.encoder = make_rnn(
            cell, E, H, num_layers, bidirectional=bidirectional, dtype=dtype, seed=next(seeds)
        )
        self.bridge = self.bridge_c = None
        if bidirectional and bridge == "linear":
            self.bridge = nn.Linear(2 * H, H, dtype=dtype, seed=next(seeds))
            if self.is_lstm:
                self.bridge_c = nn.Linear(2 * H, H, dtype=dtype, seed=next(seeds))
        self.tgt_embedding = nn.Embedding(tgt_vocab_size, E, padding_idx, dtype, next(seeds))
        dec_in = E + (H if context else 0)
        self.decoder = make_rnn(cell, dec_in, H, num_layers, dtype=dtype, seed=next(seeds))
        self.attn = None
        self.attn_combine = None
        if attention == "general":
            self.attn = nn.Linear(H, H, bias=False, dtype=dtype, seed=next(seeds))
        if attention is not None:
            self.attn_combine = nn.Linear(2 * H, H, dtype=dtype, seed=next(seeds))
        self.output = nn.Linear(H, tgt_vocab_size, dtype=dtype, seed=next(seeds))
        self.src_dropout = nn.Dropout(dropout, seed=next(seeds), batch_axis=1)
        self.tgt_dropout = nn.Dropout(dropout, seed=next(seeds), batch_axis=1)
        self.out_dropout = nn.Dropout(dropout, seed=next(seeds), batch_axis=1)
        self.criterion = nn.CrossEntropyLoss(ignore_index=padding_idx, class_axis=-1)
        self._cache: dict[str, Any] = {}

    def config(self) -> dict[str, Any]:
        """Constructor keyword arguments (JSON-ready)."""
        return dict(self._config)

    # ---- batches ---------------------------------------------------------------------------
    def make_batch(
        self, sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """A training batch from id sequences (no specials): (src, src_lengths, tgt_in,
        tgt_out)."""
        if len(sources) != len(targets):
            raise ValueError(
                f"Seq2Seq.make_batch: {len(sources)} sources but {len(targets)} targets"
            )
        for i, s in enumerate(sources):
            if len(s) == 0:
                raise ValueError(f"Seq2Seq.make_batch: source {i} is empty")
        src, src_lengths = nn_pad(sources, self.pad_id)
        tgt_in, tgt_out, _ = teacher_forcing_batch(
            targets, bos_id=self.bos_id, eos_id=self.eos_id, pad_id=self.pad_id
        )
        return src, src_lengths, tgt_in, tgt_out

    # ---- encoder and bridge ----------------------------------------------------------------
    def _encode(self, src: np.ndarray, src_lengths: np.ndarray) -> tuple[Any, np.ndarray]:
        """Encoder pass. Returns (decoder initial state, memory [S, B, H])."""
        src = np.asarray(src)
        if src.ndim != 2:
            raise ValueError(f"Seq2Seq: src must be [S, B] ids, got shape {src.shape}")
        lengths = int_lengths(src_lengths, src.shape[1], src.shape[0], "Seq2Seq", "src_lengths")
        if self.reverse_source:
            src = reverse_padded(src, lengths)
        x = self.src_dropout(self.src_embedding(src))
        out, state = self.encoder(x, lengths=lengths)
        H = self.H
        if self.D == 1:
            memory = out
        elif on_gpu(out):
            fwd, bwd = _cuda.split_last(out, [H, H])
            memory = _cuda.add_(fwd, bwd)
        else:
            memory = out[..., :H] + out[..., H:]
        if self.is_lstm:
            h, c = state
        else:
            h, c = state, None
        h0, c0 = self._bridge_forward(h, c)
        if not on_gpu(memory):
            memory = np.ascontiguousarray(memory)
        return ((h0, c0) if self.is_lstm else h0), memory

    def _bridge_forward(self, h: np.ndarray, c: np.ndarray | None) -> tuple[Any, Any]:
        if self.D == 1:
            return h, c
        L, B, H = self.L, h.shape[1], self.H
        if on_gpu(h):
            return self._bridge_forward_device(h, c)
        h2 = h.reshape(L, 2, B, H)
        c2 = None if c is None else c.reshape(L, 2, B, H)
        if self.bridge is None:  # sum
            return h2.sum(axis=1), (None if c2 is None else c2.sum(axis=1))
        h0 = np.tanh(self.bridge(np.concatenate([h2[:, 0], h2[:, 1]], axis=-1)))
        self._cache["bridge_h"] = h0
        c0 = None
        if c2 is not None:
            c0 = self.bridge_c(np.concatenate([c2[:, 0], c2[:, 1]], axis=-1))
        return h0, c0

    def _bridge_forward_device(self, h: Any, c: Any) -> tuple[Any, Any]:
        """_bridge_forward of device states [2L, B, H]."""
        L, B, H = self.L, h.shape[1], self.H

        def directions(s: Any) -> list[Any]:  # [L*2, B, H] -> forward and backward [L, B, H]
            pair = _cuda.swap01(s.reshape(L, 2, B * H))  # [2, L, B*H]
            return [pair[0].reshape(L, B, H), pair[1].reshape(L, B, H)]

        if self.bridge is None:  # sum
            return (
                _cuda.add_(*directions(h)),
                None if c is None else _cuda.add_(*directions(c)),
            )
        h0 = _cuda.tanh(self.bridge(_cuda.concat_last(directions(h))))
        self._cache["bridge_h"] = h0
        c0 = None if c is None else self.bridge_c(_cuda.concat_last(directions(c)))
        return h0, c0

    def _bridge_backward(self, dh0: np.ndarray, dc0: np.ndarray | None) -> tuple[Any, Any]:
        """Gradient w.r.t. the encoder's final state from the decoder's initial-state one."""
        if self.D == 1:
            return dh0, dc0
        L, B, H = self.L, dh0.shape[1], self.H
        if on_gpu(dh0):
            return self._bridge_backward_device(dh0, dc0)

        def split(d2: np.ndarray) -> np.ndarray:  # [L, B, 2H] -> [L*2, B, H]
            return np.ascontiguousarray(
                np.stack([d2[..., :H], d2[..., H:]], axis=1).reshape(2 * L, B, H)
            )

        if self.bridge is None:
            dh = np.repeat(dh0[:, None], 2, axis=1).reshape(2 * L, B, H)
            dc = None if dc0 is None else np.repeat(dc0[:, None], 2, axis=1).reshape(2 * L, B, H)
            return dh, dc
        h0 = self._cache["bridge_h"]
        dh = split(self.bridge.backward(dh0 * (1.0 - h0**2)))
        dc = None if dc0 is None else split(self.bridge_c.backward(dc0))
        return dh, dc

    def _bridge_backward_device(self, dh0: Any, dc0: Any) -> tuple[Any, Any]:
        """_bridge_backward of device gradients [L, B, H]."""
        L, B, H = self.L, dh0.shape[1], self.H

        def stack(fwd: Any, bwd: Any) -> Any:  # two [L, B, H] -> [L*2, B, H], directions inner
            pair = [fwd.reshape(L, B * H), bwd.reshape(L, B * H)]
            return _cuda.concat_last(pair).reshape(2 * L, B, H)

        def split(d2: Any) -> Any:  # [L, B, 2H] -> [L*2, B, H]
            return stack(*_cuda.split_last(d2, [H, H]))

        if self.bridge is None:
            return stack(dh0, dh0), None if dc0 is None else stack(dc0, dc0)
        dh = split(self.bridge.backward(_cuda.tanh_backward(dh0, self._cache["bridge_h"])))
        dc = None if dc0 is None else split(self.bridge_c.backward(dc0))
        return dh, dc

    # ---- teacher forcing -------------------------------------------------------------------
    def forward(
        self,
        src: np.ndarray,
        src_lengths: np.ndarray,
        tgt_in: np.ndarray,
        tgt_lengths: np.ndarray | None = None,
    ) -> np.ndarray:
        """Logits [T, B, V] of every target step given the previous gold tokens.

        Args:
            src: source ids [S, B] padded; src_lengths: [B] in [1, S].
            tgt_in: decoder inputs [T, B] (<bos> y_1 ...); tgt_lengths: [B] or None (all T).
        """
        src, tgt_in = np.asarray(src), np.asarray(tgt_in)
        if src.ndim != 2 or tgt_in.ndim != 2 or tgt_in.shape[1] != src.shape[1]:
            raise ValueError(  # before the encoder runs: nothing is left waiting for a backward
                f"Seq2Seq.forward: src must be [S, B] and tgt_in [T, B] ids with the same B, got "
                f"shapes {src.shape} and {tgt_in.shape}"
            )
        self._cache = {}  # this call's, saved for its backward below
        state0, memory = self._encode(src, src_lengths)
        T, B = tgt_in.shape
        if tgt_lengths is None:
            tgt_lengths = np.full(B, T, dtype=np.int64)
        x = self.tgt_dropout(self.tgt_embedding(tgt_in))
        context = None
        if self.use_context:
            context = (state0[0] if self.is_lstm else state0)[-1]  # [B, H]
            x = append_to_steps(x, context)
        out, _ = self.decoder(x, lengths=np.asarray(tgt_lengths, dtype=np.int64), state=state0)
        cache: dict[str, Any] = {"context": context}
        if self.attention is not None:
            mb = transpose01(memory)
            keys = _LuongAttention.keys(self.attention, mb, self.attn)
            mask = np.arange(memory.shape[0])[None, :] < np.asarray(src_lengths)[:, None]
            h_tilde, cache["attention"] = _LuongAttention.forward(
                transpose01(out), mb, keys, mask, self.attn_combine
            )
            top = transpose01(h_tilde)
            if not on_gpu(top):
                top = np.ascontiguousarray(top)
        else:
            top = out
        self._cache.update(cache)
        if self.training:
            self._save_for_backward(self._cache)
        return self.output(self.out_dropout(top))

    def attention_weights(
        self, src: Any, src_lengths: Any, tgt_in: Any, tgt_lengths: Any = None
    ) -> np.ndarray:
        """Where the decoder looks: the attention weights of a teacher-forced pass in inference
        mode (dropout off; the model's mode is left as it was), [B, T, S]: for each target step
        t, its distribution over the source steps (zero past a source's length). Arguments as
        :meth:`forward` (e.g. from :meth:`make_batch`). A model without attention has none:
        ValueError."""
        if self.attention is None:
            raise ValueError(
                "Seq2Seq.attention_weights: this model has no attention (attention=None)"
            )
        with nn.inference_mode(self):
            self.forward(src, src_lengths, tgt_in, tgt_lengths)
            weights = self._cache["attention"]["weights"]
        return np.array(weights, copy=True)

    def backward(self, dlogits: np.ndarray) -> None:
        """Backward of the newest unconsumed training forward; gradients accumulate in every
        parameter."""
        self._cache = self._pop_saved("Seq2Seq.backward")
        dtop = self.out_dropout.backward(self.output.backward(dlogits))
        denc_out = None
        if self.attention is not None and on_gpu(dtop):
            dq, dmem, dkeys = _LuongAttention.backward(
                _cuda.swap01(dtop), self._cache["attention"], self.attn_combine
            )
            _cuda.add_(dmem, dkeys if self.attention == "dot" else self.attn.backward(dkeys))
            dout = _cuda.swap01(dq)
            dmemory = _cuda.swap01(dmem)
            denc_out = dmemory if self.D == 1 else _cuda.concat_last([dmemory, dmemory])
        elif self.attention is not None:
            dq, dmem, dkeys = _LuongAttention.backward(
                np.ascontiguousarray(dtop.transpose(1, 0, 2)),
                self._cache["attention"],
                self.attn_combine,
            )
            dmem += dkeys if self.attention == "dot" else self.attn.backward(dkeys)
            dout = np.ascontiguousarray(dq.transpose(1, 0, 2))
            dmemory = dmem.transpose(1, 0, 2)
            denc_out = np.ascontiguousarray(
                dmemory if self.D == 1 else np.concatenate([dmemory, dmemory], axis=-1)
            )
        else:
            dout = dtop
        dx, dstate0 = self.decoder.backward(dout)
        dh0, dc0 = dstate0 if self.is_lstm else (dstate0, None)
        if self.use_context and on_gpu(dx):
            dh0 = dh0.copy()
            dx, dcontext = _cuda.split_last(dx, [self.E, dx.shape[-1] - self.E])
            _cuda.sum_axis0(dcontext, out=dh0[dh0.shape[0] - 1])
        elif self.use_context:
            E = self.E
            dh0 = dh0.copy()
            dh0[-1] += dx[..., E:].sum(axis=0)
            dx = np.ascontiguousarray(dx[..., :E])
        self.tgt_embedding.backward(self.tgt_dropout.backward(dx))
        dh, dc = self._bridge_backward(dh0, dc0)
        dstate = (dh, dc) if self.is_lstm else dh
        dxe, _ = self.encoder.backward(denc_out, dstate=dstate)
        self.src_embedding.backward(self.src_dropout.backward(dxe))

    # ---- Trainer protocol ------------------------------------------------------------------
    def _loss(self, batch: Any) -> tuple[float, np.ndarray, np.ndarray]:
        src, src_lengths, tgt_in, tgt_out = batch
        tgt_out = np.asarray(tgt_out)
        tgt_lengths = (tgt_out != self.pad_id).sum(axis=0)
        logits = self.forward(src, src_lengths, tgt_in, tgt_lengths)
        return self.criterion(logits, tgt_out), logits, tgt_out

    def training_step(self, batch: Any) -> dict[str, float]:
        """Teacher-forced cross-entropy (mean over target tokens incl. <eos>) and backward."""
        self.train()
        loss, _, _ = self._loss(batch)
        self.backward(self.criterion.backward())
        return {"loss": loss, "count": float(self.criterion.count)}

    def validation_step(self, batch: Any) -> dict[str, float]:
        """Summed token loss, token count and correctly predicted tokens (teacher forcing)."""
        with nn.inference_mode(self):
            loss, logits, tgt_out = self._loss(batch)
        count = float(self.criterion.count)
        correct = float(
            ((np.asarray(logits).argmax(-1) == tgt_out) & (tgt_out != self.pad_id)).sum()
        )
        return {"loss_sum": loss * count, "count": count, "correct": correct}

    def epoch_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        """Token loss, perplexity and teacher-forced token accuracy."""
        count = max(sums.get("count", 0.0), 1.0)
        loss = sums["loss_sum"] / count
        metrics = {"loss": loss, "ppl": float(np.exp(min(loss, 50.0)))}
        if "correct" in sums:  # validation only: training steps skip the argmax
            metrics["token_accuracy"] = sums["correct"] / count
        return metrics

    # ---- decoding --------------------------------------------------------------------------
    def _decode_setup(self, src: np.ndarray, src_lengths: np.ndarray) -> dict[str, Any]:
        state, memory = self._encode(src, src_lengths)
        setup: dict[str, Any] = {"state": state, "context": None}
        if self.use_context:
            setup["context"] = (state[0] if self.is_lstm else state)[-1]
        if self.attention is not None:
            mb = transpose01(memory)
            if not on_gpu(mb):
                mb = np.ascontiguousarray(mb)
            setup["memory"] = mb
            setup["keys"] = _LuongAttention.keys(self.attention, mb, self.attn)
            setup["mask"] = np.arange(mb.shape[1])[None, :] < np.asarray(src_lengths)[:, None]
        return setup

    def _step(self, tokens: np.ndarray, state: Any, setup: dict[str, Any]) -> tuple[Any, Any]:
        """One decoder step for tokens [N]: (log-probabilities [N, V], new state)."""
        x = self.tgt_embedding(tokens[None, :])
        if setup["context"] is not None:
            x = append_to_steps(x, setup["context"])
        out, state = self.decoder(x, state=state)
        top = out[0]
        if self.attention is not None:
            h_tilde, _ = _LuongAttention.forward(
                transpose01(out),
                setup["memory"],
                setup["keys"],
                setup["mask"],
                self.attn_combine,
            )
            top = h_tilde.reshape(h_tilde.shape[0], -1) if on_gpu(h_tilde) else h_tilde[:, 0]
        if not on_gpu(top):
            top = np.ascontiguousarray(top)
        logits = np.asarray(self.output(top), dtype=np.float64)
        logits -= logits.max(axis=-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        return logp, state

    def greedy_decode(
        self, src: np.ndarray, src_lengths: np.ndarray, max_len: int = 50
    ) -> list[list[int]]:
        """Most likely next token at every step, for a batch.

        Args:
            src: [S, B] ids; src_lengths: [B].
            max_len: at most this many steps (the <eos> step included).
        Returns:
            B id lists without <bos>/<eos>.
        """
        with nn.inference_mode(self):
            setup = self._decode_setup(src, src_lengths)
            B = np.asarray(src).shape[1]
            tokens = np.full(B, self.bos_id, dtype=np.int64)
            state = setup["state"]
            done = np.zeros(B, dtype=bool)
            steps = []
            for _ in range(max_len):
                logp, state = self._step(tokens, state, setup)
                tokens = logp.argmax(axis=-1)
                steps.append(tokens)
                done |= tokens == self.eos_id
                if done.all():
                    break
        out = np.stack(steps, axis=1) if steps else np.zeros((B, 0), dtype=np.int64)
        result = []
        for row in out.tolist():
            result.append(row[: row.index(self.eos_id)] if self.eos_id in row else row)
        return result

    def beam_search(
        self,
        src_ids: Sequence[int],
        beam_width: int = 5,
        max_len: int = 50,
        length_penalty: float = 1.0,
    ) -> tuple[list[int], float]:
        """Beam search for one source sentence (the beams are the batch of every step).

        Every step expands each live hypothesis by every token; of the best 2k candidates those
        ending in <eos> among the top k finish, the best k others stay live. The search stops
        when k hypotheses have finished or after ``max_len`` steps; the winner maximises
        log P / len^length_penalty (len counts <eos>; 0 disables the normalisation). With
        ``beam_width=1`` this is exactly :meth:`greedy_decode`.

        Args:
            src_ids: source ids without specials.
        Returns:
            (best id list without specials, its normalised score).
        """
        if isinstance(beam_width, bool) or not isinstance(beam_width, (int, np.integer)):
            raise TypeError(
                f"Seq2Seq.beam_search: beam_width must be an integer, got {beam_width!r}"
            )
        if beam_width < 1:
            raise ValueError(f"Seq2Seq.beam_search: beam_width must be >= 1, got {beam_width}")
        src = np.asarray(src_ids, dtype=np.int64).reshape(-1, 1)
        with nn.inference_mode(self):
            setup = self._decode_setup(src, np.array([src.shape[0]]))
            return beam_search(
                self._step, setup, self.bos_id, self.eos_id, beam_width, max_len, length_penalty
            )

    def translate(
        self,
        sources: Sequence[Sequence[int]],
        *,
        beam_width: int = 1,
        max_len: int = 50,
        length_penalty: float = 1.0,
        batch_size: int = 64,
    ) -> list[list[int]]:
        """Decode many source id sequences (greedy when beam_width == 1, else beam search)."""
        results: list[list[int]] = []
        if beam_width == 1:
            for i in range(0, len(sources), batch_size):
                chunk = sources[i : i + batch_size]
                src, lengths = nn_pad(chunk, self.pad_id)
                results.extend(self.greedy_decode(src, lengths, max_len))
            return results
        for s in sources:
            results.append(self.beam_search(s, beam_width, max_len, length_penalty)[0])
        return results


def take(a: Any, index: np.ndarray, axis: int) -> Any:
    """The entries ``index`` (int [n]) of ``a`` along axis 0 or 1, contiguous: numpy, or device
    arrays (a model on a GPU) gathered there."""
    if not isinstance(a, _cuda.DeviceArray):
        return np.ascontiguousarray(np.take(a, index, axis=axis))
    if axis == 1:  # [L, B, H] states: through [B, L, H]
        return _cuda.swap01(take(_cuda.swap01(a), index, 0))
    index = np.asarray(index, dtype=np.int64)
    rows = _cuda.embedding(index, a.reshape(a.shape[0], -1), checked_ids=True)
    return rows.reshape(len(index), *a.shape[1:])


def _select_state(state: Any, index: np.ndarray) -> Any:
    if isinstance(state, tuple):
        return tuple(take(s, index, 1) for s in state)
    return take(state, index, 1)


def _repeat_setup(setup: dict[str, Any], n: int) -> dict[str, Any]:
    """The per-sentence decoding inputs (batch 1) repeated for n beams."""
    out = dict(setup)
    first = np.zeros(n, dtype=np.int64)
    for key in ("memory", "keys", "mask"):
        if key in setup:
            out[key] = take(setup[key], first, 0)
    if setup.get("context") is not None:
        out["context"] = take(setup["context"], first, 0)
    return out


def beam_search(
    step: Any,
    setup: dict[str, Any],
    bos_id: int,
    eos_id: int,
    beam_width: int,
    max_len: int,
    length_penalty: float,
) -> tuple[list[int], float]:
    """Beam search over a one-sentence decoder (see :meth:`Seq2Seq.beam_search`).

    Args:
        step: (tokens [N], state, setup) -> (log-probabilities [N, V], state).
        setup: the batch-1 decoding inputs; ``setup["state"]`` is the initial state.
    """
    k = int(beam_width)
    if max_len < 1:  # no step: nothing decoded (as greedy decoding)
        return [], 0.0

    def norm(score: float, length: int) -> float:
        return score / (length**length_penalty) if length_penalty else score

    hyps: list[list[int]] = [[]]
    scores = np.zeros(1)
    state = setup["state"]
    finished: list[tuple[float, list[int]]] = []
    setups = {1: setup}
    for t in range(max_len):
        n = len(hyps)
        if n not in setups:
            setups[n] = _repeat_setup(setup, n)
        last = np.array([h[-1] if h else bos_id for h in hyps], dtype=np.int64)
        logp, state = step(last, state, setups[n])
        cand = (scores[:, None] + logp).reshape(-1)
        V = logp.shape[1]
        order = np.argsort(-cand, kind="stable")[: 2 * k]
        keep_beam, keep_tok, keep_score = [], [], []
        for rank, idx in enumerate(order):
            b, tok = divmod(int(idx), V)
            if tok == eos_id:
                if rank < k:
                    finished.append((norm(float(cand[idx]), t + 1), hyps[b]))
            elif len(keep_beam) < k:
                keep_beam.append(b)
                keep_tok.append(tok)
                keep_score.append(float(cand[idx]))
        if len(finished) >= k or not keep_beam:
            break
        index = np.array(keep_beam, dtype=np.int64)
        hyps = [hyps[b] + [tok] for b, tok in zip(keep_beam, keep_tok, strict=True)]
        scores = np.array(keep_score)
        state = _select_state(state, index)
    else:
        finished.extend((norm(float(s), len(h)), h) for s, h in zip(scores, hyps, strict=True))
    best = max(range(len(finished)), key=lambda i: (finished[i][0], -i))
    return list(finished[best][1]), float(finished[best][0])


def nn_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad id sequences into [S, B] with lengths [B] (every sequence must be non-empty)."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    if lengths.size == 0 or lengths.min() < 1:
        raise ValueError("pad: every sequence must hold at least one id")
    out = np.full((int(lengths.max()), len(seqs)), pad_id, dtype=np.int64)
    for b, s in enumerate(seqs):
        out[: len(s), b] = s
    return out, lengths
