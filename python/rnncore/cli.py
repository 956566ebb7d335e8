"""The `rnncore` command line: `rnncore demo` trains and evaluates models with no downloads."""

from __future__ import annotations

import argparse
import sys

from . import __version__, set_num_threads


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `rnncore` command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="rnncore", description=__doc__)
    parser.add_argument("--version", action="version", version=f"rnncore {__version__}")
    parser.add_argument("--threads", type=int, default=None, help="engine threads (default: all)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="train RNN, LSTM and GRU on the adding problem and compare them")
    args = parser.parse_args(argv)
    if args.threads is not None:
        set_num_threads(args.threads)
    if args.command == "demo":
        from .demo import run_demo

        run_demo()
    return 0


if __name__ == "__main__":
    sys.exit(main())
