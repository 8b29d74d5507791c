"""Cell-specific checks beyond the gradient tests: the family's equations hold as written."""

import numpy as np
import pytest

from lstmtext import model
from lstmtext.cells import CELLS, cifg, common, get_cell, lstm, peephole
from lstmtext.config import ModelConfig
from lstmtext.errors import ConfigError


def sig(x):
    return 1 / (1 + np.exp(-x))


def test_peephole_with_zero_peepholes_equals_lstm():
    rng = np.random.default_rng(0)
    T, B, D, H = 5, 3, 4, 6
    p = {k: rng.uniform(-0.5, 0.5, size=s) for k, s in common.param_shapes(peephole, D, H).items()}
    for k in ("p_i", "p_f", "p_o"):
        p[k][:] = 0.0
    x = rng.normal(size=(T, B, D))
    state = {"h": rng.normal(size=(B, H)), "c": rng.normal(size=(B, H))}
    h_peep, cache_p = peephole.forward(p, x, state)
    h_lstm, cache_l = lstm.forward({k: p[k] for k in ("W_x", "W_h", "b")}, x, state)
    np.testing.assert_allclose(h_peep, h_lstm, rtol=1e-13, atol=1e-13)
    R = rng.normal(size=(T, B, H))
    dx_p, g_p, _ = peephole.backward(R, cache_p)
    dx_l, g_l, _ = lstm.backward(R, cache_l)
    np.testing.assert_allclose(dx_p, dx_l, rtol=1e-12, atol=1e-12)
    for k in g_l:
        np.testing.assert_allclose(g_p[k], g_l[k], rtol=1e-12, atol=1e-12)


def test_peepholes_change_the_output():
    rng = np.random.default_rng(1)
    p = {k: rng.uniform(-0.5, 0.5, size=s) for k, s in common.param_shapes(peephole, 3, 4).items()}
    x, state = rng.normal(size=(2, 2, 3)), {"h": rng.normal(size=(2, 4)), "c": rng.normal(size=(2, 4))}
    h1, _ = peephole.forward(p, x, state)
    p["p_o"] = p["p_o"] + 1.0
    h2, _ = peephole.forward(p, x, state)
    assert not np.allclose(h1, h2)


def test_cifg_matches_a_hand_written_step():
    rng = np.random.default_rng(2)
    B, D, H = 3, 4, 5
    p = {k: rng.uniform(-0.5, 0.5, size=s) for k, s in common.param_shapes(cifg, D, H).items()}
    x = rng.normal(size=(1, B, D))
    h0, c0 = rng.normal(size=(B, H)), rng.normal(size=(B, H))
    h, cache = cifg.forward(p, x, {"h": h0, "c": c0})
    # The equations from the docstring, one line each, nothing shared with the module.
    Wf, Wg, Wo = (p["W_x"][:, k * H : (k + 1) * H] for k in range(3))
    Uf, Ug, Uo = (p["W_h"][:, k * H : (k + 1) * H] for k in range(3))
    bf, bg, bo = (p["b"][k * H : (k + 1) * H] for k in range(3))
    f = sig(x[0] @ Wf + h0 @ Uf + bf)
    g = np.tanh(x[0] @ Wg + h0 @ Ug + bg)
    o = sig(x[0] @ Wo + h0 @ Uo + bo)
    c = f * c0 + (1 - f) * g
    np.testing.assert_allclose(cifg.final_state(cache)["c"], c, rtol=1e-12)  # the cell state after the step
    np.testing.assert_allclose(h[0], o * np.tanh(c), rtol=1e-12)


def test_peephole_matches_a_hand_written_step():
    rng = np.random.default_rng(3)
    B, D, H = 3, 4, 5
    p = {k: rng.uniform(-0.5, 0.5, size=s) for k, s in common.param_shapes(peephole, D, H).items()}
    x = rng.normal(size=(1, B, D))
    h0, c0 = rng.normal(size=(B, H)), rng.normal(size=(B, H))
    h, cache = peephole.forward(p, x, {"h": h0, "c": c0})
    # The equations from the docstring, nothing shared with the module: i and f see c_{t-1}, o sees c_t.
    Wi, Wf, Wg, Wo = (p["W_x"][:, k * H : (k + 1) * H] for k in range(4))
    Ui, Uf, Ug, Uo = (p["W_h"][:, k * H : (k + 1) * H] for k in range(4))
    bi, bf, bg, bo = (p["b"][k * H : (k + 1) * H] for k in range(4))
    i = sig(x[0] @ Wi + h0 @ Ui + p["p_i"] * c0 + bi)
    f = sig(x[0] @ Wf + h0 @ Uf + p["p_f"] * c0 + bf)
    g = np.tanh(x[0] @ Wg + h0 @ Ug + bg)
    c = f * c0 + i * g
    o = sig(x[0] @ Wo + h0 @ Uo + p["p_o"] * c + bo)
    np.testing.assert_allclose(peephole.final_state(cache)["c"], c, rtol=1e-12)
    np.testing.assert_allclose(h[0], o * np.tanh(c), rtol=1e-12)


def test_every_cell_trains_through_the_model():
    """Each registered cell learns a short repeating sequence: the interface is all the model needs."""
    from lstmtext import optim

    seq = np.tile(np.arange(5), 8)
    ids, targets = seq[:-1].reshape(-1, 1), seq[1:].reshape(-1, 1)  # (T, 1)
    for name in CELLS:
        cfg = ModelConfig(vocab_size=5, embed=8, hidden=16, layers=2, cell=name, dropout=0.0)
        params = model.init_params(cfg, np.random.default_rng(0), np.float64)
        opt = optim.init_state("adam", params)
        for _ in range(150):
            loss, _, cache, _ = model.forward(params, cfg, ids, targets, model.init_state(cfg, 1, np.float64))
            grads, _ = model.backward(params, cfg, cache)
            optim.step("adam", params, grads, opt, 0.02)
        assert loss < 0.2, name


def test_unknown_cell_and_nonlinearity_are_user_errors():
    with pytest.raises(ConfigError, match="lstm"):
        get_cell("transformer")
    with pytest.raises(ConfigError, match="tanh or relu"):
        ModelConfig(vocab_size=5, nonlinearity="sigmoid", embed=8, hidden=8, layers=1, dropout=0.0)


@pytest.mark.parametrize("cell_name,opts", [(c, {}) for c in sorted(CELLS)] + [("rnn", {"nonlinearity": "relu"})])
def test_generation_step_equals_window_forward(cell_name, opts):
    """The cache-free step used by generation follows the same equations as the training forward."""
    rng = np.random.default_rng(4)
    cell = CELLS[cell_name]
    T, B, D, H = 4, 2, 3, 5
    p = {k: rng.uniform(-0.5, 0.5, size=s) for k, s in common.param_shapes(cell, D, H).items()}
    x = rng.normal(size=(T, B, D))
    state = {k: rng.normal(size=(B, H)) for k in cell.STATE}
    h_win, cache = cell.forward(p, x, state, **opts)
    s = state
    for t in range(T):
        h_t, s = cell.step(p, x[t], s, **opts)
        np.testing.assert_allclose(h_t, h_win[t], rtol=1e-12, atol=1e-12)
    for k, v in cell.final_state(cache).items():
        np.testing.assert_allclose(s[k], v, rtol=1e-12, atol=1e-12)


def test_minlstm_with_both_gates_shut_stays_finite():
    """f / (f + i) is 0/0 once both σ round to 0; the log-space form still gives f' = 1/2."""
    from lstmtext.cells import minlstm

    for dtype in (np.float32, np.float64):
        D, H = 3, 4
        p = {k: np.zeros(s, dtype=dtype) for k, s in common.param_shapes(minlstm, D, H).items()}
        p["b"][: 2 * H] = -60.0  # both gates far below 0: σ is exactly 0 in either precision
        x = np.ones((5, 2, D), dtype=dtype)
        h, cache = minlstm.forward(p, x, {"h": np.ones((2, H), dtype=dtype)})
        dx, grads, dstate = minlstm.backward(np.ones_like(h), cache)
        np.testing.assert_allclose(cache.keep, 0.5)
        assert all(np.isfinite(a).all() for a in (h, dx, dstate["h"], *grads.values()))
        assert h.dtype == dtype and grads["W_x"].dtype == dtype


def test_slstm_from_an_empty_cell_with_a_shut_input_gate_stays_finite():
    """From a zero state (n = 0) an input gate far below the forget gate would leave n = exp(ĩ − log σ(f̃))
    rounding to 0 and h = 0/0; the first step takes m from the input alone, as the official code does."""
    from lstmtext.cells import slstm

    for dtype in (np.float32, np.float64):
        D, H = 3, 4
        p = {k: np.zeros(s, dtype=dtype) for k, s in common.param_shapes(slstm, D, H).items()}
        p["b"][:H], p["b"][H : 2 * H] = -800.0, 5.0  # ĩ = -800, far below log σ(5)
        zero = {k: np.zeros((2, H), dtype=dtype) for k in slstm.STATE}
        h, cache = slstm.forward(p, np.ones((4, 2, D), dtype=dtype), zero)
        dx, grads, dstate = slstm.backward(np.ones_like(h), cache)
        assert cache.n[1].min() >= 1.0  # i = 1 at the first step
        assert all(np.isfinite(a).all() for a in (h, dx, *grads.values(), *dstate.values()))
        assert h.dtype == dtype


def test_every_cell_module_declares_the_whole_interface():
    from lstmtext.cells import Cell

    for name, cell in CELLS.items():
        assert isinstance(cell, Cell), name  # every attribute and function of the Protocol is present
        assert cell.NAME == name and cell.STATE[0] == "h"
        assert all(o in ModelConfig.__dataclass_fields__ for o in cell.OPTIONS)
    import types

    partial = types.ModuleType("partial")
    partial.__dict__.update({k: v for k, v in vars(lstm).items() if k != "own_init"})
    assert not isinstance(partial, Cell)  # one missing declaration is caught


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softplus_is_logaddexp_to_a_rounding_and_never_overflows(dtype):
    """common.softplus against np.logaddexp(0, x) from −1000 to 1000: within a few roundings of
    max(1, |value|) (an absolute error where the value is small, as a log's should be), no inf."""
    x = np.concatenate([np.linspace(-1000, 1000, 4001), np.linspace(-30, 30, 6001)]).astype(dtype)
    got, ref = common.softplus(x), np.logaddexp(0.0, x)
    assert np.all(np.isfinite(got))
    scale = np.maximum(1.0, np.abs(ref)) * np.finfo(dtype).eps
    assert float(np.max(np.abs(got - ref) / scale)) < 4


@pytest.mark.parametrize("shape", [(3, 12), (5, 128), (4, 768), (2, 200)])  # rows of 48, 512, 3072, 800 bytes
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transposed_is_the_transpose_whatever_the_row_length(shape, dtype):
    W = np.random.default_rng(0).normal(size=shape).astype(dtype)
    t = common.transposed(W)  # rows of 512 bytes and their multiples go through a padded copy
    assert t.flags.c_contiguous and t.dtype == dtype and np.array_equal(t, W.T)
