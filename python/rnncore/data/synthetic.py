"""Synthetic data for tests and demos: adding problem, copy task, a^n b^n, sentiment, tagging."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _positive(value: object, name: str, who: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{who}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def adding_problem(
    n: int, steps: int, *, seed: int | np.random.Generator = 0, dtype=np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem (Hochreiter & Schmidhuber 1997, in the form of Le et al. 2015).

    Each step carries a value uniform in [0, 1) and a marker; exactly two steps are marked, one
    in the first half and one in the second; the target is the sum of the two marked values.
    Predicting the constant 1 scores MSE ~ 1/6.

    Args:
        n: number of sequences N.
        steps: sequence length T >= 2.
        seed: int seed or a numpy Generator.
        dtype: float dtype of x and y.
    Returns:
        (x [T, N, 2] (channel 0 value, channel 1 marker in {0, 1}), y [N]).
    """
    n = _positive(n, "n", "adding_problem")
    steps = _positive(steps, "steps", "adding_problem", 2)
    rng = _rng(seed)
    values = rng.random((steps, n))
    markers = np.zeros((steps, n))
    half = steps // 2
    cols = np.arange(n)
    markers[rng.integers(0, half, size=n), cols] = 1.0
    markers[rng.integers(half, steps, size=n), cols] = 1.0
    x = np.stack([values, markers], axis=-1).astype(dtype)
    y = (values * markers).sum(axis=0).astype(dtype)
    return x, y


def copy_task(
    n: int,
    seq_len: int = 10,
    delay: int = 20,
    *,
    num_symbols: int = 8,
    seed: int | np.random.Generator = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The copy-memory task (Hochreiter & Schmidhuber 1997; the form of Arjovsky et al. 2016).

    Ids: 0 blank, 1..num_symbols symbols, num_symbols + 1 the "go" delimiter (vocabulary size
    num_symbols + 2). Input: seq_len random symbols, delay - 1 blanks, the delimiter, seq_len
    blanks. Target: seq_len + delay blanks, then the seq_len symbols. Always outputting blanks
    then random symbols scores cross-entropy seq_len * log(num_symbols) / (2 seq_len + delay).

    Args:
        n: number of sequences N.
        seq_len: symbols to remember S.
        delay: steps between the end of the symbols and the end of the delimiter, >= 1.
        num_symbols: size of the symbol alphabet.
        seed: int seed or a numpy Generator.
    Returns:
        (x int64 [2 S + delay, N], y int64 [2 S + delay, N]).
    """
    n = _positive(n, "n", "copy_task")
    s = _positive(seq_len, "seq_len", "copy_task")
    d = _positive(delay, "delay", "copy_task")
    k = _positive(num_symbols, "num_symbols", "copy_task")
    rng = _rng(seed)
    symbols = rng.integers(1, k + 1, size=(s, n), dtype=np.int64)
    total = 2 * s + d
    x = np.zeros((total, n), dtype=np.int64)
    y = np.zeros((total, n), dtype=np.int64)
    x[:s] = symbols
    x[s + d - 1] = k + 1
    y[s + d :] = symbols
    return x, y


def anbn(
    n: int, *, min_n: int = 1, max_n: int = 10, seed: int | np.random.Generator = 0
) -> list[list[str]]:
    """Strings of the language a^k b^k (k uniform in [min_n, max_n]) as token lists.

    A language model that has learned it predicts every "b" after the first and the end of the
    string (add ``<eos>`` with the vocabulary) with certainty; only the switch point is random.

    Args:
        n: number of strings.
        min_n, max_n: range of k (inclusive), 1 <= min_n <= max_n.
        seed: int seed or a numpy Generator.
    Returns:
        list of n token lists like ["a", "a", "b", "b"].
    """
    n = _positive(n, "n", "anbn")
    lo = _positive(min_n, "min_n", "anbn")
    hi = _positive(max_n, "max_n", "anbn", lo)
    ks = _rng(seed).integers(lo, hi + 1, size=n)
    return [["a"] * int(k) + ["b"] * int(k) for k in ks]


def is_anbn(tokens: Sequence[str]) -> bool:
    """True when tokens is a^k b^k for some k >= 1 (e.g. to check generated strings)."""
    k = len(tokens) // 2
    return (
        len(tokens) >= 2
        and len(tokens) % 2 == 0
        and all(t == "a" for t in tokens[:k])
        and all(t == "b" for t in tokens[k:])
    )


POSITIVE_WORDS = ("good", "great", "excellent", "superb", "wonderful", "enjoyable")
NEGATIVE_WORDS = ("bad", "awful", "terrible", "boring", "dull", "poor")
NEUTRAL_WORDS = (
    "the", "movie", "film", "plot", "actor", "was", "is", "a", "and", "very", "story", "scene",
    "it", "this", "with", "music",
)  # fmt: skip


def synthetic_sentiment(
    n: int,
    *,
    min_len: int = 4,
    max_len: int = 12,
    seed: int | np.random.Generator = 0,
) -> list[tuple[list[str], int]]:
    """Sentences whose label is decided by their sentiment words.

    Each sentence has 1-3 words of its class's polarity (:data:`POSITIVE_WORDS` for label 1,
    :data:`NEGATIVE_WORDS` for 0), strictly fewer of the other polarity, and neutral filler,
    shuffled; so label == (number of positive words > number of negative words) always.
    Labels are balanced in expectation.

    Args:
        n: number of sentences.
        min_len, max_len: sentence length range (inclusive), min_len >= 3.
        seed: int seed or a numpy Generator.
    Returns:
        list of (tokens, label in {0, 1}).
    """
    n = _positive(n, "n", "synthetic_sentiment")
    lo = _positive(min_len, "min_len", "synthetic_sentiment", 3)
    hi = _positive(max_len, "max_len", "synthetic_sentiment", lo)
    rng = _rng(seed)
    out = []
    for _ in range(n):
        label = int(rng.integers(2))
        major = int(rng.integers(1, 4))
        minor = int(rng.integers(0, major))
        length = max(int(rng.integers(lo, hi + 1)), major + minor)
        same, other = (
            (POSITIVE_WORDS, NEGATIVE_WORDS) if label else (NEGATIVE_WORDS, POSITIVE_WORDS)
        )
        words = [same[i] for i in rng.integers(len(same), size=major)]
        words += [other[i] for i in rng.integers(len(other), size=minor)]
        fill = length - len(words)
        words += [NEUTRAL_WORDS[i] for i in rng.integers(len(NEUTRAL_WORDS), size=fill)]
        out.append(([words[i] for i in rng.permutation(len(words))], label))
    return out


ENTITIES = {
    "PER": (("john",), ("mary",), ("alice", "smith"), ("bob", "jones"), ("maria", "garcia")),
    "LOC": (("paris",), ("london",), ("tokyo",), ("new", "york"), ("rio", "de", "janeiro")),
    "ORG": (("google",), ("ibm",), ("acme", "corp"), ("united", "nations"), ("red", "cross")),
}
FILLER_WORDS = (
    "the", "said", "in", "visited", "met", "at", "on", "and", "today", "with", "from", "a",
    "report", "yesterday",
)  # fmt: skip


def synthetic_tagging(
    n: int,
    *,
    min_len: int = 4,
    max_len: int = 14,
    entity_prob: float = 0.3,
    seed: int | np.random.Generator = 0,
) -> list[tuple[list[str], list[str]]]:
    """Sentences with BIO (IOB2) entity tags drawn from small gazetteers (:data:`ENTITIES`).

    Each sentence is a sequence of segments: with probability ``entity_prob`` an entity
    (1-3 tokens, tagged B-TYPE then I-TYPE), otherwise one filler word (O). Entity words never
    occur as filler; multi-token names ("new york") and adjacent entities need B/I to be told
    apart.

    Args:
        n: number of sentences.
        min_len, max_len: the sentence stops growing once it has at least a length drawn
            uniformly from this range (an entity may overshoot max_len by up to 2 tokens).
        entity_prob: probability that a segment is an entity.
        seed: int seed or a numpy Generator.
    Returns:
        list of (tokens, tags), equally long lists of str.
    """
    n = _positive(n, "n", "synthetic_tagging")
    lo = _positive(min_len, "min_len", "synthetic_tagging")
    hi = _positive(max_len, "max_len", "synthetic_tagging", lo)
    if not 0.0 <= entity_prob <= 1.0:
        raise ValueError(f"synthetic_tagging: entity_prob must be in [0, 1], got {entity_prob!r}")
    rng = _rng(seed)
    types = sorted(ENTITIES)
    out = []
    for _ in range(n):
        target = int(rng.integers(lo, hi + 1))
        tokens: list[str] = []
        tags: list[str] = []
        while len(tokens) < target:
            if rng.random() < entity_prob:
                typ = types[int(rng.integers(len(types)))]
                names = ENTITIES[typ]
                name = names[int(rng.integers(len(names)))]
                tokens.extend(name)
                tags.extend([f"B-{typ}"] + [f"I-{typ}"] * (len(name) - 1))
            else:
                tokens.append(FILLER_WORDS[int(rng.integers(len(FILLER_WORDS)))])
                tags.append("O")
        out.append((tokens, tags))
    return out
