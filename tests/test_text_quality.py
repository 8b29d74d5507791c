"""Text that reads as text: word decoding puts real English punctuation back as it was written,
and samples hold no "<unk>" and, from byte-level BPE, never an invalid byte (U+FFFD)."""

import io
import itertools
import types

import numpy as np
import pytest

from lstmtext import batching, model, optim
from lstmtext.config import ModelConfig, TrainConfig
from lstmtext.sample import SampleOptions, generate, run_generation
from lstmtext.tokenizer import Tokenizer
from lstmtext.trainer import train_step

SENTENCES = [
    "as 'twere",
    "don't",
    "Patch 7.2.",
    '"Yes," she said.',
    "See https://example.com/a-b?x=1 for more.",
    "Visit https://example.org/docs.",
    "Pi is about 3.14, and a grand is 1,000 dollars.",
    "It's late, I'll go, and we're tired; o'er the hills we went.",
    "The dogs' bones were buried in the Smiths' garden.",
    "They’re the Smiths’ cats.",
    "He paused (for a moment) and left [quietly].",
    "She hesitated—then spoke.",
    "Wait... what?",
    "Well… maybe.",
    "Note: bring water; food is provided.",
    "Really? Yes! Absolutely!",
    "“Hello,” he said, “how are you?”",
    "‘Quite well,’ she replied.",
    "She read “The Raven” aloud.",
    'He said, "Stop."',
    "'Tis the season, 'twas the night.",
    "'I'm fine,' she said.",
    "'I'm goin' home,' he said.",
    "I said 'no' twice.",
    "Nothin' doin', he said.",
    "Th' king is dead.",
    "Rock 'n' roll never dies.",
    "The '90s were loud.",
    "The meeting is at 10:30, not 9:45.",
    "It costs $5.99 (about 50% off).",
    "Email me at jane.doe@example.com today.",
    "A well-known, state-of-the-art tool.",
    "Mix 2 eggs and 1/2 cup of milk.",
    "Set x = -5 and y = 3.",
    "¿Qué? ¡Sí!",
]


@pytest.fixture(scope="module")
def english() -> Tokenizer:
    return Tokenizer.train("word", "\n".join(SENTENCES) + "\n")


@pytest.mark.parametrize("sentence", SENTENCES)
def test_word_decoding_gives_back_the_sentence(english, sentence):
    ids = english.encode(sentence)
    assert english.count_unk(ids) == 0
    tokens = [english.id_to_token(int(i)) for i in ids]
    assert english.decode(ids) == sentence, tokens


def test_word_decoding_gives_back_the_whole_text_streamed(english):
    text = "\n".join(SENTENCES) + "\n"
    ids = english.encode(text)
    detok = english.detokenizer()
    assert "".join(detok.push(int(i)) for i in ids) + detok.flush() == text == english.decode(ids)


MIXED = (
    "The café served crème brûlée, naïve Øre and Ñandú. Москва — столица России. "
    "Η Αθήνα είναι όμορφη. 東京は日本の首都です。北京欢迎你！ Emoji: 👍🏽 🎉 ❤️ 😀 👨‍👩‍👧.\n"
) * 6


def _trained(tok: Tokenizer, steps: int, seed: int = 0):
    """A tiny model for `tok`, trained `steps` windows on MIXED (0: random weights), as the stand-in
    checkpoint run_generation takes."""
    cfg = ModelConfig(vocab_size=tok.vocab_size, embed=24, hidden=24, layers=1, dropout=0.0)
    train_cfg = TrainConfig(batch_size=4, bptt=16, optimizer="adam", lr=0.01, epochs=1)
    params = model.init_params(cfg, np.random.default_rng(seed))
    opt_state = optim.init_state(train_cfg.optimizer, params)
    streams = batching.make_streams(tok.encode(MIXED), train_cfg.batch_size)
    state = model.init_state(cfg, train_cfg.batch_size)
    rng = np.random.default_rng(seed)
    windows = itertools.cycle(batching.windows(streams, train_cfg.bptt))  # epochs over MIXED
    for x, y in itertools.islice(windows, steps):
        loss, _, state = train_step(params, cfg, train_cfg, opt_state, train_cfg.lr, x, y, state, rng)
        assert np.isfinite(loss)
    return types.SimpleNamespace(params=params, model_cfg=cfg)


def _sample_text(tok, ckpt, prompt: str, seeds=range(5), **opts) -> str:
    """1,000 tokens per seed (5 samples of 200), as printed."""
    out = io.StringIO()
    for seed in seeds:
        run_generation(ckpt, tok, prompt, SampleOptions(length=200, num_samples=5, **opts),
                       np.random.default_rng(seed), [], out)  # fmt: skip
    return out.getvalue()


@pytest.mark.parametrize("steps", [0, 20])
def test_bpe_samples_are_always_valid_utf8(steps):
    tok = Tokenizer.train("bpe", MIXED, vocab_size=400)
    ckpt = _trained(tok, steps)
    for prompt in ["", "Москва", "東京 👍"]:
        text = _sample_text(tok, ckpt, prompt)
        assert "\ufffd" not in text
        assert len(text) > 1000  # the samples are there, just valid


def test_without_the_filter_a_random_bpe_model_writes_invalid_utf8():
    # What the filter is for: so this test suite can fail.
    tok = Tokenizer.train("bpe", MIXED, vocab_size=400)
    ckpt = _trained(tok, 0)
    ids = generate(ckpt.params, ckpt.model_cfg, tok.encode("\n"), SampleOptions(length=1000), np.random.default_rng(0))
    assert "\ufffd" in tok.decode(ids[0])


@pytest.mark.parametrize("kind", ["word", "char"])
@pytest.mark.parametrize("steps", [0, 20])
def test_word_and_char_samples_never_hold_unk(kind, steps):
    # Rare words (and characters) are <unk> in training, so a trained model predicts it often.
    tok = Tokenizer.train(kind, MIXED, vocab_size=30 if kind == "word" else 40)
    ckpt = _trained(tok, steps)
    ckpt.params["head.b"][tok.unk_id] += 2.0  # more likely still: the test must be able to fail
    unk = "<unk>" if kind == "word" else "\ufffd"
    assert unk not in _sample_text(tok, ckpt, "The")
    assert unk in _sample_text(tok, ckpt, "The", seeds=[0], allow_unk=True)
