"""The command line end to end, in tmp_path, with tiny sizes: train -> generate -> eval, resume, and
every user mistake ending in one line and exit code 1."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from lstmtext import checkpoint
from lstmtext.cli import app

runner = CliRunner()
# --threads 1: runs are bit-for-bit reproducible only at a fixed thread count (OpenBLAS sums in
# another order at another count), and several tests compare runs to the last bit.
# --tokenizer word: these tests were written for word tokens (unknown words, spacing rules); bpe, the
# default, has tests of its own.
TINY = [
    "--embed", "8", "--hidden", "8", "--layers", "1", "--batch-size", "2", "--bptt", "5", "--log-every", "2",
    "--threads", "1", "--tokenizer", "word",
]


def make_corpus(path, lines=60, seed=0):
    rng = np.random.default_rng(seed)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "him", "her"]
    text = "\n".join(
        " ".join(rng.choice(words, size=rng.integers(3, 9))) + rng.choice([".", ",", "!"]) for _ in range(lines)
    )
    path.write_text(text + "\n", encoding="utf-8")
    return path


def invoke(args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def corpus(tmp_path):
    return make_corpus(tmp_path / "tiny.txt")


def test_train_generate_eval(tmp_path, corpus):
    out = tmp_path / "run"
    r = invoke(["train", corpus, "--out", out, "--max-steps", "12", "--epochs", "0", *TINY])
    assert r.exit_code == 0, r.output
    assert "holding out the last 10%" in r.output
    for name in ("last.safetensors", "best.safetensors", "metrics.jsonl", "valid.txt"):
        assert (out / name).exists(), name
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert {x["kind"] for x in lines} >= {"train", "valid", "end"}
    assert all(x["format_version"] == 1 for x in lines)
    r = invoke(["generate", out, "--prompt", "the cat", "--length", "15", "--seed", "3"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("the cat") and len(r.output.split()) > 3
    r = invoke(
        ["generate", out, "--num-samples", "3", "--length", "5", "--top-k", "3", "--top-p", "0.9", "--seed", "1"]
    )
    assert r.exit_code == 0 and r.output.count("--- sample") == 3, r.output
    r = invoke(["eval", out, out / "valid.txt", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["tokens"] > 0 and 1 < rep["perplexity"] < 1000 and rep["bits_per_byte"] > 0
    r = invoke(["eval", out, tmp_path / "nope.txt"])
    assert r.exit_code == 1 and r.stderr.startswith("error: ") and "nope.txt" in r.stderr


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_other_tokenizers_train_and_generate(tmp_path, corpus, kind):
    out = tmp_path / kind
    r = invoke(["train", corpus, "--out", out, *TINY, "--tokenizer", kind, "--vocab-size", "300", "--max-steps", "4"])
    assert r.exit_code == 0, r.output
    r = invoke(["generate", out, "--prompt", "日本 👍🏽 é", "--length", "10", "--seed", "0"])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("日本 👍🏽 é")
    if kind == "char":  # the corpus is ASCII: the prompt's other characters are unknown, and said so
        assert "never saw" in r.stderr and "'日'" in r.stderr


def whole_and_resumed(tmp_path, args: list, steps: str, first: str):
    """Train `args` for `steps` in one go (tmp_path/a) and for `first` steps then resumed to `steps`
    (tmp_path/b); assert every weight and optimizer array is the same to the bit. -> their last
    checkpoints and the whole run's output."""
    whole = invoke(["train", *args, "--out", tmp_path / "a", "--max-steps", steps])
    assert whole.exit_code == 0, whole.output
    assert invoke(["train", *args, "--out", tmp_path / "b", "--max-steps", first]).exit_code == 0
    r = invoke(["train", "--resume", tmp_path / "b", "--max-steps", steps])
    assert r.exit_code == 0, r.output
    a = checkpoint.load(tmp_path / "a" / "last.safetensors")
    b = checkpoint.load(tmp_path / "b" / "last.safetensors")
    assert a.progress["step"] == b.progress["step"]
    for arrays_a, arrays_b in ((a.params, b.params), (a.extra, b.extra)):
        assert arrays_a.keys() == arrays_b.keys()
        for k in arrays_a:
            assert np.array_equal(arrays_a[k], arrays_b[k]), k  # bit for bit
    return a, b, whole.output


def test_resume_equals_uninterrupted_run(tmp_path, corpus):
    # A resume that raises the budget stretches a cosine plan: constant lr keeps the two runs comparable.
    common = [corpus, *TINY, "--dropout", "0.3", "--optimizer", "adam", "--epochs", "0", "--seed", "5",
              "--schedule", "constant"]
    a, _, _ = whole_and_resumed(tmp_path, common, "14", "6")
    assert a.progress["step"] == 14

    def last(run):
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [json.loads(x) for x in lines if '"train"' in x][-1]

    assert last("a")["loss"] == last("b")["loss"]


def test_resume_across_epochs(tmp_path, corpus):
    common = [corpus, *TINY, "--seed", "2", "--schedule", "step", "--decay-after", "1"]  # lr set by the epoch alone
    assert invoke(["train", *common, "--out", tmp_path / "a", "--epochs", "2"]).exit_code == 0
    assert invoke(["train", *common, "--out", tmp_path / "b", "--epochs", "1"]).exit_code == 0
    assert invoke(["train", "--resume", tmp_path / "b", "--epochs", "2"]).exit_code == 0
    a = checkpoint.load(tmp_path / "a" / "last.safetensors")
    b = checkpoint.load(tmp_path / "b" / "last.safetensors")
    assert a.progress["epoch"] == b.progress["epoch"] == 3
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)


def test_seed_reproducible_bit_for_bit(tmp_path, corpus):
    for run in ("a", "b"):
        assert (
            invoke(["train", corpus, *TINY, "--out", tmp_path / run, "--max-steps", "5", "--dropout", "0.5"]).exit_code
            == 0
        )
    a, b = (checkpoint.load(tmp_path / r / "last.safetensors") for r in "ab")
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)


def test_patience_stops_early(tmp_path, corpus):
    r = invoke(
        [
            "train",
            corpus,
            *TINY,
            "--out",
            tmp_path / "p",
            "--epochs",
            "50",
            "--eval-every",
            "1",
            "--patience",
            "2",
            "--lr",
            "1e-9",
            "--optimizer",
            "adam",
        ]
    )
    assert r.exit_code == 0, r.output
    end = [json.loads(x) for x in (tmp_path / "p" / "metrics.jsonl").read_text().splitlines()][-1]
    assert end["kind"] == "end" and end["stop"] == "patience" and end["epoch"] == 1


def mistakes(tmp_path, corpus):
    empty = tmp_path / "empty.txt"
    empty.write_text("   \n\n", encoding="utf-8")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    short = tmp_path / "short.txt"
    short.write_text("just a few words here\nand more\n", encoding="utf-8")
    nodir = tmp_path / "notxt"
    nodir.mkdir()
    train = ["train", "--out", tmp_path / "m"]
    return {
        "missing": ([*train, tmp_path / "nope.txt"], "nope.txt"),
        "empty": ([*train, empty], "empty"),
        "not utf-8": ([*train, latin1], "byte"),
        "too short": ([*train, short, "--valid", corpus], "--batch-size"),
        "dir without txt": ([*train, nodir], ".txt"),
        "tie mismatch": ([*train, corpus, "--tie", "--embed", "8", "--hidden", "16"], "--tie"),
        "zero hidden": ([*train, corpus, "--hidden", "0"], "--hidden"),
        "negative layers": ([*train, corpus, "--layers", "-1"], "--layers"),
        "zero batch": ([*train, corpus, "--batch-size", "0"], "--batch-size"),
        "bad cell": ([*train, corpus, "--cell", "transformer"], "cell"),
        "bad tokenizer": ([*train, corpus, "--tokenizer", "sentencepiece"], "word"),
        "no corpus": (["train"], "CORPUS"),
        "missing checkpoint": (["generate", tmp_path / "none"], "checkpoint"),
        "top-p": (["generate", tmp_path, "--top-p", "1.5"], "--top-p"),
        "temperature": (["generate", tmp_path, "--temperature", "-1"], "--temperature"),
    }


def test_user_mistakes_exit_1_with_one_line(tmp_path, corpus):
    for name, (args, word) in mistakes(tmp_path, corpus).items():
        r = runner.invoke(app, [str(a) for a in args])
        assert r.exit_code == 1, (name, r.output)
        assert "Traceback" not in r.output, name
        err = r.stderr.strip()
        assert err.startswith("error: ") and "\n" not in err, (name, err)
        assert word.lower() in err.lower(), (name, err)


def test_existing_run_is_not_overwritten(tmp_path, corpus):
    args = ["train", corpus, *TINY, "--out", tmp_path / "r", "--max-steps", "2"]
    assert invoke(args).exit_code == 0
    r = invoke(args)
    assert r.exit_code == 1 and "--resume" in r.stderr
    assert invoke([*args, "--force"]).exit_code == 0


def test_resume_refuses_changed_model_options(tmp_path, corpus):
    assert invoke(["train", corpus, *TINY, "--out", tmp_path / "r", "--max-steps", "2"]).exit_code == 0
    r = invoke(["train", "--resume", tmp_path / "r", "--hidden", "32"])
    assert r.exit_code == 1 and "--hidden" in r.stderr


def test_more_bad_inputs(tmp_path, corpus):
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"hello\x00world\n" * 10)
    train = ["train", "--out", tmp_path / "m"]
    cases = {
        "binary": ([*train, binary], "binary"),
        "bad encoding mode": ([*train, corpus, "--encoding-errors", "ignore"], "replace"),
        "bad on-nan": ([*train, corpus, "--on-nan", "explode"], "--on-nan"),
        "negative save-every": ([*train, corpus, "--save-every", "-1"], "--save-every"),
        "zero bptt": ([*train, corpus, "--bptt", "0"], "--bptt"),
    }
    for name, (args, word) in cases.items():
        r = invoke(args)
        assert r.exit_code == 1, (name, r.output)
        err = r.stderr.strip()
        assert err.startswith("error: ") and "\n" not in err and word.lower() in err.lower(), (name, err)


def test_invalid_utf8_can_be_replaced_and_crlf_is_lf(tmp_path):
    text = make_corpus(tmp_path / "c.txt").read_text()
    bad = tmp_path / "bad.txt"
    bad.write_bytes(text.replace("\n", "\r\n").encode()[:500] + b"\xff\xfe" + text.encode()[500:])
    r = invoke(["train", bad, *TINY, "--out", tmp_path / "r", "--max-steps", "2"])
    assert r.exit_code == 1 and "--encoding-errors replace" in r.stderr and "byte offset" in r.stderr
    r = invoke(["train", bad, *TINY, "--out", tmp_path / "r", "--max-steps", "2", "--encoding-errors", "replace"])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())  # how much it replaced, once: b"\xff\xfe" is two invalid sequences
    assert said.count("--encoding-errors replace read 2 invalid UTF-8 sequences as U+FFFD.") == 1, r.output
    valid = (tmp_path / "r" / "valid.txt").read_text()
    assert "\r" not in valid
    r = invoke(["eval", tmp_path / "r", bad, "--encoding-errors", "replace"])
    assert r.exit_code == 0 and "read 2 invalid UTF-8 sequences as U+FFFD" in r.stderr, r.output
    r = invoke(["eval", tmp_path / "r", tmp_path / "c.txt", "--encoding-errors", "replace"])
    assert r.exit_code == 0 and "U+FFFD" not in r.stderr, r.output


def test_failed_checkpoint_write_keeps_the_old_one(tmp_path, monkeypatch):
    from lstmtext.errors import CheckpointError

    c = checkpoint.load  # a real checkpoint to rewrite
    out = tmp_path / "r"
    assert invoke(["train", make_corpus(tmp_path / "c.txt"), *TINY, "--out", out, "--max-steps", "2"]).exit_code == 0
    good = (out / "last.safetensors").read_bytes()
    ck = c(out / "last.safetensors")
    real_open = open

    def full_disk(path, mode="r", *a, **k):
        if "w" in mode and ".tmp-" in str(path):
            raise OSError(28, "No space left on device")
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr("builtins.open", full_disk)
    with pytest.raises(CheckpointError, match="No space left on device.*previous one is kept"):
        checkpoint.save(out / "last.safetensors", ck)
    monkeypatch.undo()
    assert (out / "last.safetensors").read_bytes() == good
    assert not list(out.glob(".*.tmp-*"))


def test_eval_on_text_from_another_source_warns_about_unknown_words(tmp_path, corpus):
    out = tmp_path / "run"
    assert invoke(["train", corpus, *TINY, "--out", out, "--max-steps", "3"]).exit_code == 0
    other = tmp_path / "other.txt"
    other.write_text("zebra quantum the cat violin on a nebula mat .\n" * 20, encoding="utf-8")
    r = invoke(["eval", out, other, "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert 0.3 < rep["unk_rate"] < 0.6  # zebra, quantum, violin, nebula are unknown: 4 of 11 tokens
    assert "warning:" in r.stderr and "<unk>" in r.stderr
    same = invoke(["eval", out, out / "valid.txt", "--json"])
    assert json.loads(same.stdout)["unk_rate"] < 0.05 and "warning" not in same.stderr


def test_resuming_a_finished_run_takes_no_extra_step(tmp_path, corpus):
    out = tmp_path / "r"
    assert invoke(["train", corpus, *TINY, "--out", out, "--max-steps", "4", "--epochs", "0"]).exit_code == 0
    before = checkpoint.load(out / "last.safetensors")
    assert invoke(["train", "--resume", out]).exit_code == 0
    after = checkpoint.load(out / "last.safetensors")
    assert after.progress["step"] == before.progress["step"] == 4
    assert all(np.array_equal(before.params[k], after.params[k]) for k in before.params)


def test_resume_from_best_or_into_a_new_dir(tmp_path, corpus):
    out = tmp_path / "r"
    assert invoke(["train", corpus, *TINY, "--out", out, "--max-steps", "4", "--epochs", "0"]).exit_code == 0
    r = invoke(["train", "--resume", out / "best.safetensors", "--max-steps", "6"])
    assert r.exit_code == 1 and "last.safetensors" in r.stderr
    r = invoke(["train", "--resume", out, "--out", tmp_path / "new" / "dir", "--max-steps", "6"])
    assert r.exit_code == 0, r.output
    assert checkpoint.load(tmp_path / "new" / "dir" / "last.safetensors").progress["step"] == 6


def test_force_with_a_bad_option_keeps_the_old_run(tmp_path, corpus):
    out = tmp_path / "r"
    assert invoke(["train", corpus, *TINY, "--out", out, "--max-steps", "2"]).exit_code == 0
    r = invoke(["train", corpus, *TINY, "--out", out, "--force", "--tokenizer", "wrod"])
    assert r.exit_code == 1 and (out / "last.safetensors").exists()


def test_max_minutes_is_a_budget(tmp_path, corpus):
    out = tmp_path / "run"
    # 0.6 ms: spent by the first window, so the run stops there, validates and saves.
    r = invoke(["train", corpus, *TINY, "--out", out, "--epochs", "0", "--max-minutes", "0.00001"])
    assert r.exit_code == 0, r.output
    end = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()][-1]
    assert end["kind"] == "end" and end["stop"] == "budget" and end["steps"] == 1
    assert (out / "last.safetensors").exists()
    r = invoke(["train", corpus, *TINY, "--out", tmp_path / "r2", "--epochs", "0", "--max-minutes", "-1"])
    assert r.exit_code == 1 and "--max-minutes must not be negative" in r.output


def test_float64_runs_resume_and_match_float32(tmp_path, corpus):
    common = [corpus, *TINY, "--optimizer", "rmsprop", "--epochs", "0", "--seed", "4", "--schedule", "constant"]
    for run, steps, dtype in (("a", 8, "float64"), ("b", 3, "float64"), ("c", 8, "float32")):
        r = invoke(["train", *common, "--out", tmp_path / run, "--max-steps", steps, "--dtype", dtype])
        assert r.exit_code == 0, r.output
    r = invoke(["train", "--resume", tmp_path / "b", "--max-steps", "8"])
    assert r.exit_code == 0, r.output
    a, b, c = (checkpoint.load(tmp_path / run / "last.safetensors") for run in "abc")
    assert all(a.params[k].dtype == np.float64 and np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert all(v.dtype == np.float64 for k, v in a.extra.items() if k.startswith(("rmsprop.", "state.")))
    # Same initial draw and the same math: float32 stays within its rounding of the float64 run.
    assert all(np.allclose(a.params[k], c.params[k], atol=1e-4) for k in a.params)
    assert any(not np.array_equal(a.params[k], c.params[k].astype(np.float64)) for k in a.params)
    r = invoke(["generate", tmp_path / "a", "--prompt", "the", "--length", "5", "--seed", "0"])
    assert r.exit_code == 0 and r.output.startswith("the"), r.output
    r = invoke(["eval", tmp_path / "a", tmp_path / "a" / "valid.txt", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["perplexity"] > 1, r.output
    r = invoke(["train", *common, "--out", tmp_path / "d", "--max-steps", "2", "--dtype", "float16"])
    assert r.exit_code == 1 and "--dtype must be float32 or float64" in r.output


def test_help_keeps_square_brackets(monkeypatch):
    import re

    from typer.main import get_command

    from lstmtext.cli import app

    monkeypatch.setenv("COLUMNS", "400")  # one line per help text: nothing wraps mid-word
    monkeypatch.setattr("typer.rich_utils.MAX_WIDTH", None)  # typer's TERMINAL_WIDTH, read at import, would win
    commands = get_command(app).commands
    found = 0
    for name, command in commands.items():
        texts = [command.help or "", *(getattr(p, "help", None) or "" for p in command.params)]
        brackets = {b.replace("\\", "") for t in texts for b in re.findall(r"\w*\\?\[\w+\]", t)}
        out = invoke([name, "--help"]).output
        for b in brackets:
            assert b in out, (name, b)
        found += len(brackets)
    assert found and "lstmtext[plot]" in invoke(["--help"]).output  # the overview keeps it too


def test_a_refused_train_leaves_no_folder(tmp_path, corpus):
    binary = tmp_path / "image.txt"
    binary.write_bytes(bytes(range(256)) * 40)
    for args in (["train", tmp_path / "missing", "--out", tmp_path / "runs" / "a"],  # and its new parent
                 ["train", binary, "--out", tmp_path / "b"],
                 ["train", corpus, *TINY, "--out", tmp_path / "c", "--embed-init", tmp_path / "none.vec"]):  # fmt: skip
        r = invoke(args)
        assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.txt", "tiny.txt"]
    kept = tmp_path / "kept"  # a folder that was there before stays, with what it held
    kept.mkdir()
    (kept / "notes.md").write_text("mine")
    assert invoke(["train", binary, "--out", kept]).exit_code == 1
    assert [p.name for p in kept.iterdir()] == ["notes.md"]


def test_train_help_reads_at_80_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr("typer.rich_utils.MAX_WIDTH", None)
    out = invoke(["train", "--help"]).output
    lines = out.splitlines()
    assert all(len(ln) <= 80 for ln in lines) and "--force" in out and "GLOB" in out
    # A flag is one name (no empty --no-… column), and the value column is a word wide (typer's own
    # --help keeps its "<bool>").
    ours = "\n".join(ln for ln in lines if "--help" not in ln)
    assert "--no-" not in ours and "<bool>" not in ours and "<list[str]>" not in ours
    assert len(lines) < 240  # 204 lines since the AWD-LSTM options; 298 with both columns when it had 190


def test_the_folder_holding_a_clone_named_lstmtext_cannot_shadow_it(tmp_path):
    # A notebook in ~ with the clone at ~/lstmtext: the current folder comes first on the path, and
    # its lstmtext/ (no __init__.py at its top) must not stand in for the package (Makefile EDITABLE).
    import subprocess
    import sys
    from pathlib import Path

    import lstmtext

    root = Path(lstmtext.__file__).resolve().parent.parent
    (tmp_path / "lstmtext").symlink_to(root, target_is_directory=True)
    code = "import pathlib, lstmtext; print(pathlib.Path(lstmtext.__file__).resolve()); print(lstmtext.train.__name__)"
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.split() == [str(root / "lstmtext" / "__init__.py"), "train"], r.stderr
    r = subprocess.run([sys.executable, "-m", "lstmtext", "--version"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0 and r.stdout.strip() == f"lstmtext {lstmtext.__version__}", r.stdout + r.stderr


def test_a_refused_train_leaves_another_runs_folder_alone(tmp_path, corpus, monkeypatch):
    from lstmtext import start
    from lstmtext.errors import CorpusError

    def another_run_begins_meanwhile(*args, **kwargs):  # in the runs/ this train just made
        (tmp_path / "runs" / "other").mkdir()
        (tmp_path / "runs" / "other" / "last.safetensors").write_bytes(b"theirs")
        raise CorpusError("refused while reading")

    monkeypatch.setattr(start, "prepare_data", another_run_begins_meanwhile)
    r = invoke(["train", corpus, *TINY, "--out", tmp_path / "runs" / "mine"])
    assert r.exit_code == 1 and "refused while reading" in r.output
    assert not (tmp_path / "runs" / "mine").exists()
    assert (tmp_path / "runs" / "other" / "last.safetensors").read_bytes() == b"theirs"


def test_eval_warns_when_unk_flatters_the_perplexity(tmp_path, corpus):
    import lstmtext

    run = tmp_path / "run"
    assert invoke(["train", corpus, *TINY, "--out", run, "--max-steps", "2", "--epochs", "0"]).exit_code == 0
    strange = tmp_path / "strange.txt"
    strange.write_text("zebra quartz the cat vortex lumen\n" * 20, encoding="utf-8")  # 4 of 7 tokens unseen
    r = invoke(["eval", run, strange])
    assert r.exit_code == 0 and "% of the tokens are <unk>; the perplexity flatters" in r.stderr, r.stderr
    assert "flatters" not in invoke(["eval", run, corpus]).stderr  # the training text: every word known
    with pytest.warns(UserWarning, match="flatters"):
        lstmtext.load(run).score(strange.read_text(encoding="utf-8"))
