"""Batching: LM streams as [T, B] columns, BPTT windows, padding, a length-bucketing sampler."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


def _int_count(value: object, name: str, where: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{where}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def batchify(ids: Sequence[int] | np.ndarray, batch_size: int) -> np.ndarray:
    """Cut a token stream into ``batch_size`` contiguous columns (the classic PTB recipe).

    Column b holds tokens [b * T, (b + 1) * T) of the stream, with T = len(ids) // batch_size;
    the remainder at the end is dropped. Reading down a column continues one text, so the hidden
    state can be carried from one BPTT window to the next.

    Args:
        ids: 1-D integer token ids [N].
        batch_size: B >= 1, at most N.
    Returns:
        int64 C-contiguous array [T, B].
    """
    b = _int_count(batch_size, "batch_size", "batchify")
    arr = np.asarray(ids)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise ValueError(f"batchify: ids must be a 1-D integer sequence, got shape {arr.shape}")
    t = arr.size // b
    if t == 0:
        raise ValueError(f"batchify: {arr.size} tokens are too few for batch_size {b}")
    return np.ascontiguousarray(arr[: t * b].astype(np.int64).reshape(b, t).T)


class BPTTBatches:
    """Windows for truncated BPTT over a batchified stream.

    Iterating yields ``(x, y)`` with x = data[i : i + L] and y = data[i + 1 : i + 1 + L] (the next
    token of each position), for i = 0, bptt, 2 * bptt, ... and L = min(bptt, T - 1 - i): the last
    window may be shorter. x and y are views of ``data`` (no copies; C-contiguous when data is).

    Args:
        data: integer array [T, B] (from :func:`batchify`), T >= 2.
        bptt: window length >= 1.
    """

    def __init__(self, data: np.ndarray, bptt: int):
        self.bptt = _int_count(bptt, "bptt", "BPTTBatches")
        data = np.asarray(data)
        if data.ndim != 2 or data.shape[0] < 2:
            raise ValueError(
                f"BPTTBatches: data must be [T, B] with T >= 2, got shape {data.shape}"
            )
        self.data = data

    def __len__(self) -> int:
        """Number of windows: ceil((T - 1) / bptt)."""
        return -(-(self.data.shape[0] - 1) // self.bptt)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        t = self.data.shape[0]
        for i in range(0, t - 1, self.bptt):
            n = min(self.bptt, t - 1 - i)
            yield self.data[i : i + n], self.data[i + 1 : i + 1 + n]


def pad_sequences(
    sequences: Sequence[Sequence[int] | np.ndarray],
    *,
    pad_id: int = 0,
    batch_first: bool = False,
    max_len: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pad id sequences of different lengths into one array.

    Args:
        sequences: B non-empty 1-D integer sequences.
        pad_id: value of the positions past a sequence's end (use the vocabulary's pad id).
        batch_first: return [B, T] instead of [T, B].
        max_len: cut longer sequences to their first ``max_len`` ids; None keeps everything.
    Returns:
        (padded int64 [T, B] (or [B, T]) with T = the longest (cut) length, lengths int64 [B]) --
        the ``lengths`` argument of the recurrent layers.
    """
    if max_len is not None:
        max_len = _int_count(max_len, "max_len", "pad_sequences")
    if len(sequences) == 0:
        raise ValueError("pad_sequences: no sequences")
    arrays = []
    for i, s in enumerate(sequences):
        a = np.asarray(s)
        if a.ndim != 1 or a.size == 0:
            raise ValueError(
                f"pad_sequences: sequence {i} must be a non-empty 1-D sequence, got shape {a.shape}"
            )
        if a.dtype.kind not in "iu":
            raise ValueError(f"pad_sequences: sequence {i} must hold integers, got {a.dtype}")
        arrays.append(a[:max_len] if max_len is not None else a)
    lengths = np.array([a.size for a in arrays], dtype=np.int64)
    out = np.full((len(arrays), int(lengths.max())), pad_id, dtype=np.int64)
    for i, a in enumerate(arrays):
        out[i, : a.size] = a
    if not batch_first:
        out = np.ascontiguousarray(out.T)
    return out, lengths


class BucketBatchSampler:
    """Batches of indices whose sequences have similar lengths (less padding), shuffled.

    With ``shuffle``: the indices are permuted, cut into pools of ``pool_batches * batch_size``,
    each pool is sorted by length (stable) and cut into batches, and the order of all batches is
    shuffled. Without: all indices sorted by length (stable), batches in that order.
    Randomness comes only from ``numpy.random.default_rng([seed, epoch])``: iteration number k
    (counting from 0, or from :meth:`set_epoch`) gives the same batches for the same seed.

    Args:
        lengths: length of each sequence, [N].
        batch_size: >= 1.
        shuffle: random pools and batch order (training) or a fixed order (evaluation).
        seed: random seed.
        pool_batches: batches per sorting pool; larger pools pad less but mix less.
        drop_last: leave out the one batch smaller than ``batch_size`` (if any).
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        pool_batches: int = 100,
        drop_last: bool = False,
    ):
        self.lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
        if self.lengths.size == 0:
            raise ValueError("BucketBatchSampler: lengths is empty")
        self.batch_size = _int_count(batch_size, "batch_size", "BucketBatchSampler")
        self.pool_batches = _int_count(pool_batches, "pool_batches", "BucketBatchSampler")
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use this epoch's permutation."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n, b = self.lengths.size, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def _batches(self, epoch: int) -> list[np.ndarray]:
        n, b = self.lengths.size, self.batch_size
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            batches = [order[i : i + b] for i in range(0, n, b)]
        else:
            rng = np.random.default_rng([self.seed, epoch])
            perm = rng.permutation(n)
            pool = b * self.pool_batches
            batches = []
            for start in range(0, n, pool):
                chunk = perm[start : start + pool]
                chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
                batches.extend(chunk[i : i + b] for i in range(0, chunk.size, b))
        if self.drop_last and batches and batches[-1].size < b:
            batches.pop()
        if self.shuffle:
            order = rng.permutation(len(batches))
            batches = [batches[i] for i in order]
        return [np.asarray(x, dtype=np.int64) for x in batches]

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield int64 index arrays [<= batch_size]; each call advances the epoch by one."""
        epoch = self.epoch
        self.epoch += 1
        return iter(self._batches(epoch))
