"""Task registry of the command line: each module here adds one `rnncore train TASK`.

A task module defines ``NAME`` (the CLI word), ``HELP`` (one line), ``add_arguments(parser)``
(its options, with per-task defaults) and ``run(args) -> dict`` (train and evaluate, write
``args.out/metrics.json`` and a checkpoint, return the metrics). Modules are listed in
``TASK_MODULES`` and imported only when used, so a broken optional dependency of one task never
breaks the others.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# CLI word -> module under rnncore.tasks. Add a line here when adding a task module.
TASK_MODULES: dict[str, str] = {}
# issue 5: language models, sentiment, tagging
TASK_MODULES.update(lm="lm", charlm="charlm", sentiment="sentiment", tagger="tagger")
# issue 6: translation, captioning, forecasting and the long-range lesson
TASK_MODULES.update(
    seq2seq="seq2seq",
    caption="caption",
    forecast="forecast",
    adding="adding",
    copy="copy",
    seqdigits="seqdigits",
)
# the Kneser-Ney n-gram baseline of the word-level language model
TASK_MODULES.update(ngram="ngram")


def load(name: str) -> ModuleType:
    """Import the task module registered as ``name``."""
    if name not in TASK_MODULES:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(sorted(TASK_MODULES))}")
    return importlib.import_module(f"{__name__}.{TASK_MODULES[name]}")
