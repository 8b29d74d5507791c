"""The compiled steps (cells/compiled.py, the [fast] extra) of the LSTM, the peephole LSTM and the
sLSTM against their NumPy reference (cells/lstm.py, peephole.py, slstm.py) and against finite
differences."""

import os
from dataclasses import fields

import numpy as np
import pytest
from gradcheck import numerical_grad, rel_error

from lstmtext.cells import common, compiled, lstm, peephole, slstm

pytest.importorskip("numba")  # the dev extra installs it: CI runs these

CELLS = [lstm, peephole, slstm]  # the cells with compiled steps


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
    if "n" in state:  # the sLSTM's normaliser is a sum of positive weights
        state["n"] += 1.0
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
@pytest.mark.parametrize("dtype,tol,B,H", [(np.float32, 2e-6, 5, 9), (np.float32, 2e-6, 37, 16),
                                           (np.float64, 1e-13, 5, 9)])  # fmt: skip
def test_same_window_as_numpy(path, cell, dtype, tol, B, H):
    """Every output of a window: h, the cache (gates, c, tanh c), dx, each gradient, dstate. float64
    calls the exact tanh, so there the two differ by summation order only; float32 by the rational
    tanh's few roundings. H·B 45 and 592: the kernels' vector loop and its remainder."""
    args = window(dtype, T=12, B=B, D=7, H=H, cell=cell)
    path(False)
    ref = run(cell, *args)
    path(True)
    got = run(cell, *args)
    assert type(got[1]) is type(ref[1])
    assert rel_error(got[0], ref[0]) < tol
    arrays = [f.name for f in fields(ref[1]) if isinstance(getattr(ref[1], f.name), np.ndarray)]
    assert {"gates", "c", "h"} <= set(arrays)
    for name in arrays:
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
    dx_a, grads_a, dstate_a = cell.backward(dh.copy(), cache)
    path(not forward_on)
    dx_b, grads_b, dstate_b = cell.backward(dh.copy(), cache)
    assert rel_error(dx_a, dx_b) < 1e-13
    for k in grads_b:
        assert rel_error(grads_a[k], grads_b[k]) < 1e-13, k
    for k in dstate_b:  # the initial state's: the peepholes from c_0, the sLSTM's m_0
        assert rel_error(dstate_a[k], dstate_b[k]) < 1e-13, k


def test_cifg_stays_numpy(path, monkeypatch):
    """CIFG shares the LSTM's loops with its own write of c_t (a Rule), which the LSTM's kernels do
    not know: it must not take them."""
    from lstmtext.cells import cifg

    path(True)

    def refuse(*args):
        raise AssertionError("compiled path taken")

    for name in ("lstm_forward", "lstm_backward", "peephole_forward", "peephole_backward", "slstm_forward",
                 "slstm_backward"):  # fmt: skip
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
    """The float32 kernels' rational tanh against float64's over ±12 (it clamps past ±7.9)."""
    import numba

    path(True)
    tanh = compiled.kernels(np.float32).tanh

    @numba.njit
    def each(x, out):
        for n in range(x.size):
            out[n] = tanh(x[n])

    x = np.linspace(-12, 12, 20_001).astype(np.float32)
    got = np.empty_like(x)
    each(x, got)
    exact = np.tanh(x.astype(np.float64))
    ulp = np.spacing(np.maximum(np.abs(exact), 1e-30).astype(np.float32)).astype(np.float64)
    assert float(np.max(np.abs(got - exact) / ulp)) < 8


def test_a_window_of_one_step_stays_numpy(path, monkeypatch):
    """Generation's steps (common.window_step) are windows of one: those run NumPy, so that
    `generate` never waits for numba's import, while a window of two goes compiled."""
    path(True)
    assert compiled.kernels(np.float32, 1) is None and compiled.kernels(np.float32, 2) is not None

    def refuse(*args):
        raise AssertionError("compiled path taken")

    monkeypatch.setattr(compiled, "slstm_forward", refuse)
    p, x, state, _ = window(np.float32, T=2, cell=slstm)
    h, _ = slstm.step(p, x[0], state)  # window_step: a window of one
    assert np.isfinite(h).all()
    with pytest.raises(AssertionError, match="compiled path taken"):
        slstm.forward(p, x, state)


@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-6), (np.float64, 1e-13)])
def test_head_softmax_same_as_numpy(path, monkeypatch, dtype, tol):
    """The head's softmax kernel against layers.head_forward's NumPy passes: the loss, each token's
    nll, the cache's exp and row sums, and what head_backward makes of them; rows split over two
    threads and a vocabulary (V 3,001) whose row is no multiple of the vector width."""
    from lstmtext import layers, parallel

    monkeypatch.setattr(parallel, "THREADS", 2)  # the split, whatever cores this machine has
    rng = np.random.default_rng(0)
    N, H, V = 70, 12, 3001
    h = rng.normal(size=(N, H)).astype(dtype)
    W = rng.normal(scale=2.0, size=(H, V)).astype(dtype)  # logits spread over ±20: the max matters
    b = rng.normal(size=V).astype(dtype)
    targets = rng.integers(0, V, size=N)
    mask = (rng.random(N) < 0.8).astype(dtype)
    out = {}
    for on in (False, True):
        path(on)
        loss, nll, cache = layers.head_forward(h, W, b, targets, mask)
        exp, total = cache.exp.copy(), cache.total.copy()
        out[on] = loss, nll, exp, total, *layers.head_backward(cache, W)
    assert N * V > parallel.MIN_PARALLEL  # row_blocks does split these rows
    assert abs(out[True][0] - out[False][0]) < tol * abs(out[False][0])
    for got, want in zip(out[True][1:], out[False][1:], strict=True):
        assert np.allclose(got, want, rtol=tol, atol=tol * np.abs(want).max()), np.abs(got - want).max()


@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-6), (np.float64, 1e-13)])
def test_embedding_rows_summed_same_as_numpy(path, monkeypatch, dtype, tol):
    """layers.sum_rows's kernel against its two NumPy ways (reduceat for word ids, mostly once each;
    the one-hot GEMM for a few ids many times each): the same rows, the same sums."""
    from lstmtext import layers

    rng = np.random.default_rng(4)
    # words (int32, as training's windows hold them), characters, one id, and values in a strided
    # view, which stays on NumPy's path (a kernel for that layout would be one more to compile)
    ids = [rng.integers(0, 5000, size=300).astype(np.int32), rng.integers(0, 7, size=400), np.array([3]),
           rng.integers(0, 50, size=90)]  # fmt: skip
    values = [rng.normal(size=(i.size, 6)).astype(dtype) for i in ids]
    values[3] = rng.normal(size=(90, 12)).astype(dtype)[:, ::2]
    out, calls = {}, []
    for on in (False, True):
        path(on)
        if on:  # count the kernel's calls: a fallback to NumPy would compare NumPy with itself
            kernels = compiled.kernels(dtype)
            real = kernels.sum_runs
            monkeypatch.setattr(kernels, "sum_runs", lambda *a, f=real: calls.append(a[0].size) or f(*a))
        out[on] = [layers.sum_rows(i, v, (5000, 6)) for i, v in zip(ids, values, strict=True)]
    assert calls == [i.size for i in ids[:3]]
    for got, want in zip(out[True], out[False], strict=True):
        assert np.array_equal(got.rows, want.rows) and got.shape == want.shape
        assert np.allclose(got.values, want.values, rtol=tol, atol=tol * np.abs(want.values).max())
    chars = out[True][1]
    assert np.array_equal(chars.rows, np.arange(7))
    assert np.allclose(chars.values[2], values[1][ids[1] == 2].sum(axis=0), rtol=1e-5)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-6), (np.float64, 1e-13)])
def test_optimizer_updates_same_as_numpy(path, monkeypatch, kind, dtype, tol):
    """optim.step's one-pass kernels against its NumPy passes, over three steps with a clipping scale:
    the parameters and Adam's moments, for a matrix, a vector, an embedding's rows (RowGrad: NumPy's
    fancy index for SGD; for Adam, its own kernel against NumPy's dense gradient, with the first and
    last rows used in one step and unused in the others) and a transposed view, which must stay on
    NumPy's path (its reshape would be a copy, and the update would be lost)."""
    from lstmtext import optim
    from lstmtext.layers import RowGrad

    rng = np.random.default_rng(3)
    start = {"W": rng.normal(size=(33, 7)), "b": rng.normal(size=37), "E": rng.normal(size=(20, 5)),
             "T": rng.normal(size=(6, 9))}  # fmt: skip
    start = {k: v.astype(dtype) for k, v in start.items()}
    out = {}
    calls = []
    for on in (False, True):
        path(on)
        if on:  # count the kernels' calls: a fallback to NumPy everywhere would compare NumPy with itself
            kernels = compiled.kernels(dtype)
            for name in (f"{kind}_update", "adam_rows_update"):
                real = getattr(kernels, name)
                monkeypatch.setattr(kernels, name, lambda *a, f=real, n=name: calls.append((n, a[0].size)) or f(*a))
        params = {k: v.copy() for k, v in start.items()}
        params["T"] = params["T"].T  # (9, 6), not contiguous
        state = optim.init_state(kind, params)
        # each step's used rows, ascending; int32 in the last, as training's windows hold ids
        rows = [np.array([2, 5, 11]), np.array([0, 19]), np.array([7], dtype=np.int32)]
        for i in range(3):
            g = np.random.default_rng(i)
            grads = {"W": g.normal(size=(33, 7)).astype(dtype), "b": g.normal(size=37).astype(dtype),
                     "E": RowGrad(rows[i], g.normal(size=(len(rows[i]), 5)).astype(dtype), (20, 5)),
                     "T": g.normal(size=(9, 6)).astype(dtype)}  # fmt: skip
            optim.step(kind, params, grads, state, 0.05, scale=0.7)
        out[on] = params, state
    assert not np.allclose(out[True][0]["W"], start["W"])  # the parameters moved
    # compiled: W and b each step, and E too under Adam (its rows kernel); never the transposed T
    rows_calls = [("adam_rows_update", 20 * 5)] * 3 if kind == "adam" else []
    assert sorted(calls) == sorted([(f"{kind}_update", 33 * 7), (f"{kind}_update", 37)] * 3 + rows_calls), calls
    for got, want in ((out[True][0], out[False][0]), (out[True][1], out[False][1])):
        assert got.keys() == want.keys()
        for k in want:
            assert np.allclose(got[k], want[k], rtol=tol, atol=tol), (k, np.abs(got[k] - want[k]).max())


def test_adam_rows_out_of_order_are_an_error_not_a_skipped_row(path):
    """adam_rows_update walks the table and the gradient's rows together: rows not ascending would be
    skipped, so optim.step raises instead."""
    from lstmtext import optim
    from lstmtext.layers import RowGrad

    path(True)
    params = {"E": np.ones((8, 3), np.float32)}
    state = optim.init_state("adam", params)
    grads = {"E": RowGrad(np.array([5, 2]), np.ones((2, 3), np.float32), (8, 3))}
    with pytest.raises(ValueError, match="ascending"):
        optim.step("adam", params, grads, state, 0.1)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_head_softmax_a_bad_logit_makes_the_loss_nan_on_both_paths(path, bad):
    """A NaN or +inf logit anywhere in a row (here not its first column) makes that token's nll NaN
    and the loss NaN, compiled as in NumPy: the trainer's divergence check reads the loss."""
    from lstmtext import layers

    rng = np.random.default_rng(1)
    h = rng.normal(size=(6, 4)).astype(np.float32)
    W = rng.normal(size=(4, 300)).astype(np.float32)
    b = np.zeros(300, dtype=np.float32)
    b[77] = bad  # column 77 of every row
    for on in (False, True):
        path(on)
        with np.errstate(invalid="ignore"):  # inf - inf in NumPy's passes
            loss, nll, _ = layers.head_forward(h, W, b, np.arange(6))
        assert np.isnan(loss) and np.isnan(nll).all(), (on, nll)
    path(True)
    loss, nll, _ = layers.head_forward(h, W, np.zeros(300, dtype=np.float32), np.arange(6))
    assert np.isfinite(loss) and np.isfinite(nll).all()  # and without it, finite


def test_float32_exp_and_log1p_within_a_rounding_or_two(path):
    """The sLSTM kernels' own float32 e^x (x ≤ 0) and log(1 + z) (0 ≤ z ≤ 1), against float64's,
    over their whole domain; e^x is 0 below float32's normal range."""
    import numba

    path(True)
    k = compiled.kernels(np.float32)
    exp_neg, log1p_unit = k.exp_neg, k.log1p_unit

    @numba.njit
    def each(x, out_exp, out_log1p):
        for n in range(x.size):
            out_exp[n] = exp_neg(x[n])
            out_log1p[n] = log1p_unit(-x[n] / np.float32(90.0))

    x = -np.linspace(0.0, 90.0, 200_001).astype(np.float32)
    e, lg = np.empty_like(x), np.empty_like(x)
    each(x, e, lg)

    def ulps(got, exact):
        spacing = np.spacing(np.maximum(np.abs(exact), 1e-37).astype(np.float32)).astype(np.float64)
        return float(np.max(np.abs(got - exact) / spacing))

    normal = x >= np.float32(-87.33654)  # e^x ≥ 2^−126, float32's smallest normal number
    assert ulps(e[normal], np.exp(x[normal].astype(np.float64))) < 2
    assert np.all(e[~normal] == 0.0) and (~normal).any()
    z = (-x / np.float32(90.0)).astype(np.float64)
    assert ulps(lg, np.log1p(z)) < 3


def test_slstm_heads_same_as_numpy(path):
    """With --heads the recurrent matrix is masked to its heads: both paths, and W_h's gradient
    zero off the blocks."""
    p, x, state, dh = window(np.float64, T=7, B=3, D=5, H=6, cell=slstm)
    out = {}
    for on in (False, True):
        path(on)
        h, cache = slstm.forward(p, x, state, heads=3)
        out[on] = (h.copy(), *slstm.backward(dh.copy(), cache))
    (h0, dx0, g0, s0), (h1, dx1, g1, s1) = out[False], out[True]
    assert rel_error(h1, h0) < 1e-13 and rel_error(dx1, dx0) < 1e-13
    for k in g0:
        assert rel_error(g1[k], g0[k]) < 1e-13, k
    for k in s0:
        assert rel_error(s1[k], s0[k]) < 1e-13, k
    assert np.all(g1["W_h"][slstm.head_mask(6, 3, np.float64) == 0] == 0.0)


@pytest.mark.parametrize("on", [True, False], ids=["compiled", "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_slstm_forget_gate_past_exp_range(path, on, dtype):
    """Forget pre-activations below what e^−f̃ can hold (−100 and −1000 in float32, −1000 in
    float64), on both paths: finite values, and where the stored cell outweighs the input
    (m_0 = 100) it must keep its weight, h = σ(õ) c_0/n_0 nearly, as the exact function says."""
    path(on)
    H, B = 4, 3
    p = {"W_x": np.zeros((1, 4 * H), dtype), "W_h": np.zeros((H, 4 * H), dtype), "b": np.zeros(4 * H, dtype)}
    p["b"][:H] = 5.0  # ĩ
    p["b"][H : 2 * H] = -100.0 if dtype == np.float32 else -1000.0  # f̃
    state = {"h": np.zeros((B, H), dtype), "c": np.full((B, H), -0.5, dtype), "n": np.ones((B, H), dtype),
             "m": np.full((B, H), 100.0 if dtype == np.float32 else 1000.0, dtype)}  # fmt: skip
    h, cache = slstm.forward(p, np.zeros((2, B, 1), dtype), state)
    # step 1: log σ(f̃) + m_0 = f̃ + m_0 ≈ 0 (less log(1+e^f̃)) against ĩ = 5: i = 1, f ≈ e^−5
    f = np.exp(-5.0)
    assert np.allclose(h[0], 0.5 * (-0.5 * f + 1 * 0.0) / (f + 1.0), rtol=1e-5)
    p["b"][H : 2 * H] = -1000.0  # and with m_0 = 0, shut for good: m = ĩ, f = 0
    state["m"][:] = 0.0
    h, cache = slstm.forward(p, np.zeros((2, B, 1), dtype), state)
    assert np.all(cache.gates[:, H : 2 * H] == 0.0) and np.all(cache.sf <= 1e-37)
    dx, grads, dstate = slstm.backward(np.ones_like(h), cache)
    assert all(np.isfinite(a).all() for a in (h, dx, *grads.values(), *dstate.values()))


def test_generation_never_imports_numba():
    """What `generate` runs, model.step_logits, for every cell with compiled steps: numba stays out
    of the process (its import costs a few tenths of a second, more than a sample's steps save)."""
    import subprocess
    import sys

    code = """
import sys
import numpy as np
from lstmtext import model
from lstmtext.config import ModelConfig
for cell in ("lstm", "peephole", "slstm"):
    cfg = ModelConfig(vocab_size=11, embed=6, hidden=8, layers=2, dropout=0.0, cell=cell)
    params = model.init_params(cfg, np.random.default_rng(0))
    state = model.init_state(cfg, 3)
    for _ in range(3):
        logits, state = model.step_logits(params, cfg, np.array([1, 2, 3]), state)
    assert np.isfinite(logits).all()
assert "numba" not in sys.modules, "numba imported"
"""
    env = {**os.environ, "LSTMTEXT_COMPILED": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow  # processes of their own
def test_a_second_process_loads_the_kernels_from_the_disk_cache(tmp_path):
    """Compiling the kernels takes seconds (1.6 s for the LSTM's forward alone); numba keeps them on
    disk, and every later process must load them from there. A kernel numba cannot cache (one that
    calls another jitted function, for one) compiles again in every run, silently: the second
    process here must find every kernel it uses in the cache."""
    import subprocess
    import sys

    code = """
import numpy as np
from lstmtext import layers, optim
from lstmtext.cells import compiled, lstm, peephole, slstm
from lstmtext.cells.common import init_params
rng = np.random.default_rng(0)
for cell in (lstm, peephole, slstm):
    p = init_params(cell, rng, 5, 4, 0.5, np.float32)
    x = rng.normal(size=(3, 2, 5)).astype(np.float32)
    state = {k: np.ones((2, 4), np.float32) for k in cell.STATE}
    h, cache = cell.forward(p, x, state)
    cell.backward(np.ones_like(h), cache)
layers.head_forward(rng.normal(size=(6, 4)).astype(np.float32), np.ones((4, 7), np.float32),
                    np.zeros(7, np.float32), np.arange(6) % 7)
layers.embedding_backward(np.ones((3, 2, 4), np.float32), np.array([[1, 2], [2, 0], [1, 1]]), 5)
for kind in ("sgd", "adam"):
    params = {"W": np.ones((3, 4), np.float32), "E": np.ones((5, 4), np.float32)}
    grads = {"W": np.ones((3, 4), np.float32), "E": layers.RowGrad(np.array([1]), np.ones((1, 4), np.float32), (5, 4))}
    optim.step(kind, params, grads, optim.init_state(kind, params), 0.1)
k = compiled.kernels(np.float32, 3)
used = {n: getattr(k, n).stats for n in dir(k) if hasattr(getattr(k, n), "stats")}
ran = {n: s for n, s in used.items() if s.cache_hits or s.cache_misses}
print(len(ran), sum(sum(s.cache_misses.values()) for s in ran.values()), len(used))
"""
    env = {**os.environ, "LSTMTEXT_COMPILED": "1", "NUMBA_CACHE_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
            for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr + runs[1].stderr
    first, second = (r.stdout.split(maxsplit=2) for r in runs)
    used = int(first[2])  # the kernels there are: three cells' two steps, the softmax, three updates, sum_runs
    assert int(first[0]) == used and int(first[1]) == used, runs[0].stdout  # each ran, compiled
    assert int(second[0]) == used and int(second[1]) == 0, runs[1].stdout  # and then loaded, none compiled
