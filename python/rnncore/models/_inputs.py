"""What the text models' predict methods accept, turned into one explicit [T, B] id batch:
texts, ragged lists of id sequences, or an id array whose layout is named and checked."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def int_lengths(lengths: Any, B: int, T: int, where: str, name: str = "lengths") -> np.ndarray:
    """Sequence lengths as a contiguous int64 array [B]: all T when None; integers only
    (TypeError for floats or bools rather than a silent cast), shape [B] (ValueError). Their
    range is checked by the recurrent layers."""
    if lengths is None:
        return np.full(B, T, dtype=np.int64)
    lens = np.asarray(lengths)
    if lens.dtype == bool or lens.dtype.kind not in "iu":
        raise TypeError(f"{where}: {name} must be integers, got dtype {lens.dtype}")
    if lens.shape != (B,):
        raise ValueError(
            f"{where}: {name} must be [B={B}] for ids [T={T}, B={B}] (time-major), got shape "
            f"{lens.shape}"
        )
    return np.ascontiguousarray(lens, dtype=np.int64)


def _is_texts(inputs: Any) -> bool:
    if isinstance(inputs, str):
        return True
    return (
        isinstance(inputs, Sequence)
        and not isinstance(inputs, np.ndarray)
        and len(inputs) > 0
        and all(isinstance(t, str) for t in inputs)
    )


def tokens_of_texts(inputs: Any, lowercase: bool, where: str) -> list[list[str]]:
    """A str or a list of str -> one token list per text (``rnncore.data.tokenize``)."""
    from ..data import tokenize

    texts = [inputs] if isinstance(inputs, str) else list(inputs)
    out = [tokenize(t, lower=lowercase) for t in texts]
    for i, toks in enumerate(out):
        if not toks:
            raise ValueError(f"{where}: text {i} ({texts[i]!r}) has no tokens")
    return out


def id_batch(
    inputs: Any,
    lengths: Any,
    batch_first: bool,
    *,
    vocab: Any,
    lowercase: bool,
    pad: int,
    where: str,
) -> tuple[np.ndarray, np.ndarray, list[list[str]] | None]:
    """The time-major id batch of ``inputs``.

    Args:
        inputs: one of
            - a str, or a list of str: texts, tokenized (lower-cased when ``lowercase``) and
              encoded with ``vocab`` (unknown words map to its ``<unk>``);
            - a list of id sequences (lists or 1-d arrays, any lengths): a ragged batch;
            - a 1-d int array: one sequence;
            - a 2-d int array: [T, B] (time-major, the engine's layout), or [B, T] with
              ``batch_first=True``.
        lengths: for a 2-d array only: B integers in [1, T], or None for all T.
        batch_first: the layout of a 2-d array.
        vocab: a ``rnncore.data.Vocab`` for texts, or None (texts are then a ValueError).
        pad: the id written past each sequence's end.

    Returns:
        ids int64 [T, B], lengths int64 [B], and the token lists (texts only, else None).
    """
    tokens = None
    if _is_texts(inputs):
        if vocab is None:
            raise ValueError(
                f"{where}: texts need the model's vocabulary: use a model from load_checkpoint, "
                "or set model.vocab = the training data's Vocab (or pass id sequences)"
            )
        tokens = tokens_of_texts(inputs, lowercase, where)
        seqs = [np.asarray(vocab.encode(t), dtype=np.int64) for t in tokens]
    elif isinstance(inputs, np.ndarray) and inputs.ndim == 2:
        if inputs.dtype == bool or inputs.dtype.kind not in "iu":
            raise TypeError(f"{where}: ids must be integers, got dtype {inputs.dtype}")
        ids = np.ascontiguousarray(inputs.T if batch_first else inputs, dtype=np.int64)
        T, B = ids.shape
        if lengths is None:
            return ids, np.full(B, T, dtype=np.int64), None
        lens = np.asarray(lengths)
        layout = "[B, T]" if batch_first else "[T, B] (time-major; batch_first=True for [B, T])"
        if lens.ndim != 1 or lens.shape[0] != B or lens.dtype.kind not in "iu":
            raise ValueError(
                f"{where}: lengths must be {B} integers, one per sequence of ids {inputs.shape} "
                f"read as {layout}; got {lens.shape if lens.ndim else lengths!r}"
            )
        if lens.size and (lens.min() < 1 or lens.max() > T):
            raise ValueError(
                f"{where}: lengths must be in [1, T={T}] for ids {inputs.shape} read as {layout}, "
                f"got min {lens.min()} max {lens.max()}"
            )
        return ids, lens.astype(np.int64), None
    elif isinstance(inputs, np.ndarray) and inputs.ndim == 1:
        seqs = [inputs]
    elif isinstance(inputs, Sequence) and len(inputs) > 0 and not isinstance(inputs, np.ndarray):
        seqs = [np.asarray(s) for s in inputs]
        for i, s in enumerate(seqs):
            if s.ndim != 1:
                raise ValueError(
                    f"{where}: inputs[{i}] must be one sequence of ids (1-d), got shape {s.shape}"
                )
    else:
        raise TypeError(
            f"{where}: inputs must be texts (str or list of str), a list of id sequences or an "
            f"int array, got {type(inputs).__name__}"
        )
    if lengths is not None:
        raise ValueError(f"{where}: lengths is only for a 2-d id array (sequences carry theirs)")
    for i, s in enumerate(seqs):
        if s.size == 0:
            raise ValueError(f"{where}: sequence {i} is empty")
        if s.dtype == bool or s.dtype.kind not in "iu":
            raise TypeError(f"{where}: sequence {i} must hold integer ids, got dtype {s.dtype}")
    lens = np.array([s.size for s in seqs], dtype=np.int64)
    ids = np.full((int(lens.max()), len(seqs)), pad, dtype=np.int64)
    for b, s in enumerate(seqs):
        ids[: s.size, b] = s
    return ids, lens, tokens
