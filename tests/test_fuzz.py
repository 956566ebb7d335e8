"""Fuzzing the Python checkpoint loader on the committed seed corpus (tests/fuzz), for a fixed
budget of mutants per run: every damaged checkpoint is a CheckpointError or loads."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))

import checkpoint_fuzz  # noqa: E402


def test_damaged_checkpoints_raise_checkpoint_error_only():
    counts = checkpoint_fuzz.run_python(seed=2026, n=2000)
    # The mutations must mostly damage something, and some must still load (benign fields).
    assert counts["CheckpointError"] > 1000 and counts["loaded"] > 100, counts


def test_corpus_is_present_and_loads():
    from rnncore.train import load_checkpoint

    names = sorted(p.name for p in checkpoint_fuzz.CORPUS.iterdir())
    assert names == ["classifier", "lm_rnn", "lm_tied"]
    for name in names:
        assert load_checkpoint(checkpoint_fuzz.CORPUS / name).model is not None
