"""Adaptive softmax (Grave et al. 2017, "Efficient softmax approximation for GPUs"), as PyTorch's
`nn.AdaptiveLogSoftmaxWithLoss` defines it: the output head of a word model, made cheaper.

The vocabulary is sorted by frequency and cut at `cutoffs` c_0 < c_1 < ... < V. The head proper
scores the c_0 most frequent words plus one entry per cluster; a word of cluster k (c_{k-1} ≤ w < c_k)
is scored as p(cluster k) · p(w | cluster k), the second from a small two-layer tail whose inner
width shrinks by `div_value` per cluster. A token pays for its own cluster only, so the rare words
(most of the vocabulary, little of the text) cost little.

    head:    l = z W_head + b_head                       (N, c_0 + K)      K = number of clusters
    tail k:  l_k = (z_k P_k) O_k                         (n_k, c_k − c_{k−1}) for the n_k rows in cluster k
    log p(w) = log_softmax(l)[w]                               w < c_0
             = log_softmax(l)[c_0 + k − 1] + log_softmax(l_k)[w − c_{k−1}]   otherwise

Parameter names: head.W (H, c_0 + K), head.b (c_0 + K,), head.tail.{k}.P (H, H // div^k),
head.tail.{k}.O (H // div^k, c_k − c_{k−1}) for k = 1..K.

`--softmax adaptive --cutoffs 2000,6000` selects it (model.forward/backward use it for training and
`eval`; model.step_logits returns the full log p for `generate`). The embedding cannot be tied to it.
"""

from dataclasses import dataclass

import numpy as np

from lstmtext.errors import ConfigError

# Without --cutoffs, the head keeps the most frequent fifth of the vocabulary and the clusters split
# the rest at its half: at 10,000 words 2000,5000, close to the 2000,6000 issue #28 measured on man
# pages, and still valid for a vocabulary of a few thousand, where fixed cutoffs are not.
CUTOFF_SHARES = (0.2, 0.5)


def chosen_cutoffs(V: int) -> list[int]:
    """The cutoffs for a vocabulary of V when none are given (CUTOFF_SHARES of V; one if V is tiny)."""
    cuts = sorted({max(1, round(share * V)) for share in CUTOFF_SHARES})
    return [c for c in cuts if c < V] or [1]


def check_cutoffs(cutoffs: list[int], V: int | None) -> list[int]:
    """-> the cutoffs with V appended, or one clear error (V None: the vocabulary is not known yet)."""
    if not cutoffs or cutoffs[0] < 1 or any(b <= a for a, b in zip(cutoffs, cutoffs[1:], strict=False)):
        shown = ",".join(map(str, cutoffs))
        raise ConfigError(
            f"--softmax adaptive needs increasing --cutoffs: they must be positive and increase, e.g. 2000,6000;"
            f" got {shown}"
        )
    if V is None:
        return list(cutoffs)
    if cutoffs[-1] >= V:
        raise ConfigError(f"--cutoffs must stay below the vocabulary size, {V:,}; got {cutoffs[-1]:,}")
    return [*cutoffs, V]


def param_shapes(H: int, cutoffs: list[int], V: int, div_value: float = 4.0) -> dict[str, tuple[int, ...]]:
    """The head's parameters for hidden size H (cutoffs as given, without V)."""
    edges = check_cutoffs(cutoffs, V)
    K = len(edges) - 1
    shapes = {"head.W": (H, edges[0] + K), "head.b": (edges[0] + K,)}
    for k in range(1, K + 1):
        inner = max(1, int(H // div_value**k))
        shapes[f"head.tail.{k}.P"] = (H, inner)
        shapes[f"head.tail.{k}.O"] = (inner, edges[k] - edges[k - 1])
    return shapes


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=1, keepdims=True)  # (n, m)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


@dataclass
class Cluster:
    """What the backward pass needs of one cluster k that some targets fall in."""

    rows: np.ndarray  # (n_k,) the rows whose target is in the cluster
    zp: np.ndarray  # (n_k, inner) z_k P_k
    log_p: np.ndarray  # (n_k, m_k) log_softmax(l_k)
    local: np.ndarray  # (n_k,) each target's index inside the cluster


@dataclass
class AdaptiveCache:
    z: np.ndarray  # (N, H) the head's input
    head_lp: np.ndarray  # (N, c_0 + K) log_softmax of the head
    head_index: np.ndarray  # (N,) the head entry each target goes through (its word or its cluster)
    weight: np.ndarray  # (N,) each row's weight in the mean loss (0 where masked)
    clusters: list[Cluster | None]  # per cluster k, None where no target falls in it


def forward(
    params: dict, z: np.ndarray, targets: np.ndarray, edges: list[int], mask: np.ndarray | None = None
) -> tuple[float, np.ndarray, AdaptiveCache]:
    """z (N,H), targets (N,), edges = check_cutoffs(cutoffs, V) -> mean loss over the counted rows,
    per-row nll (N,) (0 on the rows that do not count, whose tails are never computed), cache.
    mask (N,) of 0/1 marks the rows that count; None counts all."""
    N = z.shape[0]
    counted = np.ones(N, dtype=bool) if mask is None else mask.astype(bool)  # (N,)
    head_lp = _log_softmax(z @ params["head.W"] + params["head.b"])  # (N, c_0 + K)
    head_index = np.array(targets, dtype=np.int64)  # (N,) a copy, overwritten for the clusters' rows
    nll = np.zeros(N, dtype=z.dtype)
    clusters = []
    for k in range(1, len(edges)):
        lo, hi = edges[k - 1], edges[k]
        in_cluster = (targets >= lo) & (targets < hi)  # (N,)
        head_index[in_cluster] = edges[0] + k - 1
        rows = np.flatnonzero(in_cluster & counted)  # (n_k,) a masked row's tail is never paid for
        if len(rows) == 0:
            clusters.append(None)
            continue
        zp = z[rows] @ params[f"head.tail.{k}.P"]  # (n_k, inner)
        lp = _log_softmax(zp @ params[f"head.tail.{k}.O"])  # (n_k, m_k)
        local = targets[rows] - lo  # (n_k,)
        nll[rows] = -lp[np.arange(len(rows)), local]
        clusters.append(Cluster(rows, zp, lp, local))
    nll -= head_lp[np.arange(N), head_index]
    nll[~counted] = 0.0  # (N,) masked rows count for nothing
    count = max(float(counted.sum()), 1.0)
    loss = float(nll.sum(dtype=np.float64) / count)
    return loss, nll, AdaptiveCache(z, head_lp, head_index, (counted / count).astype(z.dtype), clusters)


def backward(params: dict, cache: AdaptiveCache) -> tuple[np.ndarray, dict]:
    """-> dz (N,H), grads (same keys as the head's params) of the mean loss."""
    z, w = cache.z, cache.weight[:, None]  # (N, H), (N, 1)
    N = z.shape[0]
    d_head = np.exp(cache.head_lp)  # (N, c_0 + K) softmax
    d_head[np.arange(N), cache.head_index] -= 1.0
    d_head *= w
    grads = {"head.W": z.T @ d_head, "head.b": d_head.sum(axis=0)}
    dz = d_head @ params["head.W"].T  # (N, H)
    for k, cluster in enumerate(cache.clusters, start=1):
        proj, out = params[f"head.tail.{k}.P"], params[f"head.tail.{k}.O"]
        if cluster is None:  # no target in this cluster: its tail was not used
            grads[f"head.tail.{k}.P"], grads[f"head.tail.{k}.O"] = np.zeros_like(proj), np.zeros_like(out)
            continue
        rows, zp, local = cluster.rows, cluster.zp, cluster.local
        d_l = np.exp(cluster.log_p)  # (n_k, m_k)
        d_l[np.arange(len(rows)), local] -= 1.0
        d_l *= w[rows]
        grads[f"head.tail.{k}.O"] = zp.T @ d_l  # (inner, m_k)
        d_zp = d_l @ out.T  # (n_k, inner)
        grads[f"head.tail.{k}.P"] = z[rows].T @ d_zp  # (H, inner)
        dz[rows] += d_zp @ proj.T
    return dz, grads


def log_probs(params: dict, z: np.ndarray, edges: list[int]) -> np.ndarray:
    """The full distribution, for generation: z (B,H) -> log p (B, V), every word scored."""
    head_lp = _log_softmax(z @ params["head.W"] + params["head.b"])  # (B, c_0 + K)
    parts = [head_lp[:, : edges[0]]]
    for k in range(1, len(edges)):
        tail = _log_softmax(z @ params[f"head.tail.{k}.P"] @ params[f"head.tail.{k}.O"])  # (B, m_k)
        parts.append(head_lp[:, edges[0] + k - 1 : edges[0] + k] + tail)
    return np.concatenate(parts, axis=1)  # (B, V)
