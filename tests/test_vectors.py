"""Word vectors in (word2vec text and binary, GloVe) and out (neighbours, analogies, word2vec export),
on small hand-written files and a tiny trained model."""

import json
import struct

import numpy as np
import pytest
from test_cli import TINY, invoke, make_corpus

from lstmtext import checkpoint, vectors
from lstmtext.errors import ConfigError
from lstmtext.start import initial_params

# File words: "The" only capitalised (the vocabulary has "the"), "CAT" before "cat" (the exact "cat"
# must win over the earlier lowercased match), "Dog" twice lowercased (the first must win), "zebra" unknown.
FILE = {
    "The": [0.5, -1.25, 2.0],
    "CAT": [9.0, 9.0, 9.0],
    "cat": [1.0, 0.0, -0.1],
    "zebra": [3.0, 3.0, 3.0],
    "Dog": [0.25, 0.75, -4.5],
    "DOG": [7.0, 7.0, 7.0],
}
VOCAB = ["<unk>", "the", "cat", "dog", "mat"]


def _vec(w):
    return np.array(FILE[w], dtype=np.float32)


def write_text(path, header: bool):
    lines = [f"{len(FILE)} 3"] if header else []
    lines += [w + " " + " ".join(repr(float(x)) for x in _vec(w)) for w in FILE]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_binary(path, newline: bool, words=FILE, count=None):
    with open(path, "wb") as f:
        f.write(f"{len(words) if count is None else count} 3\n".encode())
        for w in words:
            f.write(w.encode() + b" " + struct.pack("<3f", *FILE[w]) + (b"\n" if newline else b""))
    return path


@pytest.mark.parametrize(
    "make, kind",
    [
        (lambda p: write_text(p, header=True), "word2vec text"),
        (lambda p: write_text(p, header=False), "GloVe text"),
        (lambda p: write_binary(p, newline=True), "word2vec binary"),
        (lambda p: write_binary(p, newline=False), "word2vec binary"),
    ],
)
def test_match_reads_every_format_and_matches_case_then_lowercase(tmp_path, make, kind):
    path = make(tmp_path / "vectors")
    assert vectors.file_kind(path) == (kind, 3)
    m = vectors.match(path, VOCAB)
    assert m.kind == kind and m.dim == 3 and m.read == len(FILE)
    assert m.rows.tolist() == [1, 2, 3]  # the, cat, dog; <unk> and mat are not in the file
    assert (m.exact, m.lowered) == (1, 2)
    for row, word in zip(m.rows, ["The", "cat", "Dog"], strict=True):
        np.testing.assert_array_equal(m.vectors[list(m.rows).index(row)], _vec(word))  # exactly the file's numbers


def test_tabs_double_spaces_crlf_and_a_bom_read_as_text(tmp_path):
    path = tmp_path / "v.txt"
    path.write_bytes(b"\xef\xbb\xbf2 3\r\nthe\t0.5 -1.25  2\r\ncat 1 0 -0.1 \r\n")
    assert vectors.file_kind(path) == ("word2vec text", 3)
    m = vectors.match(path, ["the", "cat"])
    np.testing.assert_array_equal(m.vectors, np.array([[0.5, -1.25, 2], [1, 0, -0.1]], dtype=np.float32))
    glove = tmp_path / "g.txt"
    glove.write_bytes(b"\xef\xbb\xbfthe 1 2\r\n")
    assert vectors.file_kind(glove) == ("GloVe text", 2)


def test_glove_word_with_spaces_takes_the_last_numbers(tmp_path):
    path = tmp_path / "g.txt"
    path.write_text("the 1 2\nat name 3 4\nmat 5 6\n", encoding="utf-8")
    m = vectors.match(path, ["the", "at name", "mat", "at"])
    assert m.rows.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(m.vectors, [[1, 2], [3, 4], [5, 6]])


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is not a word2vec or GloVe file"),
        (b"hello world\n", "is not a word2vec or GloVe file"),
        (b"the 1 2 3\ncat 1 2\n", "line 2: 2 numbers after the word, expected 3"),
        (b"2 3\nthe 1 2 3\ncat 1 x 3\n", "line 3: not a number"),
        (b"the 1 nan 3\n", "inf or nan"),
        (b"the 1 2\ncat 1 2 3\n", "line 2: 3 numbers after the word, expected 2"),
        (b"3 2\nthe 1 2\ncat 1 2\n", "holds 2 vectors but its header announces 3"),
    ],
)
def test_bad_files_are_one_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        vectors.match(path, ["the", "cat"])


def test_truncated_binary_says_how_far_it_got(tmp_path):
    path = write_binary(tmp_path / "v.bin", newline=True, words=["The", "cat"], count=5)
    with pytest.raises(ConfigError, match="ends after 2 of the 5 vectors"):
        vectors.match(path, VOCAB)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        vectors.file_kind(tmp_path / "nope.txt")


def test_neighbors_and_analogy_on_a_hand_made_embedding():
    W = np.array(
        [
            [1.0, 0.0, 0.0],  # 0: the query
            [0.9, 0.1, 0.0],  # 1: nearly the same direction
            [0.1, 1.0, 0.0],  # 2: nearly orthogonal, a little towards it
            [0.0, 0.0, 1.0],  # 3: orthogonal
            [-1.0, 0.0, 0.0],  # 4: opposite
            [0.7, 0.7, 0.0],  # 5: 45 degrees
        ]
    )
    found = vectors.neighbors(W * 3.0, 0, 5)  # scale must not matter: cosine
    assert [i for i, _ in found] == [1, 5, 2, 3, 4]
    want = [0.9 / np.hypot(0.9, 0.1), 0.5**0.5, 0.1 / np.hypot(0.1, 1), 0, -1]
    np.testing.assert_allclose([c for _, c in found], want)
    W2 = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 0, 0], [0, 1, 1]], dtype=float)
    # king (1,1,0) − man (0,1,0) + woman (0,0,1), each first made unit length: nearest is row 3, (1,0,1)
    best = vectors.analogy(W2, 0, 1, 2, 2)
    q = W2[0] / 2**0.5 - W2[1] + W2[2]
    assert best[0][0] == 3 and best[0][1] == pytest.approx(q @ W2[3] / 2**0.5 / np.linalg.norm(q))
    assert 0 not in [i for i, _ in vectors.analogy(W2, 0, 1, 2, 6)]


def test_bpe_tokens_get_distinct_names():
    from lstmtext.tokenizer import Tokenizer

    # runs of spaces and " \n" are tokens too: with the space stripped they read as shorter runs
    text = "the theme then the other thing " * 20 + "東京" + "  x   y\n    z \n \n" * 30
    tok = Tokenizer.train("bpe", text, vocab_size=300)
    names = vectors.token_words(tok)
    assert len(set(names)) == len(names)
    assert "the" in names and "<0xE6>" in names  # a word start; a byte that is not whole UTF-8
    assert any(n.startswith("##") for n in names)  # a piece inside a word


def test_find_suggests_close_spellings():
    with pytest.raises(ConfigError, match="'kign' is not in the model's vocabulary of 3 tokens; close: king"):
        vectors.find(["king", "queen", "man"], "kign")
    assert vectors.find(["king"], "King", lowercase=True) == 0


def test_word2vec_export_reads_back_exactly(tmp_path):
    rng = np.random.default_rng(0)
    W = rng.standard_normal((5, 4)).astype(np.float32)
    vocab = ["a", "b c", "\n", "d", "e"]
    written, skipped = vectors.write_word2vec(tmp_path / "out.txt", vocab, W)
    assert written == 3 and skipped == ["b c", "\n"]
    assert (tmp_path / "out.txt").read_text().splitlines()[0] == "3 4"
    m = vectors.match(tmp_path / "out.txt", vocab)
    assert m.rows.tolist() == [0, 3, 4]
    np.testing.assert_array_equal(m.vectors, W[[0, 3, 4]])


# -- through the command line --------------------------------------------------------------------


@pytest.fixture
def glove(tmp_path):
    # the corpus words of test_cli.make_corpus, some capitalised in the file, one missing ("her")
    rng = np.random.default_rng(5)
    words = ["the", "Cat", "sat", "on", "a", "MAT", "and", "dog", "ran", "to", "him", "unused"]
    table = {w: rng.standard_normal(8).astype(np.float32) for w in words}
    path = tmp_path / "glove.txt"
    path.write_text("".join(w + " " + " ".join(repr(float(x)) for x in v) + "\n" for w, v in table.items()))
    return path, table


def test_train_embed_init_frozen_keeps_the_file_vectors(tmp_path, glove):
    path, table = glove
    corpus = make_corpus(tmp_path / "tiny.txt")
    out = tmp_path / "run"
    tiny = TINY[2:]  # without --embed: the file's dimension (8) sets it
    r = invoke(["train", corpus, "--out", out, "--embed-init", path, "--freeze-embed", "--max-steps", "6",
                "--epochs", "0", "--optimizer", "adam", *tiny])
    assert r.exit_code == 0, r.output
    assert "--embed-init: 11 of" in r.output and "9 as written, 2 lowercased" in r.output.replace("\n", " ")
    ckpt, tok = checkpoint.load_model(out / "last.safetensors")
    words = vectors.token_words(tok)
    W = ckpt.params["embed.W"]
    for w, v in table.items():
        if w.lower() in words:
            np.testing.assert_array_equal(W[words.index(w.lower())], v)  # matched and never trained
    start = initial_params(ckpt.model_cfg, ckpt.train_cfg)["embed.W"]
    unmatched = [i for i, w in enumerate(words) if w not in {x.lower() for x in table}]
    assert unmatched and len(unmatched) < len(words)
    np.testing.assert_array_equal(W[unmatched], start[unmatched])  # the drawn rows did not move either
    assert "adam.m.embed.W" not in ckpt.extra and "adam.m.layers.0.W_x" in ckpt.extra  # nothing kept for it
    info = json.loads(invoke(["info", out, "--json"]).output)
    assert info["train"]["freeze_embed"] is True and info["embed_init"]["matched"] == 11
    # typed again on resume: accepted; another file: refused
    r = invoke(["train", corpus, "--resume", out, "--embed-init", path, "--max-steps", "8"])
    assert r.exit_code == 0, r.output
    other = tmp_path / "other.txt"
    other.write_text(path.read_text())
    r = invoke(["train", corpus, "--resume", out, "--embed-init", other, "--max-steps", "9"])
    assert r.exit_code == 1 and "cannot be resumed with it" in r.output


def test_train_without_freeze_moves_the_embedding(tmp_path, glove):
    path, table = glove
    corpus = make_corpus(tmp_path / "tiny.txt")
    out = tmp_path / "run"
    r = invoke(["train", corpus, "--out", out, "--embed-init", path, "--max-steps", "6", "--epochs", "0",
                "--optimizer", "adam", *TINY])
    assert r.exit_code == 0, r.output
    ckpt, tok = checkpoint.load_model(out / "last.safetensors")
    row = ckpt.params["embed.W"][vectors.token_words(tok).index("the")]
    assert not np.array_equal(row, table["the"]) and np.abs(row - table["the"]).max() < 0.1


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--embed", "16"], "holds 8-dimensional vectors but --embed is 16: use --embed 8"),
        (["--freeze-embed", "--tie", "--hidden", "8"], "--freeze-embed on a model with a tied head"),
        (["--tokenizer", "char"], "a char model's tokens are characters"),
    ],
)
def test_embed_init_mistakes(tmp_path, glove, extra, message):
    corpus = make_corpus(tmp_path / "tiny.txt")
    r = invoke(["train", corpus, "--out", tmp_path / "run", "--embed-init", glove[0], "--max-steps", "2", *extra])
    assert r.exit_code == 1 and message in r.output, r.output


def test_embed_init_with_no_match_is_refused(tmp_path):
    corpus = make_corpus(tmp_path / "tiny.txt")
    path = tmp_path / "v.txt"
    path.write_text("zebra 1 2\nyak 3 4\n")
    r = invoke(["train", corpus, "--out", tmp_path / "run", "--embed-init", path, "--max-steps", "2", *TINY[2:]])
    assert r.exit_code == 1 and "none of the vocabulary's" in r.output, r.output


def test_force_keeps_the_old_run_when_the_vectors_file_is_bad_past_its_first_lines(tmp_path, glove):
    # The format and dimension are checked before tokenization; a bad line deep in the file only shows
    # while matching, after tokenization: --force must not have removed the old run by then.
    corpus = make_corpus(tmp_path / "tiny.txt")
    out = tmp_path / "run"
    assert invoke(["train", corpus, "--out", out, "--max-steps", "2", "--epochs", "0", *TINY[2:]]).exit_code == 0
    before = (out / "last.safetensors").read_bytes()
    bad = tmp_path / "bad.txt"
    bad.write_text(glove[0].read_text() + "her 1 2\n")  # a vocabulary word with 2 numbers, the others 8
    r = invoke(["train", corpus, "--out", out, "--force", "--embed-init", bad, "--max-steps", "2", *TINY[2:]])
    assert r.exit_code == 1 and "2 numbers after the word, expected 8" in r.output, r.output
    assert (out / "last.safetensors").read_bytes() == before and (out / "metrics.jsonl").exists()
    r = invoke(["train", corpus, "--out", out, "--force", "--embed-init", glove[0], "--max-steps", "2", *TINY[2:]])
    assert r.exit_code == 0 and (out / "last.safetensors").read_bytes() != before, r.output
    assert len([x for x in (out / "metrics.jsonl").read_text().splitlines() if '"kind": "end"' in x]) == 1


def test_neighbors_and_export_commands(tmp_path):
    corpus = make_corpus(tmp_path / "tiny.txt")
    out = tmp_path / "run"
    assert invoke(["train", corpus, "--out", out, "--max-steps", "6", "--epochs", "0", *TINY]).exit_code == 0
    ckpt, tok = checkpoint.load_model(out / "best.safetensors")
    words = vectors.token_words(tok)
    r = invoke(["neighbors", out, "cat", "-n", "4", "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    want = vectors.neighbors(ckpt.params["embed.W"], words.index("cat"), 4)
    assert [x["token"] for x in got["neighbors"]] == [words[i] for i, _ in want]
    assert "cat" not in [x["token"] for x in got["neighbors"]]
    r = invoke(["neighbors", out, "--analogy", "cat", "dog", "mat"])
    assert r.exit_code == 0 and "cat − dog + mat" in r.output, r.output
    r = invoke(["neighbors", out, "cta"])
    assert r.exit_code == 1 and "'cta' is not in the model's vocabulary" in r.output and "cat" in r.output
    r = invoke(["neighbors", out])
    assert r.exit_code == 1 and "give a WORD" in r.output
    r = invoke(["export", out, "--format", "word2vec", "--out", tmp_path / "v.txt"])
    assert r.exit_code == 0, r.output
    m = vectors.match(tmp_path / "v.txt", words)
    kept = [i for i, w in enumerate(words) if not any(c.isspace() for c in w)]
    assert m.rows.tolist() == kept
    np.testing.assert_array_equal(m.vectors, ckpt.params["embed.W"][kept])
    r = invoke(["export", out, "--format", "gif", "--out", tmp_path / "x"])
    assert r.exit_code == 1 and "--format must be one of" in r.output
