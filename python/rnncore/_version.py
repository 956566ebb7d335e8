"""The package version: pyproject.toml is the one place it is written (CMake reads it too)."""

from importlib import metadata

try:
    __version__ = metadata.version("rnncore")
except metadata.PackageNotFoundError:  # a source tree on sys.path, never installed
    __version__ = "0+unknown"
