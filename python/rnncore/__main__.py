"""`python -m rnncore` runs the command line; `python -m rnncore --cmake-dir` prints the folder of
the C++ CMake package files (for `-Drnncore_DIR=...`)."""

import sys


def _main() -> int:
    if sys.argv[1:] == ["--cmake-dir"]:
        from . import cmake_dir

        try:
            print(cmake_dir())
        except FileNotFoundError as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0
    from .cli import main

    return main()


sys.exit(_main())
