"""Data-parallel training over MPI (mpi4py): the world, one gradient allreduce per step, broadcasts.

The model of Horovod and PyTorch DDP: N processes (ranks) hold the same model; each takes a disjoint
slice of every global batch, runs forward and backward on it, and one allreduce sums the gradients
so that every rank steps its optimizer with the same global gradient. Nothing home-made travels on
the wire: the transport is whatever MPI mpi4py runs on (``pip install "rnncore[mpi]"`` brings
mpi4py and Open MPI's wheel, whose ``mpiexec`` launches the ranks)::

    mpiexec -n 4 rnncore train lm --data ptb --out run     # --batch-size is the global batch

In a script of one's own::

    from rnncore import distributed as dist
    world = dist.init()                        # size 1 unless launched by mpiexec
    dist.broadcast_parameters(model.parameters())            # everyone starts from rank 0's
    reducer = dist.GradientReducer(model.parameters())
    for batch in dist.shard_batches(batches):  # this rank's slice of each global batch
        model.zero_grad()
        out = model.training_step(batch)       # loss = mean over out["count"] items
        count, loss = reducer.allreduce(out["count"], out["loss"])   # global mean gradient
        optimizer.step()

Random masks: every rank keeps the same seeds, and :func:`shard_batches` tells the layers where
the rank's slice starts (:func:`rnncore.nn.set_batch_offset`); every mask (Dropout, dropout
between recurrent layers, zoneout, recurrent dropout, the tagger's word replacement) is keyed by
an example's index in the global batch, so it does not depend on the number of ranks. A rank
whose slice of a step is empty runs no forward and its layers' call counters lag: the Trainer
then gives every rank rank 0's random state (``reducer.empty_slices`` says when).

The world is detected lazily: importing rnncore never imports mpi4py. :func:`init` looks at the
variables an MPI launcher sets (``OMPI_COMM_WORLD_SIZE``, ``PMI_SIZE``, ...; or
``RNNCORE_DISTRIBUTED=1`` to force MPI, ``=0`` to refuse it) and only then imports mpi4py.

Faults: in a world of several ranks, an uncaught exception on any rank prints the rank, the error
and its traceback, then calls ``MPI_Abort``, so that the whole job ends with a non-zero status
instead of the other ranks waiting forever in the next collective. A rank that leaves without an
exception (``sys.exit``) while the others still run is caught at exit: it waits at most
``RNNCORE_MPI_EXIT_TIMEOUT`` seconds (default 60) for the others to finish too, then aborts the job
naming itself. A rank killed outright is seen by mpiexec, which ends the job.
"""

from __future__ import annotations

import atexit
import copy
import math
import os
import sys
import time
import traceback
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from .nn.keyed import set_batch_offset

__all__ = [
    "World",
    "GradientReducer",
    "init",
    "rank",
    "world_size",
    "is_distributed",
    "barrier",
    "broadcast_parameters",
    "broadcast_object",
    "allreduce_sums",
    "allreduce_gradients",
    "local_slice",
    "shard_batches",
    "map_slices",
    "abort",
]

#: "1" forces MPI (mpi4py is imported even without launcher variables), "0" refuses it.
FORCE_ENV = "RNNCORE_DISTRIBUTED"
#: seconds a rank leaving normally waits for the others before it aborts the job
EXIT_TIMEOUT_ENV = "RNNCORE_MPI_EXIT_TIMEOUT"
#: world-size variables of the common launchers: Open MPI, MPICH/Intel MPI (Hydra, Slurm PMI2),
#: MVAPICH, Slurm's srun with PMIx
LAUNCHER_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE")
#: gradient bytes per allreduce: a model with more gradient than this gets several allreduces
#: (buckets), so that the staging copies stay bounded and large messages use MPI's pipelined
#: algorithms. 64 MiB is 16M float32 values, more than any task model of rnncore at its defaults.
DEFAULT_BUCKET_BYTES = 64 << 20

MPI_HINT = 'pip install "rnncore[mpi]" (mpi4py and an MPI), or run without mpiexec'


# ---- the world ---------------------------------------------------------------------------------
class World:
    """A group of processes training one model. This base is the world of one process: ``rank``
    0, ``size`` 1, and every collective returns (or leaves) its input as it is.

    Attributes:
        rank: this process's index in [0, size).
        size: the number of processes.
        local_size: processes on this machine (engine threads are shared among them).
        comm: the mpi4py communicator, or None.
        library: what runs the collectives ("single process", or MPI's library version).
    """

    rank = 0
    size = 1
    local_size = 1
    comm: Any = None
    library = "single process"

    def barrier(self) -> None:
        """Wait until every rank has called it."""

    def broadcast_object(self, obj: Any, root: int = 0) -> Any:
        """``root``'s ``obj`` (any picklable object), returned on every rank."""
        return obj

    def gather_object(self, obj: Any, root: int = 0) -> list[Any] | None:
        """Every rank's ``obj`` as a list indexed by rank on ``root``; None on the others."""
        return [obj]

    def allgather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` as a list indexed by rank, on every rank."""
        return [obj]

    def allreduce_array(self, buf: np.ndarray) -> None:
        """``buf`` [n] (C-contiguous float32/float64) <- its sum over the ranks, in place."""

    def broadcast_array(self, buf: np.ndarray, root: int = 0) -> None:
        """``buf`` (C-contiguous, any shape) <- ``root``'s ``buf``, in place."""

    def abort(self, code: int = 1) -> None:
        """End the whole job with exit status ``code`` (this process only, here)."""
        sys.stderr.flush()
        os._exit(code)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size}, {self.library})"


class MPIWorld(World):
    """The ranks of an MPI communicator (``MPI.COMM_WORLD`` by default), through mpi4py."""

    def __init__(self, comm: Any = None) -> None:
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = int(self.comm.Get_rank())
        self.size = int(self.comm.Get_size())
        # the ranks sharing this machine's cores (and so its engine threads)
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_size = int(node.Get_size())
        node.Free()
        self.library = MPI.Get_library_version().splitlines()[0].split(",")[0].strip()

    def barrier(self) -> None:
        # A polled non-blocking barrier: MPI's blocking one spins on a core, which a rank that
        # waits while rank 0 works (writing, or a task only rank 0 runs) would take from it.
        request = self.comm.Ibarrier()
        pause = 1e-4
        while not request.Test():
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def broadcast_object(self, obj: Any, root: int = 0) -> Any:
        return self.comm.bcast(obj, root=root)

    def gather_object(self, obj: Any, root: int = 0) -> list[Any] | None:
        return self.comm.gather(obj, root=root)

    def allgather_object(self, obj: Any) -> list[Any]:
        return self.comm.allgather(obj)

    def allreduce_array(self, buf: np.ndarray) -> None:
        self.comm.Allreduce(self._MPI.IN_PLACE, buf, op=self._MPI.SUM)

    def broadcast_array(self, buf: np.ndarray, root: int = 0) -> None:
        self.comm.Bcast(buf, root=root)

    def abort(self, code: int = 1) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(code)


_world: World | None = None  # the world init() detected (created once: MPI starts once)


def launcher_world_size(environ: Mapping[str, str] | None = None) -> int:
    """The number of processes an MPI launcher started, from its environment variables (1 when
    none is set). Reads the environment only: no MPI call, no import of mpi4py."""
    env = os.environ if environ is None else environ
    for name in LAUNCHER_SIZE_VARS:
        raw = env.get(name, "").strip()
        if raw.isdigit() and int(raw) >= 1:
            return int(raw)
    return 1


def init(enable: bool | None = None) -> World:
    """The world this process trains in.

    Args:
        enable: None: detect it (MPI when a launcher started several processes, or when
            ``RNNCORE_DISTRIBUTED=1``; a single-process world otherwise, without importing mpi4py).
            True: MPI's world (mpi4py required, even for one process). False: a single-process
            world, whatever launched this process (each process then trains on its own).

    Returns:
        A :class:`World`. The MPI world is created once and returned by every later call (and by
        :func:`rank`, :func:`world_size`, ...); it installs the fault handlers when it has several
        ranks (see the module docstring).

    Raises:
        ImportError: MPI is wanted but mpi4py (or an MPI library) is missing.
    """
    global _world
    if enable is False:
        return World()
    if _world is not None:
        return _world
    forced = os.environ.get(FORCE_ENV, "").strip()
    if forced not in ("", "0", "1"):
        raise ValueError(f"${FORCE_ENV} must be 0 (no MPI) or 1 (MPI), got {forced!r}")
    if enable is None:
        if forced == "0" or (forced != "1" and launcher_world_size() <= 1):
            return World()  # not cached: a later init(True) may still start MPI
    try:
        world: World = MPIWorld()
    except ImportError as e:
        size = launcher_world_size()
        started = ""
        if size > 1:
            started = f"this process is one of {size} started by an MPI launcher, but "
        raise ImportError(
            f"rnncore.distributed: {started}mpi4py cannot be imported ({e}): {MPI_HINT}"
        ) from e
    _world = world
    if world.size > 1:
        _install_fault_handlers(world)
    return world


def current() -> World:
    """The world :func:`init` has created, else a single-process one; never detects or imports
    mpi4py (so writers can ask "am I rank 0?" in runs that never started MPI)."""
    return _world if _world is not None else World()


def rank() -> int:
    """This process's rank (0 when not distributed); detects the world (see :func:`init`)."""
    return init().rank


def world_size() -> int:
    """The number of ranks (1 when not distributed); detects the world (see :func:`init`)."""
    return init().size


def is_distributed() -> bool:
    """Whether this process is one of several ranks (see :func:`init`)."""
    return init().size > 1


def barrier(world: World | None = None) -> None:
    """Wait until every rank of ``world`` (default: :func:`init`'s) has called it."""
    (world or init()).barrier()


def broadcast_object(obj: Any, root: int = 0, world: World | None = None) -> Any:
    """Rank ``root``'s ``obj`` (picklable) on every rank of ``world`` (default :func:`init`'s)."""
    return (world or init()).broadcast_object(obj, root)


def abort(message: str, code: int = 1, world: World | None = None) -> None:
    """Print ``rnncore.distributed: rank R of N: message`` to stderr and end the whole job with
    exit status ``code``: every rank, not only this one. Does not return."""
    w = world or current()
    print(f"rnncore.distributed: rank {w.rank} of {w.size}: {message}", file=sys.stderr, flush=True)
    w.abort(code)


# ---- faults ------------------------------------------------------------------------------------
_finished = False  # set once every rank has reached the end (the exit check then returns at once)


def _install_fault_handlers(world: World) -> None:
    """Uncaught exception -> message naming the rank + MPI_Abort; early exit -> bounded wait."""
    previous = sys.excepthook

    def excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        text = "".join(traceback.format_exception(kind, value, tb))
        print(
            f"rnncore.distributed: rank {world.rank} of {world.size} failed with "
            f"{kind.__name__}: {value}\n{text}rnncore.distributed: aborting the job (rank "
            f"{world.rank} failed)",
            file=sys.stderr,
            flush=True,
        )
        try:
            world.abort(1)
        finally:  # only reached if Abort itself returned (it does not)
            previous(kind, value, tb)

    sys.excepthook = excepthook
    # atexit runs handlers last-registered first: this one before mpi4py's MPI_Finalize, which a
    # rank leaving alone would block in while the others wait in a collective for it.
    atexit.register(_exit_check, world)


def _exit_check(world: World) -> None:
    """At exit: wait (bounded) for the other ranks to be at their exit too, else abort."""
    if _finished:
        return
    try:
        timeout = float(os.environ.get(EXIT_TIMEOUT_ENV, "60"))
    except ValueError:
        timeout = 60.0
    request = world.comm.Ibarrier()
    deadline = time.monotonic() + timeout
    pause = 1e-3
    while not request.Test():
        if time.monotonic() > deadline:
            abort(
                f"exiting, but the other ranks did not reach the end within {timeout:g} s "
                f"({EXIT_TIMEOUT_ENV}): rank {world.rank} left early or another rank is stuck; "
                "aborting the job",
                code=1,
                world=world,
            )
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def finish(world: World | None = None) -> None:
    """Wait for every rank to get here, then mark the job as ended normally (the exit check of
    the fault handlers then returns at once). Call at the end of a distributed program."""
    global _finished
    w = world or current()
    w.barrier()
    _finished = True


# ---- parameters and gradients ------------------------------------------------------------------
def _parameters(params: Any) -> list[Any]:
    """A Module's parameters, or a list of Parameters as given (host arrays: ValueError for
    parameters on a GPU, which the allreduce over MPI does not reach yet)."""
    get = getattr(params, "parameters", None)
    out = list(get()) if callable(get) else list(params)
    if any(not isinstance(getattr(p, "data", None), np.ndarray) for p in out):
        raise ValueError(
            "rnncore.distributed: parameters on a GPU (a model moved there whole); data-parallel "
            "training over MPI runs with the parameters on the host so far: keep the model on "
            "'cpu' (its recurrent layers may still run on the GPU in the other models)"
        )
    return out


def _unique(arrays: Iterable[np.ndarray]) -> list[np.ndarray]:
    """``arrays`` without repeats of the same memory (tied parameters are one buffer)."""
    seen: set[tuple[int, int, str]] = set()
    out = []
    for a in arrays:
        key = (int(a.__array_interface__["data"][0]), a.size, a.dtype.str)
        if a.size and key not in seen:
            seen.add(key)
            out.append(a)
    return out


def broadcast_parameters(params: Any, world: World | None = None, root: int = 0) -> None:
    """Copy rank ``root``'s parameter values into every rank's parameters, in place.

    Args:
        params: a Module or a list of :class:`rnncore.nn.Parameter` (each ``data`` any shape,
            C-contiguous), the same list on every rank.
        world: default :func:`init`'s.
        root: the rank whose values everyone takes.
    """
    w = world or init()
    if w.size == 1:
        return
    for data in _unique(p.data for p in _parameters(params)):
        w.broadcast_array(data, root)


def allreduce_sums(sums: Mapping[str, float], world: World | None = None) -> dict[str, float]:
    """Sum named numbers over the ranks (metrics: loss sums, item counts, correct answers).

    Args:
        sums: {name: number} of this rank; a name missing on some ranks counts 0 there.
        world: default :func:`init`'s.

    Returns:
        {name: sum over the ranks} (float64 sums), every name of every rank, on every rank.
    """
    w = world or init()
    if w.size == 1:
        return {k: float(v) for k, v in sums.items()}
    names = sorted({k for keys in w.allgather_object(sorted(sums)) for k in keys})
    buf = np.array([float(sums.get(k, 0.0)) for k in names], dtype=np.float64)
    w.allreduce_array(buf)
    return dict(zip(names, (float(v) for v in buf), strict=True))


class _Bucket:
    """One allreduce: a staging buffer [n (+3 on the first bucket)] of one dtype and the gradient
    arrays packed into it at their offsets."""

    __slots__ = ("staging", "members")

    def __init__(self, dtype: np.dtype, members: list[tuple[np.ndarray, int]], extra: int):
        size = sum(g.size for g, _ in members) + extra
        self.staging = np.zeros(size, dtype=dtype)
        self.members = members


class GradientReducer:
    """Sum the gradients of every rank, weighted by item counts, with one allreduce per bucket
    (one per step for models up to ``bucket_bytes`` of gradient).

    Each rank's gradients are those of its mean loss over ``count`` items; what every rank holds
    afterwards is the gradient of the mean over all ranks' items,
    ``g = sum_r count_r * g_r / sum_r count_r``, so slices of unequal size (the last batch of an
    epoch) weigh exactly as in one process with the whole batch. The global count, the loss and
    the number of empty slices ride in three extra slots of the first bucket: no second
    collective. Frozen parameters
    (``requires_grad = False``) are left out; tied parameters (one buffer) are summed once.

    Args:
        params: a Module or list of Parameters (same order on every rank); their ``grad`` arrays
            [any shape] are read and overwritten in place.
        world: default :func:`init`'s.
        bucket_bytes: most gradient bytes per allreduce.

    Attributes:
        calls, seconds, bytes: allreduces made, seconds spent in them (waiting for the slowest
            rank included), bytes reduced, since construction.
        empty_slices: how many ranks had an empty slice (count 0) in the last step.
    """

    def __init__(
        self,
        params: Any,
        world: World | None = None,
        *,
        bucket_bytes: int = DEFAULT_BUCKET_BYTES,
    ) -> None:
        self.params = _parameters(params)
        self.world = world or init()
        if bucket_bytes < 1:
            raise ValueError(f"GradientReducer: bucket_bytes must be >= 1, got {bucket_bytes}")
        self.bucket_bytes = int(bucket_bytes)
        self.calls = 0
        self.seconds = 0.0
        self.bytes = 0
        self.empty_slices = 0
        self._plan_key: tuple[bool, ...] | None = None
        self._buckets: list[_Bucket] = []

    def _plan(self) -> list[_Bucket]:
        """The buckets, rebuilt when a parameter was frozen or unfrozen since the last step."""
        key = tuple(bool(getattr(p, "requires_grad", True)) for p in self.params)
        if key == self._plan_key:
            return self._buckets
        grads = _unique(p.grad for p in self.params if getattr(p, "requires_grad", True))
        buckets: list[_Bucket] = []
        for dtype in dict.fromkeys(g.dtype for g in grads):
            members: list[tuple[np.ndarray, int]] = []
            used = 0
            for g in (g for g in grads if g.dtype == dtype):
                if members and (used + g.size) * dtype.itemsize > self.bucket_bytes:
                    buckets.append(_Bucket(dtype, members, 3 if not buckets else 0))
                    members, used = [], 0
                members.append((g, used))
                used += g.size
            buckets.append(_Bucket(dtype, members, 3 if not buckets else 0))
        if not buckets:  # nothing to train: the count and loss still need their sums
            buckets.append(_Bucket(np.dtype(np.float64), [], 3))
        self._plan_key, self._buckets = key, buckets
        return buckets

    def allreduce(self, count: float, loss: float = 0.0) -> tuple[float, float]:
        """Replace every rank's gradients by the count-weighted mean over the ranks (a collective:
        every rank calls it once per step, in the same order).

        Args:
            count: items this rank's gradients average over (0 for an empty slice; its gradients
                are then ignored, zero them).
            loss: this rank's mean loss over those items.

        Returns:
            (total count over the ranks, the global mean loss = sum_r count_r * loss_r / total:
            NaN or inf when a rank's is, 0 when total is 0).
        """
        buckets = self._plan()
        c = float(count)
        start = time.perf_counter()
        for i, b in enumerate(buckets):
            st = b.staging
            for g, off in b.members:
                np.multiply(g.reshape(-1), c, out=st[off : off + g.size])
            if i == 0:
                st[-3] = c
                # an empty slice adds nothing, unless its loss is NaN/inf: that must reach all
                st[-2] = float(loss) * c if c or not math.isfinite(loss) else 0.0
                st[-1] = 0.0 if c else 1.0
            self.world.allreduce_array(st)
            self.bytes += st.nbytes
        self.calls += len(buckets)
        self.seconds += time.perf_counter() - start
        total, loss_sum = float(buckets[0].staging[-3]), float(buckets[0].staging[-2])
        self.empty_slices = int(round(float(buckets[0].staging[-1])))
        scale = 1.0 / total if total > 0 else 0.0
        for b in buckets:
            st = b.staging
            for g, off in b.members:
                np.multiply(st[off : off + g.size].reshape(g.shape), scale, out=g)
        return total, (loss_sum / total if total > 0 else loss_sum)


_reducers: dict[tuple[int, ...], GradientReducer] = {}


def allreduce_gradients(
    params: Any, count: float = 1.0, loss: float = 0.0, world: World | None = None
) -> tuple[float, float]:
    """One-call form of :class:`GradientReducer` (its buffers are kept per parameter list).

    Args:
        params: a Module or list of Parameters whose ``grad`` [any shape] to reduce in place.
        count: items behind this rank's gradients (1 on every rank: a plain mean over ranks).
        loss: this rank's mean loss.
        world: default :func:`init`'s.

    Returns:
        (total count, global mean loss), see :meth:`GradientReducer.allreduce`.
    """
    w = world or init()
    plist = _parameters(params)
    key = (id(w), *(id(p) for p in plist))
    reducer = _reducers.get(key)
    if reducer is None:
        reducer = _reducers[key] = GradientReducer(plist, w)
    return reducer.allreduce(count, loss)


# ---- slicing the global batches ----------------------------------------------------------------
def local_slice(n: int, rank: int, size: int) -> slice:
    """Rank ``rank``'s contiguous part of ``n`` items split over ``size`` ranks: the first
    ``n % size`` ranks get one more item; parts are disjoint and cover range(n) in rank order.
    Some parts are empty when n < size."""
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"local_slice: need 0 <= rank < size, got rank {rank}, size {size}")
    q, r = divmod(int(n), size)
    lo = rank * q + min(rank, r)
    return slice(lo, lo + q + (1 if rank < r else 0))


class _StreamSlice:
    """BPTT windows over this rank's columns of a batchified stream: (x [L, b], y [L, b]) with b
    this rank's share of the B columns (each column keeps its own carried state, so a rank keeps
    the same columns all along); None for every window when the share is empty."""

    def __init__(self, batches: Any, rank: int, size: int) -> None:
        from .data import BPTTBatches

        part = local_slice(batches.data.shape[1], rank, size)
        self.offset = part.start
        self.windows = len(batches)
        self.batches = (
            BPTTBatches(np.ascontiguousarray(batches.data[:, part]), batches.bptt)
            if part.stop > part.start
            else None
        )

    def __len__(self) -> int:
        return self.windows

    def __iter__(self) -> Iterator[Any]:
        if self.batches is None:
            return iter([None] * self.windows)
        return self._windows()

    def _windows(self) -> Iterator[Any]:
        try:
            for window in self.batches:
                set_batch_offset(self.offset)  # masks are keyed by the stream's global column
                yield window
        finally:
            set_batch_offset(0)


def map_slices(fn: Any, items: Any, world: World | None = None) -> list[Any]:
    """``fn`` over a sequence split across the ranks: each rank calls ``fn(items[part])`` on its
    contiguous part (:func:`local_slice`) and every rank gets the concatenated results, in
    order, as one process calling ``fn(items)`` would (for an ``fn`` that maps item by item, e.g.
    decoding a test set). A collective; with one rank just ``list(fn(items))``.

    Args:
        fn: sequence of n items -> sequence of n results.
        items: a sequence (list, array) of n items, the same on every rank.
        world: default the world :func:`init` created (:func:`current`: one process when none
            was, as in ``--no-distributed`` runs).
    """
    w = world or current()
    if w.size == 1:
        return list(fn(items))
    part = local_slice(len(items), w.rank, w.size)
    mine = list(fn(items[part])) if part.stop > part.start else []
    return [r for chunk in w.allgather_object(mine) for r in chunk]


def _shard(batches: Any, rank: int, size: int) -> Any:
    from .data import BPTTBatches

    shard = getattr(batches, "shard", None)
    if callable(shard):
        return shard(rank, size)
    if isinstance(batches, BPTTBatches):
        return _StreamSlice(batches, rank, size)
    inner = getattr(batches, "batches", None)
    if inner is not None and not callable(inner):  # a wrapper (a limit, word replacement, ...)
        wrapper = copy.copy(batches)
        wrapper.batches = _shard(inner, rank, size)
        return wrapper
    raise TypeError(
        f"shard_batches: cannot split {type(batches).__name__} across {size} ranks: give it a "
        "shard(rank, size) method returning this rank's part of every batch (see local_slice), "
        "or pass each rank its own slices"
    )


def shard_batches(batches: Any, world: World | None = None) -> Any:
    """This rank's part of every global batch of ``batches``, for data-parallel training.

    Understood: objects with ``shard(rank, size)`` (rnncore's task batches: index batches are
    cut with :func:`local_slice` before collation), ``rnncore.data.BPTTBatches`` (each rank
    takes a contiguous block of the stream's columns), and wrappers holding one of these as
    ``.batches`` (copied, with the inner part sharded). An empty part comes as None: the Trainer
    then contributes nothing but still takes part in the step's allreduce.

    Args:
        batches: the global batches (the same on every rank), or None.
        world: default :func:`init`'s; with one rank ``batches`` is returned unchanged.

    Returns:
        A re-iterable with as many batches as ``batches`` has.
    """
    w = world or init()
    if w.size == 1 or batches is None:
        return batches
    return _shard(batches, w.rank, w.size)
