"""LSTM cell (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000).

Row vectors, gates fused along one 4H axis in PyTorch's order i|f|g|o:

    a_t = x_t W_x + h_{t-1} W_h + b                      (B, 4H)
    i_t = σ(a_i)   f_t = σ(a_f)   g_t = tanh(a_g)   o_t = σ(a_o)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    h_t = o_t ⊙ tanh(c_t)

The forget gate decides how much of the old cell state to keep, the input gate how much of the
candidate g_t to write, and the output gate how much of the squashed cell to show as h_t.

The window's layout (shared by every cell with a per-step matrix product): time-major; each step's
gates and cell state feature-major, (4H, B) and (H, B), because OpenBLAS runs these small-batch
products much faster as W_h^T h^T (docs/speed.md "Speed"); h batch-major, (T+1, B, H), its step-t row
written through a transposed view, so that the output and the weight gradients are plain GEMMs on
contiguous memory. The input part x_t W_x + b of every step is one GEMM before the loop
(common.input_projection), and the weight gradients one GEMM each after the backward loop
(common.window_grads): only h_{t-1} W_h has to wait for the previous step.

CIFG (cells/cifg.py) runs these same loops with its own write of c_t (a `Rule`); the peephole LSTM
(cells/peephole.py) has its own loops, built from the same pieces.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lstmtext.cells import compiled
from lstmtext.cells.common import GateActivation, input_projection_fm, named_blocks, transposed, window_grads

NAME = "lstm"
STATE = ("h", "c")  # what is carried from window to window
BLOCKS = "ifgo"  # the gate blocks along the fused 4H axis (parameters: cells/common.py)
FORGET = 1  # the block whose bias starts at FORGET_BIAS
EXTRA: dict[str, str] = {}  # no per-unit parameters beyond W_x, W_h, b
# --chrono (Tallec & Ollivier 2018): the H-blocks of b holding the keep (forget) and write (input) gates.
CHRONO = (1, 0)
GATES = ("i", "f", "o")  # the σ gates, whose saturation `lstmtext inspect` measures
OPTIONS: tuple[str, ...] = ()  # no ModelConfig field changes the cell
RECURRENT = True  # has W_h
own_init = None  # the common start (common.init_params) is the LSTM's


@dataclass(frozen=True)
class Rule:
    """What a cell-state cell may change in the LSTM's loops: its gate blocks (o last), σ or tanh
    for each ("s"/"t"), the block of its forget gate, its write of c_t and that write's derivatives."""

    blocks: str  # e.g. "ifgo"
    kinds: str  # e.g. "ssts"
    forget: int  # the block of f, through which c_t reaches c_{t+1}
    write: Callable  # (a (GH,B) activated gates, c_prev, c_next, tmp (H,B)) -> None: fills c_next
    # (k, cache) -> None: multiplies each c-writing block of k (T, GH, B), which holds its gate's σ' or
    # tanh', by what that gate multiplies in the write, so that k becomes ∂c_t/∂a there
    local_derivatives: Callable


@dataclass
class Cache:
    x: np.ndarray  # (T, B, D) window input
    gates: np.ndarray  # (T, GH, B) activated gates, feature-major, o last
    c: np.ndarray  # (T+1, H, B) cell states, c[0] = the initial one
    tanh_c: np.ndarray  # (T, H, B)
    h: np.ndarray  # (T+1, B, H) hidden states, h[0] = the initial one
    act: GateActivation  # which rows of the GH axis are σ and which tanh
    W_x: np.ndarray  # (D, GH)
    W_h: np.ndarray  # (H, GH)
    rule: Rule


def write(a: np.ndarray, c_prev: np.ndarray, c_next: np.ndarray, tmp: np.ndarray) -> None:
    """c_t = f ⊙ c_{t-1} + i ⊙ g, from the step's activated gates a (4H, B); all (H, B)."""
    H = c_prev.shape[0]
    i, f, g = a[:H], a[H : 2 * H], a[2 * H : 3 * H]
    np.multiply(f, c_prev, out=c_next)  # (H, B)
    np.multiply(i, g, out=tmp)  # (H, B)
    c_next += tmp  # (H, B)


def local_derivatives(k: np.ndarray, cache: Cache) -> None:
    """k (T, 4H, B) of σ'/tanh' -> ∂c_t/∂a for i, f, g, in place (o: `backward`):
    da_i = dc ⊙ g ⊙ σ'   da_f = dc ⊙ c_{t-1} ⊙ σ'   da_g = dc ⊙ i ⊙ tanh'"""
    gates, c = cache.gates, cache.c
    H = c.shape[1]
    k[:, :H] *= gates[:, 2 * H : 3 * H]  # (T, H, B) g
    k[:, H : 2 * H] *= c[:-1]  # (T, H, B) c_{t-1}
    k[:, 2 * H : 3 * H] *= gates[:, :H]  # (T, H, B) i


RULE = Rule(BLOCKS, "ssts", FORGET, write, local_derivatives)  # i, f: σ; g: tanh; o: σ


@dataclass
class Window:
    """The forward loop's arrays, made before the first step."""

    xW: np.ndarray  # (GH, T, B) x_t W_x + b (or without b) for every step, feature-major: step t is [:, t]
    W_hT: np.ndarray  # (GH, H) contiguous: the step's product is W_h^T h^T
    gates: np.ndarray  # (T, GH, B)
    c: np.ndarray  # (T+1, H, B), c[0] set
    tanh_c: np.ndarray  # (T, H, B)
    h: np.ndarray  # (T+1, B, H), h[0] set
    tmp: np.ndarray  # (H, B) scratch


def window(p: dict, x: np.ndarray, state: dict, bias: bool = True) -> Window:
    """The forward loop's arrays; bias False leaves b out of xW (the compiled steps add it)."""
    W_h = p["W_h"]
    T, B, _ = x.shape
    H, GH = W_h.shape
    dt = x.dtype
    c = np.empty((T + 1, H, B), dtype=dt)
    h = np.empty((T + 1, B, H), dtype=dt)
    c[0], h[0] = state["c"].T, state["h"]
    return Window(input_projection_fm(x, p["W_x"], p["b"] if bias else None), transposed(W_h),
                  np.empty((T, GH, B), dtype=dt), c, np.empty((T, H, B), dtype=dt), h, np.empty((H, B), dtype=dt))


def forward(p: dict, x: np.ndarray, state: dict, rule: Rule = RULE) -> tuple[np.ndarray, Cache]:
    """Run the cell over a window. x (T,B,D), state {"h": (B,H), "c": (B,H)} -> h (T,B,H), cache.

    The returned h is a view of the cache (no copy); treat it as read-only. With numba installed,
    the LSTM's own float steps run compiled (cells/compiled.py): the same equations, one call."""
    if rule is RULE and (k := compiled.kernels(x.dtype, len(x))):
        return compiled.lstm_forward(k, p, x, state)
    w = window(p, x, state)
    H, GH = p["W_h"].shape
    act = GateActivation.of(rule.kinds, H, x.dtype)
    c, h = w.c, w.h
    for t in range(x.shape[0]):
        a = w.gates[t]  # (GH, B), filled and activated in place
        np.matmul(w.W_hT, h[t].T, out=a)  # (GH, B) h_{t-1} W_h; h[t].T is a transposed view, a BLAS flag
        a += w.xW[:, t]  # (GH, B) + x_t W_x + b
        act.apply(a)  # (GH, B) i, f, o: σ; g: tanh
        rule.write(a, c[t], c[t + 1], w.tmp)  # (H, B) c_t = f ⊙ c_{t-1} + i ⊙ g
        np.tanh(c[t + 1], out=w.tanh_c[t])  # (H, B)
        np.multiply(a[GH - H :], w.tanh_c[t], out=h[t + 1].T)  # (H, B) h_t = o ⊙ tanh(c_t), into its (B, H) row
    return h[1:], Cache(x, w.gates, c, w.tanh_c, h, act, p["W_x"], p["W_h"], rule)


@dataclass
class Derivatives:
    """What the backward loop multiplies by, computed for the whole window before it."""

    k: np.ndarray  # (T, GH, B) ∂h_t/∂a_o on the o block, ∂c_t/∂a on the blocks that write c
    f: np.ndarray  # (T, H, B) the forget gate, through which dc_t reaches c_{t-1}
    dc_from_h: np.ndarray  # (T, H, B) ∂h_t/∂c_t = o ⊙ (1 - tanh²(c_t))


def derivatives(cache: Cache) -> Derivatives:
    gates, tanh_c, H, rule = cache.gates, cache.tanh_c, cache.W_h.shape[0], cache.rule
    GH = gates.shape[1]
    k = cache.act.derivative(gates)  # (T, GH, B) σ' or tanh' per gate
    k[:, GH - H :] *= tanh_c  # (T, H, B) o: ∂h_t/∂a_o = tanh(c_t) σ'(a_o)
    rule.local_derivatives(k, cache)  # the others: ∂c_t/∂a
    f = gates[:, rule.forget * H : (rule.forget + 1) * H]  # (T, H, B)
    o = gates[:, GH - H :]  # (T, H, B)
    return Derivatives(k, f, o * (1.0 - tanh_c * tanh_c))


def backward(dh: np.ndarray, cache: Cache) -> tuple[np.ndarray, dict, dict]:
    """dh (T,B,H) = dLoss/dh_t from above -> dx (T,B,D), grads, dstate (w.r.t. the initial state)."""
    # only the LSTM's own cache: the peephole LSTM's (a subclass) carries the same rule
    if type(cache) is Cache and cache.rule is RULE and (k := compiled.kernels(cache.x.dtype, len(cache.x))):
        return compiled.lstm_backward(k, dh, cache)
    T, B, _ = cache.x.shape
    H, GH = cache.W_h.shape
    dt = cache.x.dtype
    d = derivatives(cache)
    k_c = d.k[:, : GH - H].reshape(T, -1, H, B)  # (T, G-1, H, B) the blocks that write c
    dA = np.empty((T, B, GH), dtype=dt)  # dLoss / d pre-activations, batch-major for the GEMMs
    da = np.empty((GH, B), dtype=dt)  # (GH, B) the same, one step, feature-major
    da_o = da[GH - H :]  # (H, B)
    dc_blocks = da[: GH - H].reshape(-1, H, B)  # (G-1, H, B): every c-writing block sees the same dc
    dh_next = np.zeros((H, B), dtype=dt)  # gradient arriving from step t+1 (cut after T)
    dh_t = np.empty((H, B), dtype=dt)
    dc = np.zeros((H, B), dtype=dt)  # dLoss/dc_t, carried back
    tmp = np.empty((H, B), dtype=dt)
    for t in reversed(range(T)):
        np.add(dh[t].T, dh_next, out=dh_t)  # (H, B) from above and from step t+1
        if t + 1 < T:
            dc *= d.f[t + 1]  # (H, B) dc_{t+1} ⊙ f_{t+1}: what flows back through the cell
        np.multiply(dh_t, d.dc_from_h[t], out=tmp)  # (H, B)
        dc += tmp  # (H, B) and through h_t = o ⊙ tanh(c_t)
        np.multiply(dh_t, d.k[t, GH - H :], out=da_o)  # (H, B) o
        np.multiply(dc, k_c[t], out=dc_blocks)  # (G-1, H, B) i, f, g at once
        np.matmul(cache.W_h, da, out=dh_next)  # (H, B) to step t-1 through W_h
        dA[t] = da.T  # (B, GH)
    dc *= d.f[0]  # (H, B) gradient w.r.t. c_0
    grads, dx = window_grads(cache.x, cache.h[:-1], dA.reshape(T * B, GH), cache.W_x)  # h_{t-1} is each step's input
    return dx, grads, {"h": np.ascontiguousarray(dh_next.T), "c": np.ascontiguousarray(dc.T)}


def quantities(cache: Cache) -> dict[str, np.ndarray]:
    """{name: (T, B, H)}: the hidden and cell states and every gate block by its letter, for
    `lstmtext inspect`."""
    c = cache.c[1:].transpose(0, 2, 1)  # (T, B, H)
    return {"h": cache.h[1:], "c": c, **named_blocks(cache.gates, cache.rule.blocks, 1)}


def final_state(cache: Cache) -> dict:
    """The state after the window, values only (TBPTT cuts the gradient here)."""
    return {"h": cache.h[-1].copy(), "c": np.ascontiguousarray(cache.c[-1].T)}  # (B, H)


def step(p: dict, x: np.ndarray, state: dict) -> tuple[np.ndarray, dict]:
    """One step without a cache, for generation: x (B,D) -> h (B,H), next state."""
    H = p["W_h"].shape[0]
    a = x @ p["W_x"] + state["h"] @ p["W_h"] + p["b"]  # (B, 4H)
    GateActivation.of(RULE.kinds, H, a.dtype).apply(a.T)  # (4H, B) view: σ on i, f, o; tanh on g
    i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
    c = f * state["c"] + i * g  # (B, H)
    h = o * np.tanh(c)  # (B, H)
    return h, {"h": h, "c": c}
