"""The initialisation schemes (`--init`): the statistics of the starting weights, and that the
scheme is stored in the checkpoint and kept by resume."""

import numpy as np
import pytest
from test_cli import TINY, invoke, make_corpus

from lstmtext import checkpoint, model
from lstmtext.config import ModelConfig
from lstmtext.errors import ConfigError

V, E, H = 300, 64, 128


def params(cell, init, **kw):
    cfg = ModelConfig(vocab_size=V, embed=E, hidden=H, layers=2, cell=cell, init=init, dropout=0.2, **kw)
    return model.init_params(cfg, np.random.default_rng(0), np.float64)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "peephole", "cifg"])
def test_uniform_is_zarembas_scheme(cell):
    p = params(cell, "uniform", init_scale=0.05)
    for name in ("embed.W", "layers.0.W_x", "layers.1.W_h", "head.W"):
        w = p[name]
        assert np.abs(w).max() <= 0.05 and np.abs(w).max() > 0.049, name
        assert abs(w.mean()) < 0.002 and abs(w.var() - 0.05**2 / 3) < 1e-4, name
    assert not p["head.b"].any()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_torch_is_pytorchs_defaults(cell):
    p, k = params(cell, "torch"), 1 / np.sqrt(H)
    emb = p["embed.W"]
    assert abs(emb.mean()) < 0.02 and abs(emb.std() - 1) < 0.02 and np.abs(emb).max() > 3  # N(0, 1)
    for name in ("layers.0.W_x", "layers.0.W_h", "layers.1.W_h", "head.W", "head.b"):
        w = p[name]
        assert np.abs(w).max() <= k and np.abs(w).max() > 0.95 * k, name
        assert abs(w.var() - k**2 / 3) < 0.1 * k**2 / 3, name
    b = p["layers.0.b"]
    if cell == "lstm":  # the forget block carries the forget bias 1 on top of b_ih + b_hh
        b = np.concatenate([b[:H], b[H : 2 * H] - 1.0, b[2 * H :]])
    # The sum of two U(±k): within ±2k, variance 2k²/3, triangular (more mass near 0 than U(±2k)).
    assert np.abs(b).max() <= 2 * k and np.abs(b).max() > k
    assert abs(b.var() - 2 * k**2 / 3) < 0.15 * 2 * k**2 / 3
    assert np.mean(np.abs(b) < k) > 0.7  # a uniform on ±2k would put half its mass there


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "cifg"])
def test_orthogonal_recurrent_blocks(cell):
    p = params(cell, "orthogonal")
    for layer in range(2):
        W = p[f"layers.{layer}.W_h"]
        for g in range(W.shape[1] // H):
            Q = W[:, g * H : (g + 1) * H]
            np.testing.assert_allclose(Q.T @ Q, np.eye(H), atol=1e-10)
        # Distinct blocks, not one matrix repeated.
        assert W.shape[1] == H or not np.allclose(W[:, :H], W[:, H : 2 * H])
    assert np.abs(p["layers.0.W_x"]).max() <= 0.1  # the rest as in uniform


def test_an_unknown_scheme_is_refused():
    with pytest.raises(ConfigError, match="--init"):
        ModelConfig(vocab_size=10, init="xavier", embed=8, hidden=8, layers=1, dropout=0.0)


def trained_and_resumed(tmp_path, *option) -> tuple:
    """Train 3 steps with `option`, resume to 5 with it typed again. -> (corpus, run directory)."""
    corpus = make_corpus(tmp_path / "c.txt")
    out = tmp_path / "run"
    base = ["train", corpus, "--out", out, *TINY, *option, "--epochs", "0"]
    r = invoke([*base, "--max-steps", "3"])
    assert r.exit_code == 0, r.output
    r = invoke([*base, "--max-steps", "5", "--resume", out])
    assert r.exit_code == 0, r.output
    return corpus, out


def test_init_is_stored_and_kept_by_resume(tmp_path):
    _, out = trained_and_resumed(tmp_path, "--init", "torch")
    assert np.abs(checkpoint.load(out / "best.safetensors").params["embed.W"]).max() > 1  # N(0,1), not ±0.1
    assert checkpoint.load(out / "last.safetensors").model_cfg.init == "torch"
    r = invoke(["train", "--resume", out, "--max-steps", "6", "--init", "uniform"])
    assert r.exit_code == 1 and "--init uniform (the run has torch)" in r.stderr


CHRONO_BLOCKS = [("lstm", 1, 0), ("peephole", 1, 0), ("cifg", 0, None), ("gru", 1, None)]  # (cell, keep, write)


@pytest.mark.parametrize(("cell", "keep", "write"), CHRONO_BLOCKS)
@pytest.mark.parametrize("init", ["uniform", "torch"])
def test_chrono_biases(cell, keep, write, init):
    T_max = 60
    p = params(cell, init, chrono=T_max)
    plain = params(cell, init)
    for layer in range(2):
        b = p[f"layers.{layer}.b"]
        k = b[keep * H : (keep + 1) * H]
        # log(u), u ~ U(1, T_max - 1): within (0, log 59), spread over it, the mean of log u.
        assert k.min() >= 0 and k.max() <= np.log(T_max - 1)
        assert k.max() > np.log(T_max - 1) - 0.1 and k.min() < np.log(5)
        u = np.exp(k)
        assert abs(u.mean() - T_max / 2) < 4 and abs(u.var() - (T_max - 2) ** 2 / 12) < 0.25 * (T_max - 2) ** 2 / 12
        if write is not None:
            np.testing.assert_array_equal(b[write * H : (write + 1) * H], -k)
        # The other gates' biases are the scheme's own.
        rest = [g for g in range(b.size // H) if g not in (keep, write)]
        for g in rest:
            if init == "uniform":
                np.testing.assert_array_equal(b[g * H : (g + 1) * H], plain[f"layers.{layer}.b"][g * H : (g + 1) * H])
            else:
                assert np.abs(b[g * H : (g + 1) * H]).max() <= 2 / np.sqrt(H)
    assert not np.array_equal(p["layers.0.b"][keep * H : (keep + 1) * H], p["layers.1.b"][keep * H : (keep + 1) * H])


def test_chrono_is_refused_where_it_means_nothing():
    for cell in ("rnn", "mingru"):
        with pytest.raises(ConfigError, match=f"not defined for the {cell} cell"):
            ModelConfig(vocab_size=10, cell=cell, chrono=60, embed=8, hidden=8, layers=1, dropout=0.0)
    with pytest.raises(ConfigError, match="at least 3"):
        ModelConfig(vocab_size=10, chrono=2, embed=8, hidden=8, layers=1, dropout=0.0)
    for cell in ("mingru", "minlstm", "slstm"):
        with pytest.raises(ConfigError, match=f"which the {cell} cell does not have"):
            ModelConfig(vocab_size=10, cell=cell, init="orthogonal", embed=8, hidden=8, layers=1, dropout=0.0)
    with pytest.raises(ConfigError, match="--heads must divide --hidden 10"):
        ModelConfig(vocab_size=10, embed=8, hidden=10, layers=1, dropout=0.0, cell="slstm", heads=3)
    with pytest.raises(ConfigError, match="--heads belongs to --cell slstm"):
        ModelConfig(vocab_size=10, embed=8, hidden=10, layers=1, dropout=0.0, heads=2)


def test_slstm_starts_as_its_authors_recommend():
    from lstmtext import model

    # init uniform sets every bias to 0, so what is not 0 below is the sLSTM's own
    cfg = ModelConfig(vocab_size=10, embed=6, hidden=8, layers=2, dropout=0.2, cell="slstm", heads=2, init="uniform")
    p = model.init_params(cfg, np.random.default_rng(0), np.float64)
    H, d = 8, 4
    for layer, power in ((0, 0.3), (1, 1.6)):  # r = layer / (layers - 1)
        b = p[f"layers.{layer}.b"]
        assert not p[f"layers.{layer}.W_h"].any()  # recurrent weights start at zero
        f = 5.0 - 12.0 * (np.arange(d) / (d - 1)) ** power
        np.testing.assert_allclose(b[H : 2 * H], np.tile(f, 2))  # +5 (remember) down to -7, in each head
        assert not b[:H].any() and not b[2 * H :].any()


def test_chrono_is_stored_and_kept_by_resume(tmp_path):
    corpus, out = trained_and_resumed(tmp_path, "--chrono", "40")
    assert checkpoint.load(out / "last.safetensors").model_cfg.chrono == 40
    r = invoke(["train", "--resume", out, "--max-steps", "6", "--chrono", "0"])
    assert r.exit_code == 1 and "--chrono 0 (the run has 40)" in r.stderr
    r = invoke(["train", corpus, "--out", tmp_path / "rnn", *TINY, "--cell", "rnn", "--chrono", "40"])
    assert r.exit_code == 1 and "not defined for the rnn cell" in r.stderr and "Traceback" not in r.output


@pytest.mark.parametrize(
    "option, changed",
    [(("--softmax", "adaptive", "--cutoffs", "4, 8"), ("--cutoffs", "4,9")), (("--cell", "slstm", "--heads", "2"),
                                                                              ("--heads", "4"))],
)
def test_new_model_options_are_stored_kept_by_resume_and_by_init_from(tmp_path, option, changed):
    corpus, out = trained_and_resumed(tmp_path, *option)  # typed again on resume ("4, 8" is "4,8")
    cfg = checkpoint.load(out / "last.safetensors").model_cfg
    assert (cfg.softmax, cfg.cutoffs, cfg.heads) in (("adaptive", "4,8", 1), ("full", "", 2))
    shown = invoke(["info", out]).stdout
    assert ("adaptive softmax 4,8" if cfg.softmax == "adaptive" else "2 heads") in shown
    r = invoke(["train", "--resume", out, "--max-steps", "6", *changed])
    assert r.exit_code == 1 and f"{changed[0]} {changed[1]} (the run has" in r.stderr, r.output
    r = invoke(["train", corpus, "--init-from", out, "--out", tmp_path / "tuned", "--max-steps", "2", "--epochs", "0",
                "--batch-size", "2", "--bptt", "5", "--threads", "1"])
    assert r.exit_code == 0, r.output
    tuned = checkpoint.load(tmp_path / "tuned" / "last.safetensors").model_cfg
    assert (tuned.softmax, tuned.cutoffs, tuned.heads) == (cfg.softmax, cfg.cutoffs, cfg.heads)
