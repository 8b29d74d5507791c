"""Reading as it goes (lstmtext.reading): dynamic evaluation and the neural cache score each token before
anything learns from it, are the plain score when switched off, and help where a text repeats itself."""

import json

import numpy as np
import pytest
from test_cli import TINY, invoke, make_corpus

import lstmtext
from lstmtext import batching, evaluate, model, optim, reading
from lstmtext.config import ModelConfig
from lstmtext.errors import ConfigError

V = 40


def network(seed=0, **kw):
    cfg = ModelConfig(vocab_size=V, embed=8, hidden=12, layers=2, dropout=0.0, **kw)
    return model.init_params(cfg, np.random.default_rng(seed), np.float64), cfg


def text_ids(n=300, seed=1):
    return np.random.default_rng(seed).integers(0, V, n)


def plain_nll(params, cfg, ids, batch, bptt):
    """The plain score of each prediction, in text order."""
    x, y, mask = batching.padded_streams(ids, batch)
    state, out = model.init_state(cfg, batch, np.float64), []
    for i in range(0, x.shape[0], bptt):
        _, nll, _, state = model.forward(params, cfg, x[i : i + bptt], y[i : i + bptt], state, None, mask[i : i + bptt])
        out.append(nll)
    return np.concatenate(out).T.reshape(-1)[: len(ids) - 1]


def in_text_order(nll, ids):
    return nll.T.reshape(-1)[: len(ids) - 1]


def test_switched_off_they_are_the_plain_score():
    params, cfg = network()
    ids = text_ids()
    rms = reading.gradient_rms(params, cfg, text_ids(seed=2), 4, 5, 0)
    got = reading.dynamic_nll(params, cfg, ids, rms, lr=0.0, decay=0.0, window=7)
    np.testing.assert_allclose(got, plain_nll(params, cfg, ids, 1, 7), rtol=1e-13)
    nll, mask = reading.cache_nll(params, cfg, ids, 3, 10, size=50, theta=0.5, lam=0.0)
    np.testing.assert_allclose(in_text_order(nll, ids), plain_nll(params, cfg, ids, 3, 10), rtol=1e-12)
    total, n = evaluate.score(params, cfg, ids, 3, 10)
    assert float((nll * mask).sum()) == pytest.approx(total, rel=1e-12) and int(mask.sum()) == n


@pytest.mark.parametrize("untied", [False, True])
def test_a_dynamic_step_is_the_formula_as_written(untied):
    """The second segment is scored with θ₁ = θ₀ − η g / (rms + ε) + λ r (θ₀ − θ₀), g the first's gradient;
    the third with θ₂ = θ₁ − η g₁ / (rms + ε) + λ r (θ₀ − θ₁), r = rms / its mean, clipped at 1/λ."""
    cfg = ModelConfig(vocab_size=V, embed=12, hidden=12, layers=2, dropout=0.0, tie=not untied)
    params = model.init_params(cfg, np.random.default_rng(6), np.float64)
    ids = np.tile(text_ids(n=6), 3)[:16]  # tokens come back: the steps on their embedding rows count
    rms = reading.gradient_rms(params, cfg, text_ids(seed=2), 4, 5, 0)
    lr, decay, eps = 0.05, 0.3, reading.EPSILON
    mean_rms = np.mean([r.mean() for r in rms.values()])
    rate = {k: np.minimum(r / mean_rms, 1 / decay) for k, r in rms.items()}
    got = reading.dynamic_nll(params, cfg, ids, rms, lr=lr, decay=decay, window=5)
    theta, state, want = dict(params), model.init_state(cfg, 1, np.float64), []
    for i in (0, 5, 10):
        x, y = ids[i : i + 5, None], ids[i + 1 : i + 6, None]
        _, nll, cache, state = model.forward(theta, cfg, x, y, state, None)
        want.append(nll[:, 0])
        grads, _ = model.backward(theta, cfg, cache)
        dense = {k: g.dense() if hasattr(g, "dense") else g for k, g in grads.items()}
        theta = {k: p - lr * dense[k] / (rms[k] + eps) + decay * rate[k] * (params[k] - p) for k, p in theta.items()}
    np.testing.assert_allclose(got, np.concatenate(want), rtol=1e-12)
    assert not np.allclose(got[5:], plain_nll(params, cfg, ids, 1, 5)[5:])  # the steps did change the scores


@pytest.mark.parametrize("how", ["dynamic", "cache"])
def test_no_token_is_scored_after_something_learnt_from_it(how):
    """Changing token k changes nothing before the prediction of token k (position k - 1)."""
    params, cfg = network(seed=3)
    ids = text_ids()
    rms = reading.gradient_rms(params, cfg, text_ids(seed=2), 4, 5, 0)

    def losses(ids):
        if how == "dynamic":
            return reading.dynamic_nll(params, cfg, ids, rms, lr=0.05, decay=0.01, window=5)
        return in_text_order(reading.cache_nll(params, cfg, ids, 1, 10, size=100, theta=1.0, lam=0.5)[0], ids)

    before = losses(ids)
    for k in (37, 150, 251):  # inside a segment and at its edges
        changed = ids.copy()
        changed[k] = (ids[k] + 1) % V
        after = losses(changed)
        np.testing.assert_array_equal(after[: k - 1], before[: k - 1])
        assert after[k - 1] != before[k - 1]  # the prediction of token k itself does change


def trained_on(ids):
    """A small network trained briefly on ids: it knows their tokens, and not the others."""
    params, cfg = network(seed=4, init="torch")
    streams, state = batching.make_streams(ids, 4), model.init_state(cfg, 4, np.float64)
    for _ in range(3):
        for x, y in batching.windows(streams, 10):
            _, _, cache, state = model.forward(params, cfg, x, y, state, None)
            grads, _ = model.backward(params, cfg, cache)
            optim.clip_global_norm(grads, 1.0)
            optim.step("sgd", params, grads, {}, 1.0)
    return params, cfg


def test_both_lower_the_loss_of_a_rare_phrase_read_a_second_time():
    rng = np.random.default_rng(5)
    train = rng.integers(0, 30, 4000)
    params, cfg = trained_on(train)
    phrase = rng.integers(30, 40, 12)  # tokens training never showed
    ids = np.concatenate([rng.integers(0, 30, 100), phrase, rng.integers(0, 30, 100), phrase, rng.integers(0, 30, 20)])
    second = np.arange(212, 223)  # the predictions of the phrase's 2nd to 12th tokens, second time
    plain = plain_nll(params, cfg, ids, 1, 10)
    rms = reading.gradient_rms(params, cfg, train, 4, 5, 0)
    dyn = reading.dynamic_nll(params, cfg, ids, rms, lr=1e-3, decay=2e-3, window=5)
    cached = in_text_order(reading.cache_nll(params, cfg, ids, 1, 10, size=400, theta=1.0, lam=0.3)[0], ids)
    assert plain[second].mean() > 6.0  # the model alone finds the phrase unlikely
    assert dyn[second].mean() < plain[second].mean() - 1.0 and cached[second].mean() < plain[second].mean() - 1.0
    assert dyn.mean() < plain.mean() and cached.mean() < plain.mean()  # and the whole text gains


def test_the_options_are_checked_before_anything_is_read():
    with pytest.raises(ConfigError, match="use one of them"):
        reading.check_options(lstmtext.config.EvalOptions(dynamic=True, cache=100))
    with pytest.raises(ConfigError, match="--cache-lambda in"):
        reading.check_options(lstmtext.config.EvalOptions(cache=100, cache_lambda=1.5))


def test_the_api_scores_as_the_command_does(tmp_path):
    corpus = make_corpus(tmp_path / "c.txt", lines=120)
    run = tmp_path / "run"
    assert invoke(["train", corpus, *TINY, "--max-steps", "20", "--epochs", "0", "--out", run]).exit_code == 0
    held = run / "valid.txt"
    m = lstmtext.load(run)
    for flags, keywords in ((["--dynamic", "--dynamic-lr", "0.001"], {"dynamic": True, "dynamic_lr": 0.001}),
                            (["--cache", "50"], {"cache": 50})):  # fmt: skip
        r = invoke(["eval", run, held, "--json", "--threads", "1", *flags])
        assert r.exit_code == 0, r.output
        got = json.loads(r.output)
        assert got == {"file": str(held), **m.score(held.read_text(encoding="utf-8"), **keywords)}
        assert got["loss"] != m.score(held.read_text(encoding="utf-8"))["loss"]
    (run / "train-ids.npy").unlink()
    r = invoke(["eval", run, held, "--dynamic"])
    assert r.exit_code == 1 and "train-ids.npy" in r.output


def test_dynamic_statistics_need_a_whole_window_of_training_text():
    params, cfg = network()
    rms = reading.gradient_rms(params, cfg, text_ids(n=12), 100, 5, 0)  # two streams of a window each
    assert all(np.isfinite(r).all() for r in rms.values()) and any(r.any() for r in rms.values())
    with pytest.raises(ConfigError, match="at least 6 tokens"):
        reading.gradient_rms(params, cfg, text_ids(n=5), 100, 5, 0)


@pytest.mark.parametrize("how", ["plain", "dynamic", "cache"])
def test_a_long_reading_says_how_far_it_is(how):
    params, cfg = network()
    ids = text_ids(n=203)
    calls = []

    def progress(stage, done, total):
        calls.append((stage, done, total))

    if how == "plain":
        _, n = evaluate.score(params, cfg, ids, 4, 7, progress=progress)
    elif how == "cache":
        _, mask = reading.cache_nll(params, cfg, ids, 4, 7, 30, 0.3, 0.1, progress)
        n = int(mask.sum())
    else:
        rms = reading.gradient_rms(params, cfg, text_ids(n=400, seed=2), 3, 5, 0, progress)
        stats = [c for c in calls if c[0] == "statistics"]
        assert stats[-1][1] == stats[-1][2] == len(stats) * 3 * 5  # every window read, each counted once
        n = len(reading.dynamic_nll(params, cfg, ids, rms, 1e-3, 0.0, 5, progress=progress))
    scoring = [c for c in calls if c[0] == "scoring"]
    done = [d for _, d, _ in scoring]
    assert done == sorted(set(done)) and done[-1] == n == len(ids) - 1  # forward only, and to the end
    assert {t for _, _, t in scoring} == {n}
