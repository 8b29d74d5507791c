"""The recipe suite of `make recipes` (bench/recipes.py), without training anything: the verdicts on
hand-made results, --resume, the command a recipe becomes, and the corpus cache."""

import itertools
import json
import math
import shlex
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import recipes  # noqa: E402
from lstmtext import sizing  # noqa: E402


def record(corpus, recipe, bpb, left_out=0.0, budget=2.0, seed=1, status="ok", flags=None):
    r = {"format": recipes.FORMAT, "version": recipes.VERSION, "defaults": recipes.DEFAULTS, "corpus": corpus,
         "budget_minutes": budget,
         "recipe": recipe, "seed": seed, "run": f"runs/{corpus}/{recipe}",
         "flags": recipes.RECIPES[recipe] if flags is None else flags, "status": status}
    ok = {"bits_per_byte": bpb, "left_out_bpb": left_out, "unk_rate": 0.0}
    return {**r, **ok} if status == "ok" else {**r, "error": "boom"}


def row(**bpb):
    return {name.replace("_", "-"): recipes.Cell(b, 0) for name, b in bpb.items()}


def test_best_and_the_default_against_it():
    v = recipes.verdict(row(default=2.0, old=2.1, word=2.3, bpe_4k=1.96, char=2.05))
    assert v.best == "bpe-4k"
    assert v.gap == pytest.approx((2.0 - 1.96) / 1.96)
    assert v.within is True and v.beats_old is True


def test_default_outside_3_percent_and_worse_than_old():
    v = recipes.verdict(row(default=2.1, old=2.0, bpe_4k=2.0, char=2.2))
    assert v.best == "bpe-4k" and v.gap == pytest.approx(0.05)
    assert v.within is False and v.beats_old is False
    # Exactly 3% above the best is within (the table shows +3.0%).
    assert recipes.verdict(row(default=2.06, bpe_4k=2.0)).within is True
    # Default and old are not grid recipes: a better old is not "the best".
    assert recipes.verdict(row(default=2.0, old=1.0, bpe_4k=2.02)).best == "bpe-4k"


def test_no_verdict_without_a_grid_recipe_or_a_default():
    v = recipes.verdict(row(default=2.0))
    assert (v.best, v.gap, v.within, v.beats_old) == (None, None, None, None)
    v = recipes.verdict({"default": recipes.Cell(None, 1), **row(bpe_4k=2.0)})
    assert v.best == "bpe-4k" and v.within is None


def test_tables_from_records():
    records = [
        record("prose", "default", 2.0), record("prose", "default", 2.2, seed=2),  # mean 2.1
        record("prose", "old", 1.8, left_out=0.5),  # a word model pays for what it left out: 2.3
        record("prose", "bpe-4k", 2.04), record("prose", "word", 1.5, left_out=0.4),
        record("prose", "char", 9.9), record("prose", "char", 0, status="failed"),  # the later record counts
        record("prose", "bpe-4k", 1.0, budget=10.0),  # another budget
        record("prose", "wide", 1.0, flags=["--hidden", "64"]),  # measured with flags the recipe no longer has
        {**record("prose", "deep", 1.0), "version": 1},  # measured before left_out_bpb, not rescored
        {**record("prose", "constant", 1.0), "defaults": 1},  # measured on other defaults
    ]
    for r in records[-2:-1]:
        del r["left_out_bpb"]
    names = ["default", "old", "bpe-4k", "word", "char", "wide", "deep", "constant"]
    out = recipes.tables(records, [2.0], ["prose", "code"], names, [1, 2])
    assert "| prose | 2.100 | 2.300 | word 1.900 | +10.5% | no | yes |" in out
    assert "| code | — | — | — | — | — | — |" in out
    assert "| prose | 2.100 | 2.300 | 2.040 | 1.900 | failed | — | — | — |" in out
    assert "- prose 2 min char seed 1: boom (runs/prose/char/train.log)" in out


def test_rescore_adds_what_was_left_out(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "valid.txt").write_text("x", encoding="utf-8")
    (run / "metrics.jsonl").write_text(json.dumps({"kind": "valid", "loss": 1.0}) + "\n", encoding="utf-8")
    monkeypatch.setattr(recipes, "left_out_bpb", lambda r: 0.25)
    old = {**record("prose", "old", 1.8), "version": 1, "defaults": 1, "run": str(run), "tokenizer": "word"}
    del old["left_out_bpb"]
    gone = {**old, "run": str(tmp_path / "gone")}
    bpe = {**old, "recipe": "default", "flags": [], "tokenizer": "bpe"}
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (old, gone, bpe)), encoding="utf-8")
    out = recipes.rescore(recipes.load_results(path), path)
    assert out[0]["left_out_bpb"] == 0.25 and out[0]["version"] == recipes.VERSION
    assert "left_out_bpb" not in out[1]
    assert recipes.load_results(path) == out
    # The word record carries over to today's defaults; the BPE one was trained on another vocabulary.
    assert [r["recipe"] for r in recipes.current(out)] == ["old"]
    assert [c["recipe"] for c in recipes.pending(recipes.plan(["prose"], [2.0], ["old", "default"], [1]), out)] \
        == ["default"]


def word_tokenizer(text):
    from lstmtext.tokenizer import Tokenizer

    return Tokenizer.train("word", text, vocab_size=50)


def test_left_out_is_zero_for_tokenizers_that_give_every_byte_back():
    from lstmtext.tokenizer import Tokenizer

    text = "def f(x):\n    return  x ,y\n"
    for kind in ("char", "bpe"):
        assert recipes.left_out_bits(Tokenizer.train(kind, text, vocab_size=300), text) == 0.0
    # A character the training text lacked is <unk>: its spelling is paid.
    assert recipes.left_out_bits(Tokenizer.train("char", text, vocab_size=300), text + "é") > 8


def test_left_out_pays_for_layout_and_unknown_spellings():
    tok = word_tokenizer("the cat sat on the mat .\n" * 20)
    plain = "the cat sat on the mat .\n" * 5
    # The same tokens laid out differently: an indentation and a doubled space cost more bits.
    indented = "    the cat sat on the  mat .\n" * 5
    assert 0 < recipes.left_out_bits(tok, plain) < recipes.left_out_bits(tok, indented)
    # An adaptive code learns: a layout repeated costs less each time.
    assert recipes.left_out_bits(tok, plain * 2) < 2 * recipes.left_out_bits(tok, plain)
    # A word the vocabulary lacks is <unk>: its spelling is paid, longer spellings more.
    short, long = plain + "the zq sat .\n", plain + "the zqzqzqzqzqzq sat .\n"
    assert recipes.left_out_bits(tok, plain) < recipes.left_out_bits(tok, short) < recipes.left_out_bits(tok, long)
    # A literal "<unk>" in the text is a known token, not a spelling.
    assert recipes.left_out_bits(tok, plain + "the <unk> sat .\n") < recipes.left_out_bits(tok, short)


def test_string_code_is_a_code():
    # Probabilities of a context sum to 1 at every step: seen strings plus the escape.
    code = recipes.StringCode()
    for s in ["a", "b", "a", "a", "c"]:
        table = code.tables.get("k", {})
        n, d = sum(table.values()), len(table)
        if n:
            assert sum(c / (n + d) for c in table.values()) + d / (n + d) == pytest.approx(1.0)
        code.bits("k", s)
    assert code.bits("k", "a") == pytest.approx(-math.log2(3 / (5 + 3)))


def test_train_command_puts_the_recipe_flags_last_in_order():
    combo = recipes.plan(["prose-100k"], [0.2], ["old"], [3])[0]
    cmd = recipes.train_command("lstmtext", Path("c.txt"), Path("r"), combo["budget_minutes"], combo["seed"],
                                combo["flags"])
    assert cmd[:10] == ["lstmtext", "train", "c.txt", "--out", "r", "--force", "--max-minutes", "0.2", "--seed", "3"]
    assert cmd[10:] == shlex.split(recipes.OLD)
    assert recipes.train_command("x", Path("c"), Path("r"), 60.0, 1, [])[6:8] == ["--max-minutes", "60"]
    assert recipes.RECIPES["default"] == []
    adaptive = recipes.plan(["c"], [2.0], ["adaptive"], [1])[0]["flags"]
    assert adaptive == shlex.split(recipes.GRID["adaptive"]) and "--softmax" in adaptive


def test_resume_skips_what_results_hold(tmp_path, monkeypatch):
    results = tmp_path / "results.jsonl"
    done = [record("prose-100k", "default", 2.0, budget=0.2),
            record("prose-100k", "old", 2.0, budget=0.2, flags=["--lr", "1"]),  # stale flags: run again
            record("prose-100k", "bpe-4k", 0, budget=0.2, status="failed")]  # failed: skipped too
    results.write_text("".join(json.dumps(r) + "\n" for r in done) + '{"cut sho', encoding="utf-8")
    corpus = tmp_path / "c.txt"
    monkeypatch.setattr(recipes, "ensure_corpus", lambda name, out: corpus)
    monkeypatch.setattr(recipes, "code_version", lambda: {"commit": "abc", "lstmtext_changed": False})
    ran = []

    def fake_run(combo, path, out, exe):
        assert path == corpus and out == tmp_path
        ran.append((combo["recipe"], combo["budget_minutes"]))
        return {**record(combo["corpus"], combo["recipe"], 2.5, budget=combo["budget_minutes"]),
                "tokenizer": "bpe", "model": {"layers": 1, "hidden": 128}, "train_seconds": 1.0}

    monkeypatch.setattr(recipes, "run_one", fake_run)
    argv = ["--corpora", "prose-100k", "--budgets", "0.2", "--recipes", "default,old,bpe-4k,char",
            "--out", str(tmp_path)]
    assert recipes.main([*argv, "--resume"]) == 0
    assert ran == [("old", 0.2), ("char", 0.2)]
    lines = results.read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["recipe"] for x in lines[-2:]] == ["old", "char"]  # appended after the cut line
    ran.clear()
    assert recipes.main(argv) == 0  # without --resume: everything again
    assert [r for r, _ in ran] == ["default", "old", "bpe-4k", "char"]


def test_corpus_is_built_once_and_a_partial_build_is_redone(tmp_path, monkeypatch):
    builds = []

    def build(dest):
        builds.append(dest.name)
        dest.mkdir()
        (dest / "a.txt").write_text("hello\n", encoding="utf-8")

    monkeypatch.setitem(recipes.CORPORA, "tiny", recipes.Corpus(build, True, False, "test"))
    (tmp_path / "corpora" / ".tiny.partial").mkdir(parents=True)  # a build cut short
    path = recipes.ensure_corpus("tiny", tmp_path)
    assert path == tmp_path / "corpora" / "tiny" and recipes.corpus_size(path) == (6, 1)
    assert recipes.ensure_corpus("tiny", tmp_path) == path
    assert builds == [".tiny.partial"]


def test_prose_is_cut_at_a_line_end(tmp_path, monkeypatch):
    (tmp_path / "warandpeace").mkdir()
    (tmp_path / "warandpeace" / "input.txt").write_text("é" * 30 + "\n" + "word " * 30_000, encoding="utf-8")
    monkeypatch.setattr(recipes, "DATA", tmp_path)
    recipes.build_prose(tmp_path / "p.txt")
    text = (tmp_path / "p.txt").read_text(encoding="utf-8")
    assert text.endswith("\n") and len(text.encode()) <= 100_000


def test_python_code_leaves_out_tests():
    files = [rel for _, rel in itertools.islice(recipes.python_sources(), 3000)]
    assert files and all(f.suffix == ".py" for f in files)
    assert not any(set(f.parts[:-1]) & {"test", "tests", "idle_test", "site-packages"} for f in files)


def test_c_headers_are_each_header_once(tmp_path):
    (tmp_path / "sys").mkdir()
    for name in ("b.h", "a.c", "sys/c.h"):
        (tmp_path / name).write_text("int x;\n", encoding="utf-8")
    (tmp_path / "link.h").symlink_to(tmp_path / "b.h")
    assert [str(rel) for _, rel in recipes.c_headers(tmp_path)] == ["b.h"]  # one project's folder left out


def test_an_older_generation_counts_only_for_recipes_that_pin_what_changed_since(monkeypatch):
    monkeypatch.setattr(recipes, "DEFAULTS", 4)  # 4 changed the size cap, 2 the BPE vocabulary
    older = [{**record("prose", name, 2.0), "defaults": 2} for name in ("default", "wide", "old", "char")]
    # wide and old give --hidden and --layers, so the size cap never acted on them; default and char
    # left the size to it, so their records say nothing about today's choice.
    assert sorted(r["recipe"] for r in recipes.current(older)) == ["old", "wide"]
    # Before 2 the BPE vocabulary changed too: a BPE recipe that pins the size still moved.
    first = [{**record("prose", name, 2.0), "defaults": 1} for name in ("wide", "old")]
    assert [r["recipe"] for r in recipes.current(first)] == ["old"]
    # 3 (the per-character cap, reverted) moved only sizes the chooser picks.
    third = [{**record("prose", name, 2.0), "defaults": 3} for name in ("default", "deep")]
    assert [r["recipe"] for r in recipes.current(third)] == ["deep"]


def test_a_dropout_change_past_100_passes_leaves_the_runs_below_it_standing(monkeypatch):
    monkeypatch.setattr(recipes, "DEFAULTS", 5)
    def at(name, passes):
        # the line a run's info keeps, as the size chooser writes it
        choice = sizing.Choice(1, 128, 128, 0.3, 6.7e6 * passes / 171.8, passes, 210_000).reason()
        return {**record("prose", name, 2.0), "defaults": 4, "size_choice": choice}
    kept = [at("default", 49.4), at("old", 171.8), at("char", 1250.0)]
    assert [r["recipe"] for r in recipes.current(kept)] == ["default", "old"]
    assert recipes.current([{**at("default", 20), "size_choice": None}]) == []  # unknown passes: re-measure


def test_a_record_stands_for_rollback_when_its_run_never_diverged(tmp_path, monkeypatch):
    monkeypatch.setattr(recipes, "DEFAULTS", 6)

    def at(name, checks, key=None):
        """checks: (training loss, validation loss) pairs; key: where the training loss is written."""
        run = tmp_path / name
        run.mkdir()
        lines = []
        for train, valid in checks:
            if key == "train_loss":
                lines.append({"kind": "valid", "loss": valid, "train_loss": train})
            else:  # an older run: train lines, whose mean stands for the training loss
                lines += [{"kind": "train", "loss": train - 0.1}, {"kind": "train", "loss": train + 0.1}]
                lines.append({"kind": "valid", "loss": valid})
        (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        return {**record("man", name, 2.0), "defaults": 5, "run": str(run)}

    steady = at("default", [(3.0, 5.0), (2.0, 4.8), (1.9, 4.9), (2.2, 5.0)])  # validation 4% above 4.8
    overfits = at("wide", [(3.0, 5.0), (2.0, 4.8), (1.8, 5.1)])  # 6% above, training still falling
    diverged = at("deep", [(3.0, 5.0), (2.0, 4.8), (2.2, 5.1)])  # 6% above, training 10% above its lowest
    logged = at("char", [(3.0, 5.0), (2.0, 4.8), (2.2, 5.1)], key="train_loss")
    assert [r["recipe"] for r in recipes.current([steady, overfits, diverged, logged])] == ["default", "wide"]
    gone = {**record("man", "char", 2.0), "defaults": 5, "run": str(tmp_path / "gone")}
    assert recipes.current([gone]) == []


def test_the_tokenizer_choice_leaves_a_record_standing_where_the_default_would_still_read_bpe(monkeypatch):
    monkeypatch.setattr(recipes, "DEFAULTS", 7)

    def at(name, passes, bpb=2.0, seed=1):
        choice = sizing.Choice(1, 384, 256, 0.3, 1e6 * passes, passes, 2_140_000).reason()
        return {**record("man", name, bpb, budget=60.0, seed=seed), "defaults": 6, "size_choice": choice}

    def standing(records):
        return sorted((r["recipe"], r["bits_per_byte"]) for r in recipes.current(records))

    # Many BPE passes and few of characters: the default now reads characters, so its cell is measured
    # again through its own path (a `char` record does not stand in for it); what the default
    # measured is the `bpe` recipe's.
    many = [at("default", 90, 2.0), at("char", 3.5, 1.9), at("wide", 90, 2.1), at("bpe-4k", 90, 2.05)]
    assert standing(many) == [("bpe", 2.0), ("bpe-4k", 2.05), ("char", 1.9)]
    # Characters that would read the text often too: the default still reads BPE (a grid recipe of
    # its own size would plan other passes: measured again).
    often = [at("default", 90, 2.0), at("char", 16, 2.1), at("wide", 90, 2.05)]
    assert standing(often) == [("bpe", 2.0), ("char", 2.1), ("default", 2.0)]
    # A `char` record that does not say its passes decides nothing.
    unknown = [at("default", 90, 2.0), {**at("char", 16, 2.1), "size_choice": None}]
    assert standing(unknown) == [("bpe", 2.0), ("char", 2.1)]
    # Few BPE passes: nothing changes.
    few = [at("default", 20), at("wide", 20, 2.1)]
    assert standing(few) == [("bpe", 2.0), ("default", 2.0), ("wide", 2.1)]
    # A failed default is not taken for a failed `bpe` too; a record of generation 7 is what it says.
    assert recipes.current([{**at("default", 90), "status": "failed"}]) == []
    assert [r["recipe"] for r in recipes.current([{**at("default", 90), "defaults": 7}])] == ["default"]


def test_the_awd_ablation_takes_out_one_part_at_a_time():
    from bench import awd

    full = awd.flags("full")
    for part, (on, off) in awd.PARTS.items():
        without = awd.flags(f"-{part}")
        assert shlex.join(shlex.split(on)) in shlex.join(full)
        assert shlex.join(shlex.split(on)) not in shlex.join(without) and len(without) < len(full) + len(off.split())
    assert awd.run_names("ablation") == ["full", *(f"-{p}" for p in awd.PARTS)]
    with pytest.raises(SystemExit, match="unknown run -dropout"):
        awd.run_names("full,-dropout")


def test_a_record_stands_for_plateau_when_its_run_never_stalled_while_the_rate_was_held(tmp_path, monkeypatch):
    monkeypatch.setattr(recipes, "DEFAULTS", 8)

    def at(name, checks, flags=None):
        """checks: (minutes on the clock, validation loss); a 10-minute budget, wsd held from 0.2 to 8."""
        run = tmp_path / name
        run.mkdir()
        lines = []
        for minutes, valid in checks:
            lines += [{"kind": "train", "loss": 3.0, "elapsed": 60.0 * minutes}, {"kind": "valid", "loss": valid}]
        (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        r = record("man", name, 2.0, budget=10.0)
        return {**r, "defaults": 7, "run": str(run), **({"flags": flags} if flags else {})}

    stalls = at("default", [(1, 5.0), (2, 4.8), (3, 4.9), (4, 4.9), (5, 4.9)])  # 10% above from minute 3
    decays = at("wide", [(1, 5.0), (2, 4.8), (5, 4.9), (7, 4.9), (8.5, 4.9)])  # the third is in the decay
    noisy = at("deep", [(1, 5.0), (2, 4.8), (3, 4.9), (4, 4.81), (5, 4.9)])  # one within 2% of the best
    assert [r["recipe"] for r in recipes.current([stalls, decays, noisy])] == ["wide", "deep"]
    # Another schedule never settles; wsd with a budget in steps, whose share the clock does not tell,
    # and a run that is gone, are measured again.
    old = at("old", [(1, 5.0), (2, 4.8), (3, 4.9), (4, 4.9), (5, 4.9)], flags=recipes.RECIPES["old"])
    assert [r["recipe"] for r in recipes.current([old])] == ["old"]
    assert not recipes._never_settles({**decays, "flags": ["--max-steps", "100"]}, 0.02)
    # A rollback clears the evidence, as the trainer's does.
    back = tmp_path / "back" / "metrics.jsonl"
    back.parent.mkdir()
    checks = [(1, 5.0), (2, 4.8), (3, 4.9), (4, 4.9), (4.5, 4.9, True), (5, 4.9), (6, 4.9)]
    back.write_text("".join(json.dumps(x) + "\n" for m, loss, *rb in checks for x in (
        {"kind": "train", "loss": 3.0, "elapsed": 60.0 * m}, {"kind": "valid", "loss": loss, "rollback": bool(rb)})))
    assert recipes._never_settles({**stalls, "run": str(back.parent)}, 0.02)
    gone = {**record("man", "char", 2.0, budget=10.0), "defaults": 7, "run": str(tmp_path / "gone")}
    assert recipes.current([gone]) == []


def test_a_default_that_read_characters_stands_only_where_the_held_out_text_has_new_words(tmp_path):
    def standing(out, held_out):
        text = "the cat sat on the mat\n" * 90 + held_out * 10  # the last tenth: `held_out`
        (out / "corpora").mkdir(parents=True)
        (out / "corpora" / "warandpeace.txt").write_text(text, encoding="utf-8")
        run = str(out / "warandpeace" / "60min" / "default-seed1")
        char = {**record("warandpeace", "default", 2.0, budget=60.0), "defaults": 9, "run": run, "tokenizer": "char"}
        bpe = {**char, "budget_minutes": 10.0, "tokenizer": "bpe"}
        typed = {**record("warandpeace", "char", 2.1, budget=60.0), "defaults": 9, "run": run, "tokenizer": "char"}
        return sorted((r["recipe"], r["budget_minutes"]) for r in recipes.current([char, bpe, typed]))

    # Generation 10: the default reads characters only where more than 5% of the held-out words are
    # new, so its record of reading them stands there and is measured again elsewhere; a default that
    # read BPE, and a typed tokenizer, stand either way.
    assert standing(tmp_path / "new", "zebra quokka fjord\n") == [("char", 60.0), ("default", 10.0),
                                                                  ("default", 60.0)]
    assert standing(tmp_path / "reused", "the mat sat on the cat\n") == [("char", 60.0), ("default", 10.0)]
