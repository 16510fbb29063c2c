"""Fitting a held-out real lung: full and partial noisy views, baselines, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dh.errors import DHError
from models.fitting import FitOptions, fit_points
from models.fitting.distance import point_to_surface


def _moved(points, rng):
    rot = Rotation.from_rotvec(rng.normal(size=3) * np.radians(8)).as_matrix()
    return points @ rot.T + rng.normal(size=3) * 20.0


def test_full_observation_fits_under_two_mm(lung_loo, rng):
    model, truth, _ = lung_loo
    world = _moved(truth, rng)
    fit = fit_points(world, "lungs", model=model, options=FitOptions())
    err = point_to_surface(fit.vertices, fit.faces, world).mean()
    assert err < 2.0
    assert fit.residual.mean_mm < 1.5
    assert fit.coeffs.shape == fit.coeffs_std.shape == (model.n_components,)
    assert fit.vertices.shape == (6006, 3) and fit.observed.mean() > 0.9
    baseline = fit_points(world, "lungs", model=model, options=FitOptions(use_shape=False))
    assert point_to_surface(baseline.vertices, baseline.faces, world).mean() > err


def test_partial_noisy_view_rejects_outliers(lung_loo, rng):
    model, truth, _ = lung_loo
    world = _moved(truth, rng)
    direction = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    height = (world - world.mean(0)) @ direction
    visible = height >= np.quantile(height, 0.6)
    observed = world[visible] + rng.normal(scale=1.0, size=(visible.sum(), 3))
    n_out = int(0.05 * len(observed))
    outliers = rng.uniform(world.min(0) - 20, world.max(0) + 20, size=(n_out, 3))
    points = np.vstack([observed, outliers])
    fit = fit_points(points, "lungs", model=model, options=FitOptions(max_points=len(points)))
    err = point_to_surface(fit.vertices, fit.faces, world)
    assert err[visible].mean() < 2.0
    assert err[~visible].mean() < 15.0
    assert fit.inlier_mask[-n_out:].mean() < 0.5  # most outliers rejected
    assert fit.vertex_std_mm[~visible].mean() > fit.vertex_std_mm[visible].mean()


@pytest.mark.parametrize(
    ("points", "match"),
    [
        (np.zeros((0, 3)), "at least"),
        (np.full((100, 3), np.nan), "NaN"),
    ],
)
def test_bad_point_sets_are_user_errors(lung_loo, points, match):
    model, _, _ = lung_loo
    with pytest.raises(DHError, match=match):
        fit_points(points, "lungs", model=model)


def test_metres_are_detected(lung_loo):
    model, truth, _ = lung_loo
    with pytest.raises(DHError, match="metres"):
        fit_points(truth / 1000.0, "lungs", model=model)


def test_unknown_structure_lists_known_ones(lung_loo):
    _, truth, _ = lung_loo
    with pytest.raises(DHError, match="femur_left"):
        fit_points(truth, "liver")
