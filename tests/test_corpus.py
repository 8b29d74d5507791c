"""Tests for lstmtext.corpus: reading files and folders, UTF-8 checks, the held-out split."""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracles import split_heldout

from lstmtext.corpus import read_text
from lstmtext.errors import ConfigError, CorpusError


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def error_message(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message, "errors are one line"
    return message


def test_reads_a_file_as_is(tmp_path):
    path = write(tmp_path / "corpus.text", "héllo 日本語\nlast line without newline")
    assert read_text(path) == "héllo 日本語\nlast line without newline"
    assert read_text(str(path)) == "héllo 日本語\nlast line without newline"


def test_directory_joins_text_files_recursively_by_path_each_ending_in_newline(tmp_path):
    write(tmp_path / "b.txt", "beta\n")
    write(tmp_path / "a.txt", "alpha")
    write(tmp_path / "c.md", "markdown too\n")
    write(tmp_path / "empty.txt", "")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "0.txt", "nested files are read")
    write(tmp_path / "bin.dat", b"\x00\x01")
    assert read_text(tmp_path) == "alpha\nbeta\nmarkdown too\nnested files are read\n"


def test_crlf_and_lone_cr_become_lf(tmp_path):
    path = write(tmp_path / "x.txt", b"one\r\ntwo\rthree\r\n\r\nfour")
    assert read_text(path) == "one\ntwo\nthree\n\nfour"


def test_bom_is_dropped(tmp_path):
    path = write(tmp_path / "x.txt", b"\xef\xbb\xbfhello\n")
    assert read_text(path) == "hello\n"


def test_nul_byte_means_binary(tmp_path):
    path = write(tmp_path / "model.bin", b"abc\x00def")
    with pytest.raises(CorpusError) as exc:
        read_text(path)
    message = error_message(exc)
    assert "model.bin" in message and "binary" in message


def test_utf16_is_named(tmp_path):
    path = write(tmp_path / "x.txt", "hello".encode("utf-16"))
    with pytest.raises(CorpusError, match="UTF-16"):
        read_text(path)


def test_invalid_utf8_names_file_and_byte_offset(tmp_path):
    path = write(tmp_path / "latin1.txt", "hello café".encode("latin-1"))
    with pytest.raises(CorpusError) as exc:
        read_text(path)
    message = error_message(exc)
    assert "latin1.txt" in message
    assert "byte offset 9" in message
    assert "--encoding-errors replace" in message


def test_byte_offset_counts_the_bom(tmp_path):
    path = write(tmp_path / "x.txt", b"\xef\xbb\xbfab\xff")
    with pytest.raises(CorpusError, match="byte offset 5"):
        read_text(path)


def test_replace_mode_goes_on(tmp_path):
    path = write(tmp_path / "x.txt", b"hello \xff world\n")
    assert read_text(path, encoding_errors="replace") == "hello \ufffd world\n"


def test_unknown_encoding_errors_mode(tmp_path):
    path = write(tmp_path / "x.txt", "hello\n")
    with pytest.raises(ConfigError, match="strict, replace"):
        read_text(path, encoding_errors="ignore")


def test_missing_path(tmp_path):
    with pytest.raises(CorpusError) as exc:
        read_text(tmp_path / "nope.txt")
    assert "nope.txt" in error_message(exc)


def test_directory_without_text_files(tmp_path):
    write(tmp_path / "model.bin", b"\x00\x01\x02")
    with pytest.raises(CorpusError) as exc:
        read_text(tmp_path)
    message = error_message(exc)
    assert "1 binary" in message and "--include" in message


@pytest.mark.parametrize("content", ["", "   \n\t\r\n  ", "\ufeff"])
def test_empty_or_blank_corpus(tmp_path, content):
    path = write(tmp_path / "x.txt", content)
    with pytest.raises(CorpusError, match="empty"):
        read_text(path)


def test_directory_of_empty_files(tmp_path):
    write(tmp_path / "a.txt", "")
    write(tmp_path / "b.txt", "\n\n")
    with pytest.raises(CorpusError, match="empty"):
        read_text(tmp_path)


def test_split_heldout_keeps_order_and_cuts_at_a_line_start():
    text = "".join(f"line {i:02d}\n" for i in range(20))  # 8 characters a line
    train, valid = split_heldout(text, 0.1)
    assert train + valid == text
    assert train.endswith("\n")
    assert valid == "line 18\nline 19\n"


def test_split_heldout_moves_the_cut_forward_to_the_next_line():
    text = "aaaa\n" * 3 + "b" * 30 + "\nlast\n"  # the 10% point (45) falls inside the b line
    train, valid = split_heldout(text, 0.1)
    assert (train, valid) == ("aaaa\n" * 3 + "b" * 30 + "\n", "last\n")


def test_split_heldout_cuts_inside_the_last_line_when_no_line_starts_after_the_cut():
    text = "x\n" + "a" * 97 + "\n"
    train, valid = split_heldout(text, 0.1)
    assert train + valid == text
    assert len(valid) == 10 and valid.endswith("\n")


def test_split_heldout_too_small():
    with pytest.raises(CorpusError) as exc:
        split_heldout("a", 0.1)
    message = error_message(exc)
    assert "10%" in message and "--valid" in message


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5, float("nan")])
def test_split_heldout_bad_fraction(fraction):
    with pytest.raises(ConfigError):
        split_heldout("a\nb\nc\n", fraction)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=64), mode=st.sampled_from(["strict", "replace"]))
def test_any_bytes_give_text_or_a_corpus_error(tmp_path, data, mode):
    path = write(tmp_path / "x.txt", data)
    try:
        text = read_text(path, encoding_errors=mode)
    except CorpusError as e:
        assert "\n" not in str(e)
        return
    assert isinstance(text, str) and text.strip()
    assert "\r" not in text and not text.startswith("\ufeff")


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet="ab \n", max_size=60), fraction=st.floats(0.01, 0.99))
def test_split_heldout_properties(text, fraction):
    try:
        train, valid = split_heldout(text, fraction)
    except CorpusError:
        return
    assert train and valid and train + valid == text
    assert len(train) >= int(len(text) * (1 - fraction))
    # Either valid starts a line, or no line starts inside it.
    assert train.endswith("\n") or "\n" not in valid[:-1]
