"""The lecture notebook (notebooks/lstm_lecture.py) runs top to bottom with CI's small budgets. Each of
its worked numbers is an assert, so a changed cell or a changed lstmtext function fails here."""

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a kernel of its own and four short trainings: about a minute and a quarter

RUNNER = Path(__file__).resolve().parents[1] / "notebooks" / "run.py"


def test_the_lecture_notebook_runs_and_its_numbers_hold(tmp_path):
    spec = importlib.util.spec_from_file_location("notebook_run", RUNNER)
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    out = tmp_path / "lecture.ipynb"
    runner.run(out, quick=True)  # raises on the first failing cell, with its traceback
    cells = json.loads(out.read_text())["cells"]
    pictures = [o for c in cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(pictures) == 5  # every plot drew: the Jacobians, σ and tanh, memory, gradients, a unit
    assert not [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
