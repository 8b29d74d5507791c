"""The vanishing gradient, measured (lstmtext.inside.gradient_norms), on tiny models with known answers."""

import numpy as np

from lstmtext import inside, model
from lstmtext.config import ModelConfig

V, E, H = 12, 6, 5


def tiny(cell, **kw):
    cfg = ModelConfig(vocab_size=V, embed=E, hidden=H, layers=1, cell=cell, dropout=0.0, **kw)
    return cfg, model.init_params(cfg, np.random.default_rng(0), np.float64)


def text(n=80):
    return np.random.default_rng(1).integers(0, V, n)


def test_rnn_with_a_times_identity_falls_as_a_to_the_k():
    cfg, p = tiny("rnn")
    a = 0.6
    p["layers.0.W_h"] = a * np.eye(H)
    p["layers.0.W_x"] *= 1e-4  # tiny inputs keep tanh in its linear regime: tanh' ≈ 1
    r = inside.gradient_norms(p, cfg, text(), max_distance=12, positions=5)
    g = np.array(r["norm"]["layers.0.h"])
    np.testing.assert_allclose(g[1:] / g[:-1], a, rtol=1e-3)  # ∂h_t/∂h_{t-k} = (a I)^k


def test_lstm_that_cannot_forget_keeps_the_cell_gradient_flat():
    cfg, p = tiny("lstm")
    b = p["layers.0.b"]
    b[H : 2 * H] = 30.0  # forget gate 1
    b[:H] = -30.0  # input gate 0: c_t = c_{t-1}
    r = inside.gradient_norms(p, cfg, text(), max_distance=20, positions=5)
    g = np.array(r["norm"]["layers.0.c"])
    assert g[0] > 1e-4
    np.testing.assert_allclose(g, g[0], rtol=1e-6)  # nothing decays along the cell
    rnn_cfg, rnn_p = tiny("rnn")
    rnn = np.array(inside.gradient_norms(rnn_p, rnn_cfg, text(), max_distance=20, positions=5)["norm"]["layers.0.h"])
    assert rnn[-1] < 1e-6 * rnn[0]  # the plain RNN's, at its ±0.1 init, is gone by k = 20


def test_gradient_matches_finite_differences():
    cfg, p = tiny("lstm")
    ids = text(40)
    k = 4
    r = inside.gradient_norms(p, cfg, ids, max_distance=k, positions=1)
    assert r["positions"] == 1
    t = r["at"][0]
    start = inside.states_along(p, cfg, ids, {t - k})[t - k]

    def log_p(state):
        logits = None
        for j in range(t - k + 1, t + 1):
            logits, state = model.step_logits(p, cfg, ids[j : j + 1], state)
        z = logits[0] - logits[0].max()
        return z[ids[t + 1]] - np.log(np.exp(z).sum())

    for name in ("layers.0.h", "layers.0.c"):
        num = np.zeros(H)
        for i in range(H):
            for sign in (1, -1):
                s = {n: v.copy() for n, v in start.items()}
                s[name][0, i] += sign * 1e-6
                num[i] += sign * log_p(s) / 2e-6
        assert abs(np.linalg.norm(num) - r["norm"][name][-1]) < 1e-6 * max(1.0, np.linalg.norm(num))


def test_inspect_gradient_command(tmp_path):
    from test_cli import TINY, invoke, make_corpus

    corpus = make_corpus(tmp_path / "c.txt")
    run = tmp_path / "run"
    assert invoke(["train", corpus, "--out", run, *TINY, "--max-steps", "5", "--epochs", "0"]).exit_code == 0
    r = invoke(["inspect", run, corpus, "--gradient", "--max-distance", "12", "--positions", "3", "--json"])
    assert r.exit_code == 0, r.output
    import json

    d = json.loads(r.stdout)
    assert d["distance"] == list(range(1, 13)) and d["positions"] == 3 and d["cell"] == "lstm"
    assert set(d["norm"]) == {"layers.0.h", "layers.0.c"} and all(len(v) == 12 for v in d["norm"].values())
    assert all(x >= 0 for v in d["norm"].values() for x in v) and d["norm"]["layers.0.h"][0] > 0
    r = invoke(["inspect", run, corpus, "--gradient", "--max-distance", "12", "--positions", "3"])
    assert r.exit_code == 0 and "█" in r.stdout and "0.h" in r.stdout
    r = invoke(["inspect", run, corpus])
    assert r.exit_code == 1 and "--gradient" in r.stderr and "Traceback" not in r.output
    r = invoke(["inspect", run, corpus, "--gradient", "--max-distance", "100000"])
    assert r.exit_code == 1 and "--max-distance 100000 needs at least" in r.stderr
