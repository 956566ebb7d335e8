"""The package version, kept in one place (matches pyproject.toml)."""

__version__ = "0.1.0"
