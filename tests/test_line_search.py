"""Newton step 3, the line search: ``alpha = 1, 1/2, ...`` until ``f(theta + alpha d) - f(theta) <= eta alpha gs``.

The problems here make the sufficient-decrease rule decide: the full step overshoots,
so ``alpha = 1`` is rejected, and the accepted ``alpha`` and the number of trials
follow from the rule alone.  On ``f = theta^T theta`` (gradient ``2 theta``) with
``G = c I`` and ``lambda = 0`` (``C = inf``), CG gives ``d = -(2/c) theta``,
``gs = d^T g = -(4/c) |theta|^2`` and ``f(theta + alpha d) = (1 - 2 alpha/c)^2 |theta|^2``,
so the rule accepts exactly when ``alpha <= c (1 - eta)``.  The expected values below
are worked out from that formula, not read from a run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sparsecnn.optim.newton import newton_loop


class Quadratic:
    """``f(theta) = theta^T theta`` with ``G_S = c I`` for every subsample."""

    def __init__(self, c: float) -> None:
        self.c = c
        self.evaluations: list[np.ndarray] = []

    @property
    def l(self) -> int:
        return 1

    def objective(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        self.evaluations.append(theta.copy())
        return float(theta @ theta), 2.0 * theta

    def f(self, theta: np.ndarray) -> float:
        self.evaluations.append(theta.copy())
        return float(theta @ theta)

    def gauss_newton(self, theta: np.ndarray, idx: np.ndarray) -> Any:
        c = self.c

        class G:
            @staticmethod
            def matvec(v: np.ndarray) -> np.ndarray:
                return c * v

        return G()


def one_iteration(c: float, eta: float, trial_gradient: bool = True, max_ls_steps: int = 60
                  ) -> tuple[float, int, float, Quadratic]:
    problem = Quadratic(c)
    theta0 = np.array([1.0, -2.0, 0.5])
    theta, hist = newton_loop(problem, None, theta0, C=np.inf, iter_max=1, lam=0.0,  # type: ignore[arg-type]
                              eta=eta, seed=0, trial_gradient=trial_gradient, max_ls_steps=max_ls_steps)
    return hist.step[0], hist.extra["ls_steps"][0], hist.f[0], problem


def accepted_alpha(c: float, eta: float) -> tuple[float, int]:
    """The first of 1, 1/2, 1/4, ... with alpha <= c (1 - eta), and its trial number."""
    alpha, trials = 1.0, 1
    while alpha > c * (1 - eta):
        alpha, trials = alpha / 2, trials + 1
    return alpha, trials


@pytest.mark.parametrize("trial_gradient", [True, False])
def test_line_search_rejects_the_overshooting_full_step_issue_example(trial_gradient: bool) -> None:
    """``G = 0.4 I``: alpha = 1 gives f = 16 |theta|^2, 1/2 gives 2.25 |theta|^2 (both rejected),
    1/4 gives 0.0625 |theta|^2 (accepted): three trials."""
    alpha, trials, f, problem = one_iteration(0.4, 1e-4, trial_gradient)
    assert (alpha, trials) == (0.25, 3) == accepted_alpha(0.4, 1e-4)
    norm2 = 1.0 + 4.0 + 0.25
    assert f == pytest.approx((1 - 2 * 0.25 / 0.4) ** 2 * norm2, rel=1e-14)
    trial_points = problem.evaluations[1:4]               # after f(theta_0): the three trials
    d = -(2 / 0.4) * np.array([1.0, -2.0, 0.5])
    for k, point in enumerate(trial_points):
        np.testing.assert_allclose(point, np.array([1.0, -2.0, 0.5]) + 0.5**k * d, rtol=1e-14)


def test_line_search_sign_of_eta_alpha_gs() -> None:
    """``G = 0.5 I``: at alpha = 1/2, ``theta + alpha d = -theta``, so ``actred = 0`` exactly, which
    ``actred <= eta alpha gs`` (``gs < 0``) rejects and a flipped sign (``<= -eta alpha gs``) would accept.
    So the rule gives alpha = 1/4 after three trials."""
    alpha, trials, f, _ = one_iteration(0.5, 1e-4)
    assert (alpha, trials) == (0.25, 3) == accepted_alpha(0.5, 1e-4)
    assert f == pytest.approx(0.0)                        # (1 - 2 * 0.25 / 0.5)^2 = 0


def test_line_search_needs_alpha_in_the_decrease_term() -> None:
    """``eta = 0.1``, ``G = 0.4 I``: the rule accepts alpha <= 0.36, so alpha = 1/4 at the third trial.
    Without ``alpha`` in ``eta alpha gs`` the condition would be ``t^2 - 2t + 4 eta/c <= 0``, ``t = 2 alpha/c``,
    i.e. only ``t = 1`` (``alpha = 0.2``), which no halving of 1 reaches."""
    alpha, trials, _, _ = one_iteration(0.4, 0.1, max_ls_steps=8)
    assert (alpha, trials) == (0.25, 3) == accepted_alpha(0.4, 0.1)


def test_line_search_accepts_exactly_up_to_c_times_one_minus_eta() -> None:
    """Across c, the accepted alpha is the first power of 1/2 not above c (1 - eta)."""
    for c in (0.3, 0.45, 0.7, 0.99):
        for eta in (1e-4, 0.2):
            alpha, trials, _, _ = one_iteration(c, eta)
            assert (alpha, trials) == accepted_alpha(c, eta), (c, eta)
