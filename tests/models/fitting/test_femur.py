"""Femur: correspondence by template registration on three real femurs, then a partial fit."""

from __future__ import annotations

import numpy as np
import pytest

from models.fitting import FitOptions, fit_points
from models.fitting.distance import point_to_surface
from models.shape.align import generalised_procrustes
from models.shape.femur import build_correspondence, load_femurs
from models.shape.model import ShapeModel

SMALL = {
    "template_subject": "2008_0019_l",
    "template_vertices": 1500,
    "target_points": 3000,
    "sigmas_mm": [20.0, 10.0, 6.0],
    "iterations": 8,
    "step": 0.5,
    "seed": 0,
}


@pytest.mark.slow
def test_registered_femurs_fit_a_held_out_proximal_femur(raw_data, rng):
    femurs = load_femurs(raw_data)
    subset = {k: femurs[k] for k in ("2008_0019_l", "2008_0051_l", "2008_0158_l")}
    corr = build_correspondence(subset, SMALL)
    assert corr.shapes.shape == (3, corr.shapes.shape[1], 3)
    assert max(corr.residual_mm) < 2.0  # two-way mean distance to each surface

    aligned, _ = generalised_procrustes(corr.shapes[:2])
    model = ShapeModel.from_shapes(aligned, corr.faces, "femur_left")
    held_out = femurs["2007_5028_l"]
    verts = np.asarray(held_out.vertices)
    top = verts[:, 2] >= np.quantile(verts[:, 2], 0.6)  # proximal 40%: head, neck, trochanters
    points = verts[top] + rng.normal(scale=1.0, size=(int(top.sum()), 3))
    fit = fit_points(points, "femur_left", model=model, options=FitOptions())
    err = point_to_surface(fit.vertices, fit.faces, verts)
    assert err[top].mean() < 2.0
    assert err[~top].mean() < 15.0
