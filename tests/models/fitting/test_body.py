"""Fit the anny skin to a scan of a generated body (1 mm noise, 5% outliers) from the mean."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from tests.models.population.test_generate import model_dir  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow  # loads the population generator and fits two bodies

TRUTH = {"sex": "F", "age_years": 35, "stature_mm": 1620, "weight_kg": 55}
SHIFT_MM = np.array([30.0, -20.0, 15.0])


@pytest.fixture(scope="module")
def generator(request):
    from models.population.generate import MODEL_DIR, Generator

    if (MODEL_DIR / "population.npz").exists():
        return Generator()
    return Generator(*request.getfixturevalue("model_dir"))


def scan_of(skin: trimesh.Trimesh, rng: np.random.Generator, front: bool) -> np.ndarray:
    """Area-uniform samples, 1 mm noise, 5% outliers in the enlarged box, shifted; mm."""
    pts, _ = trimesh.sample.sample_surface(skin, 8000, seed=1)
    pts = pts + rng.normal(0.0, 1.0, pts.shape)
    if front:
        pts = pts[pts[:, 1] > np.median(pts[:, 1])]
    lo, hi = skin.bounds
    out = rng.uniform(lo - 50, hi + 50, (int(0.05 * len(pts)), 3))
    return np.vstack([pts, out]) + SHIFT_MM


@pytest.mark.parametrize(("front", "bound_mm"), [(False, 2.0), (True, 3.5)])
def test_fit_body_to_scan(generator, rng, front, bound_mm):
    from models.fitting.body import fit_body
    from models.fitting.distance import point_to_surface

    truth = generator.generate(TRUTH, with_organs=False)
    fit = fit_body(scan_of(truth.skin, rng, front), generator, n_iter=200)
    err = point_to_surface(fit.skin.vertices, fit.skin.faces, truth.skin.vertices + SHIFT_MM)
    start = generator.body.mesh(fit.start_params)
    err0 = point_to_surface(start.vertices, start.faces, truth.skin.vertices)
    assert err.mean() < bound_mm < err0.mean()
    assert fit.residual_mean_mm < bound_mm + 1.0  # includes the 1 mm noise
    assert fit.vertex_residual_mm.shape == (len(truth.skin.vertices),)
    assert np.all(fit.params >= generator.body.lower) and np.all(fit.params <= generator.body.upper)
    if not front:
        d_fit = np.linalg.norm(fit.params - truth.body_params)
        assert d_fit < np.linalg.norm(fit.start_params - truth.body_params)


def test_dh_fit_skin_cli(generator, rng, tmp_path):
    """`dh fit scan.csv --structure skin --axes LPS` writes skin.vtp and fit.json."""
    import json

    from typer.testing import CliRunner

    from dh.cli import app
    from models.fitting.distance import point_to_surface
    from models.meshio import read_mesh

    truth = generator.generate(TRUTH, with_organs=False)
    scan = scan_of(truth.skin, rng, False) * np.array([-1.0, -1.0, 1.0])  # RAS -> LPS
    np.savetxt(tmp_path / "scan.csv", scan, delimiter=",", header="x,y,z", comments="")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["fit", str(tmp_path / "scan.csv"), "-s", "skin", "--axes", "LPS", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "fit.json").read_text())
    assert doc["structure"] == "skin" and doc["residual_mean_mm"] < 3.0
    skin = read_mesh(out / "skin.vtp")
    truth_lps = (truth.skin.vertices + SHIFT_MM) * np.array([-1.0, -1.0, 1.0])
    assert point_to_surface(skin.vertices, skin.faces, truth_lps).mean() < 3.0  # in LPS again
