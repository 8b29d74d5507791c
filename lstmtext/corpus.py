"""Reading the training text from a file or a folder, and holding out a validation part.

The text that leaves this module is clean: valid UTF-8 (or with U+FFFD where asked), no
byte-order mark, "\\n" line ends only, and not blank. Every problem a user can fix is a
`CorpusError` that names the file and the fix.

A folder is read recursively, its files in the order of their relative POSIX paths, so that a run
is reproducible and resumable. `list_corpus` classifies each file once: UTF-8 text is taken; binary,
UTF-16, empty and (unless --encoding-errors replace) non-UTF-8 files are skipped with the reason, as
are hidden files and folders (.git, .venv) and symlinked folders (a link back up would loop). A
single FILE corpus is never skipped: its problem is the error.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lstmtext.errors import ConfigError, CorpusError

ENCODING_ERRORS = ("strict", "replace")
REPLACEMENT = "\ufffd"  # what --encoding-errors replace reads an invalid UTF-8 sequence as
CHUNK_BYTES = 1 << 22  # read 4 MiB at a time: memory stays flat however large the corpus
RUN_MARK = "last.safetensors"  # a folder holding one is a run of ours, not text to learn (`train .`)


class UnusableFile(CorpusError):
    """A file that is not UTF-8 text: in a folder it is skipped for `reason`, alone it is the error."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _file_text(path: Path, encoding_errors: str) -> Iterator[str]:
    """The cleaned text of one file, in pieces of about CHUNK_BYTES, checked as it streams."""
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below, also when the caller stops early)
    except OSError as e:
        raise UnusableFile(f"{path}: cannot be read ({e.strerror}); check its permissions", "unreadable") from None
    with f:
        block = f.read(CHUNK_BYTES)
        if block.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise UnusableFile(f"{path}: looks like UTF-16 text; save it as UTF-8", "UTF-16")
        offset = len(codecs.BOM_UTF8) if block.startswith(codecs.BOM_UTF8) else 0
        block = block[offset:]
        decoder = codecs.getincrementaldecoder("utf-8")(encoding_errors)
        carry_cr = False  # a "\r" at the end of a piece may be the first half of "\r\n"
        while True:
            final = not block
            nul = block.find(b"\x00")
            if nul != -1:
                raise UnusableFile(
                    f"{path}: has a NUL byte at byte offset {offset + nul}, so it looks like a binary file; "
                    "pass a UTF-8 text file",
                    "binary",
                )
            pending = len(decoder.getstate()[0])  # bytes of an unfinished character from the last block
            try:
                text = decoder.decode(block, final=final)
            except UnicodeDecodeError as e:
                raise UnusableFile(
                    f"{path}: invalid UTF-8 at byte offset {offset - pending + e.start}; convert the file "
                    "to UTF-8 or pass --encoding-errors replace",
                    "not UTF-8",
                ) from None
            offset += len(block)
            if carry_cr:
                text = "\r" + text
            carry_cr = not final and text.endswith("\r")
            if carry_cr:
                text = text[:-1]
            yield text.replace("\r\n", "\n").replace("\r", "\n")
            if final:
                return
            block = f.read(CHUNK_BYTES)


def _safe_cut(text: str) -> int:
    """Index just after the last "\n" with non-space on both sides, or 0. Cut there, every
    tokenizer (byte-level BPE included) encodes the two pieces exactly as the whole."""
    i = text.rfind("\n", 0, len(text) - 1)
    while i > 0 and (text[i - 1].isspace() or text[i + 1].isspace()):
        i = text.rfind("\n", 0, i)
    return i + 1 if i > 0 else 0


def _glob(pattern: str) -> re.Pattern:
    """A --include glob as .gitignore and ripgrep read it: without "/" it matches the file name at
    any depth, with one the path relative to the folder; "**" spans folders, "*" and "?" do not."""
    p = pattern.strip()
    if not p:
        raise ConfigError("--include needs a glob such as '*.md' or 'src/**/*.py', got an empty one")
    p = p.removeprefix("./")
    if "/" not in p:
        p = "**/" + p
    p = p.lstrip("/") + ("**" if p.endswith("/") else "")
    out, i = [], 0
    while i < len(p):
        if p.startswith("**/", i):
            out.append("(?:[^/]*/)*")  # zero or more folders
            i += 3
            continue
        if p.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        c = p[i]
        close = p.find("]", i + 2) if c == "[" else -1
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif close != -1:
            members = p[i + 1 : close].replace("\\", "\\\\")
            out.append("(?!/)[" + ("^" + members[1:] if members[0] in "!^" else members) + "]")
            i = close
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


@dataclass(frozen=True)
class CorpusFile:
    """One file taken into the corpus."""

    path: Path  # where it is read from
    name: str  # its POSIX path relative to the corpus folder (for a single FILE corpus, its name)
    size: int  # bytes on disk
    chars: int  # characters of its clean text, with the "\n" a folder adds to a file that lacks one
    add_newline: bool = False  # in a folder, files must not run together
    replaced: int = 0  # U+FFFD in its clean text: with --encoding-errors replace, the invalid UTF-8 read as it

    def chars_stream(self, encoding_errors: str) -> Iterator[str]:
        yield from _file_text(self.path, encoding_errors)
        if self.add_newline:
            yield "\n"


@dataclass(frozen=True)
class Segment:
    """Characters [start, stop) of one file's clean text."""

    file: CorpusFile
    start: int = 0
    stop: int | None = None  # None: to the end
    line: int = 1  # the line `start` is on, counted from 1, for messages

    def pieces(self, encoding_errors: str) -> Iterator[str]:
        pos = 0
        for text in self.file.chars_stream(encoding_errors):
            lo, hi = pos, pos + len(text)
            pos = hi
            if hi <= self.start:
                continue
            if self.stop is not None and lo >= self.stop:
                return
            a = max(self.start - lo, 0)
            b = len(text) if self.stop is None else min(self.stop - lo, len(text))
            yield text[a:b]

    def describe(self, prefix: str = "") -> str:
        return prefix + self.file.name + (f" from line {self.line:,}" if self.start else "")


@dataclass(frozen=True)
class TextPart:
    """Segments of a corpus, one after another, streamed again whenever they are needed, so that
    neither the training nor the held-out text has to sit in memory as one string."""

    segments: tuple[Segment, ...]
    encoding_errors: str = "strict"
    # The SHA-256 of the text, taken along the first whole pass (a tokenizer reads it anyway).
    _digest: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def files(self) -> list[str]:
        return [s.file.name for s in self.segments]

    @property
    def chars(self) -> int:
        return sum((s.file.chars if s.stop is None else s.stop) - s.start for s in self.segments)

    def pieces(self) -> Iterator[str]:
        """The text in pieces cut at safe line ends (see _safe_cut), as the tokenizer needs them."""
        h, rest = hashlib.sha256(), ""
        for segment in self.segments:
            for text in segment.pieces(self.encoding_errors):
                rest += text
                if len(rest) >= CHUNK_BYTES:
                    cut = _safe_cut(rest)
                    if cut:
                        piece, rest = rest[:cut], rest[cut:]
                        h.update(piece.encode("utf-8"))
                        yield piece
        h.update(rest.encode("utf-8"))
        yield rest
        self._digest["sha256"] = h.hexdigest()  # reached only when the whole text was read

    def sha256(self) -> str:
        """Of the text: from the first whole pass over it, or from a pass made here."""
        if "sha256" not in self._digest:
            for _ in self.pieces():
                pass
        return self._digest["sha256"]

    def text(self) -> str:
        return "".join(self.pieces())


def _line_start(f: CorpusFile, at: int, encoding_errors: str) -> tuple[int | None, int]:
    """The first line start at or after character `at` of f's text (None when no line starts there
    before the text's end), and the number of the line it starts, or else of the line `at` is on."""
    if at == 0:
        return 0, 1
    pos, line = 0, 1
    for text in f.chars_stream(encoding_errors):
        k = text.find("\n", max(at - 1 - pos, 0))  # a line starts after a "\n", so from at - 1
        if k != -1:
            line += text.count("\n", 0, k)
            return (pos + k + 1, line + 1) if pos + k + 1 < f.chars else (None, line)
        line += text.count("\n")
        pos += len(text)
    return None, line


def _too_small(what: str, chars: int, fraction: float) -> CorpusError:
    return CorpusError(
        f"{what} ({chars} characters) is too small to hold out {fraction:.0%} for validation; "
        "use more text or pass --valid FILE"
    )


def _check_fraction(fraction: float) -> None:
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"held-out fraction must be between 0 and 1, got {fraction}; pass a fraction such as 0.1")


@dataclass(frozen=True)
class Listing:
    """What list_corpus found: the files taken, in order, and the ones skipped with the reason."""

    path: Path
    is_dir: bool
    files: tuple[CorpusFile, ...]
    skipped: tuple[tuple[str, str], ...]  # (relative path, reason), in path order
    encoding_errors: str = "strict"

    @property
    def shown(self) -> str:
        """The corpus as the user named it; a folder ends in "/" so that its file names can follow."""
        return str(self.path).rstrip("/") + "/" if self.is_dir else str(self.path)

    def shown_name(self, name: str) -> str:
        return self.shown + name if self.is_dir else self.shown

    def reasons(self) -> dict[str, int]:
        """{reason: files skipped for it}, the most common first."""
        return dict(Counter(reason for _, reason in self.skipped).most_common())

    def reasons_text(self) -> str:
        return ", ".join(f"{n:,} {reason}" for reason, n in self.reasons().items())

    def summary(self, listed: bool = False) -> str:
        n = len(self.files)
        line = f"Read {n:,} file{'' if n == 1 else 's'} ({sum(f.size for f in self.files):,} bytes) from {self.shown}"
        if self.skipped:
            line += f"; skipped {len(self.skipped):,} ({self.reasons_text()})"
            line += "" if listed else "; --list-files shows them all"
        return line + "." + self.replaced_text()

    def replaced_text(self) -> str:
        """What --encoding-errors replace did, in a sentence ("" when it did nothing)."""
        hit = [f for f in self.files if f.replaced]
        if not hit or self.encoding_errors != "replace":  # strict: a U+FFFD is the file's own
            return ""
        n, names = sum(f.replaced for f in hit), ", ".join(f.name for f in hit[:3])
        files = f"{len(hit):,} file{'s' * (len(hit) != 1)}"
        where = f" in {files} ({names}{' and more' if len(hit) > 3 else ''})" if self.is_dir else ""
        return f" --encoding-errors replace read {n:,} invalid UTF-8 sequence{'' if n == 1 else 's'} as U+FFFD{where}."

    def lines(self) -> list[str]:
        """One line per file taken (with its size) and per file skipped (with the reason), in path order."""
        rows = [(f.name, f"{f.size:,} bytes") for f in self.files]
        rows += [(name, f"skipped: {reason}") for name, reason in self.skipped]
        return [f"  {self.shown_name(name)}  {what}" for name, what in sorted(rows)]

    def whole(self) -> TextPart:
        return TextPart(tuple(Segment(f, 0, None) for f in self.files), self.encoding_errors)

    def heldout_end(self, fraction: float = 0.1) -> tuple[TextPart, TextPart]:
        """(train, valid): the last `fraction` of the whole text held out. The cut moves forward to the
        next line start, so that no line is split; with no line start after the cut point (one long
        last line), it falls inside that line (tests/oracles.py writes the same cut on a string)."""
        _check_fraction(fraction)
        total = sum(f.chars for f in self.files)
        cut, line, off = int(total * (1.0 - fraction)), 1, 0
        for i, f in enumerate(self.files):
            if off <= cut < off + f.chars:
                # A second read, of this file only and up to the next line start: the classifying
                # pass could not know where the cut falls before it had counted every file.
                p, line = _line_start(f, cut - off, self.encoding_errors)
                if p is not None:
                    cut = off + p
                elif i + 1 < len(self.files):
                    cut, line = off + f.chars, 1  # no line starts later in f: the next file starts one
                break
            off += f.chars
        if cut <= 0 or cut >= total:
            raise _too_small("the corpus", total, fraction)
        train, valid, off = [], [], 0
        for f in self.files:
            if off < cut:
                train.append(Segment(f, 0, None if off + f.chars <= cut else cut - off))
            if off + f.chars > cut:
                start = max(cut - off, 0)
                valid.append(Segment(f, start, None, line if start else 1))
            off += f.chars
        return TextPart(tuple(train), self.encoding_errors), TextPart(tuple(valid), self.encoding_errors)

    def heldout(self, valid_split: str) -> tuple[TextPart, TextPart, str]:
        """(train, valid, the line that says where validation comes from): the last 10% held out of
        the whole text (valid_split "end") or of each file ("per-file")."""
        if valid_split == "per-file":
            train, valid, small = self.heldout_per_file(0.1)
            n = len(self.files)
            left = f"; {len(small):,} too small to split, all used for training: {_names(small)}" if small else ""
            return train, valid, (
                f"No --valid given: holding out the last 10% of each file of {self.shown} for validation "
                f"({n - len(small):,} of {n:,} files{left})."
            )
        train, valid = self.heldout_end(0.1)
        first = valid.segments[0]
        if not self.is_dir:
            return train, valid, (
                f"No --valid given: holding out the last 10% of {self.shown} (from line {first.line:,}, "
                f"character {first.start:,} on) for validation."
            )
        if len(valid.segments) == 1 and first.start:
            where = f"the end of {self.shown}{first.file.name}, from line {first.line:,}"
        else:
            where = _names([s.describe(self.shown) for s in valid.segments])
        return train, valid, f"No --valid given: holding out the last 10% of {self.shown} for validation: {where}."

    def heldout_per_file(self, fraction: float = 0.1) -> tuple[TextPart, TextPart, list[str]]:
        """(train, valid, small): the last `fraction` of each file held out, cut at a line start in
        it; files with no line start to cut at go whole to training and are named in `small`."""
        _check_fraction(fraction)
        train, valid, small = [], [], []
        for f in self.files:
            # A second read of each file, up to its cut: its length is known only after the first.
            p, line = _line_start(f, int(f.chars * (1.0 - fraction)), self.encoding_errors)
            if not p:
                small.append(f.name)
                train.append(Segment(f))
            else:
                train.append(Segment(f, 0, p))
                valid.append(Segment(f, p, None, line))
        if not valid:
            raise CorpusError(
                f"no file of {self.shown} is large enough to hold out {fraction:.0%} of it at a line start; "
                "use --valid-split end, more text, or pass --valid FILE"
            )
        return TextPart(tuple(train), self.encoding_errors), TextPart(tuple(valid), self.encoding_errors), small


SHOWN_FILES = 3  # file names a message lists before "and N more"


def _names(names: list[str]) -> str:
    more = len(names) - SHOWN_FILES
    return ", ".join(names[:SHOWN_FILES]) + (f" and {more:,} more" if more > 0 else "")


def _classify(path: Path, encoding_errors: str) -> tuple[int, str, bool, int]:
    """(characters, last character, blank, U+FFFD count) of a file's clean text; UnusableFile if it
    is not text."""
    chars, last, blank, replaced = 0, "", True, 0
    for text in _file_text(path, encoding_errors):
        if text:
            chars += len(text)
            last = text[-1]
            blank = blank and text.isspace()
            replaced += text.count(REPLACEMENT)
    return chars, last, blank, replaced


def _walk(folder: Path, rel: str, skip: set[Path], found: list, skipped: list) -> None:
    """Every regular file under `folder` into `found` as (relative path, path); the rest into `skipped`."""
    try:
        with os.scandir(folder) as it:
            entries = list(it)
    except OSError as e:
        if not rel:
            raise CorpusError(f"{folder}: cannot be read ({e.strerror}); check its permissions") from None
        skipped.append((rel, "unreadable"))
        return
    if rel and any(e.name == RUN_MARK for e in entries):
        skipped.append((rel, "lstmtext run"))
        return
    for e in entries:
        name = rel + e.name
        try:
            is_dir = e.is_dir()
        except OSError:
            is_dir = False
        if e.name.startswith("."):
            skipped.append((name + "/" * is_dir, "hidden"))
        elif is_dir and e.is_symlink():
            skipped.append((name + "/", "symlinked folder"))
        elif is_dir and skip and Path(e.path).resolve() in skip:
            skipped.append((name + "/", "run folder"))
        elif is_dir:
            _walk(Path(e.path), name + "/", skip, found, skipped)
        elif e.is_file():
            found.append((name, Path(e.path)))
        else:
            skipped.append((name, "not a regular file"))  # a FIFO would block; a broken link holds nothing


def list_corpus(
    path: str | Path,
    include: Iterable[str] = (),
    encoding_errors: str = "strict",
    *,
    skip_dirs: Iterable[str | Path] = (),
) -> Listing:
    """The files of a corpus, each read once to classify it and count its characters.

    A folder is walked recursively (hidden entries and symlinked folders left out, and `skip_dirs`,
    such as the run's own folder); `include` globs choose among its files (see _glob). A single
    file is taken as it is, and any problem with it is a CorpusError.
    """
    if encoding_errors not in ENCODING_ERRORS:
        raise ConfigError(f"unknown encoding errors mode {encoding_errors!r}; use one of: {', '.join(ENCODING_ERRORS)}")
    include = tuple(include)
    patterns = [_glob(p) for p in include]
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"{path}: no such file or directory; check the path")
    if not path.is_dir():
        if include:
            raise ConfigError(f"--include chooses files in a folder, but {path} is a file; pass its folder instead")
        chars, _, blank, replaced = _classify(path, encoding_errors)
        if blank:
            raise CorpusError(f"{path}: the corpus is empty or only whitespace; give it some text")
        one = CorpusFile(path, path.name, path.stat().st_size, chars, replaced=replaced)
        return Listing(path, False, (one,), (), encoding_errors)
    found: list[tuple[str, Path]] = []
    skipped: list[tuple[str, str]] = []
    _walk(path, "", {Path(d).resolve() for d in skip_dirs}, found, skipped)
    taken = []
    for name, file in sorted(found):
        if patterns and not any(p.fullmatch(name) for p in patterns):
            skipped.append((name, "not matching --include"))
            continue
        try:
            size = file.stat().st_size
            chars, last, blank, replaced = _classify(file, encoding_errors)
        except UnusableFile as e:
            skipped.append((name, e.reason))
            continue
        except OSError:
            skipped.append((name, "unreadable"))
            continue
        if blank:
            skipped.append((name, "empty"))
            continue
        taken.append(CorpusFile(file, name, size, chars + (last != "\n"), last != "\n", replaced))
    listing = Listing(path, True, tuple(taken), tuple(sorted(skipped)), encoding_errors)
    if not taken:
        what = f"; skipped {len(skipped):,} ({listing.reasons_text()})" if skipped else ""
        hint = (
            "check the --include globs ('*.md' matches names at any depth, 'src/**/*.py' paths in the folder)"
            if include
            else "put UTF-8 text files (.txt, .md, ...) there, or choose files with --include '*.txt'"
        )
        if encoding_errors == "strict" and "not UTF-8" in listing.reasons():
            hint += "; --encoding-errors replace takes the files that are not UTF-8"
        raise CorpusError(f"{listing.shown}: no text file to read{what}; {hint}")
    return listing


def iter_text(path: str | Path, encoding_errors: str = "strict") -> Iterator[str]:
    """The corpus text (see read_text) in pieces cut at safe line ends, one piece in memory at a time."""
    yield from list_corpus(path, (), encoding_errors).whole().pieces()


def read_text(path: str | Path, encoding_errors: str = "strict") -> str:
    """The text of a UTF-8 file, or of every text file in a folder and its subfolders, in path order.

    `encoding_errors="replace"` turns invalid UTF-8 into U+FFFD instead of stopping. A byte-order
    mark is dropped and CRLF or lone CR become "\\n". In a folder, each file's text ends with "\\n"
    so that the last line of one file and the first of the next stay apart; files that are not
    text are skipped (see list_corpus).
    """
    return "".join(iter_text(path, encoding_errors))


def heldout_parts(
    path: str | Path, encoding_errors: str = "strict", fraction: float = 0.1
) -> tuple[TextPart, TextPart]:
    """(train, valid): the corpus split by Listing.heldout_end, found by streaming."""
    _check_fraction(fraction)
    return list_corpus(path, (), encoding_errors).heldout_end(fraction)
