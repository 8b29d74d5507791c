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

from lstmtext.corpus import TextPart, heldout_parts
from lstmtext.errors import ConfigError, CorpusError
from lstmtext.tokenizer import Tokenizer

CACHE_VERSION = 1


@dataclass
class TokenizerOptions:
    kind: str = "word"
    vocab_size: int = 10000
    min_freq: int = 1
    lowercase: bool = False
    word_split: str = "punct"


@dataclass
class Data:
    tokenizer: Tokenizer
    train_ids: np.ndarray  # (N,) int32, possibly a read-only memory map
    valid_ids: np.ndarray  # (M,) int32
    info: dict  # paths, hashes and sizes, stored in checkpoints to detect a changed corpus
    valid_part: TextPart  # the held-out text, streamed again when it is written out


def check_tokenizer_options(o: TokenizerOptions) -> None:
    """The option errors Tokenizer.train would raise, found before any file is touched."""
    from lstmtext.tokenizer import KINDS, WORD_SPLITS

    if o.kind not in KINDS:
        raise ConfigError(f"--tokenizer must be one of {', '.join(KINDS)}, got {o.kind!r}")
    if o.word_split not in WORD_SPLITS:
        raise ConfigError(f"--word-split must be one of {', '.join(WORD_SPLITS)}, got {o.word_split!r}")
    if o.vocab_size < 3:
        raise ConfigError(f"--vocab-size must be at least 3, got {o.vocab_size}")
    if o.min_freq < 1:
        raise ConfigError(f"--min-freq must be at least 1, got {o.min_freq}")


def _cached_ids(tokenizer: Tokenizer, part: TextPart, text_sha: str, cache: Path | None) -> np.ndarray:
    """Encode part, or load the ids a previous run encoded from the same text with the same tokenizer."""
    key = {
        "format_version": CACHE_VERSION,
        "text_sha256": text_sha,
        "tokenizer_sha256": hashlib.sha256(tokenizer.to_json().encode()).hexdigest(),
    }
    meta = None if cache is None else cache.with_suffix(".json")
    if cache is not None and cache.exists() and meta.exists():
        try:
            same = json.loads(meta.read_text()) == key
            ids = np.load(cache, mmap_mode="r", allow_pickle=False) if same else None
        except (OSError, ValueError):
            ids = None  # a damaged cache is only a cache: tokenize again
        if ids is not None and ids.dtype == np.int32 and ids.ndim == 1:
            return ids
    ids = tokenizer.encode_stream(part.pieces())
    if cache is not None:
        try:
            tmp = cache.with_name(cache.stem + ".tmp.npy")
            np.save(tmp, ids, allow_pickle=False)
            tmp.replace(cache)
            meta.write_text(json.dumps(key))
        except OSError:
            pass  # only a cache: a resume will tokenize again
    return ids


def prepare_data(
    corpus,
    valid,
    tok_opts: TokenizerOptions | None,
    encoding_errors: str,
    say,
    tokenizer=None,
    cache_dir: Path | None = None,
) -> Data:
    """Read and tokenize. A new run trains a tokenizer on the training text only; a resumed run
    reuses its checkpoint's tokenizer (never one left over from another run)."""
    if valid is not None:
        train_part, valid_part = TextPart(Path(corpus), encoding_errors), TextPart(Path(valid), encoding_errors)
    else:
        train_part, valid_part = heldout_parts(corpus, encoding_errors, 0.1)
        say(
            f"No --valid given: holding out the last 10% of {corpus} (from character {valid_part.start:,} on) "
            "for validation."
        )
    if tokenizer is None:
        assert tok_opts is not None
        tokenizer = Tokenizer.train(
            tok_opts.kind,
            train_part.pieces(),
            vocab_size=tok_opts.vocab_size,
            min_freq=tok_opts.min_freq,
            lowercase=tok_opts.lowercase,
            word_split=tok_opts.word_split,
        )
    train_sha = train_part.sha256()
    cache = None if cache_dir is None else cache_dir / "train-ids.npy"
    train_ids = _cached_ids(tokenizer, train_part, train_sha, cache)
    valid_ids = tokenizer.encode_stream(valid_part.pieces())
    if len(valid_ids) < 2:
        raise CorpusError("the validation text has fewer than 2 tokens; give a longer --valid FILE")
    info = {
        "corpus": str(Path(corpus).resolve()),
        "valid": None if valid is None else str(Path(valid).resolve()),
        "train_sha256": train_sha,
        "valid_sha256": valid_part.sha256(),
        "train_tokens": len(train_ids),
        "valid_tokens": len(valid_ids),
    }
    return Data(tokenizer, train_ids, valid_ids, info, valid_part)
