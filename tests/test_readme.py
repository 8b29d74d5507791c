"""The README's Python blocks run as they stand, on the install they name: the base install (the
five runtime packages), so the optional extras are hidden from them here."""

import re
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
EXTRAS = ("matplotlib", "onnx", "onnxruntime", "mpi4py", "torch")  # what the base install does not have


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_the_readme_has_python_blocks():
    assert len(python_blocks()) >= 1


@pytest.mark.parametrize("block", python_blocks())
def test_a_readme_python_block_runs_on_the_base_install(block, tmp_path, monkeypatch):
    for name in EXTRAS:
        monkeypatch.setitem(sys.modules, name, None)  # importing it raises ImportError, as if not installed
    monkeypatch.chdir(tmp_path)
    corpora = tmp_path / "corpora"
    corpora.mkdir()
    lines = ["ROMEO:", "To be, or not to be, that is the question.", "The king and the man and the woman."]
    text = "\n".join(lines[i % 3] + f" line {i % 7} of the play." for i in range(600)) + "\n"
    (corpora / "tinyshakespeare.txt").write_text(text, encoding="utf-8")
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)  # noqa: S102 (our own README, the point of the test)
    assert (tmp_path / "model-torch" / "model.safetensors").is_file()  # it ran to its last lines
