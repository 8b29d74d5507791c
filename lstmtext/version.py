"""The package's version, in a module of its own so that any module can import it without
importing the package's root (pyproject.toml reads it from here too)."""

__version__ = "0.1.0"
