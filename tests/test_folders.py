"""A folder as people keep one: read recursively in path order, --include globs, binary and hidden
files skipped with a report, --list-files, and the held-out part of the whole or of each file."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lstmtext import checkpoint, corpus
from lstmtext.cli import app
from lstmtext.corpus import list_corpus, read_text
from lstmtext.data import TokenizerOptions, prepare_data
from lstmtext.errors import ConfigError, CorpusError

WORD_TOKENS = TokenizerOptions("word", None, 1, False, "punct")  # the word tokenizer, vocabulary chosen

runner = CliRunner()
TINY = ["--embed", "8", "--hidden", "8", "--layers", "1", "--batch-size", "2", "--bptt", "5", "--max-steps", "2"]
WORDS = "the cat sat on a mat and dog ran to him her".split()


def lines(tag: str, n: int) -> str:
    """n lines, each naming its file's tag, so that held-out text shows which file it came from."""
    body = "".join(f"{tag} {WORDS[i % 12]} {WORDS[i * 5 % 12]} {i}\n" for i in range(1, n - 1))
    return f"{tag} first line\n{body}{tag} last line\n"


TEXT_FILES = {
    "a.txt": lines("alpha", 20),
    "b.md": lines("bravo", 20),
    "sub/c.py": lines("charlie", 20),
    "sub/deeper/d.txt": lines("delta", 20),
    "sub/deeper/e.md": lines("echo", 30).removesuffix("\n"),  # a folder adds the missing "\n"
}
SKIPPED = {
    ".dotfile": "hidden",
    ".hidden/": "hidden",
    "data.bin": "binary",
    "empty.txt": "empty",
    "latin1.txt": "not UTF-8",
    "utf16.txt": "UTF-16",
}


def make_tree(root: Path) -> Path:
    notes = root / "notes"
    for name, text in TEXT_FILES.items():
        (notes / name).parent.mkdir(parents=True, exist_ok=True)
        (notes / name).write_text(text, encoding="utf-8")
    (notes / ".hidden").mkdir()
    (notes / ".hidden" / "secret.txt").write_text(lines("hidden", 20), encoding="utf-8")
    (notes / ".dotfile").write_text("hidden too\n", encoding="utf-8")
    (notes / "data.bin").write_bytes(b"text at first\n\x00\x01\x02")
    (notes / "empty.txt").write_bytes(b"")
    (notes / "latin1.txt").write_bytes("café au lait\n".encode("latin-1"))
    (notes / "utf16.txt").write_bytes("hello\n".encode("utf-16"))
    return notes


@pytest.fixture
def notes(tmp_path):
    return make_tree(tmp_path)


def invoke(args):
    # A wide console: rich must not wrap the report lines these tests read.
    r = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "1000"})
    r.flat = " ".join(r.output.split())
    return r


def said(corpus_path, **kw) -> tuple[list[str], object]:
    out: list[str] = []
    data = prepare_data(corpus_path, None, WORD_TOKENS, "strict", out.append, **kw)
    return out, data


def test_default_takes_every_text_file_recursively_and_reports_the_skipped(tmp_path, notes):
    out = tmp_path / "run"
    r = invoke(["train", notes, "--out", out, *TINY])
    assert r.exit_code == 0, r.output
    size = sum(len(t.encode()) for t in TEXT_FILES.values())
    assert (
        f"Read 5 files ({size:,} bytes) from {notes}/; skipped 6 (2 hidden, 1 binary, 1 empty, 1 not UTF-8, "
        "1 UTF-16); --list-files shows them all." in r.flat
    )
    info = checkpoint.load(out / "last.safetensors").info
    assert info["files"] == sorted(TEXT_FILES)
    assert info["skipped"] == {"hidden": 2, "binary": 1, "empty": 1, "not UTF-8": 1, "UTF-16": 1}
    assert info["include"] == [] and info["valid_split"] == "end"
    assert "hidden" not in (out / "valid.txt").read_text()


def test_folder_text_is_each_file_in_path_order_ending_in_newline(notes):
    expected = "".join(TEXT_FILES[name].removesuffix("\n") + "\n" for name in sorted(TEXT_FILES))
    assert read_text(notes) == expected


@pytest.mark.parametrize(
    "include, files",
    [
        (["**/*.py"], ["sub/c.py"]),
        (["*.md"], ["b.md", "sub/deeper/e.md"]),  # no "/": the name, at any depth
        (["/*.md"], ["b.md"]),  # a leading "/" anchors to the folder
        (["sub/*.txt"], []),  # "*" does not span folders...
        (["sub/**/*.txt"], ["sub/deeper/d.txt"]),  # ..."**" does
        (["sub/"], ["sub/c.py", "sub/deeper/d.txt", "sub/deeper/e.md"]),
        (["*.[pt]?t", "a.*"], ["a.txt", "sub/deeper/d.txt"]),
        (["*.txt", "*.md"], ["a.txt", "b.md", "sub/deeper/d.txt", "sub/deeper/e.md"]),
    ],
)
def test_include_globs_choose_files(notes, include, files):
    if not files:
        with pytest.raises(CorpusError, match="not matching --include"):
            list_corpus(notes, include)
        return
    listing = list_corpus(notes, include)
    assert [f.name for f in listing.files] == files
    reasons = dict(listing.skipped)
    for name in TEXT_FILES:
        assert name in files or reasons[name] == "not matching --include", name
    for name, reason in SKIPPED.items():  # a chosen file that is not text is still skipped as such
        assert reasons[name] in (reason, "not matching --include"), name


@pytest.mark.parametrize("include, files", [("**/*.py", ["sub/c.py"]), ("*.md", ["b.md", "sub/deeper/e.md"])])
def test_include_through_the_cli(tmp_path, notes, include, files):
    out = tmp_path / "run"
    r = invoke(["train", notes, "--include", include, "--out", out, *TINY])
    assert r.exit_code == 0, r.output
    assert f"Read {len(files)} file" in r.flat
    info = checkpoint.load(out / "last.safetensors").info
    assert info["files"] == files and info["include"] == [include]


def test_list_files_lists_every_file_with_its_size_and_every_skipped_one_with_its_reason(tmp_path, notes):
    r = invoke(["train", notes, "--list-files", "--out", tmp_path / "run", *TINY])
    assert r.exit_code == 0, r.output
    for name, text in TEXT_FILES.items():
        assert f"{notes}/{name} {len(text.encode()):,} bytes" in r.flat, name
    for name, reason in SKIPPED.items():
        assert f"{notes}/{name} skipped: {reason}" in r.flat, name
    assert "--list-files shows them all" not in r.flat


def test_per_file_split_holds_out_the_end_of_every_file(tmp_path, notes):
    (notes / "tiny.txt").write_text("tiny one line\n", encoding="utf-8")
    out = tmp_path / "run"
    r = invoke(["train", notes, "--valid-split", "per-file", "--out", out, *TINY])
    assert r.exit_code == 0, r.output
    assert "holding out the last 10% of each file" in r.flat
    assert "(5 of 6 files; 1 too small to split, all used for training: tiny.txt)" in r.flat
    valid = (out / "valid.txt").read_text()
    for text in TEXT_FILES.values():
        tag = text.split()[0]
        assert f"{tag} last line\n" in valid and f"{tag} first line" not in valid, tag
    assert "tiny" not in valid
    info = checkpoint.load(out / "last.safetensors").info
    assert info["valid_split"] == "per-file"
    assert info["valid_files"] == sorted(TEXT_FILES)
    # `info` names a few of the held-out files and counts the rest, as it does the corpus's.
    shown = invoke(["info", out]).flat
    assert "(a.txt, b.md, sub/c.py, sub/deeper/d.txt, sub/deeper/e.md)" in shown  # five: all named
    (notes / "f.txt").write_text(lines("foxtrot", 20), encoding="utf-8")
    assert invoke(["train", notes, "--valid-split", "per-file", "--out", out, "--force", *TINY]).exit_code == 0
    shown = invoke(["info", out]).flat
    assert "the last 10% of each file (a.txt, b.md, f.txt, sub/c.py, sub/deeper/d.txt and 1 more)" in shown


def test_per_file_train_text_is_the_first_90_percent_of_each_file(notes):
    listing = list_corpus(notes)
    train, valid, small = listing.heldout_per_file(0.1)
    assert small == []
    ends = [seg.start for seg in valid.segments]
    texts = [TEXT_FILES[n].removesuffix("\n") + "\n" for n in sorted(TEXT_FILES)]
    assert train.text() == "".join(t[:e] for t, e in zip(texts, ends, strict=True))
    assert valid.text() == "".join(t[e:] for t, e in zip(texts, ends, strict=True))
    for t, e, seg in zip(texts, ends, valid.segments, strict=True):
        assert t[e - 1] == "\n" and 0.85 * len(t) < e <= 0.95 * len(t)  # at a line start, near 90%
        assert seg.line == t[:e].count("\n") + 1


def test_heldout_message_names_the_file_it_comes_from(tmp_path, notes):
    messages, data = said(notes)
    assert f"holding out the last 10% of {notes}/ for validation: the end of {notes}/sub/deeper/e.md, from line" in (
        " ".join(messages)
    )
    assert data.info["valid_files"] == ["sub/deeper/e.md"]
    assert data.valid_part.text().endswith("echo last line\n")
    # When the last 10% spans files, each is named, the first with the line it starts on.
    (notes / "zz.txt").write_text("zulu\n", encoding="utf-8")
    messages, data = said(notes)
    line = next(s.line for s in data.valid_part.segments)
    assert f"for validation: {notes}/sub/deeper/e.md from line {line}, {notes}/zz.txt." in " ".join(messages)
    assert data.info["valid_files"] == ["sub/deeper/e.md", "zz.txt"]


def test_single_file_message_and_info_are_as_before(tmp_path):
    f = tmp_path / "one.txt"
    text = lines("one", 40)
    f.write_text(text, encoding="utf-8")
    messages, data = said(f)
    assert messages[0] == f"Read 1 file ({f.stat().st_size:,} bytes) from {f}."
    start = data.valid_part.segments[0].start
    assert text[start:] == "one cat mat 37\none sat him 38\none last line\n"  # the last 10%, from a line start
    assert f"holding out the last 10% of {f} (from line 38, character {start:,} on)" in messages[1]
    assert data.info["files"] == ["one.txt"] and data.info["valid_files"] == ["one.txt"]
    assert data.info["skipped"] == {}


def test_order_is_sorted_by_path_and_stable(tmp_path):
    root = tmp_path / "c"
    for name in ["b/z.txt", "a.txt", "B.txt", "a/b.txt", "b/a.txt", "a-b.txt"]:  # created out of order
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"{name}\n", encoding="utf-8")
    names = [f.name for f in list_corpus(root).files]
    assert names == ["B.txt", "a-b.txt", "a.txt", "a/b.txt", "b/a.txt", "b/z.txt"]
    assert [f.name for f in list_corpus(root).files] == names
    assert read_text(root) == "".join(f"{n}\n" for n in names)


def test_each_file_is_classified_once_per_prepare_data(notes, monkeypatch):
    calls = []
    real = corpus._classify
    monkeypatch.setattr(corpus, "_classify", lambda path, errors: calls.append(path) or real(path, errors))
    said(notes, valid_split="per-file")
    assert len(calls) == len(TEXT_FILES) + 4  # the text files and the four non-hidden skipped ones


def test_nothing_left_says_what_was_skipped_and_suggests_include(tmp_path, notes):
    r = invoke(["train", notes, "--include", "*.rst", "--out", tmp_path / "run", *TINY])
    assert r.exit_code == 1
    err = r.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "no text file to read" in err and "9 not matching --include" in err and "--include" in err
    only_binary = tmp_path / "bin"
    only_binary.mkdir()
    (only_binary / "x.dat").write_bytes(b"\x00" * 10)
    (only_binary / "y.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(CorpusError) as exc:
        list_corpus(only_binary)
    message = str(exc.value)
    assert "1 binary, 1 not UTF-8" in message and "--include" in message and "--encoding-errors replace" in message


def test_replace_takes_the_files_that_are_not_utf8(notes):
    listing = list_corpus(notes, encoding_errors="replace")
    assert "latin1.txt" in [f.name for f in listing.files]
    assert "not UTF-8" not in listing.reasons()
    assert "caf\ufffd au lait\n" in listing.whole().text()


def test_symlinked_folders_are_not_followed(notes):
    (notes / "sub" / "loop").symlink_to(notes, target_is_directory=True)
    (notes / "link.txt").symlink_to(notes / "a.txt")  # a linked file is read
    listing = list_corpus(notes)
    assert ("sub/loop/", "symlinked folder") in listing.skipped
    assert [f.name for f in listing.files] == sorted([*TEXT_FILES, "link.txt"])


def test_the_run_folder_inside_the_corpus_is_not_read_and_the_run_resumes(tmp_path, notes):
    out = notes / "runs" / "mine"
    r = invoke(["train", notes, "--out", out, "--valid-split", "per-file", *TINY])
    assert r.exit_code == 0, r.output
    assert checkpoint.load(out / "last.safetensors").info["files"] == sorted(TEXT_FILES)
    r = invoke(["train", "--resume", out, "--max-steps", "4"])
    assert r.exit_code == 0, r.output  # valid.txt and metrics.jsonl in the run did not join the corpus
    assert checkpoint.load(out / "last.safetensors").progress["step"] == 4


def test_bad_choices_are_config_errors(tmp_path, notes):
    with pytest.raises(ConfigError, match="end, per-file"):
        said(notes, valid_split="middle")
    with pytest.raises(ConfigError, match="--include"):
        list_corpus(notes / "a.txt", ["*.txt"])
    with pytest.raises(ConfigError, match="empty"):
        list_corpus(notes, [""])
    r = invoke(["train", notes, "--valid-split", "middle", "--out", tmp_path / "run", *TINY])
    assert r.exit_code == 1 and "end, per-file" in r.stderr


def test_a_single_bad_file_is_still_an_error(tmp_path, notes):
    with pytest.raises(CorpusError, match="binary"):
        list_corpus(notes / "data.bin")
    with pytest.raises(CorpusError, match="byte offset"):
        list_corpus(notes / "latin1.txt")
