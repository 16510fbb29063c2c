"""ShapeModel: PCA, instances, projection, posterior and npz round trip on real lung shapes."""

from __future__ import annotations

import numpy as np
import pytest

from models.shape.align import generalised_procrustes
from models.shape.lungs import load_lungs, triangulate_star
from models.shape.model import ShapeModel


@pytest.fixture(scope="module")
def lung_shapes(raw_data):
    ids, shapes = load_lungs(raw_data)
    aligned, _ = generalised_procrustes(shapes[:12])
    return ids[:12], aligned


@pytest.fixture(scope="module")
def lung_model(lung_shapes):
    ids, aligned = lung_shapes
    faces = triangulate_star(aligned.mean(axis=0))
    return ShapeModel.from_shapes(aligned[1:], faces, "lungs", subject_ids=ids[1:])


def test_pca_reconstructs_training_shapes(lung_model, lung_shapes):
    _, aligned = lung_shapes
    assert lung_model.n_components == 10  # 11 shapes -> 10 modes
    comps = lung_model.components.reshape(lung_model.n_components, -1)
    np.testing.assert_allclose(comps @ comps.T, np.eye(10), atol=1e-8)
    coeffs = lung_model.project(aligned[3])
    np.testing.assert_allclose(lung_model.instance(coeffs), aligned[3], atol=1e-6)
    assert np.allclose(lung_model.instance(), lung_model.mean)


def test_posterior_with_all_points_and_low_noise_matches_projection(lung_model, lung_shapes):
    _, aligned = lung_shapes
    ids = np.arange(lung_model.n_vertices)
    post = lung_model.posterior(ids, aligned[0], noise_std=0.01)
    np.testing.assert_allclose(post.mean, lung_model.project(aligned[0]), atol=1e-3)
    assert np.all(post.std < 0.01)


def test_posterior_from_few_points_is_uncertain(lung_model, lung_shapes, rng):
    _, aligned = lung_shapes
    ids = rng.choice(lung_model.n_vertices, 3, replace=False)
    post = lung_model.posterior(ids, aligned[0][ids], noise_std=10.0)
    assert np.all(post.std <= 1.0 + 1e-9)
    assert post.std.max() > 0.5


def test_save_load_round_trip(lung_model, tmp_path):
    lung_model.landmarks = {"apex": 3}
    path = lung_model.save(tmp_path / "lungs.npz")
    loaded = ShapeModel.load(path)
    assert loaded.structure == "lungs"
    assert loaded.landmarks == {"apex": 3}
    np.testing.assert_array_equal(loaded.faces, lung_model.faces)
    np.testing.assert_allclose(loaded.instance([1.0, -2.0]), lung_model.instance([1.0, -2.0]))


def test_samples_stay_near_training_range(lung_model, lung_shapes, rng):
    _, aligned = lung_shapes
    samples = lung_model.sample(5, rng)
    assert samples.shape == (5, lung_model.n_vertices, 3)
    spread = np.abs(aligned - aligned.mean(0)).max()
    assert np.abs(samples - lung_model.mean).max() < 3 * spread


def test_load_missing_file_is_a_user_error(tmp_path):
    from dh.errors import DHError

    with pytest.raises(DHError, match="missing file"):
        ShapeModel.load(tmp_path / "nope.npz")
