"""Streaming the corpus in pieces gives exactly what reading it whole gives: text, held-out split,
token ids. Small CHUNK_BYTES forces many pieces, cut across lines, characters and CRLF pairs."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import split_heldout

from lstmtext import corpus
from lstmtext.corpus import heldout_parts, iter_text, read_text
from lstmtext.data import TokenizerOptions, prepare_data
from lstmtext.errors import CorpusError
from lstmtext.tokenizer import Tokenizer

WORD_TOKENS = TokenizerOptions("word", None, 1, False, "punct")  # the word tokenizer, vocabulary chosen

TEXT = "".join(
    f"Line {i}: naïve café 日本語 👍🏽 e\u0301{'  ' if i % 3 else ''}\n{'' if i % 4 else chr(10)}" for i in range(200)
)


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(corpus, "CHUNK_BYTES", 37)


def test_pieces_join_to_the_whole_text(tmp_path, small_chunks):
    f = tmp_path / "t.txt"
    f.write_bytes(TEXT.replace("\n", "\r\n").encode())
    pieces = list(iter_text(f))
    assert len(pieces) > 10
    assert "".join(pieces) == TEXT  # CRLF pairs split across reads still become one "\n"


def test_invalid_utf8_offset_across_reads(tmp_path, small_chunks):
    f = tmp_path / "t.txt"
    data = ("é" * 30).encode() + b"\xff" + b"abc\n"
    f.write_bytes(data)
    with pytest.raises(CorpusError, match="byte offset 60"):
        read_text(f)


@pytest.mark.parametrize("kind", ["word", "char", "bpe"])
def test_streamed_tokens_equal_whole_text_tokens(tmp_path, small_chunks, kind):
    f = tmp_path / "t.txt"
    f.write_text(TEXT, encoding="utf-8")
    tok = Tokenizer.train(kind, TEXT, vocab_size=300)
    assert np.array_equal(tok.encode_stream(iter_text(f)), tok.encode(TEXT))
    streamed = Tokenizer.train(kind, iter_text(f), vocab_size=300)
    assert streamed.to_json() == tok.to_json()  # training on pieces learns the same vocabulary


def test_a_parts_sha256_is_taken_along_a_whole_pass_and_only_a_whole_one(tmp_path, small_chunks, monkeypatch):
    import hashlib

    f = tmp_path / "t.txt"
    f.write_text(TEXT, encoding="utf-8")
    train, valid = heldout_parts(f)
    want = hashlib.sha256(train.text().encode()).hexdigest()
    assert valid.sha256() == hashlib.sha256(valid.text().encode()).hexdigest() != want
    fresh, _ = heldout_parts(f)
    pieces = fresh.pieces()
    next(pieces)  # a pass cut short leaves no digest behind: sha256 reads the text itself
    assert fresh.sha256() == want
    again, _ = heldout_parts(f)
    assert "".join(again.pieces()) == train.text()
    monkeypatch.setattr(corpus.Segment, "pieces", lambda *a: pytest.fail("read again"))
    assert again.sha256() == want  # from the pass above, without a second read


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab \n\té日"), min_size=2, max_size=300))
def test_heldout_parts_match_split_heldout(text):
    import tempfile
    from pathlib import Path

    if not text.strip():
        return
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "t.txt"
        f.write_text(text, encoding="utf-8")
        old = corpus.CHUNK_BYTES
        corpus.CHUNK_BYTES = 7
        try:
            whole = read_text(f)
            try:
                expected = split_heldout(whole)
            except CorpusError:
                with pytest.raises(CorpusError):
                    heldout_parts(f)
                return
            train, valid = heldout_parts(f)
            assert (train.text(), valid.text()) == expected
        finally:
            corpus.CHUNK_BYTES = old


def test_ids_are_cached_and_reused(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text(TEXT, encoding="utf-8")
    first = prepare_data(f, None, WORD_TOKENS, "strict", lambda s: None, cache_dir=tmp_path)
    assert (tmp_path / "train-ids.npy").exists()
    again = prepare_data(f, None, None, "strict", lambda s: None, tokenizer=first.tokenizer, cache_dir=tmp_path)
    assert isinstance(again.train_ids, np.memmap)  # loaded, not tokenized again
    assert np.array_equal(again.train_ids, first.train_ids)
    other = Tokenizer.train("char", TEXT)
    fresh = prepare_data(f, None, None, "strict", lambda s: None, tokenizer=other, cache_dir=tmp_path)
    assert not isinstance(fresh.train_ids, np.memmap)  # another tokenizer never reuses stale ids
    assert np.array_equal(fresh.train_ids, other.encode(TEXT[: len(fresh.train_ids)]))


def write_folder(root, texts):
    for i, text in enumerate(texts):
        f = root / f"d{i % 3}" / f"{i:02d}.txt"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text, encoding="utf-8")
    return root


@pytest.mark.parametrize("kind", ["word", "char", "bpe"])
@pytest.mark.parametrize("split", ["end", "per-file"])
def test_folder_parts_stream_in_safe_pieces(tmp_path, small_chunks, kind, split):
    texts = [TEXT[i * 300 : (i + 1) * 300 + 37 * i] for i in range(6)]
    root = write_folder(tmp_path / "c", texts)
    listing = corpus.list_corpus(root)
    parts = listing.heldout_end() if split == "end" else listing.heldout_per_file()[:2]
    tok = Tokenizer.train(kind, read_text(root), vocab_size=300)
    for part in parts:
        pieces = list(part.pieces())
        whole = "".join(pieces)
        assert len(pieces) > 1  # cut, so the cuts are tested
        assert all(p.endswith("\n") and not p[-2].isspace() for p in pieces[:-1])  # cut at safe line ends
        assert np.array_equal(tok.encode_stream(pieces), tok.encode(whole)), split
    train, valid = parts
    if split == "end":
        assert train.text() + valid.text() == read_text(root)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from("ab \n日"), min_size=0, max_size=40), min_size=1, max_size=5))
def test_folder_heldout_end_matches_split_heldout_of_the_whole(texts):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        root = write_folder(Path(d), texts)
        old = corpus.CHUNK_BYTES
        corpus.CHUNK_BYTES = 5
        try:
            try:
                whole = read_text(root)
                expected = split_heldout(whole)
            except CorpusError:
                with pytest.raises(CorpusError):
                    corpus.list_corpus(root).heldout_end()
                return
            listing = corpus.list_corpus(root)
            train, valid = listing.heldout_end()
            assert (train.text(), valid.text()) == expected
            first = valid.segments[0]  # the line it starts on, for the message
            before = sum(f.chars for f in listing.files[: listing.files.index(first.file)])
            assert first.line == whole[before : before + first.start].count("\n") + 1
            try:
                ptrain, pvalid, small = listing.heldout_per_file()
            except CorpusError:
                return
            cuts = {seg.file.name: seg.start for seg in pvalid.segments}
            want_train = want_valid = ""
            off = 0
            for f in listing.files:
                t, cut = whole[off : off + f.chars], cuts.get(f.name, f.chars)
                off += f.chars
                assert (f.name in small) == (f.name not in cuts)
                assert cut == len(t) or (t[cut - 1] == "\n" and int(len(t) * 0.9) <= cut < len(t))
                want_train, want_valid = want_train + t[:cut], want_valid + t[cut:]
            assert (ptrain.text(), pvalid.text()) == (want_train, want_valid)
        finally:
            corpus.CHUNK_BYTES = old
