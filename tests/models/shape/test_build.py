"""Building and loading structure models through `load_structure_model`."""

from __future__ import annotations

import numpy as np
import pytest

from dh.errors import DHError
from models.shape import ShapeModel, load_structure_model
from models.shape.metrics import evaluate


def test_unknown_structure_lists_the_known_ones():
    with pytest.raises(DHError, match="femur_left"):
        load_structure_model("spleen")


def test_lung_model_is_built_when_missing_and_then_loaded(raw_data, tmp_path):
    model = load_structure_model("lungs", directory=tmp_path)
    assert (tmp_path / "lungs.npz").is_file()
    assert model.n_vertices == 6006 and model.n_components == 36
    again = ShapeModel.load(tmp_path / "lungs.npz")
    np.testing.assert_allclose(again.instance([1.0]), model.instance([1.0]))


def test_metrics_are_consistent_on_a_small_lung_model(raw_data):
    from models.shape.align import generalised_procrustes
    from models.shape.lungs import load_lungs, triangulate_star

    _, shapes = load_lungs(raw_data)
    aligned, _ = generalised_procrustes(shapes[:8])
    model = ShapeModel.from_shapes(aligned, triangulate_star(aligned.mean(0)), "lungs")
    m = evaluate(model, aligned, n_samples=20, seed=0)
    assert m.compactness[-1] == pytest.approx(1.0)
    assert all(
        a >= b - 1e-9
        for a, b in zip(m.generalisation_mm[:-1], m.generalisation_mm[1:], strict=True)
    )
    assert 0 < m.generalisation_nearest_mm < m.generalisation_all_modes_mm
    assert m.specificity_mm > 0


def test_right_femur_model_mirrors_the_left(raw_data):
    from models.shape.build import mirror_model

    left = ShapeModel.from_shapes(
        np.random.default_rng(0).normal(size=(3, 4, 3)),
        np.array([[0, 1, 2], [0, 2, 3]]),
        "femur_left",
    )
    right = mirror_model(left, "femur_right")
    np.testing.assert_allclose(right.instance([0.5])[:, 0], -left.instance([0.5])[:, 0])
    np.testing.assert_allclose(right.instance([0.5])[:, 1:], left.instance([0.5])[:, 1:])
    assert right.faces[0].tolist() == [2, 1, 0]
