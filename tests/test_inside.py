"""Looking inside (lstmtext.inside): the vanishing gradient measured, units, features and saturation, on tiny
models and texts with known answers."""

import re

import numpy as np
import pytest

from lstmtext import inside, model
from lstmtext.cells import get_cell
from lstmtext.config import ModelConfig
from lstmtext.errors import ConfigError

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
    p["layers.0.W_x"] *= 1e-4  # tiny inputs and no bias keep tanh in its linear regime: tanh' ≈ 1
    p["layers.0.b"][:] = 0.0
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


@pytest.mark.parametrize(("cell", "layers"), [("lstm", 1), ("lstm", 2), ("rnn", 2), ("gru", 2)])
def test_gradient_matches_finite_differences(cell, layers):
    cfg = ModelConfig(vocab_size=V, embed=E, hidden=H, layers=layers, cell=cell, dropout=0.0)
    p = model.init_params(cfg, np.random.default_rng(0), np.float64)
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

    for name in start:  # every state of every layer
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

    # The same from Python, with what the command printed as data.
    import lstmtext
    from lstmtext.errors import ConfigError

    found = lstmtext.inspect(run, corpus, units=True, gradient=True, max_distance=12, positions=3)
    assert set(found.units.found) >= {"quotes", "line end"} and found.wrote == []
    (name, cfg, g), = found.gradients
    assert name == str(run) and cfg.cell == "lstm" and g["norm"]["layers.0.h"] == d["norm"]["layers.0.h"]
    with pytest.raises(ConfigError, match="belong to --gradient"):
        lstmtext.inspect(run, corpus, units=True, vs=[run])
    with pytest.raises(ConfigError, match="did you mean units"):
        lstmtext.inspect(run, corpus, unit=True)


# --- Reading a text: the cells' own quantities, features of the text, units that track them ---


def cell_equations_hold(cell: str, q: dict, prev: dict) -> None:
    """Each named quantity plays its part in the cell's own equations (a swapped gate would not)."""
    if cell in ("lstm", "peephole", "cifg"):
        write = 1.0 - q["f"] if cell == "cifg" else q["i"]
        np.testing.assert_allclose(q["c"], q["f"] * prev["c"] + write * q["g"], atol=1e-12)
        np.testing.assert_allclose(q["h"], q["o"] * np.tanh(q["c"]), atol=1e-12)
    elif cell == "gru":
        np.testing.assert_allclose(q["h"], (1.0 - q["z"]) * q["n"] + q["z"] * prev["h"], atol=1e-12)
    elif cell == "mingru":  # its z writes the candidate in: the other way round from the GRU's
        np.testing.assert_allclose(q["h"], (1.0 - q["z"]) * prev["h"] + q["z"] * q["n"], atol=1e-12)
        assert (q["n"] > 0).all()  # g keeps the candidate positive
    elif cell == "slstm":  # cn is the normalised cell c/n
        np.testing.assert_allclose(q["h"], q["o"] * q["cn"], atol=1e-12)
        assert (q["i"] <= 1 + 1e-12).all() and (q["f"] <= 1 + 1e-12).all()  # stabilised by m
    elif cell == "minlstm":  # the gates normalised to sum to 1
        keep = q["f"] / (q["f"] + q["i"])
        np.testing.assert_allclose(q["h"], keep * prev["h"] + (1.0 - keep) * q["n"], atol=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "peephole", "cifg", "mingru", "minlstm", "slstm"])
def test_read_along_is_the_models_own_forward_pass(cell):
    cfg = ModelConfig(vocab_size=V, embed=E, hidden=H, layers=2, cell=cell, dropout=0.0)
    p = model.init_params(cfg, np.random.default_rng(0), np.float64)
    ids = text(37)
    r = inside.read_along(p, cfg, ids, bptt=10)  # 4 windows, the state carried across them
    assert np.isnan(r.nll[0]) and set(r.gates) <= set(r.values)
    assert {k.rsplit(".", 1)[1] for k in r.gates} == set(get_cell(cell).GATES)
    state = model.init_state(cfg, 1, np.float64)
    logits = None
    for j in range(len(ids)):
        if logits is not None:  # the probability of token j, from the step that read token j-1
            z = logits[0] - logits[0].max()
            assert abs(r.nll[j] - (np.log(np.exp(z).sum()) - z[ids[j]])) < 1e-10
        previous = state
        logits, state = model.step_logits(p, cfg, ids[j : j + 1], state)
        for name, value in state.items():  # every carried state it shows matches, step by step
            if name in r.values:
                np.testing.assert_allclose(r.values[name][j], value[0], atol=1e-12)
        assert "layers.0.h" in r.values
        for layer in range(2):
            q = {k.rsplit(".", 1)[1]: v[j] for k, v in r.values.items() if k.startswith(f"layers.{layer}.")}
            prev = {k.rsplit(".", 1)[1]: v[0] for k, v in previous.items() if k.startswith(f"layers.{layer}.")}
            cell_equations_hold(cell, q, prev)
    for key in r.gates:
        assert r.values[key].min() >= 0 and r.values[key].max() <= 1  # σ gates


def test_text_features_known_values():
    from lstmtext.tokenizer import Tokenizer

    s = 'ab "cd" (e [f]) “g”\nhi'
    tok = Tokenizer.train("char", s)
    _, spans = tok.encode_spans(s)
    f = inside.text_features(s, spans, {"vowel": re.compile("[aeiou]")})
    at = {name: "".join(str(int(v)) for v in values) for name, values in f.items()}
    # a b _ " c d " _ ( e _ [ f ] ) _ “ g ” ↵ h i
    assert at["quotes"] == "0001110000000000110000"
    assert at["brackets"] == "0000000011111100000000"
    assert at["word start"] == "1000100001001000010010"
    assert at["line end"] == "0000000000000000000100"
    assert at["vowel"] == "1000000001000000000001"
    assert f["line position"].tolist() == list(range(1, 20)) + [0, 1, 2]
    s = 'a "b\n\n"c" d'  # a quote left open at a paragraph's end is closed by the blank line
    f = inside.text_features(s, Tokenizer.train("char", s).encode_spans(s)[1])
    assert "".join(str(int(v)) for v in f["quotes"]) == "00111011000"


@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_word_start_and_line_end_for_word_and_bpe_tokens(kind):
    from lstmtext.tokenizer import Tokenizer

    s = "the cat sat\non the mat, ok\n"
    tok = Tokenizer.train(kind, s * 30, vocab_size=300)
    _, spans = tok.encode_spans(s)
    f = inside.text_features(s, spans)
    pieces = [s[a:b] for a, b in spans.tolist()]
    starts = [p for p, v in zip(pieces, f["word start"], strict=True) if v]
    ends = [p for p, v in zip(pieces, f["line end"], strict=True) if v]
    assert [p.strip() for p in starts] == ["the", "cat", "sat", "on", "the", "mat", "ok"]  # not "," nor "\n"
    assert len(ends) == 2 and all(p.endswith("\n") for p in ends)


def test_unit_search_finds_a_unit_planted_to_track_quotes():
    from lstmtext.tokenizer import Tokenizer

    rng = np.random.default_rng(3)
    words = ["the", "dog", '"yes"', 'said "no', 'way"', "(it", "is)", "\n"]
    s = " ".join(rng.choice(words, 400))
    tok = Tokenizer.train("char", s)
    ids, spans = tok.encode_spans(s)
    features = inside.text_features(s, spans)
    N = len(ids)
    values = {f"layers.{layer}.{q}": rng.uniform(-1, 1, (N, 16)) for layer in range(2) for q in ("h", "c", "f")}
    values["layers.1.c"][:, 9] = 0.6 * features["quotes"] - 0.2 + 0.05 * rng.standard_normal(N)  # the planted unit
    values["layers.0.h"][:, 4] = -0.01 * features["line position"]  # and one that counts down the line
    reading = inside.Reading(ids, np.zeros(N), values, ["layers.0.f", "layers.1.f"])
    found = inside.unit_search(reading, features, top=3)
    assert found["quotes"][0]["key"] == "layers.1.c" and found["quotes"][0]["unit"] == 9
    assert found["quotes"][0]["r"] > 0.95 and abs(found["quotes"][1]["r"]) < 0.3  # the rest are noise
    assert (found["line position"][0]["key"], found["line position"][0]["unit"]) == ("layers.0.h", 4)
    assert found["line position"][0]["r"] == pytest.approx(-1.0)
    f = {"constant": np.ones(N)}
    assert inside.unit_search(reading, f) == {"constant": []}


def test_saturation_fractions():
    g = np.array([[0.05, 0.5], [0.95, 0.5], [0.99, 0.05], [0.5, 0.92]])  # (N=4, H=2)
    reading = inside.Reading(np.zeros(4, int), np.zeros(4), {"layers.0.h": g - 0.5, "layers.0.f": g}, ["layers.0.f"])
    left, right = inside.saturation(reading)["layers.0.f"]
    assert left.tolist() == [0.25, 0.25] and right.tolist() == [0.5, 0.25]


def test_parse_feature():
    name, pattern = inside.parse_feature("digits=[0-9]+")
    assert name == "digits" and pattern.search("a12")
    for bad in ("digits", "=x", "x=", "bad=(unclosed"):
        with pytest.raises(ConfigError):
            inside.parse_feature(bad)
