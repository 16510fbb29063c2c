"""The EM Gaussian with missing values, conditioning and the ONNX conditional mean."""

from __future__ import annotations

import numpy as np
import pytest

from models.population.gaussian import Gaussian, condition, fit_gaussian_em, linear_map

COLUMNS = ["stature_mm", "weight_kg", "chest_circumference_mm", "waist_circumference_mm",
           "crotch_height_mm", "foot_length_mm"]  # fmt: skip


@pytest.fixture(scope="module")
def ansur_men(raw_data) -> np.ndarray:
    from dh.cohort import load_subjects

    t = load_subjects(raw_data)
    t = t[(t["dataset"] == "ansur2") & (t["sex"] == "M")]
    return t[COLUMNS].to_numpy(float)


def test_em_recovers_complete_data_estimates_under_missingness(ansur_men, rng):
    full = Gaussian(ansur_men.mean(0), np.cov(ansur_men.T, bias=True))
    x = ansur_men.copy()
    x[rng.random(x.shape) < 0.3] = np.nan  # 30 % missing completely at random
    x[:, 0] = ansur_men[:, 0]  # stature always present
    g = fit_gaussian_em(x, n_iter=100, ridge=0.0)
    sd = np.sqrt(np.diag(full.cov))
    assert np.all(np.abs(g.mean - full.mean) < 0.05 * sd)
    corr_full = full.cov / np.outer(sd, sd)
    sd_g = np.sqrt(np.diag(g.cov))
    assert np.abs(g.cov / np.outer(sd_g, sd_g) - corr_full).max() < 0.05
    # a naive estimate on complete rows only would use ~ 0.7^5 of the rows: EM uses all
    assert np.isfinite(g.cov).all()


def test_condition_matches_least_squares_regression(ansur_men):
    g = Gaussian(ansur_men.mean(0), np.cov(ansur_men.T, bias=True))
    given = {0: 1800.0, 1: 90.0}
    c = condition(g, given)
    design = np.c_[np.ones(len(ansur_men)), ansur_men[:, :2]]
    beta, *_ = np.linalg.lstsq(design, ansur_men[:, 2:], rcond=None)
    expected = np.array([1.0, 1800.0, 90.0]) @ beta
    np.testing.assert_allclose(c.mean, expected, rtol=1e-6)
    assert list(c.index) == [2, 3, 4, 5]
    # conditioning shrinks every variance
    assert np.all(np.diag(c.cov) < np.diag(g.cov)[2:])
    free, offset, weight = linear_map(g, np.array([0, 1]))
    np.testing.assert_allclose(offset + np.array([1800.0, 90.0]) @ weight, c.mean, rtol=1e-9)


def test_condition_on_nothing_is_the_prior(ansur_men):
    g = Gaussian(ansur_men.mean(0), np.cov(ansur_men.T))
    c = condition(g, {})
    np.testing.assert_allclose(c.mean, g.mean)
    assert c.log_evidence == 0.0
