"""An n-gram language model with interpolated modified Kneser-Ney smoothing, in NumPy.

The model of Chen & Goodman (1998, "An empirical study of smoothing techniques for language
modeling", section 3, the interpolated version of their modified Kneser-Ney), of any order n:

    p_k(w | h) = (c_k(h w) - D_k(c_k(h w))) / c_k(h·)  +  gamma_k(h) · p_{k-1}(w | h')
    gamma_k(h) = (D_k,1 · N1(h·) + D_k,2 · N2(h·) + D_k,3+ · N3+(h·)) / c_k(h·)
    p_0(w)     = 1 / V                                   (uniform over the whole vocabulary)

where h is the context of k-1 tokens, h' the same context without its first token, c_k(h·) the
sum of c_k(h v) over the words v, and N1(h·) / N2(h·) / N3+(h·) the number of words v with
c_k(h v) = 1 / = 2 / >= 3. A context h never seen before any word has gamma_k(h) = 1 (the
lower order alone). The counts c_k are

* at the highest order k = n, and for k-grams that begin at the start of a sentence, the raw
  counts (nothing can precede them: the rule of KenLM and SRILM for n-grams starting with <s>);
* at the lower orders otherwise, continuation counts: c_k(g) = N1+(· g), the number of distinct
  tokens seen right before the k-gram g (so a word seen after many contexts scores higher).

The three discounts of each order come from that order's count-of-counts n_r (the number of
k-grams with c_k = r): Y = n1 / (n1 + 2 n2), D1 = 1 - 2Y n2/n1, D2 = 2 - 3Y n3/n2,
D3+ = 3 - 4Y n4/n3. When one of them is undefined (some n_r = 0, as in tiny corpora) or falls
outside [0, r], the order uses :data:`FALLBACK_DISCOUNTS` (0.5, 1, 1.5: KenLM's
``--discount_fallback``). Every distribution sums to 1 over the vocabulary and gives every token
a probability > 0.

Sentences follow the Penn Treebank LM recipe of :func:`rnncore.data.load_ptb`: every sentence
ends with ``<eos>``, and ``<eos>`` also stands for the start of a sentence in contexts (the
``<s>`` of SRILM/KenLM), so the first word of a sentence is predicted from the context
``(<eos>,)`` and contexts never reach into the previous sentence. Perplexity is per token,
``<eos>`` included, as `rnncore train lm` reports it: exp of the mean negative log-likelihood
(natural log) of every token of every sentence. (The RNN task's streams predict the same tokens
but the first of each batch column, a negligible difference on real corpora.)

Storage: the k-grams of order k are one sorted int64 array of keys ``ctx · V + w``, where ``ctx``
is the index of the context (k-1)-gram in order k-1's array (order 1 has the single empty
context 0) and ``w`` the last token; fitting and scoring are vectorised over a whole token
stream with ``np.unique`` and ``np.searchsorted``. Penn Treebank (930k training tokens, 10k
words) fits at order 5 in seconds (bench/ngram_ptb.py).

Saved format (:meth:`KneserNeyLM.save`, a directory):

* ``ngram.json``: ``{"format": "rnncore.ngram.KneserNeyLM", "version": 1, "order": n,
  "vocab_size": V, "eos_id": e, "ngrams": [G_1, ..., G_n], "discounts": [[D1, D2, D3+], ...]}``
  (``discounts`` is informational: they are recomputed from the counts on load);
* ``ngram.npz`` (NumPy's zip of ``.npy`` files, no pickles): ``keys_k`` int64 [G_k] strictly
  increasing in [0, G_{k-1} · V) with G_0 = 1, and ``counts_k`` integers [G_k] >= 1 (the counts
  c_k above), for k = 1..n;
* ``vocab.json``: the vocabulary (:meth:`rnncore.data.Vocab.save`).

:meth:`KneserNeyLM.load` checks all of it and raises ValueError naming the file and the field.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .data import Vocab
from .data._io import PathLike

__all__ = ["KneserNeyLM", "split_sentences", "FALLBACK_DISCOUNTS"]

#: discounts (D1, D2, D3+) of an order whose count-of-counts give none usable (KenLM's default)
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
FORMAT = "rnncore.ngram.KneserNeyLM"
VERSION = 1
META_FILE = "ngram.json"
ARRAYS_FILE = "ngram.npz"
VOCAB_FILE = "vocab.json"
KINDS = ("keys", "counts")  # the arrays of each order in ngram.npz
_MAX_COUNT = 2**53  # counts are summed in float64: exact below this


def split_sentences(ids: Sequence[int] | np.ndarray, eos_id: int) -> list[np.ndarray]:
    """Cut a token stream (sentences joined, each ending with ``eos_id``) into its sentences.

    Args:
        ids: int [N] token ids, e.g. :class:`rnncore.data.LMCorpus`'s ``train``.
        eos_id: the id of ``<eos>``.
    Returns:
        list of int64 arrays [L_s], each ending with ``eos_id`` (views of one copy of ``ids``).
    Raises:
        ValueError: ``ids`` is not 1-D integers or does not end with ``eos_id``.
    """
    a = np.asarray(ids)
    if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
        raise ValueError(
            f"split_sentences: ids must be a 1-D integer array, got {a.dtype} {a.shape}"
        )
    a = a.astype(np.int64)
    if a.size and a[-1] != eos_id:
        raise ValueError(f"split_sentences: the stream does not end with <eos> (id {eos_id})")
    ends = np.flatnonzero(a == eos_id) + 1
    return np.split(a, ends[:-1]) if a.size else []


def _depths(stream: np.ndarray, eos: int) -> np.ndarray:
    """Context available to each position: i minus the index of the last <eos> before i.

    Args:
        stream: int64 [M] with stream[0] == eos (the start marker of the first sentence).
    Returns:
        int64 [M]; depth[0] = 0, and depth[i] >= 1 is the number of tokens (start marker
        included) the token at i may condition on.
    """
    pos = np.arange(stream.size, dtype=np.int64)
    last_eos = np.maximum.accumulate(np.where(stream == eos, pos, 0))
    depth = np.zeros(stream.size, dtype=np.int64)
    depth[1:] = pos[1:] - last_eos[:-1]
    return depth


def _lookup(keys: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(j, found) for each of ``key`` (int64 [M]) in the sorted ``keys`` (int64 [G]): found[m]
    tells whether keys[j[m]] == key[m]; j is clipped to a valid index (0 when G == 0)."""
    if keys.size == 0:
        return np.zeros(key.size, dtype=np.int64), np.zeros(key.size, dtype=bool)
    j = np.minimum(np.searchsorted(keys, key), keys.size - 1)
    return j, keys[j] == key


def _discounts(counts: np.ndarray) -> tuple[float, float, float]:
    """(D1, D2, D3+) of one order from its count-of-counts (Chen & Goodman's estimates), or
    :data:`FALLBACK_DISCOUNTS` when those are undefined or outside [0, r]."""
    n1, n2, n3, n4 = (int(np.count_nonzero(counts == r)) for r in (1, 2, 3, 4))
    if min(n1, n2, n3) == 0:
        return FALLBACK_DISCOUNTS
    y = n1 / (n1 + 2 * n2)
    d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    if not all(0.0 <= x <= r for r, x in enumerate(d, 1)):
        return FALLBACK_DISCOUNTS
    return d


def _stream(sentences: Iterable[Sequence[int]], vocab: Vocab, who: str) -> np.ndarray:
    """``[<eos>] + concat(sentences)`` as int64 [1 + N], after checking every sentence."""
    V, eos = len(vocab), vocab.eos_id
    if isinstance(sentences, np.ndarray) and sentences.ndim == 1:
        raise TypeError(
            f"KneserNeyLM.{who}: sentences must be a list of sequences, got a 1-D array "
            "(cut a stream with rnncore.ngram.split_sentences)"
        )
    arrays = [np.asarray(s) for s in sentences]
    if not arrays:
        raise ValueError(f"KneserNeyLM.{who}: no sentences")
    for i, a in enumerate(arrays):
        if a.ndim != 1 or a.size == 0 or a.dtype.kind not in "iu":
            raise ValueError(
                f"KneserNeyLM.{who}: sentence {i} must be a non-empty 1-D sequence of "
                f"integer ids ending with <eos> (id {eos}), got {a.dtype} {a.shape}"
            )
    lengths = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
    flat = np.concatenate(arrays).astype(np.int64)
    ends = np.cumsum(lengths)
    bad = np.flatnonzero((flat < 0) | (flat >= V))
    if bad.size:
        i = int(np.searchsorted(ends, bad[0], side="right"))
        raise ValueError(
            f"KneserNeyLM.{who}: sentence {i} has id {int(flat[bad[0]])} outside [0, {V})"
        )
    unended = np.flatnonzero(flat[ends - 1] != eos)
    if unended.size:
        raise ValueError(
            f"KneserNeyLM.{who}: sentence {int(unended[0])} does not end with <eos> (id {eos})"
        )
    return np.concatenate([np.array([eos], dtype=np.int64), flat])


class KneserNeyLM:
    """Interpolated modified Kneser-Ney n-gram language model (see the module docstring).

    Args:
        order: n, the longest n-gram (>= 1; 1 is a discounted unigram model).

    Attributes (after :meth:`fit` or :meth:`load`):
        vocab: the :class:`rnncore.data.Vocab`; V = len(vocab), and it must have ``<eos>``.
        discounts: float64 [order, 3], (D1, D2, D3+) of orders 1..n.
        ngrams: list of n ints, the distinct k-grams stored per order.
    """

    def __init__(self, order: int = 5) -> None:
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise ValueError(f"KneserNeyLM: order must be an integer >= 1, got {order!r}")
        self.order = order
        self.vocab: Vocab | None = None
        self.discounts = np.zeros((order, 3))
        self._keys: list[np.ndarray] = []  # order k at k-1: int64 [G_k], sorted
        self._counts: list[np.ndarray] = []  # int64 [G_k], c_k of each k-gram
        self._alpha: list[np.ndarray] = []  # float64 [G_k], (c - D(c)) / c(h·)
        self._gamma: list[np.ndarray] = []  # float64 [G_{k-1}] (order 1: [1]), per context

    def __repr__(self) -> str:
        state = "unfitted" if self.vocab is None else f"V={len(self.vocab)}, ngrams={self.ngrams}"
        return f"KneserNeyLM(order={self.order}, {state})"

    @property
    def ngrams(self) -> list[int]:
        return [int(k.size) for k in self._keys]

    # ---- fitting --------------------------------------------------------------------------

    def fit(self, sentences: Iterable[Sequence[int]], vocab: Vocab) -> KneserNeyLM:
        """Count the n-grams of ``sentences`` and set the smoothed probabilities.

        Args:
            sentences: token-id sequences (lists or int arrays [L_s]), each ending with
                ``vocab.eos_id``; ids in [0, len(vocab)).
            vocab: the vocabulary the ids come from (needs an ``<eos>`` role).
        Returns:
            self.
        Raises:
            ValueError: no sentences, or a sentence that is empty, not integers, out of range or
                not ending with <eos> (its index named).
        """
        if not isinstance(vocab, Vocab):
            raise TypeError(f"KneserNeyLM.fit: vocab must be a Vocab, got {type(vocab).__name__}")
        if vocab.eos_id is None:
            raise ValueError("KneserNeyLM.fit: the vocabulary has no <eos> token")
        stream = _stream(sentences, vocab, "fit")
        self.vocab = vocab
        V, eos, n = len(vocab), int(vocab.eos_id), self.order
        depth = _depths(stream, eos)
        keys: list[np.ndarray] = []
        counts: list[np.ndarray] = []
        prev_idx = np.zeros(stream.size, dtype=np.int64)  # order 0: the empty context, index 0
        prev_first = np.zeros(0, dtype=np.int64)
        for k in range(1, n + 1):
            pos = 1 + np.flatnonzero(depth[1:] >= k - 1)  # where a k-gram ends
            ctx = prev_idx[pos - 1] if k > 1 else np.zeros(pos.size, dtype=np.int64)
            uniq, first, inverse, raw = np.unique(
                ctx * V + stream[pos], return_index=True, return_inverse=True, return_counts=True
            )
            first = pos[first]  # a position where each k-gram ends
            if k > 1:
                # order k-1 takes continuation counts (distinct tokens before each (k-1)-gram:
                # the k-grams ending with it), but keeps the raw counts of the (k-1)-grams that
                # start at the start marker (depth k-2 there), which nothing can precede
                cont = np.bincount(prev_idx[first], minlength=keys[-1].size)
                counts[-1] = np.where(depth[prev_first] == k - 2, counts[-1], cont)
            idx = np.full(stream.size, -1, dtype=np.int64)
            idx[pos] = inverse
            if k == 1:  # the start marker of the first sentence, as a context of bigrams
                idx[0] = np.searchsorted(uniq, eos)
            keys.append(uniq)
            counts.append(raw.astype(np.int64))
            prev_idx, prev_first = idx, first
        self._set_counts(keys, counts)
        return self

    def _set_counts(self, keys: list[np.ndarray], counts: list[np.ndarray]) -> None:
        """Discounts and the interpolation arrays from the per-order keys and counts c_k."""
        assert self.vocab is not None
        V = len(self.vocab)
        self._keys, self._counts, self._alpha, self._gamma = keys, counts, [], []
        self.discounts = np.zeros((self.order, 3))
        n_contexts = 1
        for k, (key, c) in enumerate(zip(keys, counts, strict=True)):
            d3 = _discounts(c)
            self.discounts[k] = d3
            ctx = key // V
            d = np.asarray(d3)[np.minimum(c, 3) - 1]  # D(c) of each k-gram
            cf = c.astype(np.float64)
            total = np.bincount(ctx, weights=cf, minlength=n_contexts)  # c_k(h·)
            dsum = np.bincount(ctx, weights=d, minlength=n_contexts)
            seen = total > 0
            self._gamma.append(np.where(seen, dsum / np.where(seen, total, 1.0), 1.0))
            self._alpha.append((cf - d) / total[ctx])
            n_contexts = key.size

    # ---- scoring --------------------------------------------------------------------------

    def _need_fit(self, who: str) -> Vocab:
        if self.vocab is None:
            raise RuntimeError(f"KneserNeyLM.{who}: the model is not fitted (call fit or load)")
        return self.vocab

    def _stream_probs(self, stream: np.ndarray) -> np.ndarray:
        """Probabilities of stream[1:], each given its context within its sentence.

        Args:
            stream: int64 [1 + N], stream[0] == <eos>, ids checked.
        Returns:
            float64 [N].
        """
        assert self.vocab is not None
        V, eos = len(self.vocab), int(self.vocab.eos_id)
        depth = _depths(stream, eos)[1:]
        target = stream[1:]
        p = np.full(target.size, 1.0 / V)
        prev_idx = np.zeros(stream.size, dtype=np.int64)
        for k in range(1, self.order + 1):
            keys, alpha, gamma = self._keys[k - 1], self._alpha[k - 1], self._gamma[k - 1]
            active = depth >= k - 1
            ctx = prev_idx[:-1]  # index of the (k-1)-gram ending just before each target
            ctx_ok = active & (ctx >= 0)
            ctx = np.where(ctx_ok, ctx, 0)
            j, found = _lookup(keys, ctx * V + target)
            found &= ctx_ok
            a = np.where(found, alpha[j] if keys.size else 0.0, 0.0)
            g = np.where(ctx_ok, gamma[ctx], 1.0)
            p = np.where(active, a + g * p, p)
            prev_idx = np.full(stream.size, -1, dtype=np.int64)
            prev_idx[1:] = np.where(found, j, -1)
            if k == 1:
                prev_idx[0] = self._find(0, 0, eos)
        return p

    def _find(self, level: int, ctx: int, w: int) -> int:
        """Index of the k-gram (context index ``ctx``, last token ``w``) at ``level`` = k-1, or
        -1 when absent."""
        keys = self._keys[level]
        if ctx < 0:
            return -1
        key = ctx * len(self.vocab) + w  # type: ignore[arg-type]
        j = int(np.searchsorted(keys, key))
        return j if j < keys.size and keys[j] == key else -1

    def _history(self, context: Sequence[int] | np.ndarray, who: str) -> np.ndarray:
        """The context a prediction uses: ``<eos>`` (the start marker) and the tokens after the
        last ``<eos>`` of ``context``, at most the last n-1 of them; int64 [1 + m]."""
        vocab = self._need_fit(who)
        eos, V = int(vocab.eos_id), len(vocab)
        c = np.asarray(context)
        if c.ndim != 1 or (c.size and c.dtype.kind not in "iu"):
            raise ValueError(
                f"KneserNeyLM.{who}: context must be a 1-D sequence of integer ids, got "
                f"{c.dtype} {c.shape}"
            )
        c = c.astype(np.int64)
        if c.size and (c.min() < 0 or c.max() >= V):
            raise ValueError(f"KneserNeyLM.{who}: context ids must be in [0, {V})")
        ends = np.flatnonzero(c == eos)
        if ends.size:
            c = c[ends[-1] + 1 :]
        keep = min(c.size, self.order - 1)
        return np.concatenate([np.array([eos], dtype=np.int64), c[c.size - keep :]])

    def logprob(self, context: Sequence[int] | np.ndarray, token: int) -> float:
        """Natural log-probability of ``token`` after ``context``.

        Args:
            context: int [L] the ids before ``token`` (any length; only the tokens after its
                last ``<eos>``, at most n-1 of them, matter; empty: the start of a sentence).
            token: id in [0, V).
        Returns:
            log p(token | context), finite.
        """
        vocab = self._need_fit("logprob")
        if isinstance(token, bool) or not isinstance(token, (int, np.integer)):
            raise ValueError(f"KneserNeyLM.logprob: token must be an integer id, got {token!r}")
        if not 0 <= token < len(vocab):
            raise ValueError(f"KneserNeyLM.logprob: token {token} outside [0, {len(vocab)})")
        h = self._history(context, "logprob")
        return float(np.log(self._stream_probs(np.append(h, np.int64(token)))[-1]))

    def log_probs(self, context: Sequence[int] | np.ndarray) -> np.ndarray:
        """The whole next-token distribution after ``context``, as log-probabilities.

        Args:
            context: int [L] as in :meth:`logprob`.
        Returns:
            float64 [V], natural logs; ``np.exp`` of it sums to 1 (within rounding).
        """
        vocab = self._need_fit("log_probs")
        V = len(vocab)
        h = self._history(context, "log_probs")
        p = np.full(V, 1.0 / V)
        ctx = 0  # index of the context (k-1)-gram: the last k-1 tokens of h
        for k in range(1, min(self.order, h.size + 1) + 1):
            if k > 1:  # look the (k-1)-gram up from its first token on
                ctx = 0
                for level, w in enumerate(h[h.size - (k - 1) :]):
                    ctx = self._find(level, ctx, int(w))
            if ctx < 0:
                continue  # unseen context: gamma 1, nothing of its own
            keys = self._keys[k - 1]
            lo, hi = np.searchsorted(keys, [ctx * V, (ctx + 1) * V])
            words = keys[lo:hi] - ctx * V
            p = self._gamma[k - 1][ctx] * p
            p[words] = self._alpha[k - 1][lo:hi] + p[words]
        return np.log(p)

    def token_logprobs(self, sentences: Iterable[Sequence[int]]) -> np.ndarray:
        """Natural log-probability of every token of ``sentences`` (``<eos>`` included).

        Args:
            sentences: token-id sequences, each ending with ``<eos>`` (as in :meth:`fit`).
        Returns:
            float64 [N], N the total number of tokens, in order.
        """
        vocab = self._need_fit("token_logprobs")
        return np.log(self._stream_probs(_stream(sentences, vocab, "token_logprobs")))

    def evaluate(self, sentences: Iterable[Sequence[int]]) -> dict[str, float]:
        """``{"loss": mean negative log-likelihood per token (nats), "ppl": exp(loss)}``, the
        metrics `rnncore train lm` reports."""
        loss = float(-np.mean(self.token_logprobs(sentences)))
        return {"loss": loss, "ppl": math.exp(loss)}

    def perplexity(self, sentences: Iterable[Sequence[int]]) -> float:
        """Perplexity per token, ``<eos>`` included: exp(-mean(:meth:`token_logprobs`))."""
        return self.evaluate(sentences)["ppl"]

    # ---- saving ---------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """JSON-ready description: order, vocabulary size, n-grams per order and discounts."""
        vocab = self._need_fit("config")
        return {
            "order": self.order,
            "vocab_size": len(vocab),
            "ngrams": self.ngrams,
            "discounts": self.discounts.tolist(),
        }

    def save(self, directory: PathLike) -> None:
        """Write ``ngram.json``, ``ngram.npz`` and ``vocab.json`` into ``directory`` (created if
        needed; the format is in the module docstring)."""
        vocab = self._need_fit("save")
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "version": VERSION, **self.config(), "eos_id": vocab.eos_id}
        arrays: dict[str, np.ndarray] = {}
        for k, (keys, c) in enumerate(zip(self._keys, self._counts, strict=True), 1):
            arrays[f"keys_{k}"] = keys
            arrays[f"counts_{k}"] = c.astype(np.int32 if c.max(initial=0) < 2**31 else np.int64)
        with open(d / ARRAYS_FILE, "wb") as f:
            np.savez_compressed(f, **arrays)
        vocab.save(d / VOCAB_FILE)
        (d / META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: PathLike) -> KneserNeyLM:
        """Read a model written by :meth:`save`, checking every field.

        Raises:
            FileNotFoundError: one of the three files is missing.
            ValueError: a file is malformed; the message names the file and the field.
        """
        d = Path(directory)
        for name in (META_FILE, ARRAYS_FILE, VOCAB_FILE):
            if not (d / name).is_file():
                raise FileNotFoundError(f"KneserNeyLM.load: missing {d / name}")
        meta = _read_meta(d / META_FILE)
        order, V, eos = meta["order"], meta["vocab_size"], meta["eos_id"]
        vocab = Vocab.load(d / VOCAB_FILE)
        if len(vocab) != V or vocab.eos_id != eos:
            raise ValueError(
                f"{d / VOCAB_FILE}: {len(vocab)} tokens with <eos> id {vocab.eos_id}, but "
                f"{d / META_FILE} says vocab_size {V}, eos_id {eos}"
            )
        keys, counts = _read_arrays(d / ARRAYS_FILE, meta["ngrams"], V)
        model = cls(order)
        model.vocab = vocab
        model._set_counts(keys, counts)
        return model


def _read_meta(path: Path) -> dict[str, Any]:
    """ngram.json's content, checked (ValueError naming the file and the field)."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: field 'format' must be {FORMAT!r}")
    if meta.get("version") != VERSION:
        raise ValueError(f"{path}: field 'version' must be {VERSION}, got {meta.get('version')!r}")

    def integer(name: str, low: int, high: float = math.inf) -> int:
        v = meta.get(name)
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v < high:
            raise ValueError(
                f"{path}: field {name!r} must be an integer in [{low}, {high}), got {v!r}"
            )
        return v

    order, V = integer("order", 1), integer("vocab_size", 1)
    integer("eos_id", 0, V)
    ngrams = meta.get("ngrams")
    if (
        not isinstance(ngrams, list)
        or len(ngrams) != order
        or any(isinstance(g, bool) or not isinstance(g, int) or g < 0 for g in ngrams)
    ):
        raise ValueError(
            f"{path}: field 'ngrams' must be a list of {order} integers >= 0, got {ngrams!r}"
        )
    return meta


def _check_member(z: Any, name: str, g: int) -> None:
    """Reads only the .npy header of ``name`` in the npz ``z`` and its size in the zip's index:
    an array that is not integers of shape (g,), or whose stored bytes cannot hold it, is refused
    before it is decompressed (a tampered file cannot make us inflate gigabytes first)."""
    member = name + ".npy"
    info = z.zip.getinfo(member)
    with z.zip.open(member) as fp:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"field {name!r}: unsupported .npy version {version}")
        header = fp.tell()
    if dtype.kind not in "iu" or shape != (g,):
        raise ValueError(f"field {name!r} must be integers of shape ({g},), got {dtype} {shape}")
    if info.file_size != header + g * dtype.itemsize:
        raise ValueError(
            f"field {name!r}: {info.file_size} stored bytes cannot hold {g} values of {dtype}"
        )


def _read_arrays(
    path: Path, ngrams: list[int], V: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The keys_k and counts_k arrays of ngram.npz, checked against the format."""
    keys: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
            expected = {f"{kind}_{k}" for k in range(1, len(ngrams) + 1) for kind in KINDS}
            if set(z.files) != expected:
                raise ValueError(
                    f"{path}: arrays {sorted(z.files)} do not match the order; expected "
                    f"{sorted(expected)}"
                )
            n_contexts = 1
            for k, g in enumerate(ngrams, 1):
                for name in (f"keys_{k}", f"counts_{k}"):  # before anything is decompressed
                    _check_member(z, name, g)
                key, c = z[f"keys_{k}"], z[f"counts_{k}"]
                key, c = key.astype(np.int64), c.astype(np.int64)
                if g and (key[0] < 0 or key[-1] >= n_contexts * V or np.any(np.diff(key) <= 0)):
                    raise ValueError(
                        f"{path}: field 'keys_{k}' must be strictly increasing in "
                        f"[0, {n_contexts * V})"
                    )
                if g and (c.min() < 1 or c.max() >= _MAX_COUNT):
                    raise ValueError(f"{path}: field 'counts_{k}' must be in [1, 2**53)")
                keys.append(key)
                counts.append(c)
                n_contexts = g
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    except ValueError as e:
        msg = str(e)
        raise ValueError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    return keys, counts
