"""Reading the training text from a file or a folder, and holding out a validation part.

The text that leaves this module is clean: valid UTF-8 (or with U+FFFD where asked), no
byte-order mark, "\\n" line ends only, and not blank. Every problem a user can fix is a
`CorpusError` that names the file and the fix.
"""

from __future__ import annotations

import codecs
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lstmtext.errors import ConfigError, CorpusError

ENCODING_ERRORS = ("strict", "replace")


def _files(path: Path) -> list[Path]:
    if not path.exists():
        raise CorpusError(f"{path}: no such file or directory; check the path")
    if not path.is_dir():
        return [path]
    files = sorted((f for f in path.glob("*.txt") if f.is_file()), key=lambda f: f.name)
    if not files:
        raise CorpusError(
            f"{path}: directory has no .txt files in it; put the text in *.txt files there or pass a single file"
        )
    return files


CHUNK_BYTES = 1 << 22  # read 4 MiB at a time: memory stays flat however large the corpus


def _file_text(path: Path, encoding_errors: str) -> Iterator[str]:
    """The cleaned text of one file, in pieces of about CHUNK_BYTES, checked as it streams."""
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below, also when the caller stops early)
    except OSError as e:
        raise CorpusError(f"{path}: cannot be read ({e.strerror}); check its permissions") from None
    with f:
        block = f.read(CHUNK_BYTES)
        if block.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise CorpusError(f"{path}: looks like UTF-16 text; save it as UTF-8")
        offset = len(codecs.BOM_UTF8) if block.startswith(codecs.BOM_UTF8) else 0
        block = block[offset:]
        decoder = codecs.getincrementaldecoder("utf-8")(encoding_errors)
        carry_cr = False  # a "\r" at the end of a piece may be the first half of "\r\n"
        while True:
            final = not block
            nul = block.find(b"\x00")
            if nul != -1:
                raise CorpusError(
                    f"{path}: has a NUL byte at byte offset {offset + nul}, so it looks like a binary file; "
                    "pass a UTF-8 text file"
                )
            pending = len(decoder.getstate()[0])  # bytes of an unfinished character from the last block
            try:
                text = decoder.decode(block, final=final)
            except UnicodeDecodeError as e:
                raise CorpusError(
                    f"{path}: invalid UTF-8 at byte offset {offset - pending + e.start}; convert the file "
                    "to UTF-8 or pass --encoding-errors replace"
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


def iter_text(path: str | Path, encoding_errors: str = "strict") -> Iterator[str]:
    """The corpus text (see read_text) in pieces cut at safe line ends, one piece in memory at a time."""
    if encoding_errors not in ENCODING_ERRORS:
        raise ConfigError(f"unknown encoding errors mode {encoding_errors!r}; use one of: {', '.join(ENCODING_ERRORS)}")
    path = Path(path)
    files = _files(path)
    rest, blank = "", True
    for file in files:
        last_char = ""
        for text in _file_text(file, encoding_errors):
            if text:
                last_char = text[-1]
            rest += text
            if len(rest) >= CHUNK_BYTES:
                cut = _safe_cut(rest)
                if cut:
                    piece, rest = rest[:cut], rest[cut:]
                    blank = blank and not piece.strip()
                    yield piece
        if path.is_dir() and last_char and last_char != "\n":
            rest += "\n"  # files of a folder must not run together
    blank = blank and not rest.strip()
    if blank:
        raise CorpusError(f"{path}: the corpus is empty or only whitespace; give it some text")
    yield rest


def read_text(path: str | Path, encoding_errors: str = "strict") -> str:
    """The text of a UTF-8 file, or of all `*.txt` files directly in a directory, in name order.

    `encoding_errors="replace"` turns invalid UTF-8 into U+FFFD instead of stopping. A byte-order
    mark is dropped and CRLF or lone CR become "\\n". In a directory, each file's text ends with
    "\\n" so that the last line of one file and the first of the next stay apart.
    """
    return "".join(iter_text(path, encoding_errors))


@dataclass(frozen=True)
class TextPart:
    """Characters [start, stop) of a corpus, streamed again whenever they are needed, so that
    neither the training nor the held-out text has to sit in memory as one string."""

    path: Path
    encoding_errors: str = "strict"
    start: int = 0
    stop: int | None = None  # None: to the end

    def pieces(self) -> Iterator[str]:
        pos = 0
        for text in iter_text(self.path, self.encoding_errors):
            lo, hi = pos, pos + len(text)
            pos = hi
            if hi <= self.start:
                continue
            if self.stop is not None and lo >= self.stop:
                return
            a = max(self.start - lo, 0)
            b = len(text) if self.stop is None else min(self.stop - lo, len(text))
            yield text[a:b]

    def sha256(self) -> str:
        h = hashlib.sha256()
        for text in self.pieces():
            h.update(text.encode("utf-8"))
        return h.hexdigest()

    def text(self) -> str:
        return "".join(self.pieces())


def heldout_parts(
    path: str | Path, encoding_errors: str = "strict", fraction: float = 0.1
) -> tuple[TextPart, TextPart]:
    """(train, valid): the corpus split as split_heldout would split it, found by streaming."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"held-out fraction must be between 0 and 1, got {fraction}; pass a fraction such as 0.1")
    path = Path(path)
    total = sum(len(t) for t in iter_text(path, encoding_errors))
    cut = int(total * (1.0 - fraction))
    # Move the cut forward to the next line start, as split_heldout does.
    pos, prev, moved = 0, "", None
    for text in iter_text(path, encoding_errors):
        if moved is None and pos + len(text) >= cut:
            before = text[cut - pos - 1] if cut - pos - 1 >= 0 else prev
            if cut == 0 or before == "\n":
                moved = cut
            else:
                nl = text.find("\n", max(cut - pos, 0))
                if nl != -1:
                    moved = pos + nl + 1 if pos + nl + 1 < total else cut
        pos += len(text)
        prev = text[-1:] or prev
        if moved is not None:
            break
    cut = cut if moved is None else moved
    if cut <= 0 or cut >= total:
        raise CorpusError(
            f"the corpus ({total} characters) is too small to hold out {fraction:.0%} for validation; "
            "use more text or pass --valid FILE"
        )
    return TextPart(path, encoding_errors, 0, cut), TextPart(path, encoding_errors, cut, None)


def split_heldout(text: str, fraction: float = 0.1) -> tuple[str, str]:
    """Split off the last `fraction` of `text` as validation text: `(train, valid)`, in order.

    The cut moves forward to the next line start so no line is split; with no line start after
    the cut point (one long last line), the cut falls inside that line.
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"held-out fraction must be between 0 and 1, got {fraction}; pass a fraction such as 0.1")
    cut = int(len(text) * (1.0 - fraction))
    if cut > 0 and text[cut - 1] != "\n":
        newline = text.find("\n", cut)
        # A "\n" that ends the text starts no line; then cut at the character instead.
        if newline != -1 and newline + 1 < len(text):
            cut = newline + 1
    train, valid = text[:cut], text[cut:]
    if not train or not valid:
        raise CorpusError(
            f"the corpus ({len(text)} characters) is too small to hold out "
            f"{fraction:.0%} for validation; use more text or pass --valid FILE"
        )
    return train, valid
