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
