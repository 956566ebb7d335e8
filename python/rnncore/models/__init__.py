"""Models for the tasks of an RNN course, each a Module composed of rnncore.nn layers.

Every model class has ``MODEL_TYPE`` (its name in checkpoints) and ``config() -> dict`` (the
keyword arguments that rebuild it); ``register`` makes it loadable by name from a checkpoint.
"""

from __future__ import annotations

from typing import Any

MODEL_REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: make ``cls`` loadable from checkpoints under ``cls.MODEL_TYPE``."""
    MODEL_REGISTRY[cls.MODEL_TYPE] = cls
    return cls


def build(model_type: str, config: dict[str, Any]) -> Any:
    """Instantiate a registered model from its checkpoint config."""
    if model_type not in MODEL_REGISTRY:
        raise KeyError(f"unknown model type {model_type!r}; known: {sorted(MODEL_REGISTRY)}")
    return MODEL_REGISTRY[model_type](**config)


__all__ = ["MODEL_REGISTRY", "register", "build"]

# issue 6: encoder-decoder, captioning, forecasting and the long-range tasks
from .captioner import Captioner  # noqa: E402
from .forecaster import Forecaster  # noqa: E402
from .seq2seq import Seq2Seq  # noqa: E402
from .sequence_regressor import SequenceRegressor  # noqa: E402

__all__ += ["Captioner", "Forecaster", "Seq2Seq", "SequenceRegressor"]

# Task models of issue 5 (imported last: they use ``register`` above).
from .classifier import SequenceClassifier  # noqa: E402
from .cnn import KimCNN  # noqa: E402
from .language_model import LanguageModel  # noqa: E402
from .tagger import SequenceTagger  # noqa: E402

__all__ += ["KimCNN", "LanguageModel", "SequenceClassifier", "SequenceTagger"]
