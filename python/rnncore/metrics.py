"""Evaluation metrics: perplexity, accuracy, conlleval chunk F1, sacreBLEU-exact BLEU, forecasts."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "perplexity",
    "bits_per_char",
    "accuracy",
    "token_accuracy",
    "extract_chunks",
    "ChunkScores",
    "chunk_scores",
    "entity_f1",
    "BleuScore",
    "corpus_bleu",
    "tokenize_13a",
    "SACREBLEU_HINT",
    "rmse",
    "mae",
    "persistence_forecast",
    "seasonal_naive_forecast",
]

# ---- language modelling -------------------------------------------------------------------


def perplexity(mean_nll: float) -> float:
    """exp(mean negative log-likelihood per token, in nats)."""
    return math.exp(_finite(mean_nll, "perplexity", "mean_nll"))


def bits_per_char(mean_nll: float) -> float:
    """Mean NLL per character in nats converted to bits: mean_nll / ln 2."""
    return _finite(mean_nll, "bits_per_char", "mean_nll") / math.log(2.0)


def _finite(x: Any, who: str, name: str) -> float:
    v = float(x)
    if not math.isfinite(v):
        raise ValueError(f"{who}: {name} must be finite, got {x!r}")
    return v


# ---- classification and tagging -----------------------------------------------------------


def _predicted_ids(pred: Any, target: np.ndarray, who: str) -> np.ndarray:
    p = np.asarray(pred)
    if p.shape == target.shape:
        return p
    if p.ndim == target.ndim + 1 and p.shape[:-1] == target.shape:
        return p.argmax(axis=-1)
    raise ValueError(
        f"{who}: pred must have target's shape {target.shape} (ids) or that shape plus a class "
        f"axis (scores), got {p.shape}"
    )


def accuracy(pred: Any, target: Any, mask: Any = None) -> float:
    """Fraction of positions where the predicted class equals the target.

    Args:
        pred: predicted ids, same shape as target, or scores/logits with one more trailing axis
            [..., C] (argmax is taken).
        target: integer class ids, any shape.
        mask: optional bool array of target's shape; only True positions count.
    Returns:
        float in [0, 1].
    """
    t = np.asarray(target)
    p = _predicted_ids(pred, t, "accuracy")
    hit = p == t
    if mask is None:
        if hit.size == 0:
            raise ValueError("accuracy: no positions to score")
        return float(hit.mean())
    m = np.asarray(mask)
    if m.shape != t.shape or m.dtype != bool:
        raise ValueError(f"accuracy: mask must be bool of shape {t.shape}, got {m.dtype} {m.shape}")
    n = int(m.sum())
    if n == 0:
        raise ValueError("accuracy: the mask selects no positions")
    return float(hit[m].sum() / n)


def token_accuracy(
    pred: Any, target: Any, lengths: Any = None, *, batch_first: bool = False
) -> float:
    """Accuracy over the real (unpadded) tokens of a batch of sequences.

    Args:
        pred: ids [T, B] ([B, T] if batch_first) or scores with a trailing class axis; or a
            list of B sequences (ragged) when target is one.
        target: ids [T, B] / [B, T], or a list of B sequences.
        lengths: int [B] valid length of each sequence (positions past it are padding); None
            counts every position (or every element of the ragged sequences).
        batch_first: layout of the arrays.
    Returns:
        float in [0, 1].
    """
    if _is_ragged(target):
        if len(pred) != len(target):
            raise ValueError(f"token_accuracy: {len(pred)} predicted vs {len(target)} sequences")
        hits = total = 0
        for i, (p, t) in enumerate(zip(pred, target, strict=True)):
            t = np.asarray(t)
            p = _predicted_ids(p, t, f"token_accuracy (sequence {i})")
            hits += int((p == t).sum())
            total += t.size
        if total == 0:
            raise ValueError("token_accuracy: no tokens to score")
        return hits / total
    t = np.asarray(target)
    if t.ndim != 2:
        raise ValueError(f"token_accuracy: target must be 2-D, got shape {t.shape}")
    if lengths is None:
        return accuracy(pred, t)
    lens = np.asarray(lengths, dtype=np.int64).reshape(-1)
    steps, batch = (t.shape[1], t.shape[0]) if batch_first else t.shape
    if lens.size != batch or np.any(lens < 0) or np.any(lens > steps):
        raise ValueError(
            f"token_accuracy: lengths must be {batch} values in [0, {steps}], got {lens.tolist()}"
        )
    mask = np.arange(steps)[:, None] < lens[None, :]  # [T, B]
    return accuracy(pred, t, mask.T if batch_first else mask)


def _is_ragged(x: Any) -> bool:
    return isinstance(x, (list, tuple)) and len(x) > 0 and not np.isscalar(x[0])


def _split_tag(tag: str) -> tuple[str, str]:
    # conlleval: "B-PER" -> ("B", "PER"); a tag without "-" ("O") has an empty type
    prefix, sep, typ = tag.partition("-")
    return (prefix, typ) if sep else (tag, "")


def _end_of_chunk(prev: str, tag: str, prev_type: str, typ: str) -> bool:
    # conlleval.pl endOfChunk, for IOB1/IOB2/IOBES (and its "[" "]" chunks)
    return (
        prev in ("E", "S", "]", "[")
        or (prev in ("B", "I") and tag in ("B", "S", "O"))
        or (prev not in ("O", ".") and prev_type != typ)
    )


def _start_of_chunk(prev: str, tag: str, prev_type: str, typ: str) -> bool:
    # conlleval.pl startOfChunk: an I- after O or after another type starts a chunk
    return (
        tag in ("B", "S", "[", "]")
        or (prev in ("E", "S", "O") and tag in ("E", "I"))
        or (tag not in ("O", ".") and prev_type != typ)
    )


def extract_chunks(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Chunks (entities) of one tag sequence, with conlleval's rules.

    Tags are "O" or PREFIX-TYPE with prefix B/I (IOB2 or IOB1) or also E/S (IOBES). As in
    conlleval, an I- tag that follows O or a different type starts a new chunk, and a change of
    type ends one.

    Args:
        tags: the tags of one sentence.
    Returns:
        list of (type, start, end) with end exclusive, in order.
    """
    chunks = []
    prev, prev_type = "O", ""
    start = None
    for i, raw in enumerate(list(tags) + ["O"]):
        if not isinstance(raw, str):
            raise TypeError(f"extract_chunks: tags must be str, got {type(raw).__name__} at {i}")
        tag, typ = _split_tag(raw)
        if start is not None and _end_of_chunk(prev, tag, prev_type, typ):
            chunks.append((prev_type, start, i))
            start = None
        if _start_of_chunk(prev, tag, prev_type, typ):
            start = i
        prev, prev_type = tag, typ
    return chunks


@dataclass
class ChunkScores:
    """Chunk-level scores (fractions, not percentages as conlleval prints).

    Attributes:
        precision, recall, f1: floats in [0, 1] (0 when undefined).
        n_true, n_pred, n_correct: chunk counts.
        per_type: type -> ChunkScores for that type (empty in the per-type entries).
    """

    precision: float
    recall: float
    f1: float
    n_true: int
    n_pred: int
    n_correct: int
    per_type: dict[str, ChunkScores] = field(default_factory=dict)


def _prf(n_true: int, n_pred: int, n_correct: int) -> ChunkScores:
    p = n_correct / n_pred if n_pred else 0.0
    r = n_correct / n_true if n_true else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return ChunkScores(p, r, f, n_true, n_pred, n_correct)


def chunk_scores(
    true_tags: Sequence[Sequence[str]] | Sequence[str],
    pred_tags: Sequence[Sequence[str]] | Sequence[str],
) -> ChunkScores:
    """Entity-level precision, recall and F1 with conlleval semantics.

    A predicted chunk is correct when a true chunk has the same type, start and end. Chunks
    never cross sentence boundaries.

    Args:
        true_tags, pred_tags: lists of tag sequences (one per sentence, equally long pairwise),
            or two single tag sequences.
    Returns:
        ChunkScores with overall and per-type values.
    """
    if len(true_tags) and isinstance(true_tags[0], str):
        true_tags, pred_tags = [true_tags], [pred_tags]
    if len(true_tags) != len(pred_tags):
        raise ValueError(
            f"chunk_scores: {len(true_tags)} true vs {len(pred_tags)} predicted sentences"
        )
    n_true: Counter[str] = Counter()
    n_pred: Counter[str] = Counter()
    n_correct: Counter[str] = Counter()
    for i, (t, p) in enumerate(zip(true_tags, pred_tags, strict=True)):
        if len(t) != len(p):
            raise ValueError(
                f"chunk_scores: sentence {i} has {len(t)} true but {len(p)} predicted tags"
            )
        tc, pc = extract_chunks(t), extract_chunks(p)
        n_true.update(c[0] for c in tc)
        n_pred.update(c[0] for c in pc)
        n_correct.update(c[0] for c in set(tc) & set(pc))
    total = _prf(sum(n_true.values()), sum(n_pred.values()), sum(n_correct.values()))
    for typ in sorted(set(n_true) | set(n_pred)):
        total.per_type[typ] = _prf(n_true[typ], n_pred[typ], n_correct[typ])
    return total


def entity_f1(
    true_tags: Sequence[Sequence[str]] | Sequence[str],
    pred_tags: Sequence[Sequence[str]] | Sequence[str],
) -> float:
    """Overall chunk F1 of :func:`chunk_scores` (conlleval's "FB1" / 100)."""
    return chunk_scores(true_tags, pred_tags).f1


# ---- BLEU ---------------------------------------------------------------------------------

# mteval-v13a's language-dependent regular expressions, as in sacrebleu's TokenizerRegexp
_13A = [
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),  # most punctuation
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),  # period/comma unless preceded by a digit
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),  # period/comma unless followed by a digit
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),  # dash after a digit
]


def tokenize_13a(line: str) -> str:
    """sacreBLEU's default "13a" tokenization (mteval-v13a.pl) of one segment.

    Returns:
        the tokens joined by single spaces.
    """
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = (
            line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
            .replace("&gt;", ">")
        )  # fmt: skip
    line = f" {line} "
    for regex, repl in _13A:
        line = regex.sub(repl, line)
    return " ".join(line.split())


@dataclass
class BleuScore:
    """Corpus BLEU and its sufficient statistics (sacreBLEU's BLEUScore fields).

    Attributes:
        score: BLEU in [0, 100].
        precisions: the (smoothed) n-gram precisions in percent, n = 1..4.
        bp: brevity penalty.
        sys_len, ref_len: hypothesis and effective reference lengths in tokens.
        counts, totals: matched and total hypothesis n-grams, n = 1..4 (with "add-k", k is
            included for n > 1, as sacreBLEU reports them).
        backend: "sacrebleu" or "builtin" (the same numbers: CI compares them on every run).
        signature: sacreBLEU's signature of the settings, e.g.
            "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"; the built-in version
            writes "version:rnncore-builtin". Report it next to the score.
    """

    score: float
    precisions: list[float]
    bp: float
    sys_len: int
    ref_len: int
    counts: list[int]
    totals: list[int]
    backend: str
    signature: str = ""

    def __float__(self) -> float:
        return self.score


_SMOOTH_DEFAULT = {"none": None, "floor": 0.1, "add-k": 1, "exp": None}


def _ngrams(tokens: list[str], max_order: int) -> Counter[tuple[str, ...]]:
    c: Counter[tuple[str, ...]] = Counter()
    for n in range(1, max_order + 1):
        for i in range(len(tokens) - n + 1):
            c[tuple(tokens[i : i + n])] += 1
    return c


def _closest_ref_len(hyp_len: int, ref_lens: list[int]) -> int:
    # the closest reference length; ties go to the shorter one
    return min(ref_lens, key=lambda r: (abs(hyp_len - r), r))


def _builtin_bleu(
    hyps: list[str],
    refs: list[list[str]],
    smooth: str,
    smooth_value: float | None,
    tokenize: str,
    lowercase: bool,
    max_order: int = 4,
) -> BleuScore:
    def prep(s: str) -> list[str]:
        if lowercase:
            s = s.lower()
        s = s.rstrip()
        return (tokenize_13a(s) if tokenize == "13a" else s).split()

    correct = [0] * max_order
    total = [0] * max_order
    sys_len = ref_len = 0
    for hyp, rs in zip(hyps, refs, strict=True):
        ref_ngrams: Counter[tuple[str, ...]] = Counter()
        ref_lens = []
        for r in rs:
            toks = prep(r)
            ref_lens.append(len(toks))
            for g, c in _ngrams(toks, max_order).items():
                ref_ngrams[g] = max(ref_ngrams[g], c)
        h = prep(hyp)
        sys_len += len(h)
        ref_len += _closest_ref_len(len(h), ref_lens)
        for g, c in _ngrams(h, max_order).items():
            total[len(g) - 1] += c
            correct[len(g) - 1] += min(c, ref_ngrams.get(g, 0))
    return _bleu_from_stats(correct, total, sys_len, ref_len, smooth, smooth_value, max_order)


def _bleu_from_stats(
    correct: list[int],
    total: list[int],
    sys_len: int,
    ref_len: int,
    smooth: str,
    smooth_value: float | None,
    max_order: int,
) -> BleuScore:
    # sacrebleu.metrics.bleu.BLEU.compute_bleu, step by step
    if smooth_value is None:
        smooth_value = _SMOOTH_DEFAULT[smooth]
    counts, totals = list(correct), list(total)
    bp = 1.0
    if sys_len < ref_len:
        bp = math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0
    precisions = [0.0] * max_order
    if not any(correct):
        return BleuScore(0.0, precisions, bp, sys_len, ref_len, counts, totals, "builtin")
    c, t = [float(x) for x in correct], [float(x) for x in total]
    smooth_mteval = 1.0
    for n in range(1, max_order + 1):
        if smooth == "add-k" and n > 1:
            c[n - 1] += smooth_value
            t[n - 1] += smooth_value
        if t[n - 1] == 0:
            break
        if c[n - 1] == 0:
            if smooth == "exp":
                smooth_mteval *= 2
                precisions[n - 1] = 100.0 / (smooth_mteval * t[n - 1])
            elif smooth == "floor":
                precisions[n - 1] = 100.0 * smooth_value / t[n - 1]
        else:
            precisions[n - 1] = 100.0 * c[n - 1] / t[n - 1]
    log_sum = sum(math.log(p) if p > 0 else -9999999999 for p in precisions)
    score = bp * math.exp(log_sum / max_order)
    if smooth == "add-k":  # sacreBLEU reports the counts with k added
        counts, totals = _as_numbers(c), _as_numbers(t)
    return BleuScore(score, precisions, bp, sys_len, ref_len, counts, totals, "builtin")


def _as_numbers(xs: list[float]) -> list:
    return [int(x) if float(x).is_integer() else x for x in xs]


# What to install for backend="sacrebleu" (the "bleu" extra of pyproject.toml).
SACREBLEU_HINT = "pip install 'rnncore[bleu]' (or pip install sacrebleu)"


def _signature(
    refs: list[list[str]], smooth: str, smooth_value: float | None, tokenize: str, lowercase: bool
) -> str:
    # sacrebleu.metrics.bleu.BLEUSignature, field by field, with our version
    nrefs = {len(r) for r in refs}
    smooth_str = smooth
    if _SMOOTH_DEFAULT[smooth] is not None:
        value = _SMOOTH_DEFAULT[smooth] if smooth_value is None else smooth_value
        smooth_str += f"[{value:.2f}]"
    return (
        f"nrefs:{nrefs.pop() if len(nrefs) == 1 else 'var'}|case:{'lc' if lowercase else 'mixed'}"
        f"|eff:no|tok:{tokenize}|smooth:{smooth_str}|version:rnncore-builtin"
    )


def _sacrebleu_bleu(
    hyps: list[str],
    refs: list[list[str]],
    smooth: str,
    smooth_value: float | None,
    tokenize: str,
    lowercase: bool,
) -> BleuScore:
    try:
        import sacrebleu
    except ImportError as e:
        raise ImportError(
            f"corpus_bleu(backend='sacrebleu'): sacrebleu is not installed: {SACREBLEU_HINT}; "
            "backend='builtin' gives the same numbers"
        ) from e

    k = max(len(r) for r in refs)
    streams = [[r[j] if j < len(r) else None for r in refs] for j in range(k)]
    metric = sacrebleu.BLEU(
        smooth_method=smooth, smooth_value=smooth_value, lowercase=lowercase, tokenize=tokenize
    )
    s = metric.corpus_score(hyps, streams)
    return BleuScore(
        float(s.score),
        [float(p) for p in s.precisions],
        float(s.bp),
        int(s.sys_len),
        int(s.ref_len),
        _as_numbers(s.counts),
        _as_numbers(s.totals),
        "sacrebleu",
        str(metric.get_signature()),
    )


def corpus_bleu(
    hypotheses: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    *,
    smooth: str = "exp",
    smooth_value: float | None = None,
    tokenize: str = "13a",
    lowercase: bool = False,
    backend: str = "auto",
) -> BleuScore:
    """Corpus BLEU as defined by sacreBLEU's ``corpus_bleu`` (same defaults, same numbers).

    Detokenized text in, 13a tokenization, 4-gram precisions clipped by the maximum count in any
    reference, the closest reference length (ties: shorter) for the brevity penalty, and
    exponential ("exp", mteval's NIST) smoothing of zero precisions.

    Note the reference layout: ``references[i]`` belongs to ``hypotheses[i]`` and is one string
    or a list of strings (several references; their number may vary). sacreBLEU itself takes
    reference *streams* (``[[ref_of_hyp0, ref_of_hyp1, ...]]``).

    Args:
        hypotheses: N detokenized system outputs.
        references: N references (str) or N lists of references.
        smooth: "exp" (default), "floor", "add-k" or "none".
        smooth_value: for "floor" (default 0.1) and "add-k" (default 1).
        tokenize: "13a" (default) or "none" (split on whitespace only).
        lowercase: lower-case everything first.
        backend: "auto" (sacreBLEU when importable, else the built-in version), "sacrebleu"
            (raises ImportError naming the ``bleu`` extra when it is not installed) or
            "builtin". The built-in version is a step-by-step port of sacreBLEU 2.x's BLEU with
            the 13a tokenizer; the test suite compares the two on every run, so "auto" gives
            the same numbers with or without sacreBLEU. ``BleuScore.backend`` and
            ``.signature`` say which one computed a score.
    Returns:
        BleuScore (``.score`` in [0, 100]).
    """
    if smooth not in _SMOOTH_DEFAULT:
        raise ValueError(f"corpus_bleu: smooth must be one of {list(_SMOOTH_DEFAULT)}")
    if tokenize not in ("13a", "none"):
        raise ValueError(f"corpus_bleu: tokenize must be '13a' or 'none', got {tokenize!r}")
    if backend not in ("auto", "sacrebleu", "builtin"):
        raise ValueError(f"corpus_bleu: backend must be auto/sacrebleu/builtin, got {backend!r}")
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise TypeError("corpus_bleu: hypotheses and references must be lists, not a str")
    hyps = list(hypotheses)
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    if not hyps:
        raise ValueError("corpus_bleu: no hypotheses")
    if len(hyps) != len(refs):
        raise ValueError(f"corpus_bleu: {len(hyps)} hypotheses but {len(refs)} references")
    for i, (h, rs) in enumerate(zip(hyps, refs, strict=True)):
        if not isinstance(h, str):
            raise TypeError(f"corpus_bleu: hypothesis {i} is not a str")
        if not rs or not all(isinstance(r, str) for r in rs):
            raise TypeError(f"corpus_bleu: references of hypothesis {i} must be non-empty str")
    use_sacrebleu = backend == "sacrebleu"
    if backend == "auto":
        try:
            import sacrebleu  # noqa: F401
        except ImportError:
            pass
        else:
            use_sacrebleu = True
    if use_sacrebleu:
        return _sacrebleu_bleu(hyps, refs, smooth, smooth_value, tokenize, lowercase)
    score = _builtin_bleu(hyps, refs, smooth, smooth_value, tokenize, lowercase)
    score.signature = _signature(refs, smooth, smooth_value, tokenize, lowercase)
    return score


# ---- forecasting --------------------------------------------------------------------------


def _pair(pred: Any, target: Any, who: str) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if p.shape != t.shape or t.size == 0:
        raise ValueError(f"{who}: pred {p.shape} and target {t.shape} must be equal, non-empty")
    return p, t


def rmse(pred: Any, target: Any) -> float:
    """Root mean squared error of two equally shaped arrays."""
    p, t = _pair(pred, target, "rmse")
    return float(np.sqrt(np.mean((p - t) ** 2)))


def mae(pred: Any, target: Any) -> float:
    """Mean absolute error of two equally shaped arrays."""
    p, t = _pair(pred, target, "mae")
    return float(np.mean(np.abs(p - t)))


def persistence_forecast(series: Any, n_test: int, horizon: int = 1) -> np.ndarray:
    """The persistence ("naive", repeat the last value) forecast of the last n_test points.

    Point t is predicted by the value ``horizon`` steps earlier, series[t - horizon]: the
    baseline any h-step-ahead forecaster must beat.

    Args:
        series: 1-D array [N].
        n_test: number of final points to forecast.
        horizon: steps ahead (1: one-step walk-forward).
    Returns:
        float64 [n_test], aligned with series[N - n_test:].
    """
    return _lagged(series, n_test, horizon, "persistence_forecast")


def seasonal_naive_forecast(series: Any, n_test: int, season: int, horizon: int = 1) -> np.ndarray:
    """The seasonal-naive forecast: the value of the same season in the latest known cycle.

    Point t is predicted by series[t - season * ceil(horizon / season)] (series[t - season]
    when horizon <= season).

    Args:
        series: 1-D array [N].
        n_test: number of final points to forecast.
        season: cycle length (12 for monthly data).
        horizon: steps ahead.
    Returns:
        float64 [n_test], aligned with series[N - n_test:].
    """
    s = _count(season, "season", "seasonal_naive_forecast")
    h = _count(horizon, "horizon", "seasonal_naive_forecast")
    return _lagged(series, n_test, s * -(-h // s), "seasonal_naive_forecast")


def _count(v: Any, name: str, who: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{who}: {name} must be an integer >= 1, got {v!r}")
    return int(v)


def _lagged(series: Any, n_test: int, lag: int, who: str) -> np.ndarray:
    x = np.asarray(series, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{who}: series must be 1-D, got shape {x.shape}")
    k = _count(n_test, "n_test", who)
    lag = _count(lag, "horizon", who)
    if k + lag > x.size:
        raise ValueError(f"{who}: n_test {k} + lag {lag} exceeds the series length {x.size}")
    n = x.size
    return x[n - k - lag : n - lag].copy()
