"""The optional compiled path for the steps of the LSTM, the peephole LSTM and the sLSTM, and for
the head's softmax, the embedding's gradient and the SGD and Adam updates: `pip install 'lstmtext[fast]'`
(numba).

Why: at the sizes people train on a laptop, NumPy's cost is the number of calls, not arithmetic.
Each elementwise line of the LSTM's step (cells/lstm.py) is one NumPy call over a (4H, B) or
(H, B) block, and at B 20, H 128 a call costs about as much to start as to run; the forward step is
ten of them beside one matrix product, the backward step eight. A compiled loop does a step's
elementwise work in one call: one flat loop over its gates and cell, beside a short one for the
input part (forward) or the window's copy of the gradients (backward).

What stays the same: the equations (those of cells/lstm.py, peephole.py and slstm.py, line by line,
below), the matrix products (NumPy's BLAS, the same calls) and the window's cache, so that either
path's backward reads the other's forward and `lstmtext inspect` sees the same gates. The NumPy path
stays the reference: it is what runs without numba, with LSTMTEXT_COMPILED=0, for the other cells
(CIFG's own write of c_t included), for a window of one step (generation: see `kernels`), and in
tests/test_compiled.py, which checks the two against each other and this path's backward against
finite differences.

What differs: float32's tanh here is a rational function (the one Eigen, and so TensorFlow and
PyTorch's CPU kernels, use for float32), within a few float32 roundings of NumPy's, because a call
to the C library's tanh cannot be vectorised; so are the sLSTM's e^x and log(1 + z) (Cephes' exp
polynomial, an atanh series). float64 (the gradient checks) calls the exact ones. σ(z) =
(1 + tanh(z/2)) / 2, as in cells/common.py. The input part x W_x is feature-major here for every
cell (the NumPy sLSTM keeps it batch-major), without b, which the steps add; it is not part of the
cache.
"""

import math
import os

import numpy as np

_kernels = None  # the compiled module once loaded; False when numba is missing or turned off


def kernels(dtype=np.float32, steps: int = 2):
    """The compiled kernels for a window of this dtype and length (or the head's N rows; the updates
    and the embedding's sums ask with the default), or None
    (not float32/float64, no numba, LSTMTEXT_COMPILED=0, or a window of one step). Imported on first
    use: numba takes a few tenths of a second to import, which `generate` and `info` never pay
    (generation's steps are windows of one, cells/common.window_step, where a compiled step would not
    repay the import)."""
    global _kernels
    if dtype not in (np.float32, np.float64) or steps < 2:
        return None
    if _kernels is None:
        _kernels = False
        if os.environ.get("LSTMTEXT_COMPILED", "1") != "0":
            try:
                _kernels = _build(cache=True) or False
            except RuntimeError:  # no writable place for numba's disk cache: compile in memory each run
                _kernels = _build(cache=False) or False
    return _kernels or None


def use(on: bool) -> None:
    """Turn the compiled path on (when numba is there) or off, for this process (tests, benchmarks)."""
    global _kernels
    _kernels = None
    os.environ["LSTMTEXT_COMPILED"] = "1" if on else "0"


def _build(cache: bool):
    try:
        import numba
    except Exception:  # not installed, or a numba this NumPy is too new for: the NumPy path
        return None
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic, overload, register_jitable

    def own_float32(exact, float32_version):
        """A function for the kernels that calls `exact` (the C library's), but in float32 compiles
        to `float32_version` instead (one argument, named x, as numba's overload asks): arithmetic
        only, which the loops around it can vectorise."""

        def f(x):
            return exact(x)

        @overload(f, inline="always")
        def _f(x):
            return float32_version if x == types.float32 else (lambda x: exact(x))

        return f

    def rational_tanh(x):
        # tanh(x) = x P(x²) / Q(x²) on |x| < 7.9, where float32's tanh is ±1 (Eigen's coefficients)
        x = min(max(x, np.float32(-7.90531110763549805)), np.float32(7.90531110763549805))
        x2 = x * x
        p = x2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
        p = x2 * p + np.float32(-8.60467152213735e-11)
        p = x2 * p + np.float32(5.12229709037114e-08)
        p = x2 * p + np.float32(1.48572235717979e-05)
        p = x2 * p + np.float32(6.37261928875436e-04)
        p = x2 * p + np.float32(4.89352455891786e-03)
        q = x2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
        q = x2 * q + np.float32(2.26843463243900e-03)
        q = x2 * q + np.float32(4.89352518554385e-03)
        return x * p / q

    # The sLSTM's exponential gates need e^x only for x ≤ 0 and log(1 + x) only for 0 ≤ x ≤ 1.
    @intrinsic
    def float32_from_bits(typingctx, bits):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.FloatType())

        return types.float32(types.int32), codegen

    def cephes_exp(x):
        # e^x = 2^n e^r with n = round(x / ln 2) and |r| ≤ ln 2 / 2 (Cephes' expf: ln 2 in two
        # parts so that r is exact, e^r by a polynomial)
        y = max(x, np.float32(-87.33654))
        n = np.floor(y * np.float32(1.44269504088896341) + np.float32(0.5))
        r = y - n * np.float32(0.693359375) + n * np.float32(2.12194440e-4)
        p = r * np.float32(1.9875691500e-4) + np.float32(1.3981999507e-3)
        p = r * p + np.float32(8.3334519073e-3)
        p = r * p + np.float32(4.1665795894e-2)
        p = r * p + np.float32(1.6666665459e-1)
        p = r * p + np.float32(5.0000001201e-1)
        p = p * (r * r) + r + np.float32(1.0)
        scale = float32_from_bits((np.int32(n) + np.int32(127)) << np.int32(23))  # 2^n
        # 0 below float32's normal range, without a branch (NumPy gives subnormals down to −104;
        # here such an e^x only ever weighs against one that is 1, so they would change nothing)
        return p * scale * np.float32(x >= np.float32(-87.33654))

    def atanh_log1p(x):
        # log(1 + x) = 2 atanh(s), s = x / (2 + x) ≤ 1/3 for x ≤ 1: the series to s¹⁵ is within
        # 2e-9 of it (the next term, 2 s¹⁷/17)
        s = x / (np.float32(2.0) + x)
        s2 = s * s
        p = s2 * np.float32(1 / 15) + np.float32(1 / 13)
        p = s2 * p + np.float32(1 / 11)
        p = s2 * p + np.float32(1 / 9)
        p = s2 * p + np.float32(1 / 7)
        p = s2 * p + np.float32(1 / 5)
        p = s2 * p + np.float32(1 / 3)
        p = s2 * p + np.float32(1.0)
        return np.float32(2.0) * s * p

    tanh = own_float32(math.tanh, rational_tanh)
    exp_neg = own_float32(math.exp, cephes_exp)
    log1p_unit = own_float32(math.log1p, atanh_log1p)

    # error_model "numpy": a division by zero gives inf, not an exception, so the loops have no branch
    # for it and compile to vector instructions (q >= 0.0049 here anyway)
    jit = numba.njit(cache=cache, fastmath={"contract"}, error_model="numpy")

    # A step's arrays are read as flat blocks of H·B floats (a gate block of gates[t] or dA_t, c[t],
    # hT[t]): one loop per step, long enough for vector instructions at any B. Looping over (j, b)
    # instead, the compiler's vector code needs rows of 32 or more; at B 20 every row ran the scalar
    # code, up to twice as slow (the LSTM's forward 7.3-8.7 against 4.4-6.6 ns an element at the tiny
    # row's shape). The input part, rows T·B apart in xW, is added to the step's product first in a
    # loop of its own, with the bias (one scalar a row there; added to xW beforehand it was one more
    # pass over the whole window: 0.3-0.5 ms a window at the tiny row, 4 ms a layer at the defaults').

    @register_jitable  # compiled into each kernel that calls it (a jitted callee would stop the disk cache)
    def add_input(t, gates, xW, bias):
        """gates[t] (4H,B) += xW[:, t] + bias: the input part x_t W_x (feature-major (4H, T, B)) + b (4H,)."""
        a = gates[t]  # (4H, B)
        for j in range(a.shape[0]):
            a_j, x_j, b_j = a[j], xW[j, t], bias[j]  # (B,) each, and a scalar: the inner loop indexes once
            for b in range(a.shape[1]):
                a_j[b] += x_j[b] + b_j

    @register_jitable
    def to_window(t, dA_t, dA):
        """dA[:, t] = dA_t (4H,B): the step's gradients into the window's (4H, T, B), which the weight
        gradients read as one matrix."""
        for j in range(dA_t.shape[0]):
            d_j, w_j = dA_t[j], dA[j, t]  # (B,) each
            for b in range(dA_t.shape[1]):
                w_j[b] = d_j[b]

    @jit
    def lstm_forward_step(t, gates, xW, bias, c, tanh_c, hT):
        """Step t's elementwise work. In: gates[t] (4H,B) = (h_{t-1} W_h)ᵀ, xW (4H,T,B) = (x W_x)ᵀ, the
        bias b (4H,), c[t] (H,B). Out: gates[t] activated, c[t+1], tanh_c[t] (H,B), hT[t+1] (H,B) = h_tᵀ."""
        add_input(t, gates, xW, bias)
        _, H, B = c.shape
        n = H * B
        a = gates[t].reshape(4, n)  # (4, H·B) the gate blocks i|f|g|o
        c_in, c_out = c[t].reshape(n), c[t + 1].reshape(n)  # (H·B,) c_{t-1}, c_t
        tc_out, h_out = tanh_c[t].reshape(n), hT[t + 1].reshape(n)  # (H·B,)
        half = gates.dtype.type(0.5)
        for e in range(n):
            i = half * tanh(half * a[0, e]) + half  # σ
            f = half * tanh(half * a[1, e]) + half  # σ
            g = tanh(a[2, e])
            o = half * tanh(half * a[3, e]) + half  # σ
            a[0, e], a[1, e], a[2, e], a[3, e] = i, f, g, o
            ct = f * c_in[e] + i * g  # c_t = f ⊙ c_{t-1} + i ⊙ g
            c_out[e] = ct
            tc = tanh(ct)
            tc_out[e] = tc
            h_out[e] = o * tc  # h_t = o ⊙ tanh(c_t)

    @jit
    def lstm_backward_step(t, dhT, dh_next, dc, gates, c, tanh_c, dA_t, dA):
        """Step t's elementwise work, backward. In: dhT[t] (H,B) from the layer above, dh_next (H,B)
        from step t+1 through W_h, dc (H,B) = dLoss/dc_t from step t+1 (already times f_{t+1}),
        the forward's gates[t], c[t] = c_{t-1}, tanh_c[t]. Out: dA_t (4H,B) = dLoss/d pre-activations,
        also copied to dA[:, t], and dc for step t-1."""
        _, H, B = c.shape
        n = H * B
        a, da = gates[t].reshape(4, n), dA_t.reshape(4, n)  # (4, H·B) i|f|g|o
        dh_up, dh_in, dc_io = dhT[t].reshape(n), dh_next.reshape(n), dc.reshape(n)  # (H·B,) each
        c_in, tc_in = c[t].reshape(n), tanh_c[t].reshape(n)  # (H·B,)
        one = gates.dtype.type(1.0)
        for e in range(n):
            i, f, g, o = a[0, e], a[1, e], a[2, e], a[3, e]
            tc = tc_in[e]
            dh = dh_up[e] + dh_in[e]  # from above and from step t+1
            d = dc_io[e] + dh * o * (one - tc * tc)  # dLoss/dc_t, also through h_t = o ⊙ tanh(c_t)
            da[0, e] = d * g * i * (one - i)  # i: σ'
            da[1, e] = d * c_in[e] * f * (one - f)  # f: σ'
            da[2, e] = d * i * (one - g * g)  # g: tanh'
            da[3, e] = dh * tc * o * (one - o)  # o: σ'
            dc_io[e] = d * f  # what reaches c_{t-1}
        to_window(t, dA_t, dA)

    @jit
    def peephole_forward_step(t, gates, xW, bias, c, tanh_c, hT, p_i, p_f, p_o):
        """The peephole LSTM's step t (cells/peephole.py): the LSTM's, with i and f also seeing c_{t-1}
        and o seeing c_t through the diagonal weights p_i, p_f, p_o, here each spread over (H, B)."""
        add_input(t, gates, xW, bias)
        _, H, B = c.shape
        n = H * B
        a = gates[t].reshape(4, n)  # (4, H·B) i|f|g|o
        c_in, c_out = c[t].reshape(n), c[t + 1].reshape(n)  # (H·B,) c_{t-1}, c_t
        tc_out, h_out = tanh_c[t].reshape(n), hT[t + 1].reshape(n)  # (H·B,)
        pi, pf, po = p_i.reshape(n), p_f.reshape(n), p_o.reshape(n)  # (H·B,)
        half = gates.dtype.type(0.5)
        for e in range(n):
            cp = c_in[e]  # c_{t-1}
            i = half * tanh(half * (a[0, e] + pi[e] * cp)) + half  # σ
            f = half * tanh(half * (a[1, e] + pf[e] * cp)) + half  # σ
            g = tanh(a[2, e])
            ct = f * cp + i * g  # c_t = f ⊙ c_{t-1} + i ⊙ g
            o = half * tanh(half * (a[3, e] + po[e] * ct)) + half  # σ
            a[0, e], a[1, e], a[2, e], a[3, e] = i, f, g, o
            c_out[e] = ct
            tc = tanh(ct)
            tc_out[e] = tc
            h_out[e] = o * tc  # h_t = o ⊙ tanh(c_t)

    @jit
    def peephole_backward_step(t, dhT, dh_next, dc, gates, c, tanh_c, dA_t, dA, p_i, p_f, p_o):
        """The LSTM's backward step with the peephole paths: c_t also reached this step's o and step
        t+1's i and f, whose gradients dA_t holds on entry (zeros before the window's last step)."""
        _, H, B = c.shape
        n = H * B
        a, da = gates[t].reshape(4, n), dA_t.reshape(4, n)  # (4, H·B) i|f|g|o
        dh_up, dh_in, dc_io = dhT[t].reshape(n), dh_next.reshape(n), dc.reshape(n)  # (H·B,) each
        c_in, tc_in = c[t].reshape(n), tanh_c[t].reshape(n)  # (H·B,)
        pi, pf, po = p_i.reshape(n), p_f.reshape(n), p_o.reshape(n)  # (H·B,)
        one = gates.dtype.type(1.0)
        for e in range(n):
            i, f, g, o = a[0, e], a[1, e], a[2, e], a[3, e]
            tc = tc_in[e]
            dh = dh_up[e] + dh_in[e]  # from above and from step t+1
            d = dc_io[e] + dh * o * (one - tc * tc)  # dLoss/dc_t: through the cell and h_t = o ⊙ tanh(c_t)
            d += da[0, e] * pi[e] + da[1, e] * pf[e]  # step t+1's i and f
            da_o = dh * tc * o * (one - o)  # o: σ'
            d += da_o * po[e]  # and this step's o
            da[0, e] = d * g * i * (one - i)  # i: σ'
            da[1, e] = d * c_in[e] * f * (one - f)  # f: σ'
            da[2, e] = d * i * (one - g * g)  # g: tanh'
            da[3, e] = da_o
            dc_io[e] = d * f  # what reaches c_{t-1}
        to_window(t, dA_t, dA)

    @jit
    def slstm_forward_step(t, gates, xW, bias, sf, c, n, m, hT):
        """The sLSTM's step t (cells/slstm.py): gates[t] (4H,B) holds (h_{t-1} W_h)ᵀ, xW (4H,T,B) and
        bias (4H,) the input part. Out: the stabilised gates in gates[t], σ(f̃) in sf[t], c, n, m [t+1],
        hT[t+1]."""
        add_input(t, gates, xW, bias)
        _, H, B = sf.shape
        size = H * B
        a = gates[t].reshape(4, size)  # (4, H·B) i|f|z|o
        sf_out, h_out = sf[t].reshape(size), hT[t + 1].reshape(size)  # (H·B,)
        c_in, n_in, m_in = c[t].reshape(size), n[t].reshape(size), m[t].reshape(size)  # (H·B,) at t-1
        c_out, n_out, m_out = c[t + 1].reshape(size), n[t + 1].reshape(size), m[t + 1].reshape(size)  # (H·B,)
        half, one, zero = gates.dtype.type(0.5), gates.dtype.type(1.0), gates.dtype.type(0.0)
        for e in range(size):
            ai, af = a[0, e], a[1, e]  # ĩ, f̃
            ex = exp_neg(-abs(af))  # e^−|f̃|: σ(f̃) and log σ(f̃) from it, precise for any f̃
            q = one / (one + ex)
            sf_out[e] = q if af >= zero else ex * q  # σ(f̃)
            log_fm = min(af, zero) - log1p_unit(ex) + m_in[e]  # log σ(f̃) + m_{t−1}
            # an empty cell (n = 0) takes m from the input alone, as in cells/slstm.py
            mt = ai if n_in[e] == zero else max(ai, log_fm)
            i = exp_neg(ai - mt)  # ≤ 1
            f = exp_neg(min(log_fm - mt, zero))  # ≤ 1; above 1 only for an empty cell, where it multiplies 0
            z = tanh(a[2, e])
            o = half * tanh(half * a[3, e]) + half  # σ
            a[0, e], a[1, e], a[2, e], a[3, e] = i, f, z, o
            ct = f * c_in[e] + i * z
            nt = f * n_in[e] + i
            m_out[e], c_out[e], n_out[e] = mt, ct, nt
            h_out[e] = o * (ct / nt)  # h_t = σ(õ) ⊙ c_t / n_t

    @jit
    def slstm_backward_step(t, dhT, dh_next, dc, dn, gates, sf, c, n, dA_t, dA):
        """The sLSTM's backward step t (m a constant, as in cells/slstm.py): dc, dn (H,B) arrive
        from step t+1 already times f_{t+1}, and leave times f_t. Out: dA_t (4H,B), also in dA[:, t]."""
        _, H, B = sf.shape
        size = H * B
        a, da = gates[t].reshape(4, size), dA_t.reshape(4, size)  # (4, H·B) i|f|z|o
        dh_up, dh_in = dhT[t].reshape(size), dh_next.reshape(size)  # (H·B,)
        dc_io, dn_io = dc.reshape(size), dn.reshape(size)  # (H·B,)
        sf_in, c_in, n_in = sf[t].reshape(size), c[t].reshape(size), n[t].reshape(size)  # (H·B,) c_{t-1}, n_{t-1}
        c_at, n_at = c[t + 1].reshape(size), n[t + 1].reshape(size)  # (H·B,) c_t, n_t
        one = gates.dtype.type(1.0)
        for e in range(size):
            i, f, z, o = a[0, e], a[1, e], a[2, e], a[3, e]
            inv_n = one / n_at[e]
            ratio = c_at[e] * inv_n  # c/n
            dh = dh_up[e] + dh_in[e]
            dr = dh * o  # through h = o ⊙ c/n
            dcj = dc_io[e] + dr * inv_n
            dnj = dn_io[e] - dr * ratio * inv_n
            da[0, e] = (dcj * z + dnj) * i  # c and n both take i = exp(ĩ − m)
            da[1, e] = (dcj * c_in[e] + dnj * n_in[e]) * f * (one - sf_in[e])
            da[2, e] = dcj * i * (one - z * z)  # tanh'
            da[3, e] = dh * ratio * o * (one - o)  # σ'
            dc_io[e], dn_io[e] = dcj * f, dnj * f  # what flows to c_{t−1}, n_{t−1}
        to_window(t, dA_t, dA)

    # The head's softmax (layers.head_forward), whose NumPy form is five passes over each row block:
    # here two over each row, while it is in cache. parallel.row_blocks runs it on both cores, so it
    # gives the GIL back; reassoc lets the compiler sum the exps in vector lanes.
    @numba.njit(cache=cache, nogil=True, fastmath={"contract", "reassoc"}, error_model="numpy")
    def softmax_rows(r0, r1, z, b, row_max, total):
        """Rows r0:r1 of z (N,V), the logits before the bias b (V,), become exp(z + b - row max) in
        place; row_max and total (N,) get each row's max and the sum of those exps. A NaN or +inf logit
        makes its exp, and so the row's sum and loss, NaN, as in NumPy (a diverged run must show in
        the loss: tests/test_compiled.py)."""
        V = z.shape[1]
        for r in range(r0, r1):
            m = z[r, 0] + b[0]
            for v in range(V):
                zv = z[r, v] + b[v]
                z[r, v] = zv
                m = max(m, zv)
            s = z.dtype.type(0.0)
            for v in range(V):
                e = exp_neg(z[r, v] - m)  # ≤ 1: the max makes it safe, as in the NumPy form
                z[r, v] = e
                s += e
            row_max[r], total[r] = m, s

    # The optimizers' updates (optim.step), over a parameter's numbers as one flat array. Each NumPy
    # operation there is a pass over memory: SGD's two, Adam's twelve (with its scratch array), where
    # one pass reads each array once and writes it once.
    @jit
    def sgd_update(p, g, c):
        """p -= c g (all (n,)): SGD's step, c = lr times the clipping scale."""
        for e in range(p.size):
            p[e] -= c * g[e]

    # inlined into numba's IR, not called: called from the rows loop it ran 4-25% slower (E 200: 0.93 ms
    # against 0.75 for a 10k-row table)
    @register_jitable(inline="always")
    def adam_span(p, g, m, v, c1, c2, beta1, beta2, step_size, eps):
        """Adam's step over one span of numbers (all arrays (n,)): m = β1 m + c1 g, v = β2 v + c2 g²,
        p -= step_size m / (√v + ε), with c1 = (1-β1) s and c2 = (1-β2) s² for the clipping scale s."""
        for e in range(p.size):
            ge = g[e]
            me = beta1 * m[e] + c1 * ge
            ve = beta2 * v[e] + c2 * ge * ge
            m[e], v[e] = me, ve
            p[e] -= step_size * me / (math.sqrt(ve) + eps)

    @jit
    def adam_update(p, g, m, v, c1, c2, beta1, beta2, step_size, eps):
        """Adam's step over a whole parameter, flat (all arrays (n,))."""
        adam_span(p, g, m, v, c1, c2, beta1, beta2, step_size, eps)

    @jit
    def adam_rows_update(p, rows, values, m, v, c1, c2, beta1, beta2, step_size, eps):
        """adam_update for an embedding table p, m, v (V,E) whose gradient is values (U,E) in the rows
        `rows` (U,), ascending, and zero elsewhere: the same numbers, without building the dense (V,E)
        gradient (a pass to zero it and one to read it; a row with no gradient still moves, on m).
        Returns how many of `rows` it used: all of them, unless they were not ascending and distinct."""
        zero = np.zeros(p.shape[1], dtype=p.dtype)  # (E,) the gradient of a row the window did not use
        k = 0  # the next used row's place in rows
        for r in range(p.shape[0]):
            used = k < rows.size and rows[k] == r
            adam_span(p[r], values[k] if used else zero, m[r], v[r], c1, c2, beta1, beta2, step_size, eps)  # (E,)
            k += used
        return k

    # The embedding's gradient (layers.sum_rows): each distinct id's rows summed. NumPy's reduceat along
    # axis 0 took 3.4-5.5 ns for each number it added, this loop along the rows 0.3-0.5 (medium's 700
    # ids, 650 wide: 2.5 ms against 0.13).
    @jit
    def sum_runs(order, starts, values, out):
        """out[u] (U,E) = the sum of the rows values[order[i]] (N,E) over run u, i from starts[u] to the
        next run's start (or N): order (N,) sorts the ids, starts (U,) is where each id's run begins."""
        N, U = order.size, starts.size
        for u in range(U):
            end = starts[u + 1] if u + 1 < U else N
            o, first = out[u], values[order[starts[u]]]  # (E,) each
            for e in range(o.size):
                o[e] = first[e]
            for i in range(starts[u] + 1, end):
                row = values[order[i]]  # (E,)
                for e in range(o.size):
                    o[e] += row[e]

    # the kernels, and the float32 functions they use (for tests/test_compiled.py, through numba.njit)
    scope = locals()
    names = [name for name in scope if name.endswith(("_step", "_update"))]
    names += ["softmax_rows", "sum_runs", "tanh", "exp_neg", "log1p_unit"]
    return type("Kernels", (), {name: staticmethod(scope[name]) for name in names})


def forward_loop(step, p: dict, x: np.ndarray, state: dict, *extra):
    """The loop of the LSTM's and the peephole LSTM's compiled forwards: x (T,B,D) -> the LSTM's
    Window (cells/lstm.py), every step done by `step` after its product, h filled.

    h is written feature-major, hT (T+1, H, B), so that a step's arrays are blocks of H·B floats
    (what lets the compiler use vector instructions; the input part xW is read row by row), and
    turned batch-major once at the end."""
    from lstmtext.cells import lstm  # the window's arrays are the LSTM's own

    T, B, _ = x.shape
    H = p["W_h"].shape[0]
    w = lstm.window(p, x, state, bias=False)  # the steps add b
    hT = np.empty((T + 1, H, B), dtype=x.dtype)  # hT[t] = h_{t-1}ᵀ
    hT[0] = state["h"].T
    for t in range(T):
        np.matmul(w.W_hT, hT[t], out=w.gates[t])  # (4H, B) h_{t-1} W_h
        step(t, w.gates, w.xW, p["b"], w.c, w.tanh_c, hT, *extra)
    w.h[...] = hT.transpose(0, 2, 1)  # (T+1, B, H)
    return w


def backward_loop(step, dh: np.ndarray, cache, *extra):
    """The loop of the two compiled backwards: dh (T,B,H) -> dA (4H, T, B) = dLoss / d pre-activations,
    feature-major like the gates, and the gradients that leave the window's start, dh_0 and dc_0 (H, B)."""
    T, B, _ = cache.x.shape
    H, GH = cache.W_h.shape
    dt = cache.x.dtype
    dhT = np.ascontiguousarray(dh.transpose(0, 2, 1))  # (T, H, B): along B, as the kernels read it
    dA = np.empty((GH, T, B), dtype=dt)
    # (4H, B) step t's, contiguous for the kernel and the product; zeros, since the peephole's kernel
    # reads step t+1's from it on entry, and there is no step T
    dA_t = np.zeros((GH, B), dtype=dt)
    dh_next = np.zeros((H, B), dtype=dt)  # from step t+1 through W_h (cut after T)
    dc = np.zeros((H, B), dtype=dt)  # dLoss/dc_t from step t+1, times f_{t+1}
    for t in reversed(range(T)):
        step(t, dhT, dh_next, dc, cache.gates, cache.c, cache.tanh_c, dA_t, dA, *extra)
        np.matmul(cache.W_h, dA_t, out=dh_next)  # (H, B) to step t-1 through W_h
    return dA, dh_next, dc


def lstm_forward(k, p: dict, x: np.ndarray, state: dict):
    """cells/lstm.forward's loop with the step's elementwise work compiled: x (T,B,D) -> h (T,B,H), cache."""
    from lstmtext.cells import lstm

    w = forward_loop(k.lstm_forward_step, p, x, state)
    act = lstm.GateActivation.of(lstm.RULE.kinds, p["W_h"].shape[0], x.dtype)
    return w.h[1:], lstm.Cache(x, w.gates, w.c, w.tanh_c, w.h, act, p["W_x"], p["W_h"], lstm.RULE)


def lstm_backward(k, dh: np.ndarray, cache):
    """cells/lstm.backward's loop, compiled: dh (T,B,H) -> dx (T,B,D), grads, dstate."""
    from lstmtext.cells.common import window_grads

    dA, dh0, dc0 = backward_loop(k.lstm_backward_step, dh, cache)
    grads, dx = window_grads(cache.x, cache.h[:-1], dA.reshape(dA.shape[0], -1).T, cache.W_x)
    return dx, grads, {"h": np.ascontiguousarray(dh0.T), "c": np.ascontiguousarray(dc0.T)}


def spread(weights, B: int) -> list[np.ndarray]:
    """The peephole's diagonal weights (H,) each as (H, B), read along the kernels' flat loops."""
    # np.repeat copies even at B 1, where a broadcast view would be read-only: kernels compiled once more
    return [np.repeat(q[:, None], B, axis=1) for q in weights]  # (H, B) each


def peephole_forward(k, p: dict, x: np.ndarray, state: dict):
    """cells/peephole.forward, compiled: x (T,B,D) -> h (T,B,H), its cache."""
    from lstmtext.cells import lstm, peephole

    peep = p["p_i"], p["p_f"], p["p_o"]  # (H,) each
    w = forward_loop(k.peephole_forward_step, p, x, state, *spread(peep, x.shape[1]))
    act = lstm.GateActivation.of(lstm.RULE.kinds, p["W_h"].shape[0], x.dtype)
    cache = peephole.Cache(x, w.gates, w.c, w.tanh_c, w.h, act, p["W_x"], p["W_h"], lstm.RULE,
                           tuple(q[:, None] for q in peep))  # fmt: skip
    return w.h[1:], cache


def peephole_backward(k, dh: np.ndarray, cache):
    """cells/peephole.backward, compiled: dh (T,B,H) -> dx (T,B,D), grads, dstate."""
    from lstmtext.cells.common import window_grads

    H = cache.W_h.shape[0]
    p_i, p_f, p_o = (q[:, 0] for q in cache.peep)  # (H,) each
    dA, dh0, dc0 = backward_loop(k.peephole_backward_step, dh, cache, *spread((p_i, p_f, p_o), dh.shape[1]))
    dc0 += dA[:H, 0] * p_i[:, None] + dA[H : 2 * H, 0] * p_f[:, None]  # (H, B) c_0 reached step 0's i and f
    grads, dx = window_grads(cache.x, cache.h[:-1], dA.reshape(dA.shape[0], -1).T, cache.W_x)
    c = cache.c  # (T+1, H, B)
    grads["p_i"] = np.einsum("htb,thb->h", dA[:H], c[:-1])  # (H,) i saw c_{t-1}
    grads["p_f"] = np.einsum("htb,thb->h", dA[H : 2 * H], c[:-1])  # (H,) f too
    grads["p_o"] = np.einsum("htb,thb->h", dA[-H:], c[1:])  # (H,) o saw c_t
    return dx, grads, {"h": np.ascontiguousarray(dh0.T), "c": np.ascontiguousarray(dc0.T)}


def slstm_forward(k, p: dict, x: np.ndarray, state: dict, W_h: np.ndarray, heads: int):
    """cells/slstm.forward, compiled: x (T,B,D) -> h (T,B,H), its cache. W_h: masked to its heads."""
    from lstmtext.cells import slstm
    from lstmtext.cells.common import input_projection_fm, transposed

    T, B, _ = x.shape
    H = W_h.shape[0]
    dt = x.dtype
    xW = input_projection_fm(x, p["W_x"], None)  # (4H, T, B) without b: the steps add it
    gates = np.empty((T, 4 * H, B), dtype=dt)
    sf = np.empty((T, H, B), dtype=dt)
    c, n, m = (np.empty((T + 1, H, B), dtype=dt) for _ in range(3))
    c[0], n[0], m[0] = state["c"].T, state["n"].T, state["m"].T
    hT = np.empty((T + 1, H, B), dtype=dt)  # hT[t] = h_{t-1}ᵀ
    hT[0] = state["h"].T
    W_hT = transposed(W_h)  # (4H, H)
    for t in range(T):
        np.matmul(W_hT, hT[t], out=gates[t])  # (4H, B) h_{t-1} W_h
        k.slstm_forward_step(t, gates, xW, p["b"], sf, c, n, m, hT)
    h = np.ascontiguousarray(hT.transpose(0, 2, 1))  # (T+1, B, H)
    return h[1:], slstm.SLSTMCache(x, gates, sf, h, c, n, m, p["W_x"], W_h, heads)


def slstm_backward(k, dh: np.ndarray, cache):
    """cells/slstm.backward, compiled: dh (T,B,H) -> dx (T,B,D), grads, dstate."""
    from lstmtext.cells import slstm
    from lstmtext.cells.common import window_grads

    T, B, _ = cache.x.shape
    H, GH = cache.W_h.shape
    dt = cache.x.dtype
    dhT = np.ascontiguousarray(dh.transpose(0, 2, 1))  # (T, H, B)
    dA = np.empty((GH, T, B), dtype=dt)
    dA_t = np.empty((GH, B), dtype=dt)  # (4H, B) step t's, contiguous for the kernel and the product
    dh_next, dc, dn = (np.zeros((H, B), dtype=dt) for _ in range(3))
    for t in reversed(range(T)):
        k.slstm_backward_step(t, dhT, dh_next, dc, dn, cache.gates, cache.sf, cache.c, cache.n, dA_t, dA)
        np.matmul(cache.W_h, dA_t, out=dh_next)  # (H, B) to step t-1 through W_h
    grads, dx = window_grads(cache.x, cache.h[:-1], dA.reshape(GH, T * B).T, cache.W_x)
    if cache.heads > 1:
        grads["W_h"] *= slstm.head_mask(H, cache.heads, grads["W_h"].dtype)  # off-block weights stay zero
    dm0 = dc * cache.c[0] + dn * cache.n[0]  # c_0, n_0 stand for c_0 e^{m_0}, n_0 e^{m_0}
    dstate = {"h": dh_next, "c": dc, "n": dn, "m": dm0}
    return dx, grads, {key: np.ascontiguousarray(v.T) for key, v in dstate.items()}
