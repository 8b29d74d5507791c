"""Word vectors in and out: start an embedding from vectors a person already has (word2vec, GloVe),
and look at the one a model learned: nearest words by cosine, analogies, a word2vec file for others.

The file formats (Mikolov et al. 2013's word2vec tool; Pennington et al. 2014's GloVe):

    word2vec text    a header "COUNT DIM", then a line per word: the word and DIM numbers
    word2vec binary  the same header, then per word: the word, a space, DIM little-endian float32,
                     and (as the tool writes it) a newline
    GloVe text       no header: a line per word, the word and DIM numbers

The format is told from the file itself. Words are matched to the vocabulary as they stream past,
so a file of several GB never has to fit in memory: only the matched rows are kept.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path

import numpy as np

from lstmtext import files
from lstmtext.errors import ConfigError

CHUNK = 1 << 20  # bytes read at a time from a binary file


@dataclass
class Matched:
    """What a vectors file gave a vocabulary: rows[k] of the embedding takes vectors[k]."""

    kind: str  # "word2vec text", "word2vec binary" or "GloVe text"
    dim: int
    rows: np.ndarray  # (n,) int64 vocabulary ids, increasing
    vectors: np.ndarray  # (n, dim) float32
    exact: int  # rows matched with the same case
    lowered: int  # rows matched only after lowercasing both sides
    read: int  # words in the file


def _numbers(fields: Sequence[bytes], dim: int, where: str) -> np.ndarray:
    if len(fields) != dim:
        raise ConfigError(f"{where}: {len(fields)} numbers after the word, expected {dim}")
    try:
        v = np.array([float(x) for x in fields], dtype=np.float32)  # (dim,)
    except ValueError:
        raise ConfigError(f"{where}: not a number among the vector's values") from None
    if not np.isfinite(v).all():
        raise ConfigError(f"{where}: the vector holds inf or nan")
    return v


def _open(path: Path):
    try:
        return open(path, "rb")
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None


BOM = b"\xef\xbb\xbf"


def _fields(raw: bytes) -> list[bytes]:
    """A text line's fields: split on any run of spaces or tabs (ASCII whitespace, so a word with
    a no-break space in it stays one word); a line end (LF or CRLF) is not a field."""
    return raw.split()


def _is_record(fields: list[bytes], dim: int) -> bool:
    """A word (which may itself hold spaces, as in a few GloVe files) followed by dim numbers."""
    if len(fields) < dim + 1:
        return False
    try:
        [float(x) for x in fields[-dim:]]
        fields[0].decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def file_kind(path: Path) -> tuple[str, int]:
    """-> (format, dimension), from the first lines only."""
    with _open(path) as f:
        first, second = f.readline().removeprefix(BOM), f.readline()
    head = _fields(first)
    if len(head) == 2 and all(h.isdigit() for h in head):
        dim = int(head[1])
        if dim < 1:
            raise ConfigError(f"{path}: the header says {dim}-dimensional vectors")
        # A text record is a word and dim numbers; a binary one's raw float bytes are not.
        text = second.endswith(b"\n") and _is_record(_fields(second), dim) or not second
        return ("word2vec text" if text else "word2vec binary"), dim
    fields = _fields(first)
    if len(fields) < 2 or not _is_record(fields, len(fields) - 1):
        raise ConfigError(
            f"{path} is not a word2vec or GloVe file: its first line is neither a 'COUNT DIM' header "
            "nor a word followed by numbers"
        )
    return "GloVe text", len(fields) - 1


def _text_records(path: Path, dim: int, header: bool) -> Iterator[tuple[str, bytes, int]]:
    """-> (first field, its whole line, line number): the numbers are parsed only for words that match."""
    with _open(path) as f:
        for number, raw in enumerate(f, start=1):
            if number == 1:
                raw = raw.removeprefix(BOM)
                if header:
                    continue
            head = raw.split(None, 1)
            if head:
                yield head[0].decode("utf-8", "replace"), raw, number


def _binary_records(path: Path, dim: int) -> Iterator[tuple[str, bytes, int]]:
    """-> (word, its dim × 4 bytes, record number)."""
    size = 4 * dim
    with _open(path) as f:
        count = int(f.readline().split()[0])
        buf, pos = b"", 0
        for k in range(count):
            while True:
                space = buf.find(b" ", pos)
                if space >= 0 and len(buf) - space - 1 >= size:
                    break
                more = f.read(CHUNK)
                if not more:
                    raise ConfigError(f"{path} ends after {k:,} of the {count:,} vectors its header announces")
                buf, pos = buf[pos:] + more, 0
            word = buf[pos:space].lstrip(b"\r\n").decode("utf-8", "replace")  # the tool ends a record with \n
            yield word, buf[space + 1 : space + 1 + size], k + 1
            pos = space + 1 + size


def match(path: Path, vocab: Sequence[str]) -> Matched:
    """The vectors of `path` for the tokens of `vocab`: a token takes the vector of the same word,
    or failing that the first word (files are sorted by frequency) equal to it when both are
    lowercased. Tokens no word matches are left out."""
    kind, dim = file_kind(path)
    if kind == "word2vec text":
        with _open(path) as f:
            declared = int(_fields(f.readline().removeprefix(BOM))[0])
    exact_id = {w: i for i, w in enumerate(vocab)}
    lower_ids: dict[str, list[int]] = {}
    for i, w in enumerate(vocab):
        lower_ids.setdefault(w.lower(), []).append(i)
    same: dict[int, np.ndarray] = {}
    lowered: dict[int, np.ndarray] = {}
    binary = kind == "word2vec binary"
    records = _binary_records(path, dim) if binary else _text_records(path, dim, header=kind != "GloVe text")
    read = 0
    for word, raw, number in records:
        read += 1
        i = exact_id.get(word)
        ids = [j for j in lower_ids.get(word.lower(), ()) if j not in lowered]
        if (i is None or i in same) and not ids:
            continue
        if binary:
            vec = np.frombuffer(raw, dtype="<f4").astype(np.float32)  # (dim,)
            if not np.isfinite(vec).all():
                raise ConfigError(f"{path} vector {number:,} ({word!r}) holds inf or nan")
        else:
            # a few GloVe files have words with spaces in them: the numbers are the last dim fields
            parts = _fields(raw)
            if len(parts) > dim + 1 and _is_record(parts[:2], 1):  # "w 1 2 3 4" is too many numbers, not "w 1"
                raise ConfigError(f"{path} line {number:,}: {len(parts) - 1} numbers after the word, expected {dim}")
            word = b" ".join(parts[:-dim]).decode("utf-8", "replace")
            vec = _numbers(parts[-dim:] if len(parts) > dim else parts[1:], dim, f"{path} line {number:,}")
            i = exact_id.get(word)
            ids = [j for j in lower_ids.get(word.lower(), ()) if j not in lowered]
        if i is not None and i not in same:
            same[i] = vec
        for j in ids:
            lowered[j] = vec
    for i in same:
        lowered.pop(i, None)
    if read == 0:
        raise ConfigError(f"{path} holds no vectors")
    if kind == "word2vec text" and read != declared:
        raise ConfigError(f"{path} holds {read:,} vectors but its header announces {declared:,}")
    rows = np.array(sorted({*same, *lowered}), dtype=np.int64)  # (n,)
    vectors = np.array([same.get(i, lowered.get(i)) for i in rows], dtype=np.float32).reshape(len(rows), dim)
    return Matched(kind, dim, rows, vectors, len(same), len(lowered), read)


def token_words(tok) -> list[str]:
    """The vocabulary as a vectors file (or a person) writes words, one distinct name per token.
    Word and character tokens are themselves. A BPE token that starts a word is its text without
    the space ("Ġthe" is "the"); one inside a word is marked "##" as in BERT's vocabularies
    ("##ing"); a piece that is not whole UTF-8 shows its bytes ("<0xE6>")."""
    if tok.kind != "bpe":
        return [tok.id_to_token(i) for i in range(tok.vocab_size)]
    out = []
    for i in range(tok.vocab_size):
        b = tok.token_bytes(i)
        try:
            s = b.decode("utf-8")
        except UnicodeDecodeError:
            out.append("<0x" + b.hex().upper() + ">")
            continue
        # a run of spaces or " \n" keeps its leading space, or it would read as the shorter run
        out.append(s if s.isspace() else s[1:] if len(s) > 1 and s[0] == " " else "##" + s)
    return out


# -- looking at a learned embedding ------------------------------------------------------------------


def unit_rows(W: np.ndarray) -> np.ndarray:
    """(V, E) -> (V, E): each row scaled to length 1 (a zero row stays zero)."""
    norms = np.linalg.norm(W, axis=1, keepdims=True)  # (V, 1)
    return W / np.where(norms > 0, norms, 1)


def find(vocab: Sequence[str], word: str, lowercase: bool = False) -> int:
    """The id of `word`, or one line saying it is not in the vocabulary, with close spellings."""
    index = {w: i for i, w in enumerate(vocab)}
    key = word.lower() if lowercase else word
    if key in index:
        return index[key]
    close = get_close_matches(key, list(index), n=5)
    hint = f"; close: {', '.join(close)}" if close else ""
    raise ConfigError(f"{word!r} is not in the model's vocabulary of {len(vocab):,} tokens{hint}")


def nearest(U: np.ndarray, query: np.ndarray, n: int, exclude: Sequence[int] = ()) -> list[tuple[int, float]]:
    """The n rows of the unit-row matrix U (V, E) with the highest cosine to query (E,), best first,
    leaving out `exclude`. -> [(id, cosine)]."""
    q = query / max(float(np.linalg.norm(query)), 1e-30)  # (E,)
    cos = U @ q  # (V,)
    cos[list(exclude)] = -np.inf
    n = min(n, len(cos) - len(set(exclude)))
    top = np.argpartition(-cos, n - 1)[:n] if n > 0 else np.array([], dtype=np.int64)
    top = top[np.argsort(-cos[top], kind="stable")]
    return [(int(i), float(cos[i])) for i in top]


def neighbors(W: np.ndarray, word_id: int, n: int) -> list[tuple[int, float]]:
    """The n tokens nearest to word_id by cosine, itself left out."""
    U = unit_rows(W)
    return nearest(U, U[word_id], n, exclude=[word_id])


def analogy(W: np.ndarray, a: int, b: int, c: int, n: int) -> list[tuple[int, float]]:
    """a − b + c on unit vectors (Mikolov et al. 2013's 3CosAdd, as word2vec's analogy tool does),
    the three words themselves left out: king − man + woman ≈ queen."""
    U = unit_rows(W)
    return nearest(U, U[a] - U[b] + U[c], n, exclude=[a, b, c])


def write_word2vec(path: Path, vocab: Sequence[str], W: np.ndarray) -> tuple[int, list[str]]:
    """Write W (V, E) as a word2vec text file. A token with whitespace in it (a character model's
    space or line end) cannot be a word2vec word: it is left out. -> (written, left out)."""
    keep = [i for i, w in enumerate(vocab) if w and not any(ch.isspace() for ch in w)]
    kept = set(keep)
    skipped = [w for i, w in enumerate(vocab) if i not in kept]
    try:
        with files.replaced_when_whole(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(f"{len(keep)} {W.shape[1]}\n")
            for i in keep:
                # 9 significant digits: a float32 read back is the same number
                f.write(vocab[i] + " " + " ".join(f"{x:.9g}" for x in W[i].tolist()) + "\n")
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e.strerror or e}") from None
    return len(keep), skipped
