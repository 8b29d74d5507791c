"""Tests for lstmtext.tokenizer: word / char / BPE round trips, specials, JSON, streaming decode."""

import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer as HFTokenizer

import lstmtext.tokenizer as tokenizer_module
from lstmtext.errors import CheckpointError, ConfigError, CorpusError
from lstmtext.tokenizer import Tokenizer

UNICODE = "日本語のテキスト e\u0301 café 👍🏽 👨‍👩‍👧 Ω\tend\r\n\n  two  spaces\n"
ENGLISH = "the cat sat on the mat.\nthe dog, a big dog, sat (on the cat)!\n\nis it? yes: it is.\n"


def stream(tok: Tokenizer, ids, context=()) -> tuple[list[str], str]:
    detok = tok.detokenizer(context)
    pieces = [detok.push(int(i)) for i in ids]
    return pieces, "".join(pieces) + detok.flush()


# --- char ---------------------------------------------------------------------------------------


def test_char_round_trip_is_exact_one_id_per_code_point():
    tok = Tokenizer.train("char", UNICODE)
    ids = tok.encode(UNICODE)
    assert ids.dtype == np.int32 and ids.ndim == 1
    assert len(ids) == len(UNICODE)
    assert tok.decode(ids) == UNICODE
    assert tok.unk_id == 0 and tok.eos_id is None and tok.count_unk(ids) == 0
    assert tok.id_to_token(int(ids[-1])) == "\n"


def test_char_unseen_characters_are_unknown_and_keep_the_length():
    tok = Tokenizer.train("char", "abc \n")
    ids = tok.encode("ab日c👍")
    assert ids.tolist()[2] == tok.unk_id and ids.tolist()[4] == tok.unk_id
    assert tok.count_unk(ids) == 2
    assert tok.decode(ids) == "ab\ufffdc\ufffd"


def test_char_literal_unk_is_five_characters():
    tok = Tokenizer.train("char", "<unk> and more\n")
    ids = tok.encode("<unk>")
    assert len(ids) == 5 and tok.count_unk(ids) == 0
    assert tok.decode(ids) == "<unk>"


def test_char_vocab_size_is_an_upper_bound_with_the_most_frequent_kept():
    tok = Tokenizer.train("char", "aaaabbbc", vocab_size=3)
    assert tok.vocab_size == 3
    assert tok.count_unk(tok.encode("ab")) == 0
    assert tok.encode("c").tolist() == [tok.unk_id]
    assert Tokenizer.train("char", "aaaabbbc").vocab_size == 4


# --- bpe ----------------------------------------------------------------------------------------


def test_bpe_round_trip_is_exact_for_training_and_unseen_text():
    tok = Tokenizer.train("bpe", ENGLISH * 5, vocab_size=300)
    assert tok.unk_id is None and tok.eos_id is None
    assert tok.decode(tok.encode(ENGLISH)) == ENGLISH
    for text in [UNICODE, "<unk> \x00 \u2028 \ufffd", "", "   ", "\n\n\n", "x" * 500]:
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert tok.count_unk(ids) == 0


def test_bpe_learns_merges():
    tok = Tokenizer.train("bpe", ENGLISH * 5, vocab_size=300)
    assert tok.vocab_size > 256
    assert len(tok.encode("the cat sat")) < len("the cat sat")


def test_bpe_decode_agrees_with_huggingface():
    tok = Tokenizer.train("bpe", ENGLISH * 5 + UNICODE, vocab_size=300)
    hf = HFTokenizer.from_str(json.dumps(json.loads(tok.to_json())["hf"]))
    every_id = list(range(tok.vocab_size))
    assert tok.decode(every_id) == hf.decode(every_id)


def test_bpe_chunked_encoding_equals_encoding_the_whole_text(monkeypatch):
    text = ("word\n\n\n  indented line\nnext\n \nx y\n" + UNICODE) * 20
    tok = Tokenizer.train("bpe", text, vocab_size=320)
    hf = HFTokenizer.from_str(json.dumps(json.loads(tok.to_json())["hf"]))
    monkeypatch.setattr(tokenizer_module, "CHUNK_CHARS", 7)
    assert tok.encode(text).tolist() == hf.encode(text).ids


# --- word ---------------------------------------------------------------------------------------


def test_word_round_trip_up_to_whitespace():
    tok = Tokenizer.train("word", ENGLISH)
    text = "the  cat sat, (on the dog)!\nis it?   yes.\n\nthe mat"
    ids = tok.encode(text)
    assert tok.count_unk(ids) == 0
    collapsed = "\n".join(" ".join(line.split()) for line in text.split("\n"))
    assert tok.decode(ids) == collapsed


def test_word_eos_after_every_newline_but_not_after_the_last_line():
    tok = Tokenizer.train("word", ENGLISH)
    eos = tok.eos_id
    assert (tok.unk_id, eos) == (0, 1)
    cat, sat = tok.encode("the cat").tolist(), tok.encode("sat").tolist()
    assert tok.encode("the cat\nsat\n").tolist() == [*cat, eos, *sat, eos]
    assert tok.encode("the cat\nsat").tolist()[-1] != eos
    assert eos not in tok.encode("the cat").tolist()
    assert tok.encode("\n\n").tolist() == [eos, eos]
    assert tok.encode("").tolist() == []
    assert tok.decode(tok.encode("the cat\n\nsat\n")) == "the cat\n\nsat\n"


def test_word_unknown_words_and_literal_unk():
    tok = Tokenizer.train("word", "the <unk> sat on the <unk>\n")
    ids = tok.encode("the zebra <unk> sat").tolist()
    assert ids == [ids[0], tok.unk_id, tok.unk_id, ids[3]]
    assert tok.id_to_token(ids[0]) == "the" and tok.id_to_token(ids[3]) == "sat"
    # "<unk>" never became an ordinary word, nor "<", "unk", ">".
    tokens = {tok.id_to_token(i) for i in range(tok.vocab_size)}
    assert tokens == {"<unk>", "<eos>", "the", "sat", "on"}
    assert tok.count_unk(tok.encode("x<unk>y")) == 3


def test_word_vocab_size_counts_the_specials_and_min_freq_drops_rare_words():
    text = "a a a a b b b c c d\n"
    assert Tokenizer.train("word", text, vocab_size=4).vocab_size == 4
    tok = Tokenizer.train("word", text, min_freq=3)
    assert [tok.id_to_token(i) for i in range(tok.vocab_size)] == ["<unk>", "<eos>", "a", "b"]
    assert tok.encode("c d").tolist() == [tok.unk_id, tok.unk_id]


def test_word_lowercase_option():
    text = "Hello World\nHELLO there\n"
    lower = Tokenizer.train("word", text, lowercase=True)
    assert lower.encode("HeLLo WORLD").tolist() == lower.encode("hello world").tolist()
    assert lower.count_unk(lower.encode("HeLLo WORLD")) == 0
    assert lower.decode(lower.encode("Hello")) == "hello"
    cased = Tokenizer.train("word", text)
    assert cased.count_unk(cased.encode("hello")) == 1


def test_word_split_punct_versus_whitespace():
    text = "don't stop. (now)\n"
    punct = Tokenizer.train("word", text)
    space = Tokenizer.train("word", text, word_split="whitespace")
    as_tokens = [punct.id_to_token(int(i)) for i in punct.encode("don't stop.")]
    assert as_tokens == ["don't", "stop", "."]  # a word keeps its inner apostrophe
    as_words = [space.id_to_token(int(i)) for i in space.encode("don't stop.")]
    assert as_words == ["don't", "stop."]
    # Whitespace-split words were separated by spaces, so decoding keeps every space.
    assert space.decode(space.encode("stop. (now)")) == "stop. (now)"
    assert punct.decode(punct.encode("stop . ( now )")) == "stop. (now)"


# --- streaming, JSON, errors --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["word", "char", "bpe"])
def test_detokenizer_prints_exactly_what_decode_returns(kind):
    tok = Tokenizer.train(kind, ENGLISH + UNICODE, vocab_size=300)
    ids = tok.encode(ENGLISH + "zebra 日本 (x) y\n" + UNICODE)
    _, printed = stream(tok, ids)
    assert printed == tok.decode(ids)


def test_bpe_detokenizer_holds_back_a_split_character():
    tok = Tokenizer.train("bpe", ENGLISH * 3, vocab_size=280)
    ids = tok.encode("a 語")  # unseen: one token per byte
    pieces, printed = stream(tok, ids)
    assert printed == "a 語"
    assert "" in pieces and not any("\ufffd" in p for p in pieces)
    _, cut_short = stream(tok, ids[:-1])
    assert cut_short == tok.decode(ids[:-1]) == "a \ufffd"


def test_word_detokenizer_context_sets_the_first_space():
    tok = Tokenizer.train("word", ENGLISH)
    prompt, more = tok.encode("the cat"), tok.encode("sat on the mat.")
    _, printed = stream(tok, more, context=prompt)
    assert printed == " sat on the mat."
    assert "the cat" + printed == tok.decode(np.concatenate([prompt, more]))


@pytest.mark.parametrize("kind", ["word", "char", "bpe"])
def test_json_round_trip(kind):
    tok = Tokenizer.train(kind, ENGLISH + UNICODE, vocab_size=300, lowercase=(kind == "word"), word_split="whitespace")
    saved = tok.to_json()
    assert json.loads(saved)["format_version"] == 1
    again = Tokenizer.from_json(saved)
    assert (again.kind, again.lowercase, again.word_split) == (kind, kind == "word", "whitespace")
    assert again.vocab_size == tok.vocab_size
    assert (again.unk_id, again.eos_id) == (tok.unk_id, tok.eos_id)
    probe = ENGLISH.upper() + UNICODE + "<unk> zebra"
    ids = tok.encode(probe)
    assert again.encode(probe).tolist() == ids.tolist()
    assert again.decode(ids) == tok.decode(ids)
    assert again.to_json() == saved


@pytest.mark.parametrize(
    "bad",
    [
        "{not json",
        "[]",
        json.dumps({"format_version": 99, "kind": "char", "hf": {}}),
        json.dumps({"format_version": 1, "kind": "sentencepiece", "hf": {}}),
        json.dumps({"format_version": 1, "kind": "char", "hf": {"model": "nonsense"}}),
        Tokenizer.train("bpe", "hello hello").to_json().replace('"Ġ"', '"x\u00e9\u4e00"'),
    ],
)
def test_from_json_rejects_damaged_input(bad):
    with pytest.raises(CheckpointError) as exc:
        Tokenizer.from_json(bad)
    assert "\n" not in str(exc.value)


def test_from_json_rejects_a_vocabulary_without_its_specials():
    saved = json.loads(Tokenizer.train("word", ENGLISH).to_json())
    saved["kind"] = "char"  # a word vocabulary has "<eos>" at id 1, where char has a character
    saved["hf"]["added_tokens"] = []
    saved["hf"]["model"]["vocab"] = {"<unk>": 1, "the": 0}
    with pytest.raises(CheckpointError, match="does not start with"):
        Tokenizer.from_json(json.dumps(saved))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "wordpiece"}, "word, char, bpe"),
        ({"kind": "word", "vocab_size": 2}, "--vocab-size must be at least 3"),
        ({"kind": "char", "vocab_size": 1}, "--vocab-size must be at least 2"),
        ({"kind": "bpe", "min_freq": 0}, "--min-freq"),
        ({"kind": "word", "word_split": "spaces"}, "punct, whitespace"),
    ],
)
def test_bad_options_are_config_errors(kwargs, match):
    kind = kwargs.pop("kind")
    with pytest.raises(ConfigError, match=re.escape(match)):
        Tokenizer.train(kind, ENGLISH, **kwargs)


@pytest.mark.parametrize(
    "kind, text, kwargs",
    [
        ("word", "  \n\n\t", {}),
        ("word", "<unk> <eos>\n", {}),
        ("word", "a b c\n", {"min_freq": 2}),
        ("char", "", {}),
        ("bpe", "", {}),
    ],
)
def test_text_without_tokens_is_a_corpus_error(kind, text, kwargs):
    with pytest.raises(CorpusError, match="no|empty"):
        Tokenizer.train(kind, text, **kwargs)


@pytest.mark.parametrize("kind", ["word", "char", "bpe"])
def test_lone_surrogates_do_not_crash(kind):
    tok = Tokenizer.train(kind, ENGLISH, vocab_size=300)
    ids = tok.encode("the \ud800cat")
    assert len(ids) > 0 and "\ud800" not in tok.decode(ids)


@settings(max_examples=40, deadline=None)
@given(text=st.text(min_size=1, max_size=40))
def test_char_round_trip_of_any_text(text):
    tok = Tokenizer.train("char", text)
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=40, deadline=None)
@given(train=st.text(min_size=1, max_size=40), other=st.text(max_size=40))
def test_bpe_round_trip_of_any_text(train, other):
    tok = Tokenizer.train("bpe", train, vocab_size=270)
    assert tok.decode(tok.encode(train)) == train
    assert tok.decode(tok.encode(other)) == other


# --- word spacing, unknown words, UTF-8 masks ---------------------------------------------------


def test_word_split_keeps_apostrophes_numbers_and_urls_in_one_token():
    text = "It's 3.14, not 1,000: see https://example.com/a-b?x=1. 'Tis o'er at 10:30...\n"
    tok = Tokenizer.train("word", text)
    tokens = [tok.id_to_token(int(i)) for i in tok.encode(text.strip())]
    assert tokens == [
        "It's", "3.14", ",", "not", "1,000", ":", "see", "https://example.com/a-b?x=1", ".",
        "'", "Tis", "o'er", "at", "10:30", "...",
    ]  # fmt: skip


def test_word_tokenizer_saved_with_the_old_split_still_loads_and_decodes():
    # Before words kept their apostrophes, "punct" was HF's Whitespace(): "don ' t".
    saved = json.loads(Tokenizer.train("word", "x\n").to_json())
    saved["hf"]["pre_tokenizer"] = {"type": "Whitespace"}
    saved["hf"]["model"]["vocab"] = {t: i for i, t in enumerate(["<unk>", "<eos>", "don", "'", "t", "(", "go", ")"])}
    tok = Tokenizer.from_json(json.dumps(saved))
    ids = tok.encode("don't (go)")
    assert [tok.id_to_token(int(i)) for i in ids] == ["don", "'", "t", "(", "go", ")"]
    assert tok.decode(ids) == "don't (go)"


def test_word_detokenizer_holds_a_lone_apostrophe_until_it_knows_its_side():
    tok = Tokenizer.train("word", "as 'twere the dogs' bones\n")
    pieces, printed = stream(tok, tok.encode("as 'twere the dogs' bones"))
    assert printed == "as 'twere the dogs' bones"
    assert pieces == ["as", "", " 'twere", " the", " dogs", "", "' bones"]
    # A prompt ending in an apostrophe has shown it already: it is not printed twice.
    _, more = stream(tok, tok.encode("twere"), context=tok.encode("as '"))
    assert more == "twere"
    _, more = stream(tok, tok.encode("bones"), context=tok.encode("the dogs'"))
    assert more == " bones"


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(st.integers(0, 200), max_size=30))
def test_word_spacing_never_doubles_a_space_or_starts_a_line_with_one(ids):
    tok = _SPACING_TOKENIZER
    ids = [i % tok.vocab_size for i in ids]
    _, printed = stream(tok, ids)
    assert printed == tok.decode(ids)
    assert "  " not in printed and not any(line.startswith(" ") for line in printed.split("\n"))


_SPACING_TOKENIZER = Tokenizer.train(
    "word", "as 'twere, \"Yes,\" she said (well-known) -5 ‘hi’ “so” the dogs’ bones... $5 x/y — n'\n"
)


def test_unknown_in_names_each_unseen_word_once_in_order():
    tok = Tokenizer.train("word", "the cat sat on the mat, yes.\n")
    assert tok.unknown_in("the zebra sat on a zebra, Quux!\nthe <unk> cat") == ["zebra", "a", "Quux", "!"]
    assert tok.unknown_in("the cat sat.") == []
    char = Tokenizer.train("char", "abc \n")
    assert char.unknown_in("ab日c👍 日\nz") == ["日", "👍", "z"]
    assert Tokenizer.train("bpe", ENGLISH * 3, vocab_size=280).unknown_in("語 zebra") == []


def test_unknown_in_reports_words_as_written():
    tok = Tokenizer.train("word", "hello world\n", lowercase=True)
    assert tok.unknown_in("HELLO Zebra café") == ["Zebra", "café"]


def _is_utf8_prefix(b: bytes) -> bool:
    """The reference for utf8_mask: some bytes can still finish `b` as valid UTF-8. The first
    missing byte must lie in one of 80..BF, A0..BF, 80..9F, 90..BF or 80..8F, each holding 80, 90 or
    A0; later ones can be 80. Python's strict decoding of the whole is exact (its incremental decoder
    is not: it accepts ED A0, a surrogate's start)."""
    finish = [b""] + [bytes([first]) + b"\x80" * k for first in (0x80, 0x90, 0xA0) for k in range(3)]
    for tail in finish:
        try:
            (b + tail).decode("utf-8")
            return True
        except UnicodeDecodeError:
            pass
    return False


PENDINGS = [b"", *(bytes([lead]) for lead in range(0xC2, 0xF5))]
PENDINGS += [b"\xe0\xa0", b"\xed\x9f", b"\xe6\x97", b"\xf0\x90", b"\xf4\x8f", b"\xf0\x9f\x98", b"\xf1\x80\x80"]


def test_utf8_mask_equals_the_reference_on_every_token_and_pending_character():
    tok = Tokenizer.train("bpe", UNICODE * 4 + "Ωμέγα Москва 東京 🎉🎉 naïve\n" * 4, vocab_size=330)
    for pending in PENDINGS:
        mask = tok.utf8_mask(pending)
        assert mask.shape == (tok.vocab_size,) and mask.dtype == bool
        want = [_is_utf8_prefix(pending + tok.token_bytes(i)) for i in range(tok.vocab_size)]
        assert mask.tolist() == want, pending
        assert mask.any()


def test_utf8_mask_is_exact_on_the_boundary_bytes_of_every_range(monkeypatch):
    # Random tokens of the bytes where UTF-8's ranges begin and end, to find any off-by-one.
    edges = [0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1]
    edges += [0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF]
    tok = Tokenizer.train("bpe", "ab ab ab", vocab_size=300)
    rng = np.random.default_rng(0)
    fake = [bytes(rng.choice(edges, size=rng.integers(1, 6)).tolist()) for _ in range(tok.vocab_size)]
    monkeypatch.setattr(tok, "_bytes", fake)
    for pending in PENDINGS:
        want = [_is_utf8_prefix(pending + b) for b in fake]
        assert tok.utf8_mask(pending).tolist() == want, pending


def test_bpe_detokenizer_can_drop_an_unfinished_character_at_the_end():
    tok = Tokenizer.train("bpe", ENGLISH * 3, vocab_size=280)
    detok = tok.detokenizer()
    pieces = [detok.push(int(i)) for i in tok.encode("a 語")[:-1]]
    assert "".join(pieces) + detok.flush(drop_unfinished=True) == "a "


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_encode_spans_same_ids_and_each_span_is_its_token(kind, monkeypatch):
    monkeypatch.setattr(tokenizer_module, "CHUNK_CHARS", 40)  # several chunks: spans must add their offsets
    monkeypatch.setattr(tokenizer_module, "LINE_BATCH", 2)  # several line batches too
    text = 'He said, "Hello (world)!"\nShe\'s here.\n\nÉtat, ünïcode 日本語 text  end\nlast line\n' * 3
    tok = Tokenizer.train(kind, text * 5, vocab_size=300)
    ids, spans = tok.encode_spans(text)
    assert (ids == tok.encode(text)).all() and spans.shape == (len(ids), 2)
    assert (spans[:, 0] <= spans[:, 1]).all() and (np.diff(spans[:, 0]) >= 0).all() and spans[-1, 1] <= len(text)
    pieces = [text[s:e] for s, e in spans.tolist()]
    if kind == "char":
        assert "".join(pieces) == text
    elif kind == "word":
        assert [tok.id_to_token(i) if i != tok.eos_id else "\n" for i in ids.tolist()] == pieces
    else:  # byte-level: a character split over two tokens lies in both spans; ASCII tokens are their span
        assert spans[0, 0] == 0 and spans[-1, 1] == len(text) and (spans[1:, 0] <= spans[:-1, 1]).all()
        assert (spans[1:, 0] >= spans[:-1, 1] - 1).all()  # they overlap by at most that one character
        ascii_pieces = [(i, p) for i, p in zip(ids.tolist(), pieces, strict=True) if tok.token_bytes(i).isascii()]
        assert len(ascii_pieces) > len(ids) // 2
        assert all(tok.token_bytes(i) == p.encode("utf-8") for i, p in ascii_pieces)
