"""Word, character and byte-level BPE tokenizers, built on HuggingFace `tokenizers`.

- **word**: whitespace (and, by default, punctuation) separated words; every "\\n" becomes "<eos>".
  Ids 0 and 1 are "<unk>" and "<eos>"; a literal "<unk>" in the text (Penn Treebank has them) is the
  unknown id, not three tokens. Decoding puts the spaces back by rules (see `Detokenizer`).
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

# The "punct" word split: whitespace first, then each piece into a URL, an e-mail address, a word or
# a run of one punctuation character ("...", "--", "!!"). A word keeps its inner apostrophes, decimal
# points, thousands separators and the colon of a time ("don't", "o'er", "3.14", "1,000", "10:30"):
# split there, "don ' t" and "as ' twere" would look alike and no spacing rule could tell them apart.
# Tokenizers saved before this split used Whitespace() (\w+|[^\w\s]+) and still load with it.
_PUNCT_SPLIT = "|".join(
    [
        r"https?://\S+?(?=[.,;:!?)\]}'\"”’»]*$)",  # a URL, without the punctuation that ends its sentence
        r"[\w.+-]+@\w+(?:[.-]\w+)+",  # an e-mail address
        r"\w+(?:(?:['’.,]|(?<=\d):(?=\d))\w+)*",  # a word
        r"([^\w\s])\1*",  # a run of one punctuation character
    ]
)
# How "punct" word tokens attach to their neighbours when decoding (the rules: `Detokenizer`).
_CLOSING = frozenset(",.;:!?)]}%…»”")  # no space before
_OPENING = frozenset("([{¿¡«“‘$£€¥@")  # no space after
_JOINING = frozenset("-—/")  # no space on either side after a word
_APOSTROPHES = ("'", "’")  # a lone one is a quote, a possessive or an elision: judged by its neighbours
# Words an apostrophe stands in front of ('tis, 'twere, rock 'n' roll); a number ('90s) counts too.
_ELIDED_START = frozenset("tis twas twere twill twould twixt em gainst neath til cause cos bout n".split())
# Words an apostrophe ends (th' king, o' the, rock 'n' roll); so do words in -in' (nothin', goin').
_ELIDED_END = frozenset("th o i n".split())
# Words in -s that are not plural nouns, so an apostrophe after them opens a quote: as 'hello'.
_NOT_PLURAL = frozenset("as is was has his hers its this thus us yes does plus".split())
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


def _word_tag(token: str, legacy: bool) -> str:
    """How a "punct" word token attaches when decoding: word, close, open, join, quote (a straight
    double quote), apostrophe, glue (both sides: an apostrophe of a legacy split) or other."""
    if token[0].isalnum() or token[0] == "_" or token in (UNK, EOS):
        return "word"
    if token in _APOSTROPHES:
        return "glue" if legacy else "apostrophe"
    if token in ('"', "``", "''"):  # `` and '' are Penn Treebank's opening and closing quotes
        return {'"': "quote", "``": "open", "''": "close"}[token]
    chars = set(token)
    closing = _CLOSING | set(_APOSTROPHES) if legacy else _CLOSING  # legacy: "'," was one token
    for tag, allowed in (("close", closing), ("open", _OPENING)):
        if chars <= allowed:
            return tag
    return "join" if len(chars) == 1 and chars <= _JOINING else "other"


# UTF-8 as a small automaton, from the table of well-formed byte sequences (Unicode Standard, ch. 3,
# Table 3-7). A state says what the next byte must be: state 0 is "between characters", the others
# (k, lo, hi) "k more continuation bytes, the first of them in lo..hi". The leads E0, ED, F0 and F4
# narrow their second byte's range: no overlong forms, no surrogates, nothing above U+10FFFF.
_UTF8_STATES = [(0, 0, 0), (1, 0x80, 0xBF), (2, 0x80, 0xBF), (2, 0xA0, 0xBF), (2, 0x80, 0x9F)]
_UTF8_STATES += [(3, 0x80, 0xBF), (3, 0x90, 0xBF), (3, 0x80, 0x8F)]
_UTF8_LEADS = [  # (first byte, last byte, state after it) from state 0
    (0x00, 0x7F, (0, 0, 0)),
    (0xC2, 0xDF, (1, 0x80, 0xBF)),
    (0xE0, 0xE0, (2, 0xA0, 0xBF)),
    (0xE1, 0xEC, (2, 0x80, 0xBF)),
    (0xED, 0xED, (2, 0x80, 0x9F)),
    (0xEE, 0xEF, (2, 0x80, 0xBF)),
    (0xF0, 0xF0, (3, 0x90, 0xBF)),
    (0xF1, 0xF3, (3, 0x80, 0xBF)),
    (0xF4, 0xF4, (3, 0x80, 0x8F)),
]


def _utf8_automaton() -> np.ndarray:
    """-> (states, 256) int8: the state after each byte in each state; -1 where the byte is invalid."""
    number = {state: n for n, state in enumerate(_UTF8_STATES)}
    after = np.full((len(_UTF8_STATES), 256), -1, dtype=np.int8)
    for first, last, state in _UTF8_LEADS:
        after[0, first : last + 1] = number[state]
    for n, (k, lo, hi) in enumerate(_UTF8_STATES[1:], start=1):
        after[n, lo : hi + 1] = number[(k - 1, 0x80, 0xBF)] if k > 1 else 0
    return after


_UTF8_AFTER = _utf8_automaton()


def _pipeline(hf: HFTokenizer, kind: str, lowercase: bool, word_split: str) -> None:
    steps = [normalizers.NFC()] if kind == "word" else []
    steps += [normalizers.Lowercase()] if lowercase else []
    hf.normalizer = normalizers.Sequence(steps) if steps else None
    if kind == "word":
        # WhitespaceSplit() alone is how Penn Treebank counts words.
        hf.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        if word_split == "punct":
            split = pre_tokenizers.Split(Regex(_PUNCT_SPLIT), behavior="isolated")
            hf.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), split])
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


def check_options(kind: str, vocab_size: int | None, min_freq: int, word_split: str) -> None:
    """The tokenizer options' rules, once: Tokenizer.train applies them, and `train` before it reads any
    file (data.check_tokenizer_options). vocab_size None: to be chosen (sizing.vocab_for)."""
    if kind not in KINDS:
        raise ConfigError(f"--tokenizer must be one of {', '.join(KINDS)}, got {kind!r}")
    if word_split not in WORD_SPLITS:
        raise ConfigError(f"--word-split must be one of {', '.join(WORD_SPLITS)}, got {word_split!r}")
    least = 3 if kind == "word" else 2  # the specials plus one real token
    if vocab_size is not None and vocab_size < least:
        raise ConfigError(f"--vocab-size must be at least {least} for {kind} tokens, got {vocab_size}")
    if min_freq < 1:
        raise ConfigError(f"--min-freq must be at least 1, got {min_freq}")


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
        self._utf8_masks: dict[int, np.ndarray] = {}  # automaton state -> (V,) bool, filled by utf8_mask
        self._tags: list[str] | None = None  # how each token attaches when decoding, for a punct split
        if kind == "word" and word_split == "punct":
            # Before words kept their apostrophes, "don't" was "don ' t": there ' glues on both sides.
            legacy = isinstance(hf.pre_tokenizer, pre_tokenizers.Whitespace)
            self._tags = [_word_tag(t, legacy) if t else "other" for t in tokens]

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
        check_options(kind, vocab_size, min_freq, word_split)
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

    def hf_json(self) -> str:
        """The HuggingFace tokenizer alone (`tokenizers.Tokenizer.from_str` reads it), for export."""
        return self._hf.to_str()

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
        return self._encode(text, spans=False)[0]

    def encode_spans(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """encode(), and where each token sits in `text`: spans (N, 2) of [start, end) character
        offsets ("<eos>" is its "\\n"). For `inspect`, which shows the text as it was written."""
        return self._encode(text, spans=True)

    def _encode(self, text: str, spans: bool) -> tuple[np.ndarray, np.ndarray]:
        text = _valid_utf8(text)  # the same length: one character for each lone surrogate
        # encode_batch_fast skips computing offsets; only a caller that wants spans pays for them.
        encode_batch = self._hf.encode_batch if spans else self._hf.encode_batch_fast
        parts: list[np.ndarray] = []  # int32 arrays: a Python list of ints would take 4-9× the memory
        where: list[np.ndarray] = []  # (n, 2) spans of each part
        if self.kind == "word":
            assert self.eos_id is not None
            lines = text.split("\n")
            base = 0  # where the current line starts in text
            for i in range(0, len(lines), LINE_BATCH):
                batch: list[int] = []
                for line, enc in zip(lines[i : i + LINE_BATCH], encode_batch(lines[i : i + LINE_BATCH]), strict=True):
                    batch.extend(enc.ids)
                    batch.append(self.eos_id)
                    if spans:
                        end = base + len(line)
                        where.append(np.array([*enc.offsets, (0, 1)], dtype=np.int64).reshape(-1, 2) + [[base, base]])
                        where[-1][-1] = (end, end + 1)  # "<eos>" stands for the "\n" after the line
                        base = end + 1
                parts.append(np.array(batch, dtype=np.int32))
            parts[-1] = parts[-1][:-1]  # the last piece has no "\n" after it
            if spans:
                where[-1] = where[-1][:-1]
        else:
            base = 0
            pieces = list(_chunks(text, CHUNK_CHARS))
            for piece, enc in zip(pieces, encode_batch(pieces), strict=True):
                parts.append(np.array(enc.ids, dtype=np.int32))
                if spans:
                    where.append(np.array(enc.offsets, dtype=np.int64).reshape(-1, 2) + base)
                    base += len(piece)
        ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
        return ids, (np.concatenate(where) if where else np.zeros((0, 2), dtype=np.int64))

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

    def unknown_in(self, text: str) -> list[str]:
        """The distinct words (char kind: characters) of `text` that encode to "<unk>", as written
        and in order of first appearance. A literal "<unk>" is not counted; bpe knows every text."""
        if self.kind == "bpe":
            return []
        text = _valid_utf8(text)
        lines = text.split("\n") if self.kind == "word" else [text]
        found: dict[str, None] = {}  # an ordered set
        # encode_batch, not _fast: the offsets are what say which words of the text were unknown.
        for line, enc in zip(lines, self._hf.encode_batch(lines), strict=True):
            for i, (start, end) in zip(enc.ids, enc.offsets, strict=True):
                piece = line[start:end]
                if i == self.unk_id and not (self.kind == "word" and piece.lower() == UNK):
                    found.setdefault(piece)
        return list(found)

    def token_bytes(self, i: int) -> bytes:
        """The bytes a bpe token stands for (they need not be whole characters)."""
        assert self.kind == "bpe", "only byte-level BPE tokens are bytes"
        return self._bytes[i]

    def utf8_mask(self, pending: bytes = b"") -> np.ndarray:
        """(V,) bool, bpe only: the tokens that keep the text valid UTF-8 when they come after
        `pending`, the 0-3 bytes of an unfinished character at its end. A token may itself end in
        an unfinished character; it is allowed if some bytes could still finish it.

        The answer depends only on the automaton's state after `pending` (8 states), so it is
        computed once per state: all V tokens run through the automaton together, byte by byte.
        Every byte is a token, so some token is always allowed."""
        assert self.kind == "bpe", "only byte-level BPE can produce invalid UTF-8"
        start = 0
        for byte in pending:
            start = int(_UTF8_AFTER[start, byte])
            assert start >= 0, f"{pending!r} is not the start of a UTF-8 character"
        if start not in self._utf8_masks:
            lengths = np.array([len(b) for b in self._bytes])  # (V,)
            padded = np.zeros((self.vocab_size, lengths.max()), dtype=np.uint8)  # (V, longest)
            padded[np.arange(padded.shape[1]) < lengths[:, None]] = np.frombuffer(b"".join(self._bytes), np.uint8)
            state = np.full(self.vocab_size, start, dtype=np.int8)  # (V,) -1 once a token went wrong
            for j in range(padded.shape[1]):
                live = (j < lengths) & (state >= 0)
                state[live] = _UTF8_AFTER[state[live], padded[live, j]]
            self._utf8_masks[start] = state >= 0
        return self._utf8_masks[start]

    def detokenizer(self, context: Sequence[int] = ()) -> Detokenizer:
        """A streaming decoder; `context` (e.g. the prompt's ids, already shown) sets the spacing
        of the first pushed token and is not printed again."""
        detok = Detokenizer(self)
        for i in context:
            detok.push(int(i))
        detok.shown()
        return detok


class Detokenizer:
    """Decodes one id at a time: all the `push`es and the final `flush`, joined, equal `decode`.

    char: the characters themselves ("<unk>" is U+FFFD). bpe: the bytes, each character printed when
    its last byte arrives. word, whitespace split (Penn Treebank): the tokens, one space between
    them, since one space is what separated them. word, punct split: the spaces were thrown away,
    so they are put back by rules, in the spirit of the Moses detokenizer (`detokenizer.perl`, and
    sacremoses in Python). There is one space between two tokens, except:

    - at a line start;
    - before closing punctuation , . ; : ! ? ) ] } % … » ” '' (and runs of it: "...", "?!");
    - after opening punctuation ( [ { ¿ ¡ « “ ‘ `` $ £ € ¥ @;
    - around a joiner - — / that follows a word: inside a compound is where they mostly are
      ("well-known", "and/or", "this—that"). Elsewhere a joiner is spaced, but for a minus sign
      before a number ("x = -5"). So a spaced dash " - " comes back as "-";
    - at a straight double quote ", which opens a quotation (no space after) at an even count in
      the line and closes it (no space before) at an odd one;
    - at a lone apostrophe ' or ’, which is held back until the next token shows where it
      belongs. Before an elided word ('tis, 'twere, 'em, rock 'n' roll, the '90s) it attaches to
      the right. Before punctuation or the line end it closes a quotation ('no'.). At a line start
      or after an opener it opens one. Inside a quotation it closes it, but after a word that looks
      possessive or elided it only attaches to that word (goin', dogs'). Outside one it attaches
      to such a word (the dogs' bones, th' king; a word ending in -s or -in', except "as", "is",
      "this", ...) and else opens a quotation (said 'no'). A ’ never opens one (that is ‘): it
      attaches to the right only before an elided word or at a start.

    Quotation state resets at every line: in English prose each paragraph reopens its quotation.
    Tokenizers saved before words kept their apostrophes (Whitespace(): "don ' t") glue an
    apostrophe to both sides, as they always did.
    """

    def __init__(self, tok: Tokenizer) -> None:
        self._tok = tok
        self._bytes = codecs.getincrementaldecoder("utf-8")("replace")
        self._held: str | None = None  # a lone apostrophe waiting for the token after it
        self._held_shown = False  # that apostrophe was part of the context, already on screen
        self._new_line()

    def _new_line(self) -> None:
        self._prev: str | None = None  # the last token of this line; None at a line start
        self._prev_tag = "word"
        self._glue_next = False  # the last token takes no space after it
        self._in_double = self._in_single = False  # inside a "..." or a '...' quotation

    def shown(self) -> None:
        """Everything pushed so far is already on screen, a held apostrophe too."""
        self._held_shown = self._held is not None

    def push(self, i: int) -> str:
        """The text that can be printed now that token `i` has been produced."""
        tok = self._tok
        if tok.kind == "bpe":
            # Holds back a multi-byte character until its last byte arrives.
            return self._bytes.decode(tok._bytes[i])
        if tok.kind == "char":
            return "\ufffd" if i == tok.unk_id else tok._tokens[i]
        if i == tok.eos_id:
            out = self._release(None)
            self._new_line()
            return out + "\n"
        token = tok._tokens[i]
        if tok._tags is None:  # the whitespace split
            out, self._prev = ("" if self._prev is None else " ") + token, token
            return out
        out = self._release(token)
        tag = tok._tags[i]
        if tag == "apostrophe":
            self._held = token
            return out
        return out + self._place(token, tag)

    def flush(self, drop_unfinished: bool = False) -> str:
        """Whatever is still held back: an apostrophe, or an unfinished character of bpe bytes,
        which shows as U+FFFD, or nothing with `drop_unfinished` (a sample cut off mid-character)."""
        if self._tok.kind != "bpe":
            return self._release(None)
        if drop_unfinished:
            self._bytes.reset()
            return ""
        return self._bytes.decode(b"", final=True)

    def _space_before(self, token: str, tag: str) -> bool:
        if self._prev is None or self._glue_next or tag in ("close", "glue"):
            return False
        if tag == "quote":
            return not self._in_double  # a closing quote attaches to the left
        if tag == "join":
            return self._prev_tag != "word"
        return not (self._prev_tag == "join" and token[0].isdigit())  # a minus sign: "x = -5"

    def _place(self, token: str, tag: str) -> str:
        """`token` with its space before, if any; remembers how the next token attaches to it."""
        space = self._space_before(token, tag)
        glue_next = tag in ("open", "glue")
        if tag == "quote":
            self._in_double = not self._in_double
            glue_next = self._in_double
        elif tag == "join":
            glue_next = self._prev is not None and not space  # joined on the left, so on the right
        self._prev, self._prev_tag, self._glue_next = token, tag, glue_next
        return " " + token if space else token

    def _release(self, following: str | None) -> str:
        """The held apostrophe, with its space, now that the token after it is known (None: the line
        or the text ends there)."""
        mark, shown = self._held, self._held_shown
        if mark is None:
            return ""
        self._held, self._held_shown = None, False
        opens = self._apostrophe_opens(mark, following)
        space = opens and self._prev is not None and not self._glue_next
        self._prev, self._prev_tag, self._glue_next = mark, "apostrophe", opens
        return "" if shown else " " * space + mark

    def _apostrophe_opens(self, mark: str, following: str | None) -> bool:
        """Whether a lone apostrophe attaches to the token after it (True) or before it (False);
        updates the single-quotation state."""
        before = (self._prev or "").lower()
        word_follows = following is not None and _word_tag(following, False) == "word"
        elided = word_follows and (following[0].isdigit() or following.lower() in _ELIDED_START)
        at_start = self._prev is None or self._glue_next
        possessive = self._prev_tag == "word" and (
            (before.endswith("s") and before not in _NOT_PLURAL) or before.endswith("in") or before in _ELIDED_END
        )
        if mark == "’":  # never opens a quotation: that is ‘
            return word_follows and (at_start or elided)
        if not word_follows:  # 'no'. or the line ends: it closes
            self._in_single = False
            return False
        if elided:  # 'tis, the '90s
            return True
        if possessive:  # the dogs' bones, goin' home: a quotation stays as it was
            return False
        if at_start or not self._in_single:  # said 'no
            self._in_single = True
            return True
        self._in_single = False  # 'no' she said
        return False
