"""What the task commands share: options, optimizers, batching, the train-and-report driver, and
the `rnncore eval / sample / predict` commands that reopen a trained model's directory.

Layout of an output directory ``DIR`` written by ``rnncore train TASK --out DIR``::

    DIR/metrics.json        final metrics and run facts (below)
    DIR/history.json, .csv  the per-epoch history (rewritten after every epoch)
    DIR/checkpoint/best/    checkpoint of the best epoch (by the task's validation metric)
    DIR/checkpoint/last/    checkpoint of the last epoch (resumable)
    DIR/train.log           the lines the run printed (progress, epoch summaries, results)
    DIR/curves.png          learning curves (with --plot)

A run refuses an ``--out`` folder that already holds files unless ``--resume`` (continue it) or
``--overwrite`` (replace the earlier run's files) says what to do with them.

metrics.json: ``valid`` and ``test`` (the metrics of the best epoch's model; ``test`` is null when
the data has no test split), ``epochs`` (completed), ``best_epoch``, ``stopped_early``,
``wall_seconds`` (training + final evaluation), ``train_seconds`` (the epochs, validation and
checkpoints included), ``seconds_per_epoch``, ``parameters``, ``model_type``, ``model_config``,
``data`` (sizes, source), ``options`` (the command line's), ``checkpoint`` and ``history`` (the
Trainer's per-epoch rows).

Launched by ``mpiexec -n N`` (``pip install "rnncore[mpi]"``), ``rnncore train TASK`` trains data
parallel over the N ranks (:mod:`rnncore.distributed`) unless ``--no-distributed``: ``--batch-size``
is the global batch, every rank takes its slice of each batch (:func:`train_and_report` cuts them,
so every task gets it), and rank 0 alone prints and writes DIR; metrics.json's ``world_size``
says how many ranks trained.

A checkpoint's ``extra`` holds ``{"task": NAME, ...}``, which tells ``rnncore eval`` and friends
which task module reads it back.

Pretrained word vectors (``--embeddings PATH``, :func:`add_embeddings_arguments`) are only the
embedding's initial weights: the checkpoint holds the trained weights and loads without the file;
metrics.json's ``data.embeddings`` records the file and its coverage of the vocabulary.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import distributed as dist
from .. import nn, optim
from ..data import BucketBatchSampler, DataFormatError, Vocab
from ..data.word_vectors import WordVectors, WordVectorsDimError, load_word_vectors
from ..metrics import SACREBLEU_HINT
from ..models.language_model import CELLS as MODEL_CELLS
from ..optim import Optimizer
from ..optim.lr_scheduler import LRScheduler

# --cell: every cell of the engine's registry (rnncore.nn.CELLS)
CELL_CHOICES = MODEL_CELLS
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta")


class TaskError(Exception):
    """A problem with the user's input that the command line reports as ``rnncore: error: ...``
    (exit status 2, no traceback)."""


#: exceptions the command line turns into ``rnncore: error: <message>`` with exit status 2
def user_errors() -> tuple[type[BaseException], ...]:
    from ..train import CheckpointError

    return (TaskError, DataFormatError, CheckpointError, OSError)


# ---- options ----------------------------------------------------------------------------------
class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" only where it says something: not for required options, flags,
    None defaults, or help texts that already state their default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            action.required
            or action.default is None
            or (
                isinstance(action.default, bool)
                and not isinstance(action, argparse.BooleanOptionalAction)
            )
            or action.default == ""
            or "default" in text
        ):
            return action.help
        return super()._get_help_string(action)


class ExplicitStore(argparse.Action):
    """Stores the option's value, as argparse's default action does, and records that the
    command line gave it (:func:`given`), so that a task can tell ``--embed 128`` typed by the
    user from the default 128 (which pretrained vectors replace by their own size)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        setattr(namespace, f"_given_{self.dest}", True)


def given(args: argparse.Namespace, dest: str) -> bool:
    """Whether the command line set option ``dest`` (one stored with :class:`ExplicitStore`)."""
    return bool(getattr(args, f"_given_{dest}", False))


def add_common_arguments(
    p: argparse.ArgumentParser,
    defaults: dict[str, Any],
    *,
    data_help: str,
    bidirectional: bool = False,
    embed: bool = True,
) -> None:
    """Options every task has, with the task's defaults.

    Args:
        p: the task's subparser.
        defaults: values for cell, layers, hidden, embed, dropout, epochs, batch_size, optimizer,
            lr, clip, weight_decay (and bidirectional when ``bidirectional``).
        data_help: what --data expects.
        bidirectional: add --bidirectional / --no-bidirectional.
        embed: add --embed.
    """
    io = p.add_argument_group("data and output")
    p.formatter_class = HelpFormatter
    io.add_argument("--data", required=True, metavar="PATH", help=data_help)
    io.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output directory: metrics.json, history.json/.csv and checkpoint/{best,last}",
    )
    m = p.add_argument_group("model")
    m.add_argument(
        "--cell",
        choices=CELL_CHOICES,
        default=defaults["cell"],
        help="recurrent cell: lstm, gru (PyTorch's, reset after), gru_v1 (Cho et al.'s reset "
        "before), rnn (tanh), rnn_relu, or the lecture's gated cells gated-residual (s' = s + r), "
        "gated-input (s' = s + i*r), gated-forget (s' = f*s + i*r)",
    )
    m.add_argument(
        "--layers", type=int, default=defaults["layers"], metavar="N", help="stacked layers"
    )
    m.add_argument(
        "--hidden",
        type=int,
        default=defaults["hidden"],
        metavar="N",
        help="hidden units per layer (and per direction)",
    )
    if embed:
        m.add_argument(
            "--embed",
            type=int,
            action=ExplicitStore,
            default=defaults["embed"],
            metavar="N",
            help="embedding size",
        )
    if bidirectional:
        m.add_argument(
            "--bidirectional",
            action=argparse.BooleanOptionalAction,
            default=defaults["bidirectional"],
            help="read each sequence in both directions",
        )
    m.add_argument(
        "--dropout",
        type=float,
        default=defaults["dropout"],
        metavar="P",
        help="dropout probability on the non-recurrent connections (0 = none)",
    )
    if "zoneout" in defaults:  # the tasks whose models take the engine's recurrent regularisers
        m.add_argument(
            "--zoneout",
            type=float,
            default=defaults["zoneout"],
            metavar="P",
            help="zoneout (Krueger et al. 2016): in training each recurrent unit keeps its "
            "previous value with probability P; inference uses the expectation",
        )
        m.add_argument(
            "--recurrent-dropout",
            type=float,
            default=defaults["recurrent_dropout"],
            metavar="P",
            help="recurrent dropout (Gal & Ghahramani 2016): one mask per sequence on h entering "
            "the recurrent weights, training only",
        )
        m.add_argument(
            "--layer-norm",
            action=argparse.BooleanOptionalAction,
            default=False,
            help="layer normalisation inside the recurrence (Ba et al. 2016): both sides' "
            "pre-activations and the LSTM's cell state, every step; --cell lstm or gru",
        )
    add_training_arguments(p, defaults)


def add_training_arguments(p: argparse.ArgumentParser, defaults: dict[str, Any]) -> None:
    """The "training" option group every task shares (epochs, batch size, optimizer, lr, weight
    decay, clipping, early stopping, seed, resume, quick-trial limits, progress bar)."""
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=defaults["epochs"], metavar="N", help="epochs")
    t.add_argument(
        "--batch-size", type=int, default=defaults["batch_size"], metavar="N", help="batch size"
    )
    t.add_argument(
        "--optimizer", choices=OPTIMIZERS, default=defaults["optimizer"], help="optimizer"
    )
    t.add_argument("--lr", type=float, default=defaults["lr"], metavar="X", help="learning rate")
    t.add_argument(
        "--weight-decay",
        type=float,
        default=defaults.get("weight_decay", 0.0),
        metavar="X",
        help="L2 weight decay (decoupled for adamw)",
    )
    t.add_argument(
        "--clip",
        type=float,
        default=defaults["clip"],
        metavar="X",
        help="clip the global gradient norm to X (0 = no clipping)",
    )
    t.add_argument(
        "--patience",
        type=int,
        default=None,
        metavar="N",
        help="stop early after N epochs without improvement on validation (default: never)",
    )
    t.add_argument("--seed", type=seed_value, default=0, metavar="N", help="random seed")
    t.add_argument(
        "--device",
        default="cpu",
        metavar="DEV",
        help="where the model runs: cpu, or cuda (a CUDA build of rnncore and a GPU; the models "
        "with recurrent layers run wholly there, a tagger's CRF and Kim's CNN on the CPU); "
        "checkpoints load onto either",
    )
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from DIR/checkpoint/last (same options: those that "
        "change what it trains are refused)",
    )
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier run's files in DIR (without it, or --resume, a DIR that holds "
        "files is refused)",
    )
    t.add_argument(
        "--max-batches",
        type=int,
        default=None,
        metavar="N",
        help="use at most N training batches per epoch (quick trials; default: all)",
    )
    t.add_argument(
        "--max-eval-batches",
        type=int,
        default=None,
        metavar="N",
        help="use at most N batches of each validation/test set (quick trials; default: all)",
    )
    t.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress bar (it is shown only on a terminal anyway)",
    )
    t.add_argument(
        "--no-distributed",
        dest="distributed",
        action="store_false",
        help="under mpiexec, train alone in every process (give each its own --out) instead of "
        "data parallel over the ranks, where --batch-size is the global batch split among them",
    )
    r = p.add_argument_group("reporting")
    r.add_argument(
        "--log-every",
        type=int,
        default=None,
        metavar="N",
        help="print a progress line (loss, items/s, ETA) every N training steps (default: by "
        "time only, see --log-interval); lines also go to DIR/train.log",
    )
    r.add_argument(
        "--log-interval",
        type=float,
        default=30.0,
        metavar="S",
        help="print a progress line at least every S seconds of an epoch (0: never by time). "
        "Progress lines are printed when no progress bar shares the terminal with them",
    )
    r.add_argument(
        "--plot",
        action="store_true",
        help="draw the learning curves to DIR/curves.png (needs matplotlib)",
    )
    add_threads_argument(r)


def add_embeddings_arguments(p: argparse.ArgumentParser, *, target: bool = False) -> None:
    """``--embeddings PATH`` and ``--freeze-embeddings`` (with ``target``, ``--embeddings`` is
    the source side's and ``--target-embeddings PATH`` the target side's), for the tasks with a
    word embedding. Read them with :func:`load_embeddings` and :func:`use_embeddings`."""
    g = p.add_argument_group(
        "pretrained word vectors",
        "Start the word embedding from pretrained vectors (word2vec or GloVe text format, "
        ".gz allowed). Vocabulary words the file lacks (also ignoring case) start at random, "
        "with the vectors' standard deviation. The file's size sets --embed unless --embed is "
        "given (then they must agree). The coverage is printed and kept in metrics.json; the "
        "checkpoint does not need the file.",
    )
    side = "the source language's " if target else ""
    g.add_argument(
        "--embeddings",
        default=None,
        metavar="PATH",
        help=f"{side}word vectors, e.g. glove.6B.100d.txt or a word2vec/fastText .vec file",
    )
    if target:
        g.add_argument(
            "--target-embeddings",
            default=None,
            metavar="PATH",
            help="the target language's word vectors (same size as --embeddings)",
        )
    g.add_argument(
        "--freeze-embeddings",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="keep the pretrained vectors fixed (Kim 2014's CNN-static); default: fine-tune them "
        "with the rest of the model (his CNN-non-static, the better of the two on most of his "
        "datasets). Frozen rows include those of words the file lacks, which then stay random",
    )


def load_embeddings(
    args: argparse.Namespace, vocab: Vocab, option: str = "embeddings"
) -> WordVectors | None:
    """The vectors of ``--embeddings`` (or of the option ``option``) for ``vocab``; None when the
    option is absent or unset. Sets ``args.embed`` to their dimension and keeps them for
    :func:`train_and_report`'s coverage line and metrics.json.

    Raises:
        TaskError: the dimension differs from --embed given on the command line (or from vectors
            loaded before, for the other side), or no vocabulary word is in the file.
        DataFormatError, FileNotFoundError: a bad or missing file (named with its line).
    """
    path = getattr(args, option, None)
    if path is None:
        sides = ("embeddings", "target_embeddings")
        if getattr(args, "freeze_embeddings", False) and not any(
            getattr(args, o, None) for o in sides
        ):
            raise TaskError("--freeze-embeddings applies only with --embeddings PATH")
        return None
    flag = "--" + option.replace("_", "-")
    fixed_by = getattr(args, "_embed_fixed_by", None)
    if fixed_by is None and given(args, "embed"):
        fixed_by = f"--embed {args.embed}"
    try:
        wv = load_word_vectors(path, vocab, dim=args.embed if fixed_by else None, seed=args.seed)
    except WordVectorsDimError as e:
        hint = (
            "leave out --embed to take the file's size"
            if fixed_by.startswith("--embed")
            else "both files must have vectors of one size"
        )
        raise TaskError(
            f"{flag} {path} holds {e.found}-dimensional vectors, but {fixed_by} sets the "
            f"embedding size to {e.expected}: {hint}"
        ) from None
    if wv.found == 0:
        raise TaskError(
            f"{flag} {path}: none of the {wv.words:,} vocabulary words has a vector there "
            "(vectors of another language, or another tokenisation?)"
        )
    args.embed = wv.dim
    args._embed_fixed_by = f"{flag} {path}"
    loaded = getattr(args, "_embeddings_loaded", {})
    loaded[option] = wv
    args._embeddings_loaded = loaded
    return wv


def use_embeddings(
    args: argparse.Namespace, embedding: nn.Embedding, wv: WordVectors | None
) -> None:
    """Copy the vectors of :func:`load_embeddings` into ``embedding`` [V, E], frozen with
    --freeze-embeddings; nothing when ``wv`` is None. Call after any re-initialisation."""
    if wv is None:
        return
    if embedding.weight.shape != wv.vectors.shape:  # a task passing the wrong vocabulary
        raise ValueError(
            f"use_embeddings: the embedding is {embedding.weight.shape}, the vectors "
            f"{wv.vectors.shape}"
        )
    embedding.weight.data[...] = wv.vectors
    embedding.weight.requires_grad = not getattr(args, "freeze_embeddings", False)


def _embeddings_notes(args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    """(log lines, metrics.json data entries) of the vectors :func:`load_embeddings` loaded."""
    loaded: dict[str, WordVectors] = getattr(args, "_embeddings_loaded", {})
    frozen = bool(getattr(args, "freeze_embeddings", False))
    how = "frozen" if frozen else "fine-tuned"
    lines = [f"--{opt.replace('_', '-')}: {wv.summary()}; {how}" for opt, wv in loaded.items()]
    data = {opt: dict(wv.report(), frozen=frozen) for opt, wv in loaded.items()}
    return lines, data


def threads_value(text: str) -> int:
    """argparse type of --threads: an integer >= 1."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return n


def seed_value(text: str) -> int:
    """argparse type of --seed: an integer >= 0 (what numpy's generators take)."""
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return n


def add_threads_argument(p: Any) -> None:
    """``--threads N`` on a subcommand (same meaning as ``rnncore --threads N``, which it
    overrides). Its default is to leave the attribute alone, so that the top-level value stays."""
    p.add_argument(
        "--threads",
        type=threads_value,
        default=argparse.SUPPRESS,
        metavar="N",
        help="engine threads (default: $RNNCORE_NUM_THREADS, else all cores)",
    )


def check_common(args: argparse.Namespace) -> None:
    """Reject option values that make no sense, naming the option."""
    positive = ["layers", "hidden", "epochs", "batch_size"]
    if hasattr(args, "embed"):
        positive.append("embed")
    for name in positive + ["patience", "max_batches", "max_eval_batches"]:
        v = getattr(args, name, None)
        if v is not None and v < 1:
            raise TaskError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if not 0.0 <= args.dropout < 1.0:
        raise TaskError(f"--dropout must be in [0, 1), got {args.dropout}")
    for name in ("zoneout", "recurrent_dropout"):
        value = getattr(args, name, 0.0)
        if not 0.0 <= value < 1.0:
            raise TaskError(f"--{name.replace('_', '-')} must be in [0, 1), got {value}")
    if getattr(args, "layer_norm", False) and not nn.CELLS[args.cell]["layer_norm"]:
        have = " or ".join(n for n, c in nn.CELLS.items() if c["layer_norm"])
        raise TaskError(f"--layer-norm needs --cell {have}, got --cell {args.cell}")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        raise TaskError(f"--lr must be > 0, got {args.lr}")
    if args.clip < 0 or args.weight_decay < 0:
        raise TaskError("--clip and --weight-decay must be >= 0")
    check_reporting(args)


def check_reporting(args: argparse.Namespace) -> None:
    """Reject bad --log-every / --log-interval values and --plot without matplotlib."""
    log_every = getattr(args, "log_every", None)
    if log_every is not None and log_every < 1:
        raise TaskError(f"--log-every must be >= 1 (steps), got {log_every}")
    interval = getattr(args, "log_interval", 30.0)
    if not (interval >= 0 and math.isfinite(interval)):
        raise TaskError(f"--log-interval must be a number of seconds >= 0, got {interval}")
    if getattr(args, "plot", False):
        try:
            import matplotlib.figure  # noqa: F401
        except ImportError:
            raise TaskError(
                "--plot needs matplotlib: pip install 'rnncore[plot]' (or pip install matplotlib), "
                "or leave out --plot"
            ) from None


#: files and folders a run writes into its --out folder (what --overwrite replaces)
RUN_OUTPUTS = ("metrics.json", "history.json", "history.csv", "train.log", "curves.png")


def check_out_dir(args: argparse.Namespace) -> Path | None:
    """Refuse an ``--out`` folder that holds an earlier run (its metrics, history, log, curves or
    checkpoint/) unless --resume (continue it) or --overwrite (replace it). Other files in the
    folder are left alone; an absent or empty folder is fine.

    With --overwrite the earlier run's files are set aside in a hidden folder inside --out, not
    removed: :func:`settle_out_dir` removes them once the new run has finished, and puts them
    back if it fails before writing anything (a mistyped option or a wrong --data path must not
    cost the user their earlier run).

    Returns:
        The folder holding the earlier run's files, or None.

    Raises:
        TaskError: naming the folder, what it holds, and both options.
    """
    out = Path(args.out)
    resume = bool(getattr(args, "resume", False))
    overwrite = bool(getattr(args, "overwrite", False))
    if resume and overwrite:
        raise TaskError(
            "--resume and --overwrite exclude each other: continue the run or replace it"
        )
    if out.exists() and not out.is_dir():
        raise TaskError(f"--out {out} exists and is not a directory")
    if not out.is_dir() or resume:
        return
    held = [n for n in (*RUN_OUTPUTS, "checkpoint") if (out / n).exists()]
    if not held:
        return
    if not overwrite:
        raise TaskError(
            f"--out {out} already holds a run ({', '.join(held)}): pass --resume to continue "
            "it or --overwrite to replace it"
        )
    aside = Path(tempfile.mkdtemp(prefix=".replaced-run-", dir=out))
    for name in held:
        os.replace(out / name, aside / name)
    return aside


def settle_out_dir(args: argparse.Namespace, aside: Path | None, finished: bool) -> None:
    """After the run that --overwrite started: drop the earlier run's files set aside by
    :func:`check_out_dir` when it ``finished``; otherwise put them back if the new run wrote
    nothing yet, or say where they are kept."""
    if aside is None:
        return
    if finished:
        shutil.rmtree(aside, ignore_errors=True)
        return
    out = Path(args.out)
    if any((out / n).exists() for n in (*RUN_OUTPUTS, "checkpoint")):
        print(f"rnncore: the run --overwrite was replacing is kept in {aside}", file=sys.stderr)
        return
    for item in aside.iterdir():
        os.replace(item, out / item.name)
    aside.rmdir()


def writes() -> bool:
    """Whether this process prints and writes the run's files: always, except on the ranks other
    than 0 of a distributed run (they compute the same things, rank 0 reports them)."""
    return dist.current().rank == 0


def log_line(out: str | os.PathLike, message: str) -> None:
    """Print ``message`` (flushed, so that a pipe sees it at once) and append it to
    ``out/train.log`` (rank 0 only in a distributed run)."""
    if not writes():
        return
    print(message, flush=True)
    path = Path(out) / "train.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(message + "\n")


def bleu_note(scores: Mapping[str, Any]) -> str:
    """How a BLEU score was computed, for a task's result line: sacreBLEU's signature, and with
    the built-in port (the same numbers) how to have sacreBLEU itself compute it.

    Args:
        scores: a dict with "bleu_signature" and "bleu_backend" (see corpus_bleu's score).
    """
    note = f"BLEU signature {scores['bleu_signature']}"
    if scores["bleu_backend"] != "sacrebleu":
        note += f"; for sacreBLEU itself: {SACREBLEU_HINT}"
    return note


def say(args: argparse.Namespace, message: str) -> None:
    """A task's result line: printed and kept in DIR/train.log (see :func:`log_line`)."""
    log_line(args.out, message)


def make_optimizer(args: argparse.Namespace, model: nn.Module) -> Optimizer:
    """The optimizer named by --optimizer with --lr and --weight-decay, for ``model`` once moved
    to --device (before the optimizer sees its parameters, as in PyTorch)."""
    try:
        model.to(getattr(args, "device", "cpu"))
    except (ValueError, RuntimeError) as e:
        raise TaskError(f"--device {args.device}: {e}") from None
    params = model.parameters()
    lr, wd = args.lr, args.weight_decay
    if args.optimizer == "sgd":
        return optim.SGD(params, lr=lr, weight_decay=wd)
    if args.optimizer == "adam":
        return optim.Adam(params, lr=lr, weight_decay=wd)
    if args.optimizer == "adamw":
        return optim.AdamW(params, lr=lr, weight_decay=wd)
    if args.optimizer == "rmsprop":
        return optim.RMSprop(params, lr=lr, weight_decay=wd)
    if args.optimizer == "adadelta":  # Kim (2014)'s rho and eps
        return optim.Adadelta(params, lr=lr, rho=0.95, eps=1e-6, weight_decay=wd)
    return optim.Adagrad(params, lr=lr, weight_decay=wd)


class DecayAfter(LRScheduler):
    """lr = base_lr · decay^max(0, epoch + 1 - after): ``after`` epochs at the base rate, then
    multiplied by ``decay`` every epoch (Zaremba et al. 2014: after=4, decay=0.5).

    Args:
        optimizer: the optimizer.
        after: epochs at the base rate, >= 0.
        decay: factor > 0 per later epoch.
    """

    def __init__(self, optimizer: Optimizer, after: int, decay: float) -> None:
        self.after = int(after)
        self.decay = float(decay)
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> list[float]:
        return [b * self.decay ** max(0, epoch + 1 - self.after) for b in self.base_lrs]


# ---- batching ---------------------------------------------------------------------------------
class Limited:
    """At most ``n`` items of a re-iterable per iteration (None: all); keeps ``len`` and
    ``set_epoch`` of the wrapped object."""

    def __init__(self, batches: Any, n: int | None) -> None:
        self.batches = batches
        self.n = n

    def __len__(self) -> int:
        total = len(self.batches)
        return total if self.n is None else min(total, self.n)

    def __iter__(self) -> Iterator[Any]:
        return itertools.islice(iter(self.batches), self.n)

    def set_epoch(self, epoch: int) -> None:
        set_epoch = getattr(self.batches, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)


class SampledBatches:
    """Batches of examples of similar length: indices from a :class:`BucketBatchSampler` turned
    into arrays by ``collate(indices)``. Re-iterable; shuffled per epoch when training.

    Args:
        lengths: length of every example.
        batch_size: examples per batch.
        collate: indices int64 [b] -> batch.
        shuffle: shuffle (training) or sort by length (evaluation).
        seed: seed of the shuffling.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        collate: Callable[[np.ndarray], Any],
        *,
        shuffle: bool,
        seed: int = 0,
    ) -> None:
        self.sampler = BucketBatchSampler(lengths, batch_size, shuffle=shuffle, seed=seed)
        self.collate = collate
        self.part = (0, 1)  # (rank, ranks): which slice of every batch this process takes

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def shard(self, rank: int, size: int) -> SampledBatches:
        """The same batches cut for data parallelism: rank ``rank`` of ``size`` collates only its
        contiguous slice of every batch's indices (:func:`rnncore.distributed.local_slice`), and
        gets None for a batch whose slice is empty. Every rank draws the same global batches
        (same seed and epoch), so the slices of one step are disjoint and cover the batch."""
        part = copy.copy(self)
        part.part = (int(rank), int(size))
        return part

    def __iter__(self) -> Iterator[Any]:
        if not self.sampler.shuffle:
            self.sampler.set_epoch(0)
        rank, size = self.part
        if size == 1:
            return (self.collate(idx) for idx in self.sampler)
        return self._slices(rank, size)

    def _slices(self, rank: int, size: int) -> Iterator[Any]:
        try:
            for idx in self.sampler:
                part = dist.local_slice(len(idx), rank, size)
                # random masks are keyed by an example's index in the global batch
                nn.set_batch_offset(part.start)
                yield self.collate(idx[part]) if part.stop > part.start else None
        finally:
            nn.set_batch_offset(0)


def holdout_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices): a seeded random ``fraction`` of range(n) held out."""
    perm = np.random.default_rng([seed, 12345]).permutation(n)
    k = max(1, int(round(n * fraction)))
    if k >= n:
        raise TaskError(f"cannot hold out {k} of {n} examples for validation")
    return np.sort(perm[k:]), np.sort(perm[:k])


# ---- training driver --------------------------------------------------------------------------
def to_json_ready(v: Any) -> Any:
    """``v`` with tuples as lists, numpy scalars as Python numbers, NaN/inf as None, paths as
    str (for strict JSON)."""
    if isinstance(v, dict):
        return {str(k): to_json_ready(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_json_ready(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, Path):
        return os.fspath(v)
    return v


def write_json(path: Path, obj: Any) -> None:
    """Write strict JSON (NaN/inf as null) atomically (rank 0 only in a distributed run)."""
    if not writes():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(
        json.dumps(to_json_ready(obj), indent=1, allow_nan=False) + "\n", encoding="utf-8"
    )
    os.replace(tmp, path)


def options(args: argparse.Namespace) -> dict[str, Any]:
    """The command-line options as a JSON-ready dict (no internal entries)."""
    return {
        k: v
        for k, v in vars(args).items()
        if not k.startswith("_") and k not in ("command", "task") and not callable(v)
    }


#: Options a --resume may change: how long the run goes on and how it reports, not what it
#: trains (and --data, a folder that may have moved).
RESUMABLE_CHANGES = frozenset(
    {
        "epochs",
        "threads",
        "progress",
        "resume",
        "overwrite",
        "log_every",
        "log_interval",
        "plot",
        "patience",
        "max_batches",
        "max_eval_batches",
        "distributed",
        "data",
        "out",
    }
)


def check_resume_options(checkpoint: Path, args: argparse.Namespace) -> None:
    """--resume continues a run with its own options: refuse ones that change what it trains
    (the restored optimizer would silently keep the run's learning rate; a model option would fail
    to load, naming no option). The run's options are in its checkpoints' ``extra``."""
    from ..train import _jsonable
    from ..train.checkpoint import _read_meta

    try:
        saved = _jsonable.decode(_read_meta(checkpoint).get("extra") or {}).get("cli_options")
    except Exception:  # noqa: BLE001  (the resume itself reports a damaged checkpoint)
        return
    if not isinstance(saved, Mapping):
        return  # a run from before the options were kept
    now = json.loads(json.dumps(options(args), default=str))
    changed = [
        k
        for k in sorted(set(saved) | set(now))
        if k not in RESUMABLE_CHANGES and saved.get(k) != now.get(k)
    ]
    if changed:
        listed = ", ".join(
            f"--{k.replace('_', '-')} {now.get(k)!r} (the run's: {saved.get(k)!r})" for k in changed
        )
        raise TaskError(
            f"--resume continues the run with its own options, and these differ: {listed}; "
            "drop them, or start a new run (--overwrite, or another --out)"
        )


def train_and_report(
    args: argparse.Namespace,
    model: Any,
    train_batches: Any,
    val_batches: Any,
    test_batches: Any,
    *,
    optimizer: Optimizer,
    scheduler: Any = None,
    monitor: str = "loss",
    mode: str = "min",
    vocab: Any = None,
    vocabs: dict[str, Any] | None = None,
    extra: dict[str, Any],
    data_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train with the Trainer, evaluate the best epoch's model, write DIR/metrics.json.

    Validation picks the best epoch (``monitor``/``mode``); its weights are reloaded for the
    final validation and test numbers.

    In a distributed run (see the module docstring) this is where every task's batches are cut:
    each rank takes its slice of every training, validation and test batch
    (:func:`rnncore.distributed.shard_batches`); the Trainer sums gradients and metrics over
    the ranks, and rank 0 alone reads and writes DIR.

    Returns:
        The metrics.json content.
    """
    from ..train import Trainer, load_checkpoint, resolve_checkpoint

    world = dist.init(None if getattr(args, "distributed", True) else False)
    out = Path(args.out)
    if writes() and out.exists() and not out.is_dir():
        raise TaskError(f"--out {out} exists and is not a directory")
    check_reporting(args)
    resuming = bool(getattr(args, "resume", False))
    if writes():
        out.mkdir(parents=True, exist_ok=True)
        if not resuming:
            (out / "train.log").unlink(missing_ok=True)  # a fresh run starts a fresh log
    notes, embeddings_data = _embeddings_notes(args)
    for line in notes:
        log_line(out, line)
    if world.size > 1:
        log_line(out, f"data parallel over {world.size} ranks ({world.library})")
    ckpt_dir = out / "checkpoint"
    n_eval = args.max_eval_batches

    def part(batches: Any, n: int | None) -> Any:
        return None if batches is None else Limited(dist.shard_batches(batches, world), n)

    val, test = part(val_batches, n_eval), part(test_batches, n_eval)
    extra = dict(extra, cli_options=json.loads(json.dumps(options(args), default=str)))
    trainer = Trainer(
        model,
        optimizer,
        scheduler=scheduler,
        epochs=args.epochs,
        clip_grad_norm=args.clip if args.clip > 0 else None,
        early_stopping_patience=args.patience,
        monitor=monitor,
        mode=mode,
        checkpoint_dir=ckpt_dir,
        metrics_path=out / "history.json",
        progress=args.progress,
        seed=args.seed,
        log=lambda line: log_line(out, line),
        log_every=getattr(args, "log_every", None),
        log_interval=getattr(args, "log_interval", 30.0) or None,
        plot_path=out / "curves.png" if getattr(args, "plot", False) else None,
        vocab=vocab,
        vocabs=vocabs,
        extra=extra,
        distributed=world.size > 1,
    )
    resume = None
    if resuming and not writes():
        resume = ckpt_dir / "last"  # rank 0 reads it and sends it on
    elif resuming:
        try:  # also the backup a run killed between the two renames of a save leaves
            resume = resolve_checkpoint(ckpt_dir / "last", prefer=())
        except FileNotFoundError:
            raise TaskError(
                f"--resume: no checkpoint to continue from at {ckpt_dir / 'last'}"
            ) from None
        check_resume_options(resume, args)
    start = time.perf_counter()
    history = trainer.fit(part(train_batches, args.max_batches), val, resume_from=resume)
    train_seconds = time.perf_counter() - start
    if writes() and (ckpt_dir / "best").is_dir():
        load_checkpoint(ckpt_dir / "best", model=model, restore_rng=False)
    dist.broadcast_parameters(model, world)  # the best weights, from rank 0's files
    valid_metrics = trainer.evaluate(val) if val is not None else None
    test_metrics = trainer.evaluate(test) if test is not None else None
    result = {
        "task": extra["task"],
        "valid": valid_metrics,
        "test": test_metrics,
        "epochs": trainer.epoch,
        "best_epoch": trainer.best_epoch,
        "stopped_early": trainer.stopped_early,
        "wall_seconds": time.perf_counter() - start,
        "train_seconds": train_seconds,
        "seconds_per_epoch": train_seconds / max(trainer.epoch, 1),
        "parameters": int(sum(p.data.size for p in model.parameters())),
        "model_type": model.MODEL_TYPE,
        "model_config": model.config(),
        "data": {**(data_info or {}), **embeddings_data},
        "options": options(args),
        "checkpoint": os.fspath(ckpt_dir / "best" if (ckpt_dir / "best").is_dir() else ckpt_dir),
        "world_size": world.size,
        "history": history,
    }
    write_json(out / "metrics.json", result)
    log_line(out, f"valid: {_fmt(valid_metrics)}")
    log_line(out, f"test:  {_fmt(test_metrics)}")
    log_line(out, f"wrote {out / 'metrics.json'} and {ckpt_dir}")
    return result


#: tasks without gradients to share (counting n-grams): under mpiexec, rank 0 runs them alone
SINGLE_PROCESS_TASKS = ("ngram",)


def run_train(args: argparse.Namespace) -> None:
    """`rnncore train TASK`: check the reporting options and --out, then run the task.

    Under mpiexec with several ranks (and without --no-distributed) the run is data parallel,
    with rank 0 alone checking and writing DIR, and each rank on an equal share of its machine's
    cores unless --threads or $RNNCORE_NUM_THREADS says otherwise. An error on any rank ends the
    whole job at once instead of leaving the others waiting: the rank prints it, naming itself,
    and aborts every rank (exit status 2 for the user errors of :func:`user_errors`, 1 for
    anything else, with the traceback).
    """
    from .. import set_num_threads
    from . import load

    module = load(args.task)
    try:
        world = dist.init() if getattr(args, "distributed", True) else dist.World()
    except ImportError as e:  # every rank fails alike here, before MPI runs: no one waits
        raise TaskError(f"{e}; or pass --no-distributed to train alone in each process") from None
    except ValueError as e:  # a malformed $RNNCORE_DISTRIBUTED
        raise TaskError(str(e)) from None
    if world.size == 1:
        check_reporting(args)  # before --overwrite sets anything aside
        aside = check_out_dir(args)
        finished = False
        try:
            _run_task(module, args)
            finished = True
        finally:
            settle_out_dir(args, aside, finished)
        return
    where = f"rank {world.rank} of {world.size}"
    try:
        if getattr(args, "threads", None) is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
            set_num_threads(max(1, (cores or os.cpu_count() or 1) // world.local_size))
        check_reporting(args)
        aside = check_out_dir(args) if world.rank == 0 else None
        finished = False
        try:
            if world.rank == 0 or args.task not in SINGLE_PROCESS_TASKS:
                _run_task(module, args)
            dist.finish(world)  # the others may still evaluate or write: leave together
            finished = True
        finally:
            settle_out_dir(args, aside, finished)
    except user_errors() as e:
        _abort(world, f"rnncore: error ({where}): {e}", 2)
    except KeyboardInterrupt:
        _abort(world, f"rnncore: interrupted ({where})", 130)
    except BaseException as e:  # a bug or a crash: the traceback, and no rank left waiting
        text = traceback.format_exc()
        _abort(world, f"{text}rnncore: {type(e).__name__} on {where}: {e}; aborting the job", 1)


def _run_task(module: Any, args: argparse.Namespace) -> None:
    """``module.run(args)``, a diverged training reported in the command line's terms."""
    from ..train import TrainingDiverged

    try:
        module.run(args)
    except TrainingDiverged as e:
        what = str(e).split("; lower", 1)[0].removeprefix("Trainer: ")
        raise TaskError(f"{what}; lower --lr, or clip the gradients with --clip") from None


def _abort(world: dist.World, message: str, code: int) -> None:
    print(message, file=sys.stderr, flush=True)
    world.abort(code)


def _fmt(metrics: dict[str, float] | None) -> str:
    if not metrics:
        return "(none)"
    return "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())


# ---- eval / sample / predict ------------------------------------------------------------------
def open_model_dir(path: str) -> tuple[Any, Any]:
    """(checkpoint, task module) for a directory written by ``rnncore train`` (its best
    checkpoint, else the last) or a checkpoint directory itself."""
    from ..train import load_checkpoint
    from . import TASK_MODULES, load

    p = Path(path)
    if not p.exists():
        raise TaskError(f"model directory not found: {p}")
    ckpt = load_checkpoint(p / "checkpoint" if (p / "checkpoint").is_dir() else p)
    task = (ckpt.extra or {}).get("task")
    if task not in TASK_MODULES:
        raise TaskError(
            f"{ckpt.path}: the checkpoint names no known task (extra.task = {task!r}); it was not "
            "written by `rnncore train`"
        )
    ckpt.model.eval()
    return ckpt, load(task)


def _need(module: Any, fn: str, command: str, task: str) -> Callable[..., Any]:
    f = getattr(module, fn, None)
    if f is None:
        raise TaskError(f"`rnncore {command}` does not apply to a {task} model")
    return f


def add_use_commands(sub: Any) -> None:
    """The subcommands eval, sample and predict (on a trained model's directory)."""
    fmt = HelpFormatter
    ev = sub.add_parser(
        "eval",
        help="evaluate a trained model on a dataset",
        description="Evaluate the model in DIR (written by `rnncore train`) on the data at PATH, "
        "in the task's format: a folder gives its validation and test splits, a single file is "
        "evaluated whole. Prints the metrics as JSON.",
        formatter_class=fmt,
    )
    ev.add_argument("dir", metavar="DIR", help="output directory of `rnncore train`")
    ev.add_argument("--data", required=True, metavar="PATH", help="dataset folder or file")
    ev.add_argument(
        "--batch-size",
        type=int,
        default=None,
        metavar="N",
        help="batch size (default: language models the validation batch size, others 32)",
    )
    mix = ev.add_argument_group(
        "interpolation with an n-gram (word language models)",
        "p = L·p_rnn + (1-L)·p_ngram per token on every token of the valid and test files "
        "(<eos> included; the RNN reads each file with batch size 1 after a start <eos>, the "
        "n-gram each sentence from <eos>); prints the perplexities of the RNN, the n-gram and "
        "the mix as JSON and writes them to --out",
    )
    mix.add_argument(
        "--interpolate",
        metavar="NGRAM_DIR",
        default=None,
        help="output directory of `rnncore train ngram` on the same training data",
    )
    mix.add_argument(
        "--weight",
        type=float,
        default=None,
        metavar="L",
        help="the RNN's weight in [0, 1] (default: the best of 0, 0.05, ..., 1 on the "
        "validation file)",
    )
    mix.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help="JSON file of the result (default: DIR/interpolation.json)",
    )
    sa = sub.add_parser(
        "sample",
        help="generate text from a trained language model",
        description="Continue PROMPT with text sampled from the language model in DIR.",
        formatter_class=fmt,
    )
    sa.add_argument("dir", metavar="DIR", help="output directory of `rnncore train lm|charlm`")
    sa.add_argument(
        "--prompt",
        default="",
        metavar="TEXT",
        help="text to continue (empty: start a fresh sentence / line)",
    )
    sa.add_argument(
        "--length", type=int, default=100, metavar="N", help="tokens (words or characters)"
    )
    sa.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        metavar="T",
        help="sampling temperature (lower: more conservative; 0: always the likeliest)",
    )
    sa.add_argument(
        "--top-k", type=int, default=None, metavar="K", help="sample among the K likeliest only"
    )
    sa.add_argument("--seed", type=seed_value, default=None, metavar="N", help="random seed")
    pr = sub.add_parser(
        "predict",
        help="label a sentence with a trained classifier or tagger",
        description="Print the sentiment of TEXT (sentiment models) or its tags (tagger models).",
        formatter_class=fmt,
    )
    pr.add_argument("dir", metavar="DIR", help="output directory of `rnncore train`")
    pr.add_argument(
        "text",
        metavar="TEXT",
        help="the sentence, or - to read sentences from standard input (one per line; one "
        "output line per input line, empty for an empty line)",
    )
    for p in (ev, sa, pr):
        add_threads_argument(p)
    # Not on sample: it feeds one token per call, and int8 quantizes the weights on every call
    # (~0.1 ms for a 256-unit LSTM), which costs more than a float32 step saves.
    for p in (ev, pr):
        p.add_argument(
            "--int8",
            action="store_true",
            help="multiply by the recurrent layers' weights in int8 (int8_inference: 3-4x "
            "faster at batch 1 over whole sequences, outputs within the quantization error; "
            "float32 models without layer norm)",
        )


USE_COMMANDS = ("eval", "sample", "predict")


def run_use_command(args: argparse.Namespace) -> int:
    """Run eval / sample / predict; prints the result on stdout."""
    if args.command == "eval":
        check_eval(args)  # before the model is read
    from . import ngram

    if ngram.is_run(args.dir):  # counts, not a checkpoint
        if args.command != "eval":
            raise TaskError(
                f"`rnncore {args.command}` does not apply to an n-gram model ({args.dir}); "
                "`rnncore eval` does"
            )
        if getattr(args, "int8", False):
            raise TaskError(f"--int8 applies to recurrent models, not an n-gram ({args.dir})")
        print(json.dumps(to_json_ready(ngram.evaluate_run(args)), indent=1))
        return 0
    ckpt, module = open_model_dir(args.dir)
    task = ckpt.extra["task"]
    if getattr(args, "int8", False):
        try:
            ckpt.model.int8_inference_()
        except ValueError as e:
            raise TaskError(f"--int8: {e}") from None
    if args.command == "eval":
        if args.interpolate is not None:
            run = _need(module, "interpolate", "eval --interpolate", task)
        else:
            run = _need(module, "evaluate", "eval", task)
        print(json.dumps(to_json_ready(run(ckpt, args)), indent=1))
    elif args.command == "sample":
        if args.length < 0:
            raise TaskError(f"--length must be >= 0, got {args.length}")
        if not (args.temperature >= 0 and math.isfinite(args.temperature)):
            raise TaskError(f"--temperature must be finite and >= 0, got {args.temperature}")
        if args.top_k is not None and args.top_k < 1:
            raise TaskError(f"--top-k must be >= 1, got {args.top_k}")
        print(_need(module, "sample", "sample", task)(ckpt, args))
    else:
        predict = _need(module, "predict", "predict", task)
        if args.text != "-":
            print(predict(ckpt, args))
            return 0
        for line in sys.stdin:  # one output line per input line, as soon as it is read
            text = line.strip()
            one = argparse.Namespace(**{**vars(args), "text": text})
            print(predict(ckpt, one) if text else "", flush=True)
    return 0


def check_eval(args: argparse.Namespace) -> None:
    """The options of `rnncore eval`, checked: TaskError naming the one that is wrong."""
    if args.batch_size is not None and args.batch_size < 1:
        raise TaskError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.interpolate is None:
        for name in ("weight", "out"):
            if getattr(args, name) is not None:
                raise TaskError(f"--{name} applies only with --interpolate NGRAM_DIR")
        return
    if args.weight is not None and not 0.0 <= args.weight <= 1.0:
        raise TaskError(f"--weight must be in [0, 1] (the RNN's share), got {args.weight}")
    if args.batch_size is not None:
        raise TaskError(
            "--batch-size does not apply with --interpolate: the RNN reads each file as one "
            "stream (batch size 1) so that every token counts"
        )


def evaluate_splits(model: Any, splits: dict[str, Iterable[Any]]) -> dict[str, dict[str, float]]:
    """{split name: metrics} of ``model`` on each split's batches (as the Trainer evaluates)."""
    from ..train import Trainer

    trainer = Trainer(
        model, optim.SGD(model.parameters(), lr=1.0), progress=False, log=None, distributed=False
    )
    return {name: trainer.evaluate(batches) for name, batches in splits.items()}


def warn(message: str) -> None:
    """Print ``rnncore: warning: message`` on stderr (rank 0 only in a distributed run)."""
    if writes():
        print(f"rnncore: warning: {message}", file=sys.stderr)
