"""Reading the training text from a file or a folder, and holding out a validation part.

The text that leaves this module is clean: valid UTF-8 (or with U+FFFD where asked), no
byte-order mark, "\\n" line ends only, and not blank. Every problem a user can fix is a
`CorpusError` that names the file and the fix.
"""

from __future__ import annotations

import codecs
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


def _read_one(path: Path, encoding_errors: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CorpusError(f"{path}: cannot be read ({e.strerror}); check its permissions") from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise CorpusError(f"{path}: looks like UTF-16 text; save it as UTF-8")
    nul = data.find(b"\x00")
    if nul != -1:
        raise CorpusError(
            f"{path}: has a NUL byte at byte offset {nul}, so it looks like a binary file; pass a UTF-8 text file"
        )
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[bom:].decode("utf-8", errors=encoding_errors)
    except UnicodeDecodeError as e:
        raise CorpusError(
            f"{path}: invalid UTF-8 at byte offset {bom + e.start}; convert the file "
            "to UTF-8 or pass --encoding-errors replace"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_text(path: str | Path, encoding_errors: str = "strict") -> str:
    """The text of a UTF-8 file, or of all `*.txt` files directly in a directory, in name order.

    `encoding_errors="replace"` turns invalid UTF-8 into U+FFFD instead of stopping. A byte-order
    mark is dropped and CRLF or lone CR become "\\n". In a directory, each file's text ends with
    "\\n" so that the last line of one file and the first of the next stay apart.
    """
    if encoding_errors not in ENCODING_ERRORS:
        raise ConfigError(f"unknown encoding errors mode {encoding_errors!r}; use one of: {', '.join(ENCODING_ERRORS)}")
    path = Path(path)
    texts = [_read_one(f, encoding_errors) for f in _files(path)]
    if path.is_dir():
        texts = [t if not t or t.endswith("\n") else t + "\n" for t in texts]
    text = "".join(texts)
    if not text.strip():
        raise CorpusError(f"{path}: the corpus is empty or only whitespace; give it some text")
    return text


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
