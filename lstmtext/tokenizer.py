"""Word, character and byte-level BPE tokenizers, built on HuggingFace `tokenizers`.

- **word**: whitespace (and, by default, punctuation) separated words; every "\\n" becomes "<eos>".
  Ids 0 and 1 are "<unk>" and "<eos>"; a literal "<unk>" in the text (Penn Treebank has them) is the
  unknown id, not three tokens.
- **char**: every Unicode code point is a token, "\\n" and " " included; id 0 is "<unk>", which
  decodes to U+FFFD so that decoded text keeps one character per id.
- **bpe**: byte-level BPE, so any text encodes and decodes exactly and nothing is unknown.

`Tokenizer.to_json()` holds everything needed to rebuild the tokenizer (the HF JSON plus our
options), so a checkpoint carries its tokenizer.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from lstmtext.errors import CheckpointError, ConfigError, CorpusError

KINDS = ("word", "char", "bpe")
WORD_SPLITS = ("punct", "whitespace")
FORMAT_VERSION = 1
UNK, EOS = "<unk>", "<eos>"
# HF encodes a batch on all cores; chunks bound the memory of one Encoding on a large corpus.
CHUNK_CHARS = 1 << 16
LINE_BATCH = 10_000

# Decoding "word" text: no space before a closing token, none after an opening one.
_CLOSING = frozenset(",.;:!?)]}'%…»”’")
_OPENING = frozenset("([{¿¡«“‘")
# An apostrophe is mostly inside a word ("don ' t", "o ' er"): glue it on both sides.
_APOSTROPHE = frozenset("'’")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _byte_to_char() -> dict[str, int]:
    """The GPT-2 byte-level alphabet: each byte is shown as one printable character.

    Bytes that are printable Latin-1 stand for themselves; the rest are moved to U+0100 and up, in
    byte order. Returned as the reverse map (character -> byte), which decoding needs.
    """
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = iter(range(256, 512))
    return {(chr(b) if b in kept else chr(next(shifted))): b for b in range(256)}


def _chunks(text: str, size: int) -> Iterator[str]:
    """Cut `text` into pieces of about `size` characters that encode exactly as the whole text.

    The byte-level pre-tokenizer treats a whitespace run followed by a non-space differently from
    one at the end of the string, so we only cut after a lone "\\n" with non-space on both sides.
    """
    start = 0
    while len(text) - start > size:
        i = text.find("\n", start + size)
        while i != -1 and (i + 1 >= len(text) or text[i - 1].isspace() or text[i + 1].isspace()):
            i = text.find("\n", i + 1)
        if i == -1:
            break
        yield text[start : i + 1]
        start = i + 1
    yield text[start:]


def _valid_utf8(text: str) -> str:
    # A prompt from argv may hold lone surrogates (undecodable bytes); Rust strings cannot.
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def _pipeline(hf: HFTokenizer, kind: str, lowercase: bool, word_split: str) -> None:
    steps = [normalizers.NFC()] if kind == "word" else []
    steps += [normalizers.Lowercase()] if lowercase else []
    hf.normalizer = normalizers.Sequence(steps) if steps else None
    if kind == "word":
        # Whitespace() is \w+|[^\w\s]+; WhitespaceSplit() is how Penn Treebank counts words.
        punct = word_split == "punct"
        hf.pre_tokenizer = pre_tokenizers.Whitespace() if punct else pre_tokenizers.WhitespaceSplit()
    elif kind == "char":
        hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    else:
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()


def _word_level(tokens: list[str], kind: str, lowercase: bool, word_split: str) -> HFTokenizer:
    hf = HFTokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token=UNK))
    _pipeline(hf, kind, lowercase, word_split)
    if kind == "word":
        # Added tokens are matched in the raw text before splitting, so "<unk>" stays one token.
        # Char kind must not do this: "<unk>" there is five characters that should round-trip.
        hf.add_special_tokens([UNK, EOS])
    return hf


class Tokenizer:
    """Our tokenizer: a HuggingFace tokenizer plus the rules for "<eos>", "<unk>" and decoding."""

    def __init__(self, hf: HFTokenizer, kind: str, lowercase: bool = False, word_split: str = "punct") -> None:
        self.kind, self.lowercase, self.word_split = kind, lowercase, word_split
        self._hf = hf
        vocab = hf.get_vocab(with_added_tokens=True)
        tokens = [""] * len(vocab)
        for token, i in vocab.items():
            tokens[i] = token
        self._tokens = tokens
        self.unk_id: int | None = vocab.get(UNK) if kind != "bpe" else None
        self.eos_id: int | None = vocab.get(EOS) if kind == "word" else None
        if kind == "bpe":
            to_byte = _byte_to_char()
            self._bytes = [bytes(to_byte[c] for c in t) for t in tokens]
        punct = kind == "word" and word_split == "punct"
        self._closing = [punct and bool(t) and set(t) <= _CLOSING for t in tokens]
        self._opening = [punct and bool(t) and (set(t) <= _OPENING or set(t) <= _APOSTROPHE) for t in tokens]

    @classmethod
    def train(
        cls,
        kind: str,
        text: str | Iterable[str],
        *,
        vocab_size: int = 10000,
        min_freq: int = 1,
        lowercase: bool = False,
        word_split: str = "punct",
    ) -> Tokenizer:
        """Learn a vocabulary of at most `vocab_size` tokens (specials included) from `text`: a
        string, or an iterable of pieces of one (streamed: a large corpus is never whole in memory;
        pieces must be cut after a line end, as `corpus.iter_text` cuts them).

        For bpe, `min_freq` is at least 2: merging a pair seen once only memorizes the corpus.
        """
        if kind not in KINDS:
            raise ConfigError(f"unknown tokenizer kind {kind!r}; use one of: {', '.join(KINDS)}")
        if word_split not in WORD_SPLITS:
            raise ConfigError(f"unknown word split {word_split!r}; use one of: {', '.join(WORD_SPLITS)}")
        least = 3 if kind == "word" else 2  # the specials plus one real token
        if vocab_size < least:
            raise ConfigError(
                f"vocab size must be at least {least} for {kind} tokens, got {vocab_size}; raise --vocab-size"
            )
        if min_freq < 1:
            raise ConfigError(f"min freq must be at least 1, got {min_freq}; use --min-freq 1 or more")
        texts = [text] if isinstance(text, str) else text
        seen_text = False

        def pieces_of(size: int) -> Iterator[str]:
            nonlocal seen_text
            for t in texts:
                seen_text = seen_text or bool(t)
                yield from _chunks(_valid_utf8(t), size)

        if kind == "bpe":
            hf = HFTokenizer(models.BPE())
            _pipeline(hf, kind, lowercase, word_split)
            trainer = trainers.BpeTrainer(
                vocab_size=vocab_size,
                min_frequency=max(2, min_freq),
                show_progress=False,
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                special_tokens=[],
            )
            hf.train_from_iterator(pieces_of(CHUNK_CHARS), trainer=trainer)
            if not seen_text:
                raise CorpusError("the training text is empty, so there is no BPE to learn; give it some text")
            return cls(hf, kind, lowercase, word_split)

        specials = [UNK, EOS] if kind == "word" else [UNK]
        pieces: Iterable[str | list[str]]
        if kind == "word":
            # The trainer would count literal specials as words and give them a second id.
            specials_re = re.compile(r"<(?:unk|eos)>", flags=re.IGNORECASE if lowercase else 0)

            def line_batches() -> Iterator[list[str]]:
                for t in texts:
                    lines = specials_re.sub(" ", _valid_utf8(t)).split("\n")
                    yield from (lines[i : i + LINE_BATCH] for i in range(0, len(lines), LINE_BATCH))

            pieces = line_batches()
        else:
            pieces = pieces_of(CHUNK_CHARS)
        scratch = HFTokenizer(models.WordLevel(unk_token=UNK))
        _pipeline(scratch, kind, lowercase, word_split)
        trainer = trainers.WordLevelTrainer(
            vocab_size=vocab_size, min_frequency=min_freq, special_tokens=specials, show_progress=False
        )
        scratch.train_from_iterator(pieces, trainer=trainer)
        # Rebuild from the learned words so the specials surely sit at ids 0 (and 1).
        learned = sorted(scratch.get_vocab(with_added_tokens=False).items(), key=lambda kv: kv[1])
        words = [t for t, _ in learned if t not in specials][: vocab_size - len(specials)]
        if not words:
            seen = f" seen at least {min_freq} times" if min_freq > 1 else ""
            raise CorpusError(f"the training text yields no {kind} tokens{seen}; give it more text or lower --min-freq")
        return cls(_word_level(specials + words, kind, lowercase, word_split), kind, lowercase, word_split)

    def to_json(self) -> str:
        """One JSON object: our options plus the HF tokenizer, with a format version."""
        return json.dumps(
            {
                "format_version": FORMAT_VERSION,
                "kind": self.kind,
                "lowercase": self.lowercase,
                "word_split": self.word_split,
                "hf": json.loads(self._hf.to_str()),
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, s: str) -> Tokenizer:
        hint = "the checkpoint's tokenizer is damaged; restore the file or retrain"
        try:
            obj = json.loads(s)
        except (json.JSONDecodeError, TypeError, RecursionError) as e:  # RecursionError: absurdly nested
            raise CheckpointError(f"tokenizer JSON is malformed ({e}); {hint}") from None
        if not isinstance(obj, dict) or obj.get("format_version") != FORMAT_VERSION:
            version = obj.get("format_version") if isinstance(obj, dict) else None
            raise CheckpointError(
                f"tokenizer format version {version!r} is not {FORMAT_VERSION}; "
                "use the lstmtext version that wrote it, or retrain"
            )
        kind, split = obj.get("kind"), obj.get("word_split", "punct")
        if kind not in KINDS or split not in WORD_SPLITS:
            raise CheckpointError(f"unknown tokenizer kind {kind!r} or word split {split!r}; {hint}")
        try:
            hf = HFTokenizer.from_str(json.dumps(obj["hf"]))
        except Exception as e:  # noqa: BLE001 -- HF raises a bare Exception on a bad JSON
            raise CheckpointError(f"tokenizer JSON is malformed ({e}); {hint}") from None
        try:
            tok = cls(hf, kind, bool(obj.get("lowercase", False)), split)
        except (IndexError, KeyError):  # ids with gaps, or a bpe token outside the byte alphabet
            raise CheckpointError(f"tokenizer vocabulary is inconsistent; {hint}") from None
        specials = {"word": [UNK, EOS], "char": [UNK], "bpe": []}[kind]
        if tok._tokens[: len(specials)] != specials or "" in tok._tokens:
            raise CheckpointError(f"tokenizer vocabulary does not start with {specials}; {hint}")
        return tok

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    def encode(self, text: str) -> np.ndarray:
        """Token ids (int32, 1-D). Word: one "<eos>" per "\\n", none for text after the last one."""
        text = _valid_utf8(text)
        parts: list[np.ndarray] = []  # int32 arrays: a Python list of ints would take 4-9× the memory
        if self.kind == "word":
            assert self.eos_id is not None
            lines = text.split("\n")
            for i in range(0, len(lines), LINE_BATCH):
                batch: list[int] = []
                for enc in self._hf.encode_batch_fast(lines[i : i + LINE_BATCH]):
                    batch.extend(enc.ids)
                    batch.append(self.eos_id)
                parts.append(np.array(batch, dtype=np.int32))
            parts[-1] = parts[-1][:-1]  # the last piece has no "\n" after it
        else:
            for enc in self._hf.encode_batch_fast(list(_chunks(text, CHUNK_CHARS))):
                parts.append(np.array(enc.ids, dtype=np.int32))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)

    def encode_stream(self, pieces: Iterable[str]) -> np.ndarray:
        """encode() of the concatenated pieces, holding one piece of text at a time. Pieces must be
        cut after a line end that has no space on either side (as `corpus.iter_text` cuts them):
        there every tokenizer's result is the same as for the whole text."""
        parts = [self.encode(p) for p in pieces]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Text for `ids`; exactly what a `Detokenizer` prints for the same ids."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if ids.size:
            assert ids.min() >= 0 and ids.max() < self.vocab_size, "token id out of range"
        if self.kind == "bpe":
            return b"".join([self._bytes[i] for i in ids.tolist()]).decode("utf-8", "replace")
        detok = self.detokenizer()
        return "".join([detok.push(i) for i in ids.tolist()]) + detok.flush()

    def id_to_token(self, i: int) -> str:
        """The vocabulary entry (for bpe, in the byte-level alphabet: "Ġthe" is " the")."""
        assert 0 <= i < self.vocab_size, "token id out of range"
        return self._tokens[i]

    def count_unk(self, ids: np.ndarray) -> int:
        return 0 if self.unk_id is None else int(np.count_nonzero(np.asarray(ids) == self.unk_id))

    def detokenizer(self, context: Sequence[int] = ()) -> Detokenizer:
        """A streaming decoder; `context` (e.g. the prompt's ids, already shown) sets the spacing
        of the first pushed token and is not printed again."""
        detok = Detokenizer(self)
        for i in context:
            detok.push(int(i))
        return detok


class Detokenizer:
    """Decodes one id at a time: all the `push`es and the final `flush`, joined, equal `decode`."""

    def __init__(self, tok: Tokenizer) -> None:
        self._tok = tok
        self._line_start, self._after_opening = True, False
        self._bytes = codecs.getincrementaldecoder("utf-8")("replace")

    def push(self, i: int) -> str:
        """The text that can be printed now that token `i` has been produced."""
        tok = self._tok
        if tok.kind == "bpe":
            # Holds back a multi-byte character until its last byte arrives.
            return self._bytes.decode(tok._bytes[i])
        if i == tok.unk_id and tok.kind == "char":
            return "\ufffd"
        if i == tok.eos_id:
            self._line_start = True
            return "\n"
        glue = self._line_start or self._after_opening or tok._closing[i]
        self._line_start, self._after_opening = False, tok._opening[i]
        return tok._tokens[i] if glue or tok.kind == "char" else " " + tok._tokens[i]

    def flush(self) -> str:
        """Whatever is still held back (an unfinished character shows as U+FFFD)."""
        return self._bytes.decode(b"", final=True) if self._tok.kind == "bpe" else ""
