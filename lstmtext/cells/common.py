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


def uniform(rng: np.random.Generator, shape: tuple[int, ...], scale: float, dtype) -> np.ndarray:
    return rng.uniform(-scale, scale, size=shape).astype(dtype)
