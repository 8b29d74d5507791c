"""The paper reproductions in the Makefile give on their command lines every option whose default
issue #28 changed, so that the defaults can serve users without moving a paper's number.

make runs each target as it is, with a stand-in `lstmtext` that writes down its arguments; click,
through lstmtext's own command line, says which options those arguments set."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command

from lstmtext.cli import app

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.recipes import OLD  # noqa: E402  the defaults before issue #28, as flags

# What the old defaults set, but the budget: each reproduction sets its own.
CHANGED = {flag.removeprefix("--").replace("-", "_") for flag in shlex.split(OLD) if flag.startswith("--")} - {"epochs"}

STAND_IN = """#!/bin/sh
# lstmtext, standing in: record the arguments, do nothing
"{python}" -c 'import json, sys; open(sys.argv[1], "a").write(json.dumps(sys.argv[2:]) + "\\n")' "{log}" "$@"
"""


def calls(tmp_path: Path, target: str, **variables: str) -> list[list[str]]:
    """-> the argument lists of every `lstmtext` call `make TARGET` makes, in order."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    log = tmp_path / "calls.jsonl"
    fake = venv / "bin" / "lstmtext"
    fake.write_text(STAND_IN.format(python=sys.executable, log=log))
    fake.chmod(0o755)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / ".installed").touch()  # newer than pyproject.toml and the Makefile: make installs nothing
    args = [f"VENV={venv}", *(f"{k}={v}" for k, v in variables.items())]
    proc = subprocess.run(["make", "-s", "-C", str(ROOT), target, *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in log.read_text().splitlines()]


def options_set(args: list[str]) -> dict:
    """`lstmtext train ARGS` -> {option: value} for the options ARGS set (not left to a default)."""
    assert args[0] == "train", args
    ctx = get_command(app).commands["train"].make_context("train", args[1:], resilient_parsing=True)
    return {k: v for k, v in ctx.params.items() if ctx.get_parameter_source(k).name == "COMMANDLINE"}


def check_explicit(args: list[str]) -> None:
    given = options_set(args)
    missing = CHANGED - set(given)
    if given.get("tokenizer") == "bpe":
        missing |= {"vocab_size"} - set(given)  # chosen from the text since #28 (words and characters kept their cap)
    assert not missing, f"`lstmtext {shlex.join(args)}` leaves {sorted(missing)} to the defaults"


@pytest.fixture
def ptb(tmp_path):
    return tmp_path / "ptb"  # never read: the stand-in reads nothing


@pytest.mark.parametrize("target", ["reproduce-ptb", "reproduce-ptb-stretch"])
def test_ptb_recipes_set_every_option_the_defaults_changed(tmp_path, ptb, target):
    seen = calls(tmp_path, target, PTB=ptb, PTB_RUN=tmp_path / "run", PTB_STRETCH_RUN=tmp_path / "run")
    trains = [c for c in seen if c[0] == "train"]
    assert len(trains) == 1 and [c[0] for c in seen] == ["train", "eval"]
    check_explicit(trains[0])
    assert options_set(trains[0])["optimizer"] == "sgd"  # Zaremba et al.'s, not the default's Adam


def test_war_and_peace_recipes_set_every_option_the_defaults_changed(tmp_path):
    wp = tmp_path / "wp"
    wp.mkdir()
    (wp / "input.txt").write_text("Well, Prince, so Genoa and Lucca are now just family estates.\n" * 20)
    seen = calls(tmp_path, "reproduce-wp", WP=wp, WP_RUN=tmp_path / "run")
    trains = [c for c in seen if c[0] == "train"]
    assert [options_set(c)["cell"] for c in trains] == ["lstm", "gru", "rnn"]
    for args in trains:
        check_explicit(args)


def test_the_check_finds_an_option_left_to_the_defaults():
    args = ["train", "corpus.txt", *shlex.split(OLD)]
    check_explicit(args)
    without_init = [a for a in args if a not in ("--init", "uniform")]
    with pytest.raises(AssertionError, match="'init'"):
        check_explicit(without_init)
