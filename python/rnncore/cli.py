"""The `rnncore` command line: demo, train TASK, eval, sample, predict, translate, export, serve."""

from __future__ import annotations

import argparse
import difflib
import os
import sys

from . import __version__, set_num_threads, tasks
from .tasks import _common as task_common  # eval, sample, predict


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `rnncore` command (subcommands: demo, train, ...)."""
    parser = argparse.ArgumentParser(
        prog="rnncore", description="Train, evaluate and use recurrent networks with rnncore."
    )
    parser.add_argument("--version", action="version", version=f"rnncore {__version__}")
    parser.add_argument(
        "--threads",
        type=task_common.threads_value,
        default=None,
        metavar="N",
        help=f"engine threads (default: ${THREADS_ENV}, else all cores); every subcommand "
        "takes --threads too",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    from . import demo

    demo_parser = sub.add_parser(
        "demo",
        help="train RNN, LSTM, GRU and IRNN on the adding problem and compare them",
        description=demo.DESCRIPTION,
    )
    demo.add_arguments(demo_parser)
    task_common.add_threads_argument(demo_parser)
    train = sub.add_parser("train", help="train a model for a task and write DIR/metrics.json")
    task_sub = train.add_subparsers(dest="task", required=True, metavar="TASK")
    for name in sorted(tasks.TASK_MODULES):
        mod = tasks.load(name)
        task_parser = task_sub.add_parser(
            name, help=mod.HELP, formatter_class=argparse.ArgumentDefaultsHelpFormatter
        )
        mod.add_arguments(task_parser)
    task_common.add_use_commands(sub)  # eval, sample, predict
    _add_translate(sub)
    _add_export(sub)
    _add_serve(sub)
    return parser


def _add_translate(sub: argparse._SubParsersAction) -> None:
    """`rnncore translate DIR TEXT` (issue 6): translate with a `rnncore train seq2seq` model."""
    tr = sub.add_parser(
        "translate",
        help="translate a sentence with a trained seq2seq model",
        description="Translate TEXT with the encoder-decoder in DIR (written by "
        "`rnncore train seq2seq`), normalised as its training data.",
    )
    tr.add_argument("dir", metavar="DIR", help="output directory of `rnncore train seq2seq`")
    tr.add_argument(
        "text",
        metavar="TEXT",
        help="the sentence to translate, or - to translate each line of standard input",
    )
    tr.add_argument(
        "--beam",
        type=int,
        default=None,
        metavar="K",
        help="beam width (default: the training run's --beam)",
    )
    tr.add_argument(
        "--max-len",
        type=int,
        default=None,
        metavar="N",
        help="at most N decoding steps (default: the training run's)",
    )
    task_common.add_threads_argument(tr)


def _translate(args: argparse.Namespace) -> int:
    from .tasks.seq2seq import translate_text

    ckpt, _ = task_common.open_model_dir(args.dir)
    if (ckpt.extra or {}).get("task") != "seq2seq":
        raise task_common.TaskError(
            f"{args.dir}: not a seq2seq model (task {(ckpt.extra or {}).get('task')!r})"
        )
    for name in ("beam", "max_len"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise task_common.TaskError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if args.text != "-":
        print(translate_text(ckpt, args.text, beam=args.beam, max_len=args.max_len))
        return 0
    for line in sys.stdin:  # one translation per input line (an empty line for an empty one)
        text = line.strip()
        out = translate_text(ckpt, text, beam=args.beam, max_len=args.max_len) if text else ""
        print(out, flush=True)
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    """`rnncore export DIR --onnx PATH` (issue 15): a trained model as ONNX graphs."""
    ex = sub.add_parser(
        "export",
        help='export a trained model to ONNX (needs: pip install "rnncore[onnx]")',
        description="Write the model in DIR (written by `rnncore train`) as an ONNX graph whose "
        "recurrent layers are ONNX's own RNN/LSTM/GRU operators. A seq2seq model writes two "
        "graphs beside PATH: NAME.encoder.onnx and the one-step NAME.decoder.onnx. Prints the "
        "files written.",
    )
    ex.add_argument("dir", metavar="DIR", help="output directory of `rnncore train`")
    ex.add_argument("--onnx", required=True, metavar="PATH", help="the .onnx file to write")
    task_common.add_threads_argument(ex)


def _export(args: argparse.Namespace) -> int:
    ckpt, _ = task_common.open_model_dir(args.dir)
    try:
        from . import onnx as rnncore_onnx

        paths = rnncore_onnx.export(ckpt.model, args.onnx)
    except (ImportError, TypeError, ValueError) as e:  # no onnx, a model or cell without export
        raise task_common.TaskError(str(e)) from None
    for p in paths:
        print(p)
    return 0


def serve_binary() -> str | None:
    """The rnncore_serve program installed with this package (bin/ next to it), or None."""
    from pathlib import Path

    exe = Path(__file__).resolve().parent / "bin" / "rnncore_serve"
    return str(exe) if exe.is_file() and os.access(exe, os.X_OK) else None


def openblas_library() -> str | None:
    """The path of the scipy-openblas32 library rnncore's Python side uses, or None."""
    try:
        import scipy_openblas32 as sob
    except ImportError:
        return None
    path = os.path.join(sob.get_lib_dir(), sob.get_library(True))
    return path if os.path.isfile(path) else None


def _add_serve(sub: argparse._SubParsersAction) -> None:
    """`rnncore serve DIR` (issue 17): the model in C++ answering JSON-lines requests."""
    sv = sub.add_parser(
        "serve",
        help="answer JSON-lines requests on stdin with a trained model, in C++ (rnncore_serve)",
        description="Runs rnncore_serve DIR: one JSON request per line on stdin, one JSON answer "
        'per line on stdout. Tagger {"tokens": [["John", "lives"]]}; seq2seq {"text": ["I am '
        'cold."], "beam": 3}; classifier {"text": [...]}; forecaster {"history": [[...]]}; '
        'language model {"prefix": [ids], "max_tokens": 20}. "id" is echoed back; a bad '
        'request gets {"error": ...}.',
    )
    sv.add_argument("dir", metavar="DIR", help="output directory of `rnncore train`")
    task_common.add_threads_argument(sv)
    sv.add_argument(
        "--int8",
        action="store_true",
        help="classifier and tagger models: the recurrent products in int8 (3-4x faster at "
        "batch 1, predictions within the quantization error)",
    )


def _serve(args: argparse.Namespace) -> int:
    exe = serve_binary()
    if exe is None:
        raise task_common.TaskError(
            "rnncore_serve is not installed with this rnncore (a source-tree or editable "
            "install): pip install . builds it, or cmake -DRNNCORE_BUILD_SERVE=ON"
        )
    argv = [exe, args.dir] + ([] if args.threads is None else ["--threads", str(args.threads)])
    if args.int8:
        argv.append("--int8")
    blas = openblas_library()
    if blas is not None:  # the C++ products on the OpenBLAS Python's rnncore uses
        argv += ["--blas", blas]
    sys.stdout.flush()
    os.execv(exe, argv)
    return 0  # not reached


THREADS_ENV = "RNNCORE_NUM_THREADS"


def resolve_threads(args: argparse.Namespace) -> int | None:
    """The engine threads the command asks for: ``--threads`` (of the subcommand, else the
    top-level one), else ``$RNNCORE_NUM_THREADS`` when set and not empty, else None (the
    engine's default, all cores).

    Raises:
        TaskError: the environment variable is not an integer >= 1 (named, with its value).
    """
    if args.threads is not None:
        return int(args.threads)
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return None
    try:
        return task_common.threads_value(raw)
    except argparse.ArgumentTypeError:
        raise task_common.TaskError(
            f"environment variable {THREADS_ENV} must be an integer >= 1 (engine threads), got "
            f"{raw!r}"
        ) from None


def _subcommand_parser(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.ArgumentParser:
    """The parser of the subcommand ``args`` names (train's TASK parser for `rnncore train
    TASK`), else ``parser``."""
    current = parser
    for name in (getattr(args, "command", None), getattr(args, "task", None)):
        subs = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        if not name or not subs or name not in subs[0].choices:
            break
        current = subs[0].choices[name]
    return current


def _unrecognized(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    """argparse's "unrecognized arguments" message, with the closest option name of
    ``parser`` for each misspelled one."""
    known = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    hints = []
    for arg in extras:
        if arg.startswith("--"):
            close = difflib.get_close_matches(arg.split("=", 1)[0], known, n=1, cutoff=0.6)
            if close:
                hints.append((arg.split("=", 1)[0], close[0]))
    msg = f"unrecognized arguments: {' '.join(extras)}"
    if len(hints) == 1:
        msg += f" (did you mean {hints[0][1]}?)"
    elif hints:
        msg += f" (did you mean {', '.join(f'{good} for {bad}' for bad, good in hints)}?)"
    return msg


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `rnncore` command; returns the exit status."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:  # a misspelled option: the usage of the subcommand it was given to, not rnncore's
        sub = _subcommand_parser(parser, args)
        sub.error(_unrecognized(sub, extras))
    try:
        args.threads = resolve_threads(args)
        if args.threads is not None:
            set_num_threads(args.threads)
        if args.command == "demo":
            from . import demo

            demo.main(args)
        elif args.command == "translate":
            return _translate(args)
        elif args.command == "export":
            return _export(args)
        elif args.command == "serve":
            return _serve(args)
        elif args.command == "train":  # data parallel under mpiexec
            task_common.run_train(args)
        elif args.command in task_common.USE_COMMANDS:
            return task_common.run_use_command(args)
    except task_common.user_errors() as e:
        # bad data files, options or checkpoints: one line naming the problem, no traceback
        print(f"rnncore: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
