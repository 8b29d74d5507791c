"""lstmtext: a command-line next-word text trainer, a NumPy LSTM language model you can read.

The Python API (README "Python API"): lstmtext.train(...) -> Run, lstmtext.load(path) -> Model."""

__version__ = "0.1.0"

API = ("Exported", "Model", "Run", "load", "train")
__all__ = [*API, "__version__"]


def __getattr__(name: str):
    """The API is imported when first used (PEP 562), so `import lstmtext.malloc` and the like stay
    as light as their own imports."""
    if name in API:
        from lstmtext import api

        return getattr(api, name)
    raise AttributeError(f"module 'lstmtext' has no attribute {name!r}")
