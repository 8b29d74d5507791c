"""From files to token ids: hold out validation text, train or reuse a tokenizer, encode, cache.

Text is streamed in pieces (corpus.TextPart), so memory is bounded by the token ids (int32), not by
Python strings. The training ids are cached in the run directory (train-ids.npy, memory-mapped on
load), keyed by the text's and the tokenizer's SHA-256, so a resumed run does not tokenize again.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstmtext import sizing
from lstmtext.corpus import TextPart, list_corpus
from lstmtext.errors import ConfigError, CorpusError
from lstmtext.tokenizer import Tokenizer

CACHE_VERSION = 1


@dataclass
class TokenizerOptions:
    """The tokenizer a run asks for (`train`'s --tokenizer, --vocab-size, ...; the defaults are
    TrainOptions's)."""

    kind: str
    vocab_size: int | None  # None: sizing.vocab_for the training text
    min_freq: int
    lowercase: bool
    word_split: str


@dataclass
class Data:
    tokenizer: Tokenizer
    train_ids: np.ndarray  # (N,) int32, possibly a read-only memory map
    valid_ids: np.ndarray  # (M,) int32
    info: dict  # paths, hashes and sizes, stored in checkpoints to detect a changed corpus
    valid_part: TextPart  # the held-out text, streamed again when it is written out
    train_part: TextPart  # the training text, streamed again when the tokenizer is chosen


def check_tokenizer_options(o: TokenizerOptions) -> None:
    """The option errors Tokenizer.train would raise, found before any file is touched."""
    from lstmtext.tokenizer import check_options

    check_options(o.kind, o.vocab_size, o.min_freq, o.word_split)


def cached_ids(cache: Path, tokenizer: Tokenizer, text_sha: str | None = None) -> np.ndarray | None:
    """The ids a run cached (train-ids.npy), if `tokenizer` encoded them (and from the text of that
    SHA-256, when given); else None. Memory-mapped."""
    tokenizer_sha = hashlib.sha256(tokenizer.to_json().encode()).hexdigest()
    key = {"format_version": CACHE_VERSION, "tokenizer_sha256": tokenizer_sha}
    meta = cache.with_suffix(".json")
    try:
        stored = json.loads(meta.read_text())
        same = {k: stored.get(k) for k in key} == key and text_sha in (None, stored.get("text_sha256"))
        ids = np.load(cache, mmap_mode="r", allow_pickle=False) if same else None
    except (OSError, ValueError, AttributeError):
        return None  # missing or damaged: only a cache
    return ids if ids is not None and ids.dtype == np.int32 and ids.ndim == 1 else None


def store_ids(cache: Path, tokenizer: Tokenizer, text_sha: str, ids: np.ndarray) -> None:
    """Write train-ids.npy (and its key beside it) for cached_ids to find."""
    key = {
        "format_version": CACHE_VERSION,
        "text_sha256": text_sha,
        "tokenizer_sha256": hashlib.sha256(tokenizer.to_json().encode()).hexdigest(),
    }
    try:
        tmp = cache.with_name(cache.stem + ".tmp.npy")
        np.save(tmp, ids, allow_pickle=False)
        tmp.replace(cache)
        cache.with_suffix(".json").write_text(json.dumps(key))
    except OSError:
        pass  # only a cache: a resume will tokenize again


def _cached_ids(tokenizer: Tokenizer, part: TextPart, text_sha: str, cache: Path | None) -> np.ndarray:
    """Encode part, or load the ids a previous run encoded from the same text with the same tokenizer."""
    ids = None if cache is None else cached_ids(cache, tokenizer, text_sha)
    if ids is not None:
        return ids
    ids = tokenizer.encode_stream(part.pieces())
    if cache is not None:
        store_ids(cache, tokenizer, text_sha, ids)
    return ids


VALID_SPLITS = ("end", "per-file")


def prepare_data(
    corpus,
    valid,
    tok_opts: TokenizerOptions | None,
    encoding_errors: str,
    say,
    tokenizer=None,
    cache_dir: Path | None = None,
    *,
    include: tuple[str, ...] = (),
    valid_split: str = "end",
    list_files: bool = False,
) -> Data:
    """Read and tokenize. A new run trains a tokenizer on the training text only; a resumed run
    reuses its checkpoint's tokenizer (never one left over from another run).

    A folder corpus is read recursively (see corpus.list_corpus); `include` globs choose its files.
    Without `valid`, the last 10% of the text is held out: of the whole (`valid_split="end"`), or of
    each file (`"per-file"`, so that no single file decides validation).
    """
    if valid_split not in VALID_SPLITS:
        raise ConfigError(f"--valid-split must be one of {', '.join(VALID_SPLITS)}, got {valid_split!r}")
    if valid is not None and valid_split != "end":
        raise ConfigError(
            f"--valid-split {valid_split} holds out part of each corpus file, and --valid gives the held-out "
            "text itself; use one of them"
        )
    # The first pass: every file read once, to classify it and count its characters.
    skip = () if cache_dir is None else (cache_dir,)
    listing = list_corpus(corpus, include, encoding_errors, skip_dirs=skip)
    if list_files:
        for line in listing.lines():
            say(line)
    say(listing.summary(listed=list_files))
    if valid is not None:
        held = list_corpus(valid, (), encoding_errors, skip_dirs=skip)
        if held.is_dir:
            say(held.summary(listed=False))
        train_part, valid_part = listing.whole(), held.whole()
    else:
        train_part, valid_part, note = listing.heldout(valid_split)
        say(note)
    vocab_choice, vocab_size = None, None
    if tokenizer is None:
        assert tok_opts is not None
        vocab_size = tok_opts.vocab_size
        if vocab_size is None:
            vocab_size = sizing.vocab_for(tok_opts.kind, train_part.chars)
            vocab_choice = sizing.vocab_reason(tok_opts.kind, train_part.chars, vocab_size)
        tokenizer = Tokenizer.train(
            tok_opts.kind,
            train_part.pieces(),
            vocab_size=vocab_size,
            min_freq=tok_opts.min_freq,
            lowercase=tok_opts.lowercase,
            word_split=tok_opts.word_split,
        )
    # Known from the tokenizer's pass; a resumed run makes one here (the cache needs it before encoding).
    train_sha = train_part.sha256()
    cache = None if cache_dir is None else cache_dir / "train-ids.npy"
    train_ids = _cached_ids(tokenizer, train_part, train_sha, cache)
    valid_ids = tokenizer.encode_stream(valid_part.pieces())
    if len(valid_ids) < 2:
        raise CorpusError("the validation text has fewer than 2 tokens; give a longer --valid FILE")
    info = {
        "corpus": str(Path(corpus).resolve()),
        "valid": None if valid is None else str(Path(valid).resolve()),
        "files": [f.name for f in listing.files],
        "include": list(include),
        "valid_split": valid_split,
        "valid_files": [] if valid is not None else valid_part.files,
        "skipped": listing.reasons(),
        "train_sha256": train_sha,
        "valid_sha256": valid_part.sha256(),  # from the pass that encoded it
        "train_tokens": len(train_ids),
        "valid_tokens": len(valid_ids),
    }
    if vocab_size is not None:  # a tokenizer trained here; a resumed run keeps the record of its own
        info |= {"vocab_choice": vocab_choice, "vocab_cap": vocab_size}  # the cap as given or chosen
    return Data(tokenizer, train_ids, valid_ids, info, valid_part, train_part)
