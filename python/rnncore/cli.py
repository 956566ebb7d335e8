"""The `rnncore` command line: `rnncore demo`, and `rnncore train TASK` for every registered task."""

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
    sub.add_parser("demo", help="train RNN, LSTM and GRU on the adding problem and compare them")
    train = sub.add_parser("train", help="train a model for a task and write DIR/metrics.json")
    task_sub = train.add_subparsers(dest="task", required=True, metavar="TASK")
    for name in sorted(tasks.TASK_MODULES):
        mod = tasks.load(name)
        task_parser = task_sub.add_parser(
            name, help=mod.HELP, formatter_class=argparse.ArgumentDefaultsHelpFormatter
        )
        mod.add_arguments(task_parser)
    task_common.add_use_commands(sub)  # eval, sample, predict
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `rnncore` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.threads is not None:
        set_num_threads(args.threads)
    try:
        if args.command == "demo":
            from .demo import run_demo

            run_demo()
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
