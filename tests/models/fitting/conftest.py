"""A lung shape model built without one held-out subject, and that subject's surface."""

from __future__ import annotations

import pytest

from models.shape.align import generalised_procrustes
from models.shape.lungs import load_lungs, triangulate_star
from models.shape.model import ShapeModel


@pytest.fixture(scope="session")
def lung_loo(raw_data):
    """(model from subjects 1..36, held-out subject 0 points (6006, 3) mm, its faces)."""
    _, shapes = load_lungs(raw_data)
    aligned, _ = generalised_procrustes(shapes)
    faces = triangulate_star(aligned.mean(axis=0))
    model = ShapeModel.from_shapes(aligned[1:], faces, "lungs")
    model.meta["axes"] = "LPS"
    return model, shapes[0], faces
