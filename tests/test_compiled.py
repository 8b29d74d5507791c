"""The compiled steps (cells/compiled.py, the [fast] extra) of the LSTM and the peephole LSTM against
their NumPy reference (cells/lstm.py, cells/peephole.py) and against finite differences."""

import os

import numpy as np
import pytest
from gradcheck import numerical_grad, rel_error

from lstmtext.cells import common, compiled, lstm, peephole

pytest.importorskip("numba")  # the dev extra installs it: CI runs these

CELLS = [lstm, peephole]  # the cells with compiled steps


@pytest.fixture
def path():
    """Switch between the two paths inside a test; the setting it found is back afterwards."""
    before = os.environ.get("LSTMTEXT_COMPILED")
    yield compiled.use
    if before is None:
        os.environ.pop("LSTMTEXT_COMPILED", None)
    else:
        os.environ["LSTMTEXT_COMPILED"] = before
    compiled._kernels = None


def window(dtype, T=6, B=3, D=5, H=4, seed=0, cell=lstm):
    rng = np.random.default_rng(seed)
    p = {k: rng.uniform(-0.6, 0.6, size=s).astype(dtype) for k, s in common.param_shapes(cell, D, H).items()}
    x = rng.normal(size=(T, B, D)).astype(dtype)
    state = {k: rng.uniform(-0.5, 0.5, size=(B, H)).astype(dtype) for k in cell.STATE}
    dh = rng.normal(size=(T, B, H)).astype(dtype)
    return p, x, state, dh


def run(cell, p, x, state, dh):
    h, cache = cell.forward(p, x, state)
    h = h.copy()
    dx, grads, dstate = cell.backward(dh.copy(), cache)
    return h, cache, dx, grads, dstate


def test_on_when_installed_and_off_by_the_environment(path):
    path(True)
    assert compiled.kernels() is not None
    path(False)
    assert compiled.kernels() is None


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.NAME)
@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-6), (np.float64, 1e-13)])
def test_same_window_as_numpy(path, cell, dtype, tol):
    """Every output of a window: h, the cache (gates, c, tanh c), dx, each gradient, dstate. float64
    calls the exact tanh, so there the two differ by summation order only; float32 by the rational
    tanh's few roundings."""
    args = window(dtype, T=12, B=5, D=7, H=9, cell=cell)
    path(False)
    ref = run(cell, *args)
    path(True)
    got = run(cell, *args)
    assert type(got[1]) is type(ref[1])
    assert rel_error(got[0], ref[0]) < tol
    for name in ("gates", "c", "tanh_c", "h"):
        assert rel_error(getattr(got[1], name), getattr(ref[1], name)) < tol, name
    assert rel_error(got[2], ref[2]) < tol
    for k in ref[3]:
        assert rel_error(got[3][k], ref[3][k]) < tol, k
    for k in ref[4]:
        assert rel_error(got[4][k], ref[4][k]) < tol, k


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.NAME)
@pytest.mark.parametrize("forward_on", [True, False], ids=["compiled-forward", "numpy-forward"])
def test_each_backward_reads_the_others_forward(path, cell, forward_on):
    """The two paths share the cache: a forward of one and a backward of the other agree."""
    p, x, state, dh = window(np.float64, cell=cell)
    path(forward_on)
    _, cache = cell.forward(p, x, state)
    dx_a, grads_a, _ = cell.backward(dh.copy(), cache)
    path(not forward_on)
    dx_b, grads_b, _ = cell.backward(dh.copy(), cache)
    assert rel_error(dx_a, dx_b) < 1e-13
    for k in grads_b:
        assert rel_error(grads_a[k], grads_b[k]) < 1e-13, k


def test_cifg_stays_numpy(path, monkeypatch):
    """CIFG shares the LSTM's loops with its own write of c_t (a Rule), which the LSTM's kernels do
    not know: it must not take them."""
    from lstmtext.cells import cifg

    path(True)

    def refuse(*args):
        raise AssertionError("compiled path taken")

    for name in ("lstm_forward", "lstm_backward", "peephole_forward", "peephole_backward"):
        monkeypatch.setattr(compiled, name, refuse)
    rng = np.random.default_rng(2)
    p = {k: rng.uniform(-0.5, 0.5, size=s) for k, s in common.param_shapes(cifg, 3, 4).items()}
    h, cache = cifg.forward(p, rng.normal(size=(3, 2, 3)), {k: np.zeros((2, 4)) for k in cifg.STATE})
    cifg.backward(np.ones_like(h), cache)
    for cell in CELLS:  # while these do
        with pytest.raises(AssertionError, match="compiled path taken"):
            cell.forward(*window(np.float64, cell=cell)[:3])


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.NAME)
@pytest.mark.parametrize("on", [True, False], ids=["compiled", "numpy"])
def test_backward_against_finite_differences(path, cell, on):
    """Both paths, so that the NumPy reference is checked here too when numba is installed."""
    path(on)
    p, x, state, R = window(np.float64, T=4, B=3, D=5, H=4, seed=1, cell=cell)

    def loss():
        h, _ = cell.forward(p, x, state)
        return float((h * R).sum())

    _, cache = cell.forward(p, x, state)
    dx, grads, dstate = cell.backward(R.copy(), cache)
    assert rel_error(dx, numerical_grad(loss, x)) < 1e-6
    for k in p:
        assert rel_error(grads[k], numerical_grad(loss, p[k])) < 1e-6, k
    for k in state:
        assert rel_error(dstate[k], numerical_grad(loss, state[k])) < 1e-6, k


def test_float32_tanh_within_a_few_roundings(path):
    """The float32 kernels' rational tanh, seen through a one-step window whose gates are shut or
    open (biases ±30, zero weights: i = 0, f = 1, o = 1), so that c_1 = c_0 and h = tanh(c_0)."""
    path(True)
    c0 = np.linspace(-12, 12, 20_001).astype(np.float32)
    B = c0.size
    p = {"W_x": np.zeros((1, 4), np.float32), "W_h": np.zeros((1, 4), np.float32),
         "b": np.array([-30.0, 30.0, 0.0, 30.0], np.float32)}  # i | f | g | o
    state = {"h": np.zeros((B, 1), np.float32), "c": c0[:, None].copy()}
    h, _ = lstm.forward(p, np.zeros((1, B, 1), np.float32), state)
    exact = np.tanh(c0.astype(np.float64))
    ulp = np.spacing(np.maximum(np.abs(exact), 1e-30).astype(np.float32)).astype(np.float64)
    assert float(np.max(np.abs(h[0, :, 0] - exact) / ulp)) < 8
