"""lstmtext: a command-line next-word text trainer, a NumPy LSTM language model you can read.

The Python API (docs/api.md "Python API"): lstmtext.train(...) -> Run, lstmtext.load(path) -> Model."""

from typing import TYPE_CHECKING

from lstmtext.version import __version__

if TYPE_CHECKING:  # what __getattr__ hands out, for type checkers and editors
    from lstmtext.api import Exported as Exported
    from lstmtext.api import Inspection as Inspection
    from lstmtext.api import Model as Model
    from lstmtext.api import Run as Run
    from lstmtext.api import inspect as inspect
    from lstmtext.api import load as load
    from lstmtext.api import train as train

API = ("Exported", "Inspection", "Model", "Run", "inspect", "load", "train")
__all__ = [*API, "__version__"]


def __getattr__(name: str):
    """The API is imported when first used (PEP 562), so `import lstmtext.malloc` and the like stay
    as light as their own imports."""
    if name in API:
        from lstmtext import api

        return getattr(api, name)
    raise AttributeError(f"module 'lstmtext' has no attribute {name!r}")
