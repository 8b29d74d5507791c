"""Looking inside a trained model. So far: the vanishing gradient, measured (`lstmtext inspect
RUN TEXT --gradient`).

For a position t of the text and a distance k, how much does the log-probability the model gives the
next token, log p(x_{t+1} | x_{≤t}), depend on the state k steps back? The norm

    g_l(k) = ‖∂ log p(x_{t+1} | x_{≤t}) / ∂h^l_{t−k}‖        (and ∂/∂c^l_{t−k} for the LSTM family)

averaged over positions, per layer l. It comes from the model's own backward pass: a window of the
k tokens x_{t−k+1..t}, started from the state the model had after reading x_{≤t−k}, with the loss
counted at its last position only; the gradient of that window's initial state is ∂/∂(state_{t−k}).
A simple RNN's g(k) falls geometrically with k; a gated cell's can stay up.
"""

import numpy as np

from lstmtext import model
from lstmtext.config import ModelConfig
from lstmtext.errors import CorpusError


def states_along(params: dict, cfg: ModelConfig, ids: np.ndarray, wanted: set[int]) -> dict[int, dict]:
    """-> {j: the state after reading ids[0..j]} for each j in wanted (one stream, from zero)."""
    state = model.init_state(cfg, 1, params["embed.W"].dtype)
    out = {}
    for j in range(max(wanted) + 1):
        _, state = model.step_logits(params, cfg, ids[j : j + 1], state)
        if j in wanted:
            out[j] = state
    return out


def gradient_norms(params: dict, cfg: ModelConfig, ids: np.ndarray, max_distance: int = 100, positions: int = 20):
    """ids (N,) -> {"distance": [1..K], "positions": P, "at": the P positions t, "norm": {state name:
    [K]}} with state names like "layers.0.h": the mean over the positions of ‖∂ log p(x_{t+1}) / ∂
    state_{t-k}‖, for k = 1..K."""
    K = max_distance
    if len(ids) < K + 2:
        raise CorpusError(f"the text has {len(ids)} tokens; --max-distance {K} needs at least {K + 2}")
    last = len(ids) - 2  # the last t with a next token
    ts = np.unique(np.linspace(K, last, positions).round().astype(int))  # (P,) positions t
    states = states_along(params, cfg, ids, {int(t) - k for t in ts for k in range(1, K + 1)})
    names = list(states[int(ts[0]) - 1])
    norm = {name: [] for name in names}
    P = len(ts)
    for k in range(1, K + 1):
        x = np.stack([ids[t - k + 1 : t + 1] for t in ts], axis=1)  # (k, P) the window's inputs
        y = np.stack([ids[t - k + 2 : t + 2] for t in ts], axis=1)  # (k, P) its targets
        mask = np.zeros((k, P))
        mask[-1] = 1.0  # only the prediction of x_{t+1} counts
        start = {name: np.concatenate([states[t - k][name] for t in ts]) for name in names}  # (P, H) each
        _, _, cache, _ = model.forward(params, cfg, x, y, start, None, mask)
        _, dstate = model.backward(params, cfg, cache)
        for name in names:
            # The loss is the mean over the P positions, so each row of dstate is 1/P of its own gradient.
            g = np.linalg.norm(dstate[name].astype(np.float64) * P, axis=1)  # (P,)
            norm[name].append(float(g.mean()))
    return {"distance": list(range(1, K + 1)), "positions": P, "at": ts.tolist(), "norm": norm}
