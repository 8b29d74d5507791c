"""Beam search, the repetition penalty and the no-repeat n-gram ban: on hand-made models and logits
where the right answer is known (by brute force where it is a search), then through the API and the
command line on a tiny trained run."""

import codecs
import itertools
import re

import numpy as np
import pytest
from rich.console import Console
from test_cli import invoke, make_corpus

import lstmtext
from lstmtext import model
from lstmtext.config import ModelConfig
from lstmtext.errors import ConfigError
from lstmtext.sample import (
    History,
    SampleOptions,
    TokenFilter,
    ban_repeated_ngrams,
    beam_search,
    generate,
    penalize_repeats,
    repeated_ngram_bans,
)
from lstmtext.tokenizer import Tokenizer

# -- a model whose next-token distribution depends only on the previous token ------------------------


def table_model(monkeypatch, table: np.ndarray) -> tuple[dict, ModelConfig]:
    """model.step_logits answers table[previous id] (V,V logits): a bigram model whose every
    sequence's probability is known. The state is the real one, so beams must still reorder it."""
    V = table.shape[0]
    cfg = ModelConfig(vocab_size=V, embed=2, hidden=2, layers=1, dropout=0.2)
    params = model.init_params(cfg, np.random.default_rng(0))
    table = table.astype(np.float32)

    def step_logits(params, cfg, ids, state):
        assert all(s.shape[0] == len(ids) for s in state.values())  # state rows follow the beams
        return table[ids].copy(), state

    monkeypatch.setattr(model, "step_logits", step_logits)
    return params, cfg


def brute_force(table: np.ndarray, start: int, length: int) -> list[tuple[float, tuple[int, ...]]]:
    """Every sequence of `length` tokens after `start` with its summed log-probability, best first."""
    logp = table - np.log(np.exp(table).sum(axis=1, keepdims=True))  # (V, V) float64
    scored = []
    for seq in itertools.product(range(table.shape[0]), repeat=length):
        prev, total = start, 0.0
        for t in seq:
            total += logp[prev, t]
            prev = t
        scored.append((total, seq))
    return sorted(scored, key=lambda x: -x[0])


def _trap() -> np.ndarray:
    """After 0: token 1 (p .5) or 2 (p .45). After 1 the next token is a coin toss among four;
    after 2 it is almost surely 3. Greedy takes 1 (.5 × .25); the best pair is 2, 3 (.45 × .97)."""
    p = np.array(
        [
            [0.01, 0.50, 0.45, 0.04],
            [0.25, 0.25, 0.25, 0.25],
            [0.01, 0.01, 0.01, 0.97],
            [0.25, 0.25, 0.25, 0.25],
        ]
    )
    return np.log(p)


def test_beam_finds_the_most_likely_pair_that_greedy_misses(monkeypatch):
    table = _trap()
    params, cfg = table_model(monkeypatch, table)
    prompt = np.array([0])
    greedy = generate(params, cfg, prompt, SampleOptions(length=2, greedy=True), np.random.default_rng(0))
    found = beam_search(params, cfg, prompt, SampleOptions(length=2, beam=2))
    (best_score, best_seq), *_ = brute_force(table, 0, 2)
    assert best_seq == (2, 3)
    assert tuple(greedy[0]) != best_seq and greedy[0, 0] == 1
    assert tuple(found.ids[0]) == best_seq
    assert found.scores[0] == pytest.approx(best_score)


@pytest.mark.parametrize("seed", range(5))
def test_a_beam_as_wide_as_all_sequences_ranks_them_as_brute_force(monkeypatch, seed):
    V, T = 4, 3
    table = np.random.default_rng(seed).normal(size=(V, V)) * 2
    params, cfg = table_model(monkeypatch, table)
    everything = brute_force(table, 0, T)
    found = beam_search(params, cfg, np.array([0]), SampleOptions(length=T, beam=V**T, num_samples=6))
    # Sequences made of the same transitions tie (0 1 0 and 1 0 0 after 0), so compare scores, and
    # each sequence found with its own score.
    exact = dict((seq, s) for s, seq in everything)
    np.testing.assert_allclose(found.scores, [s for s, _ in everything[:6]], rtol=1e-5)
    np.testing.assert_allclose(found.scores, [exact[tuple(row)] for row in found.ids], rtol=1e-5)
    assert len({tuple(row) for row in found.ids}) == 6
    narrow = beam_search(params, cfg, np.array([0]), SampleOptions(length=T, beam=2, num_samples=2))
    for row, score in zip(narrow.ids, narrow.scores, strict=True):  # a beam's score is its sequence's
        assert score == pytest.approx(exact[tuple(row)], rel=1e-5)
    assert narrow.scores[0] >= narrow.scores[1]


def test_beam_1_is_greedy_on_a_random_model():
    cfg = ModelConfig(vocab_size=30, embed=6, hidden=6, layers=2, dropout=0.2)
    params = model.init_params(cfg, np.random.default_rng(1))
    prompt = np.array([1, 2, 3])
    for extra in ({}, {"repetition_penalty": 1.5, "no_repeat_ngram": 2}):
        greedy = generate(params, cfg, prompt, SampleOptions(length=25, greedy=True, **extra), np.random.default_rng(0))
        beam = beam_search(params, cfg, prompt, SampleOptions(length=25, beam=1, **extra))
        assert beam.ids.shape == (1, 25)
        np.testing.assert_array_equal(beam.ids, greedy)


def test_a_finished_beam_keeps_its_score_and_the_search_ends_when_all_are(monkeypatch):
    eos = 3
    p = np.array(
        [
            [0.01, 0.39, 0.00, 0.60],  # after the prompt: end now (.6) or go on with 1
            [0.01, 0.01, 0.97, 0.01],
            [0.97, 0.01, 0.01, 0.01],
            [0.25, 0.25, 0.25, 0.25],
        ]
    )
    params, cfg = table_model(monkeypatch, np.log(p + 1e-9))
    found = beam_search(params, cfg, np.array([0]), SampleOptions(length=4, beam=2, num_samples=2), eos_id=eos)
    assert found.ids[0].tolist() == [eos] * 4  # padded with eos, scored by its one token
    assert found.scores[0] == pytest.approx(np.log(0.6), abs=1e-6)
    assert found.ids[1].tolist()[:3] == [1, 2, 0]
    assert found.scores[1] < found.scores[0]
    unstopped = beam_search(params, cfg, np.array([0]), SampleOptions(length=4, beam=2), eos_id=None)
    # eos is a token like others without the stop: after it come three coin tosses among four
    # (.6 × .25³ = .009), so the path through 1 wins (.39 × .97 × .97 × .6 = .22)
    assert unstopped.ids[0].tolist() == [1, 2, 0, eos]
    assert unstopped.scores[0] == pytest.approx(np.log(0.39 * 0.97 * 0.97 * 0.6), abs=1e-6)
    alone = beam_search(params, cfg, np.array([0]), SampleOptions(length=4, beam=1), eos_id=eos)
    assert alone.ids.tolist() == [[eos]]  # every beam finished at the first step: nothing more to search


def test_beam_search_keeps_each_beams_bpe_bytes_valid_utf8():
    tok = Tokenizer.train("bpe", "ab ab ab é 日本", vocab_size=300)
    cfg = ModelConfig(vocab_size=tok.vocab_size, embed=6, hidden=6, layers=1, dropout=0.0)
    params = model.init_params(cfg, np.random.default_rng(1))
    for lead in (b"\xe6", b"\xf0"):  # starts of 3- and 4-byte characters: the filter must finish them
        params["head.b"][next(i for i in range(tok.vocab_size) if tok.token_bytes(i) == lead)] = 8.0
    prompt = tok.encode("ab")
    found = beam_search(
        params, cfg, prompt, SampleOptions(length=9, beam=6, num_samples=6), TokenFilter(tok, 1, prompt)
    )
    assert found.ids.shape == (6, 9) and len({tuple(r) for r in found.ids}) == 6
    for row in found.ids:
        decoder = codecs.getincrementaldecoder("utf-8")("strict")
        decoder.decode(b"".join(tok.token_bytes(int(i)) for i in row))  # raises on invalid UTF-8
    assert any(lead in tok.token_bytes(int(i)) for i in found.ids.ravel() for lead in (b"\xe6", b"\xf0"))


def test_token_filter_reorder_gives_each_beam_its_own_pending_bytes():
    tok = Tokenizer.train("bpe", "ab ab ab", vocab_size=300)
    byte = {b: next(i for i in range(tok.vocab_size) if tok.token_bytes(i) == b) for b in (b"a", b"\xe6", b"\x97")}
    f = TokenFilter(tok, 2, tok.encode("ab"))
    f.advance(np.array([byte[b"a"], byte[b"\xe6"]]))  # stream 1 is inside a 3-byte character
    f.reorder(np.array([1, 1, 0]))
    f.advance(np.array([byte[b"\x97"], byte[b"\x97"], byte[b"a"]]))  # each child of stream 1 goes on alone
    logits = np.zeros((3, tok.vocab_size))
    f.apply(logits)
    assert np.isneginf(logits[0, byte[b"a"]]) and np.isneginf(logits[1, byte[b"a"]])  # still mid-character
    assert logits[2, byte[b"a"]] == 0.0 and np.isneginf(logits[2, byte[b"\x97"]])


# -- the repetition penalty -----------------------------------------------------------------------------


def test_repetition_penalty_divides_positive_and_multiplies_negative_seen_logits():
    logits = np.array([[2.0, -1.0, 0.5, -3.0, -np.inf], [2.0, -1.0, 0.5, -3.0, 1.0]])
    seen = np.array([[True, True, False, False, True], [False, False, True, True, False]])
    penalize_repeats(logits, seen, 2.0)
    np.testing.assert_array_equal(logits[0], [1.0, -2.0, 0.5, -3.0, -np.inf])
    np.testing.assert_array_equal(logits[1], [2.0, -1.0, 0.25, -6.0, 1.0])


def test_history_sees_the_prompt_and_each_streams_own_tokens():
    opts = SampleOptions(length=3, repetition_penalty=2.0, num_samples=2)
    h = History(np.array([0]), 2, opts, vocab_size=4)
    h.advance(np.array([1, 2]))
    logits = np.full((2, 4), 1.0)
    h.apply(logits)
    np.testing.assert_array_equal(logits, [[0.5, 0.5, 1.0, 1.0], [0.5, 1.0, 0.5, 1.0]])
    h.reorder(np.array([1, 1]))  # both beams now continue stream 1
    assert h.seen[:, 2].all() and not h.seen[:, 1].any()


def test_repetition_penalty_turns_greedy_away_from_a_loop(monkeypatch):
    table = np.zeros((3, 3))
    table[:, 1], table[:, 2] = 2.0, 1.5  # 1 is always a little likelier than 2
    params, cfg = table_model(monkeypatch, table)

    def run(**kw):
        opts = SampleOptions(length=4, greedy=True, **kw)
        return generate(params, cfg, np.array([0]), opts, np.random.default_rng(0))[0].tolist()

    assert run() == [1, 1, 1, 1]
    # 2 / 1.5 < 1.5: once 1 is seen, 2 wins; once both are, 1 (2/1.5) beats 2 (1.5/1.5) again
    assert run(repetition_penalty=1.5) == [1, 2, 1, 1]


# -- the no-repeat n-gram ban ---------------------------------------------------------------------------


def _bans(history, n):
    rows, ids = repeated_ngram_bans(np.array(history), n)
    return sorted(set(zip(rows.tolist(), ids.tolist(), strict=True)))


def test_the_banned_token_is_the_one_completing_a_seen_ngram():
    history = [[1, 2, 3, 1, 2], [5, 6, 7, 8, 9], [4, 4, 4, 4, 4]]
    assert _bans(history, 3) == [(0, 3), (2, 4)]  # "1 2" -> 3 was seen; "4 4" -> 4 was seen
    assert _bans(history, 2) == [(0, 3), (2, 4)]  # "2" -> 3; row 1's "9" never led anywhere
    assert _bans([[1, 2, 1, 3, 1]], 2) == [(0, 2), (0, 3)]  # every token that ever followed 1
    assert _bans(history, 1) == [(0, 1), (0, 2), (0, 3), (1, 5), (1, 6), (1, 7), (1, 8), (1, 9), (2, 4)]
    assert _bans(history, 6) == []  # no 6-gram yet


def test_ban_repeated_ngrams_sets_minus_inf_and_lets_a_stuck_stream_off():
    logits = np.zeros((2, 4))
    ban_repeated_ngrams(logits, np.array([[0, 1, 0, 0], [1, 2, 3, 0]]), 1)
    np.testing.assert_array_equal(logits[0], [-np.inf, -np.inf, 0.0, 0.0])
    np.testing.assert_array_equal(logits[1], [0.0, 0.0, 0.0, 0.0])  # all four seen: nothing left, so no ban


@pytest.mark.parametrize("how", ["greedy", "sampled", "beam"])
def test_no_ngram_repeats_in_generated_text(monkeypatch, how):
    V, n = 12, 2
    table = np.random.default_rng(3).normal(size=(V, V))
    table[np.arange(V), (np.arange(V) + 1) % 6] += 6.0  # a strong loop over six tokens
    params, cfg = table_model(monkeypatch, table)
    prompt = np.array([0, 1])
    kw = {"greedy": {"greedy": True}, "sampled": {"num_samples": 3}, "beam": {"beam": 3, "num_samples": 3}}[how]

    def run(**extra):
        return generate(params, cfg, prompt, SampleOptions(length=30, **kw, **extra), np.random.default_rng(0))

    def repeats(rows):
        return any(len(set(itertools.pairwise([*prompt, *row]))) < len(row) + len(prompt) - 1 for row in rows)

    assert repeats(run())  # the loop repeats bigrams without the rule
    assert not repeats(run(no_repeat_ngram=n))


# -- options --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, word",
    [
        ({"repetition_penalty": 0.5}, "--repetition-penalty"),
        ({"repetition_penalty": 0.0}, "--repetition-penalty"),
        ({"repetition_penalty": float("nan")}, "--repetition-penalty"),
        ({"repetition_penalty": float("inf")}, "--repetition-penalty"),
        ({"no_repeat_ngram": -1}, "--no-repeat-ngram"),
        ({"beam": 0}, "--beam"),
        ({"beam": 3, "temperature": 0.8}, "--temperature 0.8"),
        ({"beam": 3, "top_k": 5, "top_p": 0.9}, "--top-k 5 and --top-p 0.9"),
        ({"beam": 3, "greedy": True}, "--greedy"),
        ({"beam": 3, "num_samples": 4}, "--num-samples 4"),
    ],
)
def test_bad_decoding_options_say_which_in_one_line(kw, word):
    with pytest.raises(ConfigError, match=re.escape(word)) as e:
        SampleOptions(**kw)
    assert "\n" not in str(e.value)


def test_sampling_options_are_fine_without_a_beam():
    SampleOptions(beam=1, temperature=0.8, top_k=5, top_p=0.9, greedy=True, num_samples=4)
    SampleOptions(beam=4, num_samples=4, repetition_penalty=1.0, no_repeat_ngram=3)


# -- through the API and the command line -----------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("decoding")
    corpus = make_corpus(tmp / "tiny.txt")
    tiny = dict(tokenizer="word", embed=8, hidden=8, layers=1, batch_size=2, bptt=5, log_every=2, threads=1)
    return lstmtext.train(
        str(corpus), out=str(tmp / "run"), max_steps=12, epochs=0, console=Console(quiet=True), **tiny
    )


def test_api_takes_the_options_and_generate_is_the_joined_stream(run):
    m = run.model()
    for kw in (
        {"beam": 3},
        {"repetition_penalty": 1.3, "seed": 2},
        {"no_repeat_ngram": 2, "seed": 2},
        {"beam": 3, "repetition_penalty": 1.3, "no_repeat_ngram": 2},
    ):
        text = m.generate("the cat", length=12, **kw)
        assert text.startswith("the cat") and len(text) > len("the cat"), kw
        assert text == "".join(m.stream("the cat", length=12, **kw)), kw
    best = m.generate("the", length=8, beam=4)
    assert best == m.generate("the", length=8, beam=4, seed=7)  # a search: the seed changes nothing
    three = m.samples(3, "the", length=8, beam=4)
    assert three[0] == best and len(set(three)) == 3
    assert all(s.startswith("the") for s in m.samples(2, "the", length=8, no_repeat_ngram=1, repetition_penalty=2))
    with pytest.raises(ConfigError, match="--num-samples 5 is more than --beam 4"):
        m.samples(5, "the", beam=4)
    with pytest.raises(ConfigError, match="--temperature"):
        m.stream("the", beam=2, temperature=0.5)  # checked at the call, not at the first piece


def test_api_beam_stops_at_eos(run):
    text = run.model().generate("the", length=40, beam=3, stop=["<eos>"])
    assert "\n" not in text


def test_no_repeat_ngram_1_uses_no_word_twice(run):
    m = run.model()
    words = m.generate("the", length=10, no_repeat_ngram=1, seed=0).split()
    assert len(words) > 3 and len(set(words)) == len(words)


def test_cli_generate_with_the_options(run):
    for args in (
        ["--beam", "3"],
        ["--repetition-penalty", "1.3", "--seed", "1"],
        ["--no-repeat-ngram", "2", "--seed", "1"],
    ):
        r = invoke(["generate", run.path, "--prompt", "the cat", "--length", "10", *args])
        assert r.exit_code == 0, (args, r.output)
        assert r.stdout.startswith("the cat") and len(r.stdout.split()) > 2, (args, r.stdout)
    r = invoke(["generate", run.path, "--prompt", "the", "--length", "6", "--beam", "3", "--num-samples", "2"])
    assert r.exit_code == 0 and r.stdout.count("--- sample") == 2, r.output
    one = invoke(["generate", run.path, "--prompt", "the", "--length", "6", "--beam", "3"])
    assert one.stdout == run.model().generate("the", length=6, beam=3) + "\n"


@pytest.mark.parametrize(
    "args, word",
    [
        (["--beam", "0"], "--beam"),
        (["--beam", "2", "--temperature", "0.7"], "--temperature"),
        (["--beam", "2", "--top-k", "3"], "--top-k"),
        (["--beam", "2", "--num-samples", "3"], "--num-samples"),
        (["--beam", "2", "--greedy"], "--greedy"),
        (["--repetition-penalty", "0.5"], "--repetition-penalty"),
        (["--no-repeat-ngram", "-1"], "--no-repeat-ngram"),
    ],
)
def test_cli_bad_values_exit_1_with_one_line(run, args, word):
    r = invoke(["generate", run.path, "--length", "5", *args])
    assert r.exit_code == 1, r.output
    err = r.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and word in err, err
    assert r.stdout == ""
