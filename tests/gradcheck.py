"""One finite-difference gradient checker, used by every FD test.

``check_gradient(fun, theta, ...)`` compares ``grad^T v`` with the central
difference ``(f(theta + eps v) - f(theta - eps v)) / (2 eps)`` for random
directions ``v`` and for coordinate directions ``e_k``.  With ``eps = 1e-6``
the truncation error is ``O(eps^2)`` and the rounding error about
``1e-16 |f| / eps``, so a correct gradient agrees to about ``1e-9`` relative
while a wrong one (a missing factor, a transposed matrix, a wrong index) is off
by ``O(1)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]


@dataclass
class Check:
    """One directional derivative: analytic ``grad^T v`` against the central difference."""

    label: str
    analytic: float
    numeric: float

    @property
    def error(self) -> float:
        return abs(self.analytic - self.numeric)


def central_difference(f: Callable[[np.ndarray], float], theta: np.ndarray, v: np.ndarray,
                       eps: float) -> float:
    """``(f(theta + eps v) - f(theta - eps v)) / (2 eps)``."""
    return (f(theta + eps * v) - f(theta - eps * v)) / (2.0 * eps)


def layer_coordinates(net, m: int, k: int, rng: np.random.Generator) -> list[int]:
    """``k`` random positions of ``vec(W^m)`` and one of ``b^m`` inside ``theta``.

    The offsets are computed here from the shapes (``theta`` holds
    ``vec([W^m b^m])`` for each layer in turn), not read from the network.
    """
    start = 0
    for ly in net.layers[: m - 1]:
        rows, cols = ly.W_shape
        start += rows * (cols + 1)
    rows, cols = net.layers[m - 1].W_shape
    w_pos = rng.choice(rows * cols, size=min(k, rows * cols), replace=False)
    b_pos = rows * cols + int(rng.integers(rows))
    return [start + int(j) for j in w_pos] + [start + b_pos]


def check_gradient(fun: Objective, theta: np.ndarray, *, directions: int = 3,
                   coordinates: Iterable[int] = (), eps: float = 1e-6, rtol: float = 1e-6,
                   seed: int = 0) -> list[Check]:
    """Check ``fun(theta) = (f, grad)`` by central differences; raise AssertionError on a mismatch.

    Passes when ``|grad^T v - fd| <= rtol * max(|grad^T v|, |fd|) + atol`` with
    ``atol = 1e-8 max(1, |f|)`` (the rounding level of ``fd``) for every
    direction.  Also asserts that some checked derivative is far above
    ``atol``, so that a vanishing gradient cannot pass vacuously.
    """
    theta = np.asarray(theta, dtype=np.float64)
    f0, grad = fun(theta)
    grad = np.asarray(grad)
    assert grad.shape == theta.shape, f"gradient shape {grad.shape} != theta shape {theta.shape}"
    assert np.isfinite(f0) and np.isfinite(grad).all()
    rng = np.random.default_rng(seed)
    dirs: list[tuple[str, np.ndarray]] = []
    for j in range(directions):
        v = rng.standard_normal(theta.size)
        dirs.append((f"random direction {j}", v / np.linalg.norm(v)))
    for k in coordinates:
        e = np.zeros(theta.size)
        e[k] = 1.0
        dirs.append((f"coordinate {k}", e))

    def f_only(t: np.ndarray) -> float:
        return fun(t)[0]

    atol = 1e-8 * max(1.0, abs(f0))
    checks = [Check(label, float(grad @ v), central_difference(f_only, theta, v, eps)) for label, v in dirs]
    bad = [c for c in checks if c.error > rtol * max(abs(c.analytic), abs(c.numeric)) + atol]
    assert not bad, "gradient differs from central differences:\n" + "\n".join(
        f"  {c.label}: analytic {c.analytic!r}, numeric {c.numeric!r}, error {c.error:.3g}" for c in bad
    )
    assert max(abs(c.analytic) for c in checks) > 1e3 * atol, "all checked derivatives vanish"
    return checks


def coordinates_of_layers(net, layers: Sequence[int], k: int = 3, seed: int = 0) -> list[int]:
    """:func:`layer_coordinates` for several layers."""
    rng = np.random.default_rng(seed)
    return [j for m in layers for j in layer_coordinates(net, m, k, rng)]
