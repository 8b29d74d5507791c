"""lstmtext: a command-line next-word text trainer, a NumPy LSTM language model you can read.

The Python API (see README "Python API"): lstmtext.train(...) -> Run, lstmtext.load(path) -> Model."""

__version__ = "0.1.0"

from lstmtext.api import Model, Run, load, train  # noqa: E402 -- after __version__, which they import

__all__ = ["Model", "Run", "__version__", "load", "train"]
