import io
import types

import numpy as np
import pytest

from lstmtext import model
from lstmtext.config import ModelConfig
from lstmtext.errors import ConfigError
from lstmtext.sample import SampleOptions, TokenFilter, draw, generate, next_token_probs, run_generation
from lstmtext.tokenizer import Tokenizer


def test_top_k_keeps_only_the_k_most_likely():
    logits = np.array([[0.0, 3.0, 1.0, 2.0, -1.0]])
    p = next_token_probs(logits, SampleOptions(top_k=2))
    assert set(np.nonzero(p[0])[0]) == {1, 3}
    assert p.sum() == pytest.approx(1.0)


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    assert set(np.nonzero(next_token_probs(logits, SampleOptions(top_p=0.7))[0])[0]) == {0, 1}
    assert set(np.nonzero(next_token_probs(logits, SampleOptions(top_p=0.5))[0])[0]) == {0}
    assert set(np.nonzero(next_token_probs(logits, SampleOptions(top_p=0.81))[0])[0]) == {0, 1, 2}


def test_temperature_sharpens():
    logits = np.array([[1.0, 2.0]])
    cold = next_token_probs(logits, SampleOptions(temperature=0.5))[0, 1]
    hot = next_token_probs(logits, SampleOptions(temperature=2.0))[0, 1]
    assert cold > next_token_probs(logits, SampleOptions())[0, 1] > hot


def test_draw_follows_the_distribution_and_skips_zeros():
    rng = np.random.default_rng(0)
    w = np.tile(np.array([[0.0, 1.0, 0.0, 3.0, 0.0]]), (20000, 1))
    ids = draw(w, rng)
    assert set(ids.tolist()) == {1, 3}
    assert abs((ids == 3).mean() - 0.75) < 0.02


def test_draw_over_several_blocks_follows_the_distribution():
    # 300 tokens = two full blocks of 128 and a partial one; the middle block has a single token
    # with weight, so a draw must cross blocks correctly to find it.
    rng = np.random.default_rng(1)
    p = rng.random(300) ** 4
    p[128:256] = 0.0
    p[200] = 5.0
    p[::7] = 0.0
    p /= p.sum()
    ids = draw(np.tile(p, (40000, 1)), rng)
    assert p[ids].min() > 0  # never a token without weight
    freq = np.bincount(ids, minlength=300) / len(ids)
    assert 0.5 * np.abs(freq - p).sum() < 0.03  # total variation distance to the distribution
    assert abs(freq[200] - p[200]) < 0.01


class _TopOfRange:
    """An rng whose draws sit at the very top of [0, 1): the product u = r · total may then round
    up to the total itself."""

    def random(self, n):
        return np.ones(n)


def test_draw_at_the_top_of_the_range_still_picks_a_token_with_weight():
    w = np.zeros((1, 400))
    w[0, [3, 70]] = [1.0, 2.0]  # all the weight in the first block; three empty blocks after it
    assert draw(w, _TopOfRange()).tolist() == [70]


def test_greedy_and_seeded_batches():
    cfg = ModelConfig(vocab_size=12, embed=6, hidden=6, layers=2, dropout=0.2)
    params = model.init_params(cfg, np.random.default_rng(1))
    g = generate(
        params, cfg, np.array([1, 2]), SampleOptions(length=8, greedy=True, num_samples=3), np.random.default_rng(0)
    )
    assert g.shape == (3, 8) and (g == g[0]).all()  # greedy streams from the same prompt agree
    a = generate(params, cfg, np.array([1]), SampleOptions(length=8, num_samples=4), np.random.default_rng(5))
    b = generate(params, cfg, np.array([1]), SampleOptions(length=8, num_samples=4), np.random.default_rng(5))
    assert (a == b).all() and a.min() >= 0 and a.max() < 12


@pytest.mark.parametrize(
    "kw",
    [
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"temperature": -1.0},
        {"temperature": 0.0},
        {"top_k": -1},
        {"length": 0},
        {"num_samples": 0},
    ],
)
def test_bad_options(kw):
    with pytest.raises(ConfigError):
        SampleOptions(**kw)


def _model_for(tok, seed=1):
    """A random model for `tok` (an untrained one) and a stand-in checkpoint for run_generation."""
    cfg = ModelConfig(vocab_size=tok.vocab_size, embed=6, hidden=6, layers=1, dropout=0.0)
    params = model.init_params(cfg, np.random.default_rng(seed))
    return types.SimpleNamespace(params=params, model_cfg=cfg)


@pytest.mark.parametrize("kind", ["word", "char"])
def test_greedy_never_picks_unk_even_when_it_is_the_most_likely(kind):
    tok = Tokenizer.train(kind, "a b c\n")
    ckpt = _model_for(tok)
    ckpt.params["head.b"][tok.unk_id] = 100.0  # <unk> is the most likely token after anything
    prompt = tok.encode("a")
    opts = SampleOptions(length=20, greedy=True, num_samples=2)
    unfiltered = generate(ckpt.params, ckpt.model_cfg, prompt, opts, np.random.default_rng(0))
    assert (unfiltered == tok.unk_id).all()
    f = TokenFilter(tok, 2, prompt)
    g = generate(ckpt.params, ckpt.model_cfg, prompt, opts, np.random.default_rng(0), token_filter=f)
    assert tok.unk_id not in g
    sampled = generate(
        ckpt.params, ckpt.model_cfg, prompt, SampleOptions(length=50), np.random.default_rng(0), token_filter=f
    )
    assert tok.unk_id not in sampled
    allowed = TokenFilter(tok, 2, prompt, allow_unk=True)
    g = generate(ckpt.params, ckpt.model_cfg, prompt, opts, np.random.default_rng(0), token_filter=allowed)
    assert (g == tok.unk_id).all()


def test_run_generation_leaves_unk_out_unless_allowed():
    tok = Tokenizer.train("word", "a b c\n")
    ckpt = _model_for(tok)
    ckpt.params["head.b"][tok.unk_id] = 3.0  # likely, not certain
    for allow_unk in (False, True):
        out = io.StringIO()
        opts = SampleOptions(length=30, num_samples=3, allow_unk=allow_unk)
        texts = run_generation(ckpt, tok, "a", opts, np.random.default_rng(0), [], out)
        assert ("<unk>" in out.getvalue()) == allow_unk and ("<unk>" in "".join(texts)) == allow_unk


def test_a_sample_cut_off_mid_character_drops_it():
    tok = Tokenizer.train("bpe", "ab ab ab", vocab_size=300)
    ckpt = _model_for(tok)
    lead = next(i for i in range(tok.vocab_size) if tok.token_bytes(i) == b"\xe6")
    ckpt.params["head.b"][lead] = 100.0  # the first sampled token starts a 3-byte character
    out = io.StringIO()
    texts = run_generation(ckpt, tok, "ab", SampleOptions(length=1), np.random.default_rng(0), [], out)
    assert texts == ["ab"] and out.getvalue() == "ab\n"


def test_run_generation_warns_once_about_unknown_prompt_words():
    tok = Tokenizer.train("word", "a b c\n")
    ckpt = _model_for(tok)
    lines = []

    def run(tok, ckpt, prompt):
        opts, rng = SampleOptions(length=3), np.random.default_rng(0)
        run_generation(ckpt, tok, prompt, opts, rng, [], io.StringIO(), lines.append)

    run(tok, ckpt, "a zebra b " + " ".join(f"w{n}" for n in range(12)) + " zebra")
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith("warning: the prompt has words the model never saw")
    assert "'zebra', 'w0', 'w1'" in lines[0] and "'w8'" in lines[0] and lines[0].endswith("and 3 more")
    lines.clear()
    run(tok, ckpt, "a b")
    assert lines == []
    char = Tokenizer.train("char", "ab \n")
    run(char, _model_for(char), "a日")
    assert lines == ["warning: the prompt has characters the model never saw, read as <unk>: '日'"]


def test_eos_stop_prints_a_held_apostrophe():
    tok = Tokenizer.train("word", "the dogs' bones\n")
    ckpt = _model_for(tok)
    ckpt.params["head.b"][tok.eos_id] = 100.0
    out = io.StringIO()
    texts = run_generation(ckpt, tok, "the dogs'", SampleOptions(length=5), np.random.default_rng(0), ["<eos>"], out)
    assert texts == ["the dogs'"] and out.getvalue() == "the dogs'\n"


def test_a_prompt_is_read_after_a_line_end_as_training_lines_are():
    from lstmtext.sample import read_as_a_line
    from lstmtext.tokenizer import Tokenizer

    word = Tokenizer.train("word", "the cat sat\nthe dog ran\n")
    assert list(read_as_a_line(word, "the cat")) == [word.eos_id, *word.encode("the cat")]
    assert list(read_as_a_line(word, "\nthe cat")) == list(word.encode("\nthe cat"))  # not a second one
    assert list(read_as_a_line(word, "")) == list(word.encode("\n"))
    one_line = Tokenizer.train("char", "abcabc")  # no line end in its vocabulary: the prompt alone
    assert list(read_as_a_line(one_line, "cab")) == list(one_line.encode("cab"))
    bpe = Tokenizer.train("bpe", "def f(x):\n    return x\n" * 20, vocab_size=300)
    ids = read_as_a_line(bpe, "def g")
    assert bpe.decode(ids) == "\ndef g" and list(ids[1:]) == list(bpe.encode("def g"))


def test_a_prompt_ending_in_a_space_is_not_followed_by_a_second_one():
    from lstmtext.sample import shown_prompt

    word, char = types.SimpleNamespace(kind="word"), types.SimpleNamespace(kind="char")
    assert shown_prompt("The module ", word) == "The module" and shown_prompt("x =\t ", word) == "x ="
    assert shown_prompt("def f():\n    ", word) == "def f():\n    "  # indentation alone on its line: kept
    assert shown_prompt("a\n", word) == "a\n" and shown_prompt("", word) == "" and shown_prompt("  ", word) == "  "
    assert shown_prompt("The module ", char) == "The module "  # a character like any other: no double space
    for kind, text in (("word", "the module set again\n"), ("bpe", "the module set again\n" * 30)):
        tok = Tokenizer.train(kind, text, **({"vocab_size": 280} if kind == "bpe" else {}))
        ckpt = _model_for(tok)
        ckpt.params["head.b"][tok.encode(" set" if kind == "bpe" else "set")[-1]] = 100.0  # " set" comes next
        out = io.StringIO()
        texts = run_generation(ckpt, tok, "the module ", SampleOptions(length=1), np.random.default_rng(0), [], out)
        assert texts == ["the module set"] and out.getvalue() == "the module set\n", (kind, texts)
