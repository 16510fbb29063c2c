"""A joint Gaussian per sex over features and body-shape parameters, learned with missing values.

Each sex has its own mean and covariance over the vector ``[features, body parameters]``
(features in catalogue units, body parameters as in :mod:`models.body.anny_body`). Rows may
miss any entry: ANSUR II subjects have ~95 measurements and no blood pressure; NHANES
subjects have blood pressure and eight measurements; only the fitted ANSUR subjects carry
body parameters. The parameters are estimated by expectation-maximisation (EM) for a
Gaussian with data missing at random, grouping rows by missingness pattern. Conditioning on
any subset of entries is then closed form; without a given sex, the two sexes form a
two-component mixture weighted by how well each explains the given values.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)


@dataclass
class Gaussian:
    """Mean `(d,)` and covariance `(d, d)` in original units."""

    mean: np.ndarray
    cov: np.ndarray


@dataclass
class Conditional:
    """A conditional Gaussian over the entries not given.

    Attributes:
        index: `(k,)` indices of the free entries in the joint vector.
        mean: `(k,)` conditional mean.
        cov: `(k, k)` conditional covariance.
        log_evidence: log density of the given values under the component's marginal.
    """

    index: np.ndarray
    mean: np.ndarray
    cov: np.ndarray
    log_evidence: float


def fit_gaussian_em(
    x: np.ndarray, n_iter: int = 50, ridge: float = 1e-4, tol: float = 1e-6
) -> Gaussian:
    """Maximum-likelihood Gaussian of rows with missing values (NaN) by EM.

    Args:
        x: `(n, d)` data, NaN where missing; every column needs some observed values.
        n_iter: EM iterations at most.
        ridge: added to the diagonal of the standardised covariance at each M-step.
        tol: stop when the largest change of the standardised mean or covariance is below this.

    Returns:
        The Gaussian in the units of `x`.
    """
    loc = np.nanmean(x, axis=0)
    scale = np.nanstd(x, axis=0)
    scale[~np.isfinite(scale) | (scale == 0)] = 1.0
    z = (x - loc) / scale
    obs = np.isfinite(z)
    patterns, inverse = np.unique(obs, axis=0, return_inverse=True)
    d = z.shape[1]
    mu = np.zeros(d)
    cov = np.eye(d)
    it = 0
    for it in range(n_iter):  # noqa: B007 (reported after the loop)
        s1 = np.zeros(d)
        s2 = np.zeros((d, d))
        for k, pat in enumerate(patterns):
            rows = z[inverse.ravel() == k]
            o, m = np.flatnonzero(pat), np.flatnonzero(~pat)
            filled = np.empty_like(rows)
            filled[:, o] = rows[:, o]
            c_mm = np.zeros((len(m), len(m)))
            if len(m):
                gain = np.linalg.solve(cov[np.ix_(o, o)], cov[np.ix_(o, m)]).T  # (m, o)
                filled[:, m] = mu[m] + (rows[:, o] - mu[o]) @ gain.T
                c_mm = cov[np.ix_(m, m)] - gain @ cov[np.ix_(o, m)]
            s1 += filled.sum(0)
            s2 += filled.T @ filled
            s2[np.ix_(m, m)] += len(rows) * c_mm
        n = len(z)
        new_mu = s1 / n
        new_cov = s2 / n - np.outer(new_mu, new_mu) + ridge * np.eye(d)
        shift = max(np.abs(new_mu - mu).max(), np.abs(new_cov - cov).max())
        mu, cov = new_mu, new_cov
        if shift < tol:
            break
    logger.info("EM stopped after %d iterations (last change %.2e)", it + 1, shift)
    return Gaussian(loc + mu * scale, cov * np.outer(scale, scale))


def condition(g: Gaussian, given: dict[int, float]) -> Conditional:
    """Condition `g` on entries `given` (index -> value).

    Returns:
        The conditional over every other entry, and the log marginal density of the given
        values (for weighting mixture components).
    """
    d = len(g.mean)
    o = np.array(sorted(given), dtype=int)
    m = np.setdiff1d(np.arange(d), o)
    if len(o) == 0:
        return Conditional(m, g.mean.copy(), g.cov.copy(), 0.0)
    xo = np.array([given[i] for i in o])
    s_oo = g.cov[np.ix_(o, o)]
    s_om = g.cov[np.ix_(o, m)]
    gain = np.linalg.solve(s_oo, s_om).T
    r = xo - g.mean[o]
    mean = g.mean[m] + gain @ r
    cov = g.cov[np.ix_(m, m)] - gain @ s_om
    sign, logdet = np.linalg.slogdet(s_oo)
    log_ev = -0.5 * (r @ np.linalg.solve(s_oo, r) + logdet + len(o) * np.log(2 * np.pi))
    return Conditional(m, mean, 0.5 * (cov + cov.T), float(log_ev))


def linear_map(g: Gaussian, given: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The conditional mean as an affine map of the given entries.

    Args:
        g: the Gaussian.
        given: `(k,)` indices of the entries that will be given.

    Returns:
        `(free, offset, weight)`: free indices `(m,)`, and `mean_free = offset + x_given @
        weight` with offset `(m,)` and weight `(k, m)`.
    """
    o = np.asarray(given, dtype=int)
    m = np.setdiff1d(np.arange(len(g.mean)), o)
    weight = np.linalg.solve(g.cov[np.ix_(o, o)], g.cov[np.ix_(o, m)])  # (k, m)
    offset = g.mean[m] - g.mean[o] @ weight
    return m, offset, weight
