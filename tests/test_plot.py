"""`lstmtext plot`: curves of runs into a PNG or SVG, and one clear line for what it cannot do."""

import sys

from test_cli import TINY, invoke, make_corpus

from lstmtext import plot


def trained(tmp_path, name):
    out = tmp_path / name
    r = invoke(["train", make_corpus(tmp_path / f"{name}.txt"), "--out", out, *TINY, "--max-steps", "12",
                "--eval-every", "4", "--epochs", "0"])
    assert r.exit_code == 0, r.output
    return out


def test_plot_two_runs_png_and_svg(tmp_path):
    a, b = trained(tmp_path, "lstm-a"), trained(tmp_path, "lstm-b")
    curves = plot.load_curves(a)
    assert len(curves.train_step) >= 5 and len(curves.valid_step) >= 3
    # Validation lines have no clock: their time is read off the training log, so it rises with step.
    assert (curves.valid_time[1:] >= curves.valid_time[:-1]).all() and curves.valid_time[-1] > 0
    png = tmp_path / "c.png"
    r = invoke(["plot", a, b, "--out", png])
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "2 runs: lstm-a, lstm-b" in r.output
    svg = tmp_path / "c.svg"
    assert invoke(["plot", a, b, "--out", svg]).exit_code == 0
    text = svg.read_text(encoding="utf-8")
    assert text.lstrip().startswith("<?xml") and "lstm-a valid" in text and "lstm-b train" in text


def test_same_names_get_more_of_their_path(tmp_path):
    runs = [tmp_path / "x" / "run", tmp_path / "y" / "run"]
    assert plot.names_for(runs) == ["x/run", "y/run"]


def test_plot_errors_are_one_line(tmp_path, monkeypatch):
    a = trained(tmp_path, "r")
    r = invoke(["plot", a, "--out", tmp_path / "c.pdf"])
    assert r.exit_code == 1 and "--out must end in .png or .svg" in r.stderr and "Traceback" not in r.output
    r = invoke(["plot", tmp_path, "--out", tmp_path / "c.png"])
    assert r.exit_code == 1 and "has no metrics.jsonl" in r.stderr
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the extra were not installed
    r = invoke(["plot", a, "--out", tmp_path / "c.png"])
    assert r.exit_code == 1 and "pip install 'lstmtext[plot]'" in r.stderr and "Traceback" not in r.output
