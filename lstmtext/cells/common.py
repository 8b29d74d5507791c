"""Small pieces every cell shares: a stable sigmoid and the uniform initializer."""

import numpy as np


def sigmoid(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """σ(x) = (1 + tanh(x/2)) / 2: the same function as 1/(1+e^-x), but it cannot overflow."""
    out = np.multiply(x, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


def dsigmoid_from_out(s: np.ndarray) -> np.ndarray:
    """σ'(x) written with the output s = σ(x), which the forward pass already stored."""
    return s * (1.0 - s)


def named_blocks(a: np.ndarray, names: str, feature_axis: int) -> dict[str, np.ndarray]:
    """A fused gate array, (T, G·H, B) feature-major (feature_axis 1) or (T, B, G·H) batch-major
    (feature_axis 2), as {name: (T, B, H)} views, one per letter of `names` in fused order."""
    H = a.shape[feature_axis] // len(names)
    out = {}
    for k, name in enumerate(names):
        if feature_axis == 1:
            out[name] = a[:, k * H : (k + 1) * H].transpose(0, 2, 1)  # (T, B, H)
        else:
            out[name] = a[:, :, k * H : (k + 1) * H]  # (T, B, H)
    return out


def uniform(rng: np.random.Generator, shape: tuple[int, ...], scale: float, dtype) -> np.ndarray:
    return rng.uniform(-scale, scale, size=shape).astype(dtype)


class GateActivation:
    """σ on some H-row blocks of a fused, feature-major gate array (G·H, B) and tanh on the others.

    σ(x) = (1 + tanh(x/2)) / 2, so both are one tanh between a per-row scale and offset: four
    whole-array passes per step instead of one call per gate. `kinds` names each block: "s" for σ,
    "t" for tanh, e.g. "ssts" for the LSTM's i|f|g|o.
    """

    def __init__(self, kinds: str, H: int, dtype):
        sig = np.repeat(np.array([k == "s" for k in kinds]), H)[:, None]  # (GH, 1)
        self.scale = np.where(sig, 0.5, 1.0).astype(dtype)  # (GH, 1)
        self.offset = np.where(sig, 0.5, 0.0).astype(dtype)  # (GH, 1)
        self.is_sig = sig.astype(dtype)  # (GH, 1) 1 on σ rows, 0 on tanh rows

    _cache: dict = {}

    @classmethod
    def of(cls, kinds: str, H: int, dtype) -> "GateActivation":
        """Shared instances: the small per-row vectors are made once per shape."""
        key = (kinds, H, np.dtype(dtype).str)
        if key not in cls._cache:
            cls._cache[key] = cls(kinds, H, dtype)
        return cls._cache[key]

    def apply(self, a: np.ndarray) -> None:
        """a (GH, B) pre-activations -> activations, in place."""
        a *= self.scale
        np.tanh(a, out=a)
        a *= self.scale
        a += self.offset

    def derivative(self, s: np.ndarray) -> np.ndarray:
        """From outputs s (..., GH, B): σ' = s(1 - s) on σ rows, tanh' = 1 - s² on tanh rows,
        written once as s(m - s) + (1 - m) with m = 1 on σ rows."""
        d = self.is_sig - s  # (..., GH, B)
        d *= s
        d += 1.0 - self.is_sig
        return d
