"""SequenceTagger: many-to-many (NER, POS): word (+ character BiLSTM) features -> BiRNN -> tags."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from .. import cuda as _cuda
from .. import metrics
from ..nn import (
    CRF,
    LSTM,
    CrossEntropyLoss,
    Dropout,
    Embedding,
    Linear,
    Module,
    bio_constraints,
    inference_mode,
)
from . import register
from ._inputs import int_lengths
from .classifier import softmax
from .language_model import check_dropout, child_seeds, dtype_name, make_rnn, summed_cross_entropy

IGNORE = -100  # target of padded positions


class TaggerBatch(NamedTuple):
    """One batch of a tagging task.

    Attributes:
        ids: int64 [T, B] word ids, padded past each length.
        lengths: int64 [B] in [1, T].
        tags: int64 [T, B] tag ids, -100 at padded positions (or None when predicting).
        chars: int64 [Lc, N] character ids of the N = sum(lengths) words, sentence by sentence
            (batch-major: the words of sequence 0, then of sequence 1, ...), padded; None for a
            model without character features.
        char_lengths: int64 [N] in [1, Lc], each word's number of characters.
    """

    ids: np.ndarray
    lengths: np.ndarray
    tags: np.ndarray | None
    chars: np.ndarray | None = None
    char_lengths: np.ndarray | None = None


def is_bio(tag_names: Sequence[str]) -> bool:
    """True when every tag is "O" or B-TYPE / I-TYPE (IOB1 or IOB2 chunk tags)."""
    return (
        bool(tag_names)
        and all(t == "O" or (len(t) > 2 and t[:2] in ("B-", "I-")) for t in tag_names)
        and any(t != "O" for t in tag_names)
    )


class BIORepair:
    """Makes predicted BIO tags valid IOB2, vectorised over a batch.

    An ``I-X`` that follows ``O``, the sentence start, or a tag of another type becomes ``B-X``.
    conlleval (and :func:`rnncore.metrics.extract_chunks`) already read such an ``I-X`` as the
    start of a new X chunk, so the repair never changes the chunks, precision, recall or F1: it
    only makes the output a well-formed IOB2 sequence for downstream users. (An ``I-X`` whose
    ``B-X`` is missing from the tag set is left as it is.)

    Args:
        tag_names: the tag of each id.
    """

    def __init__(self, tag_names: Sequence[str]) -> None:
        n = len(tag_names)
        types = sorted({t[2:] for t in tag_names if t[:2] in ("B-", "I-")})
        type_id = {t: i + 1 for i, t in enumerate(types)}  # 0: no type (O and other tags)
        index = {t: i for i, t in enumerate(tag_names)}
        self.type = np.zeros(n, dtype=np.int64)
        self.is_inside = np.zeros(n, dtype=bool)
        self.begin_of = np.arange(n, dtype=np.int64)
        for i, t in enumerate(tag_names):
            if t[:2] in ("B-", "I-"):
                self.type[i] = type_id[t[2:]]
            if t[:2] == "I-" and f"B-{t[2:]}" in index:
                self.is_inside[i] = True
                self.begin_of[i] = index[f"B-{t[2:]}"]

    def __call__(self, tags: np.ndarray) -> np.ndarray:
        """tags int [T, B] (time-major) -> repaired copy. Padding positions may hold anything."""
        prev_type = np.zeros_like(tags)
        prev_type[1:] = self.type[tags[:-1]]
        bad = self.is_inside[tags] & (prev_type != self.type[tags])
        return np.where(bad, self.begin_of[tags], tags)


@register
class SequenceTagger(Module):
    """Per-token tagger: word ``embedding`` (+ character features) -> dropout -> bidirectional
    ``rnn`` -> dropout -> ``classifier`` per token.

    Character features (Lample et al. 2016), when ``char_vocab_size`` is given: each word's
    characters go through ``char_embedding`` and a one-layer bidirectional LSTM ``char_rnn``; its
    final forward and backward states [2 * char_hidden_size] are concatenated to the word's
    embedding. They let the tagger see capitalisation, suffixes and unknown words.

    Decoding takes the most likely tag at each position, then, for BIO tag sets, applies
    :class:`BIORepair` (I-X after O or another type -> B-X, conlleval-compatible).

    Args:
        vocab_size, embed_dim: the word embedding table.
        hidden_size: H of every recurrent layer (per direction).
        num_tags: number of tags C.
        num_layers: stacked layers.
        cell: "lstm", "gru", "gru_v1", "rnn" or "rnn_relu".
        bidirectional: D = 2 directions (the usual tagger; False gives a left-to-right tagger).
        dropout: on the (word + character) features, between layers and on the rnn output.
        padding_idx: word padding id, or None.
        tag_names: the tag of each id (enables BIO decoding and entity scores), or None.
        char_vocab_size: size of the character vocabulary, or None for no character features.
        char_embed_dim, char_hidden_size: sizes of the character BiLSTM.
        char_padding_idx: the character padding id.
        dtype, seed: as in the layers.
        zoneout, recurrent_dropout: the recurrent regularisers of the engine (see LanguageModel).
        layer_norm: layer normalisation in the recurrence, "lstm" and "gru" (see LanguageModel).
        crf: a linear-chain CRF on the logits (Lample et al. 2016): trained by the sentence's
            log-likelihood, decoded by Viterbi, BIO transitions constrained for BIO tag sets.

    Shapes: ids [T, B], lengths [B] (chars [Lc, N], char_lengths [N]) -> logits [T, B, C].
    """

    MODEL_TYPE = "sequence_tagger"

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        hidden_size: int,
        num_tags: int,
        num_layers: int = 1,
        cell: str = "lstm",
        bidirectional: bool = True,
        dropout: float = 0.0,
        padding_idx: int | None = 0,
        tag_names: Sequence[str] | None = None,
        char_vocab_size: int | None = None,
        char_embed_dim: int = 25,
        char_hidden_size: int = 25,
        char_padding_idx: int | None = 0,
        dtype: Any = "float32",
        seed: int | None = None,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
        layer_norm: bool = False,
        crf: bool = False,
    ) -> None:
        super().__init__()
        owner = "SequenceTagger"
        if tag_names is not None:
            tag_names = [str(t) for t in tag_names]
            if len(tag_names) != num_tags:
                raise ValueError(
                    f"{owner}: tag_names has {len(tag_names)} tags but num_tags is {num_tags}"
                )
        self._config = dict(
            vocab_size=int(vocab_size),
            embed_dim=int(embed_dim),
            hidden_size=int(hidden_size),
            num_tags=int(num_tags),
            num_layers=int(num_layers),
            cell=cell,
            bidirectional=bool(bidirectional),
            dropout=check_dropout(dropout, owner),
            padding_idx=padding_idx,
            tag_names=tag_names,
            char_vocab_size=None if char_vocab_size is None else int(char_vocab_size),
            char_embed_dim=int(char_embed_dim),
            char_hidden_size=int(char_hidden_size),
            char_padding_idx=char_padding_idx,
            dtype=dtype_name(dtype),
            seed=seed,
        )
        for key, value in (("zoneout", zoneout), ("recurrent_dropout", recurrent_dropout)):
            if value:  # written only when used: older checkpoints and readers stay as they were
                self._config[key] = float(value)
        if layer_norm:
            self._config["layer_norm"] = True
        if crf:
            self._config["crf"] = True
        s = child_seeds(seed, 7, "SequenceTagger")
        D = 2 if bidirectional else 1
        self.tag_names = tag_names
        #: What :meth:`predict_tags` needs, set by load_checkpoint from the training run (or by
        #: hand): the word and character Vocabs and whether words are looked up lower-cased.
        self.vocab: Any = None
        self.char_vocab: Any = None
        self.lowercase = True
        self.bio = BIORepair(tag_names) if tag_names is not None and is_bio(tag_names) else None
        self.embedding = Embedding(
            vocab_size, embed_dim, padding_idx=padding_idx, dtype=dtype, seed=s[0]
        )
        features = embed_dim
        self.use_chars = char_vocab_size is not None
        if self.use_chars:
            self.char_embedding = Embedding(
                char_vocab_size,
                char_embed_dim,
                padding_idx=char_padding_idx,
                dtype=dtype,
                seed=s[5],
            )
            self.char_rnn = LSTM(
                char_embed_dim, char_hidden_size, bidirectional=True, dtype=dtype, seed=s[6]
            )
            features += 2 * char_hidden_size
        self.drop_in = Dropout(dropout, seed=s[1], batch_axis=1)
        self.rnn = make_rnn(
            cell,
            features,
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
        self.drop_out = Dropout(dropout, seed=s[3], batch_axis=1)
        self.classifier = Linear(D * hidden_size, num_tags, dtype=dtype, seed=s[4])
        self.criterion = CrossEntropyLoss(ignore_index=IGNORE, class_axis=-1)
        self.crf = None
        if crf:
            bio = tag_names is not None and is_bio(tag_names)
            self.crf = CRF(
                num_tags,
                constraints=bio_constraints(tag_names) if bio else None,
                dtype=dtype,
                # the first 7 are the other layers' seeds
                seed=child_seeds(seed, 8, "SequenceTagger")[7],
            )
        self._cache: tuple[Any, ...] | None = None

    def config(self) -> dict[str, Any]:
        """The constructor's keyword arguments (JSON-ready)."""
        return dict(self._config)

    #: ``.to("cuda")`` moves the whole tagger (character features included): the logits and
    #: the softmax loss stay on the GPU; a CRF (small: [T, B, C] scores, K x K transitions) runs
    #: on the host, its scores and their gradient crossing once each per step.
    _GPU_RESIDENT = True

    # ---- forward / backward ----------------------------------------------------------------
    def forward(
        self, ids: Any, lengths: Any = None, chars: Any = None, char_lengths: Any = None
    ) -> np.ndarray:
        """Tag logits at every position.

        Args:
            ids: int [T, B] word ids.
            lengths: int [B], or None (all T).
            chars, char_lengths: the words' characters (see :class:`TaggerBatch`); required
                exactly when the model has character features.

        Returns:
            logits [T, B, C] (positions past a sequence's end hold the bias only).
        """
        where = "SequenceTagger.forward"
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"{where}: ids must be [T, B], got shape {ids.shape}")
        T, B = ids.shape
        lens = int_lengths(lengths, B, T, where)
        x = self.embedding(ids)
        mask_bt = None
        if self.use_chars:
            if chars is None or char_lengths is None:
                raise ValueError(f"{where}: this tagger has character features: pass chars")
            mask_bt = np.arange(T)[None, :] < lens[:, None]  # [B, T]
            n_words = int(mask_bt.sum())
            chars = np.asarray(chars)
            if chars.ndim != 2 or chars.shape[1] != n_words:
                raise ValueError(
                    f"{where}: chars must be [Lc, N={n_words}] (one column per word), got "
                    f"shape {chars.shape}"
                )
            _, (hc, _) = self.char_rnn(self.char_embedding(chars), lengths=char_lengths)
            if isinstance(hc, _cuda.DeviceArray):  # the tagger on a GPU
                word_feat = _cuda.swap01(hc).reshape(n_words, -1)  # [N, 2*Hc]: fwd | bwd
                x = _cuda.concat_last([x, self._place_words(word_feat, mask_bt)])
            else:
                word_feat = hc.transpose(1, 0, 2).reshape(n_words, -1)
                feat = np.zeros((B, T, word_feat.shape[1]), dtype=x.dtype)
                feat[mask_bt] = word_feat
                x = np.concatenate([x, feat.transpose(1, 0, 2)], axis=-1)
        x = self.drop_in(x)
        y, _ = self.rnn(x, lengths=lens)
        if self.training:
            self._save_for_backward(mask_bt)
        return self.classifier(self.drop_out(y))

    def backward(self, dlogits: np.ndarray) -> None:
        """Accumulate every parameter's gradient from dlogits [T, B, C] (one call per layer)."""
        mask_bt = self._pop_saved("SequenceTagger.backward")
        dy = self.drop_out.backward(self.classifier.backward(dlogits))
        dx, _ = self.rnn.backward(dy)
        dx = self.drop_in.backward(dx)
        E = self.embedding.embedding_dim
        if self.use_chars:
            T, B, width = dx.shape
            if isinstance(dx, _cuda.DeviceArray):  # the tagger on a GPU
                dx, dfeat = _cuda.split_last(dx, [E, width - E])
                b_at, t_at = np.nonzero(mask_bt)  # each word's position, in word order
                dword = _cuda.embedding(
                    t_at * B + b_at, dfeat.reshape(T * B, width - E), checked_ids=True
                )  # [N, 2*Hc]
                dh = _cuda.swap01(dword.reshape(len(b_at), 2, (width - E) // 2))
            else:
                dfeat = dx[:, :, E:].transpose(1, 0, 2)[mask_bt]  # [N, 2*Hc]
                n, two_h = dfeat.shape
                dh = np.ascontiguousarray(dfeat.reshape(n, 2, two_h // 2).transpose(1, 0, 2))
                dx = np.ascontiguousarray(dx[:, :, :E])
            dxc, _ = self.char_rnn.backward(None, (dh, None))
            self.char_embedding.backward(dxc)
        self.embedding.backward(dx)

    @staticmethod
    def _place_words(word_feat: Any, mask_bt: np.ndarray) -> Any:
        """The words' features [N, F] (a device array, words batch-major) at their positions:
        [T, B, F], zeros past each sentence's end. One gather on the device: row N of a copy
        with a zero row appended stands for the padding."""
        N, F = word_feat.shape
        B, T = mask_bt.shape
        b_at, t_at = np.nonzero(mask_bt)
        index = np.full((T, B), N, dtype=np.int64)
        index[t_at, b_at] = np.arange(N)
        rows = _cuda.DeviceArray.zeros((N + 1, F), word_feat.dtype, word_feat.device)
        rows[:N] = word_feat
        return _cuda.embedding(index, rows, checked_ids=True)

    # ---- Trainer protocol -------------------------------------------------------------------
    def _logits(self, batch: TaggerBatch) -> np.ndarray:
        return self.forward(batch.ids, batch.lengths, batch.chars, batch.char_lengths)

    def training_step(self, batch: TaggerBatch) -> dict[str, float]:
        """Mean cross-entropy over the real tokens (with a CRF: the sentences' negative
        log-likelihood per token); returns loss, count (tokens), correct."""
        logits = self._logits(batch)
        count = int((batch.tags != IGNORE).sum())
        if self.crf is not None:  # the CRF runs on the host (a GPU model's logits come over)
            logits = np.asarray(logits)
            loss = self.crf(logits, batch.tags, batch.lengths) / max(count, 1)
            self.backward(self.crf.backward(1.0 / max(count, 1)))
        else:
            loss = self.criterion(logits, batch.tags)
            self.backward(self.criterion.backward())
        correct = int((np.asarray(logits).argmax(axis=-1) == batch.tags).sum())
        return {"loss": loss, "count": count, "correct": correct}

    def validation_step(self, batch: TaggerBatch) -> dict[str, float]:
        """Sums: loss, tokens, correct tokens and, for BIO tags, entity (chunk) counts (in
        inference mode whatever the model's mode: no dropout, nothing kept for a backward)."""
        with inference_mode(self):
            logits = np.asarray(self._logits(batch))  # a GPU model's come to the host
        tags = batch.tags
        pred = self.decode(logits, batch.lengths)
        if self.crf is not None:
            with inference_mode(self.crf):
                loss_sum = self.crf(logits, tags, batch.lengths)
        else:
            loss_sum = summed_cross_entropy(logits, tags, IGNORE)
        out = {
            "loss_sum": loss_sum,
            "count": float((tags != IGNORE).sum()),
            "correct": float(((pred == tags) & (tags != IGNORE)).sum()),
        }
        if self.bio is not None:
            true_seqs = self.to_tags(tags, batch.lengths)
            pred_seqs = self.to_tags(pred, batch.lengths)
            sc = metrics.chunk_scores(true_seqs, pred_seqs)
            out.update(
                chunks_true=float(sc.n_true),
                chunks_pred=float(sc.n_pred),
                chunks_correct=float(sc.n_correct),
            )
        return out

    def epoch_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        """loss, token accuracy and, for BIO tags, entity precision / recall / F1 (conlleval)."""
        n = max(sums["count"], 1.0)
        out = {"loss": sums["loss_sum"] / n, "accuracy": sums.get("correct", 0.0) / n}
        if "chunks_true" in sums:
            t, p, c = sums["chunks_true"], sums["chunks_pred"], sums["chunks_correct"]
            precision = c / p if p else 0.0
            recall = c / t if t else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            out.update(precision=precision, recall=recall, f1=f1)
        return out

    # ---- prediction -------------------------------------------------------------------------
    def decode(self, logits: np.ndarray, lengths: Any = None) -> np.ndarray:
        """Tag ids [T, B] from logits [T, B, C]: the CRF's Viterbi path, or argmax followed by
        the BIO repair for BIO tag sets.

        Positions past a sequence's end get -100.
        """
        logits = np.asarray(logits)  # device logits (a model on a GPU) are copied over
        if self.crf is not None:
            pred = self.crf.decode(logits, lengths)
            return np.where(pred < 0, IGNORE, pred)
        pred = logits.argmax(axis=-1)
        if self.bio is not None:
            pred = self.bio(pred)
        if lengths is not None:
            T = pred.shape[0]
            pred = np.where(np.arange(T)[:, None] < np.asarray(lengths)[None, :], pred, IGNORE)
        return pred

    def predict(
        self, ids: Any, lengths: Any = None, chars: Any = None, char_lengths: Any = None
    ) -> np.ndarray:
        """Decoded tag ids [T, B] (-100 past each length), computed in inference mode.

        ids are time-major [T, B]; lengths [B] (checked against ids). For raw text use
        :meth:`predict_tags`.
        """
        with inference_mode(self):
            logits = self.forward(ids, lengths, chars, char_lengths)
        return self.decode(logits, lengths)

    def predict_proba(
        self, ids: Any, lengths: Any = None, chars: Any = None, char_lengths: Any = None
    ) -> np.ndarray:
        """Tag probabilities [T, B, C] (float64), inference mode; ids [T, B] as :meth:`predict`."""
        with inference_mode(self):
            return softmax(np.asarray(self.forward(ids, lengths, chars, char_lengths)))

    def predict_tags(self, texts: str | Sequence[str]) -> list[list[tuple[str, str]]]:
        """Tag raw text: one list of (token, tag) per text (punctuation split off, case kept).

        Args:
            texts: a str or a list of str.

        Example::

            ckpt = load_checkpoint("runs/conll")
            ckpt.model.predict_tags("John lives in Paris .")
            # [[("John", "B-PER"), ("lives", "O"), ("in", "O"), ("Paris", "B-LOC"), (".", "O")]]
        """
        from ..data import pad_sequences
        from ._inputs import tokens_of_texts

        where = "SequenceTagger.predict_tags"
        if isinstance(texts, np.ndarray) or not (
            isinstance(texts, str) or all(isinstance(t, str) for t in texts)
        ):
            raise TypeError(f"{where}: texts must be a str or a list of str (ids: use predict)")
        if self.vocab is None or (self.use_chars and self.char_vocab is None):
            raise ValueError(
                f"{where}: needs the model's vocabularies: use a model from load_checkpoint, or "
                "set model.vocab (and model.char_vocab for character features)"
            )
        tokens = tokens_of_texts(texts, lowercase=False, where=where)
        words = [self.vocab.encode([t.lower() for t in s] if self.lowercase else s) for s in tokens]
        ids, lengths = pad_sequences(words, pad_id=self.embedding.padding_idx or 0)
        chars = char_lengths = None
        if self.use_chars:
            chars, char_lengths = pad_sequences(
                [self.char_vocab.encode(w) for s in tokens for w in s],
                pad_id=self.char_vocab.pad_id,
            )
        tags = self.to_tags(self.predict(ids, lengths, chars, char_lengths), lengths)
        return [list(zip(s, t, strict=True)) for s, t in zip(tokens, tags, strict=True)]

    def to_tags(self, tag_ids: np.ndarray, lengths: Any) -> list[list[str]]:
        """Tag-name lists, one per sequence, from ids [T, B] and lengths [B]."""
        if self.tag_names is None:
            raise ValueError("SequenceTagger.to_tags: the model was built without tag_names")
        names = self.tag_names
        cols = np.asarray(tag_ids).T
        return [[names[i] for i in cols[b, : int(n)]] for b, n in enumerate(lengths)]
