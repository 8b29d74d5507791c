"""The Python blocks of the README and of docs/ run as they stand, on the install they name: the
base install (the five runtime packages), so the optional extras are hidden from them here."""

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXTRAS = ("matplotlib", "onnx", "onnxruntime", "mpi4py", "torch")  # what the base install does not have


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), flags=re.S | re.M)


BLOCKS = [pytest.param(b, id=f"{page.name}-{i}") for page in PAGES for i, b in enumerate(python_blocks(page))]


def test_the_readme_and_the_api_page_have_python_blocks():
    assert python_blocks(ROOT / "README.md") and python_blocks(ROOT / "docs" / "api.md")


@pytest.mark.parametrize("block", BLOCKS)
def test_a_python_block_runs_on_the_base_install(block, tmp_path, monkeypatch):
    for name in EXTRAS:
        monkeypatch.setitem(sys.modules, name, None)  # importing it raises ImportError, as if not installed
    monkeypatch.chdir(tmp_path)
    corpora = tmp_path / "corpora"
    corpora.mkdir()
    lines = ["ROMEO:", "To be, or not to be, that is the question.", "The king and the man and the woman."]
    text = "\n".join(lines[i % 3] + f" line {i % 7} of the play." for i in range(600)) + "\n"
    (corpora / "tinyshakespeare.txt").write_text(text, encoding="utf-8")
    scope: dict = {}
    exec(compile(block + "\nran_to_the_end = True\n", "README.md", "exec"), scope)  # noqa: S102 (our own docs: the point)
    assert scope.get("ran_to_the_end")
