"""The `rnncore` command line: demo, train TASK, eval, sample, predict and translate."""

from __future__ import annotations

import argparse
import sys

from . import __version__, set_num_threads, tasks
from .tasks import _common as task_common  # eval, sample, predict


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `rnncore` command (subcommands: demo, train, ...)."""
    parser = argparse.ArgumentParser(
        prog="rnncore", description="Train, evaluate and use recurrent networks with rnncore."
    )
    parser.add_argument("--version", action="version", version=f"rnncore {__version__}")
    parser.add_argument("--threads", type=int, default=None, help="engine threads (default: all)")
    sub = parser.add_subparsers(dest="command", required=True)
    from . import demo

    demo.add_arguments(
        sub.add_parser(
            "demo",
            help="train RNN, LSTM, GRU and IRNN on the adding problem and compare them",
            description=demo.DESCRIPTION,
        )
    )
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
    tr.add_argument("text", metavar="TEXT", help="the sentence to translate")
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
    print(translate_text(ckpt, args.text, beam=args.beam, max_len=args.max_len))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `rnncore` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.threads is not None:
        set_num_threads(args.threads)
    try:
        if args.command == "demo":
            from . import demo

            demo.main(args)
        elif args.command == "translate":
            return _translate(args)
        elif args.command == "train":
            tasks.load(args.task).run(args)
        elif args.command in task_common.USE_COMMANDS:
            return task_common.run_use_command(args)
    except task_common.user_errors() as e:
        # bad data files, options or checkpoints: one line naming the problem, no traceback
        print(f"rnncore: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
