import numpy as np
import pytest

from lstmtext import model
from lstmtext.config import ModelConfig
from lstmtext.errors import ConfigError
from lstmtext.sample import SampleOptions, draw, generate, next_token_probs


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


def test_greedy_and_seeded_batches():
    cfg = ModelConfig(vocab_size=12, embed=6, hidden=6, layers=2)
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
