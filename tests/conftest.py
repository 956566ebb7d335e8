"""pytest setup for the suites: rnn_helpers importable in any import mode; one warning filter."""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


def pytest_configure(config):
    # When a Hypothesis test fails, Hypothesis writes a patch with libcst, whose imports
    # (typing_inspect -> mypy_extensions) raise a DeprecationWarning. Under
    # filterwarnings = error that would turn a plain test failure into a pytest INTERNALERROR.
    config.addinivalue_line(
        "filterwarnings", "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
    )
