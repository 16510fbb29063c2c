"""POST /fit: points, a mesh or landmarks of one structure (plus features) -> fitted model.

The shape models registered as `serving.models.fit` (one `<structure>.npz` per structure,
:class:`models.shape.model.ShapeModel`) are fitted with :func:`models.fitting.fit_points`.
Each fit is kept in memory under its `fit_id` (the most recent `FIT_CACHE_SIZE`) so that
/simulate can use it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import bentoml
import numpy as np
from pydantic import Field

from dh.errors import fail
from serving.common import ServedModel, load_served_model, require, user_errors
from serving.schemas import (
    MAX_POINTS,
    FeaturePrediction,
    Features,
    FitResponse,
    Mesh,
    ModelRef,
    Point,
    Residuals,
    mesh_out,
)

logger = logging.getLogger(__name__)

CONCERN = "fit"
FIT_CACHE_SIZE = 256


@dataclass
class StoredFit:
    """A fit kept for /simulate: structure, fitted surface (world mm) and coefficients."""

    structure: str
    vertices: np.ndarray  # (n_vertices, 3)
    faces: np.ndarray  # (n_faces, 3)
    coefficients: np.ndarray  # (n_components,)
    model_tag: str


class FitCache:
    """The most recent fits by id (thread-safe, least recently used dropped first)."""

    def __init__(self, size: int = FIT_CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[str, StoredFit] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, fit: StoredFit) -> str:
        fit_id = uuid.uuid4().hex
        with self._lock:
            self._items[fit_id] = fit
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return fit_id

    def get(self, fit_id: str) -> StoredFit | None:
        with self._lock:
            fit = self._items.get(fit_id)
            if fit is not None:
                self._items.move_to_end(fit_id)
            return fit


FITS = FitCache()


def _open(model: ServedModel) -> None:
    from models.shape.model import ShapeModel

    model.handle = {
        p.stem: ShapeModel.load(p) for p in sorted(model.path.glob("*.npz")) if p.stem != "arrays"
    }
    model.providers = {}  # shape-model fitting is numpy/scipy; no ONNX session


def _warmup(model: ServedModel) -> None:
    from models.fitting import fit_points

    for name, shape in model.handle.items():
        fit_points(shape.mean[::4], name, model=shape, source="warm-up")


def fit_structure(
    served: ServedModel,
    structure: str,
    points: np.ndarray,
    landmarks: dict[str, np.ndarray] | None = None,
    axes: str = "LPS",
) -> Any:
    """:func:`models.fitting.fit_points` with the served shape model of `structure`."""
    from models.fitting import fit_points

    if structure not in served.handle:
        fail(
            "request",
            "structure",
            structure,
            f"one of {sorted(served.handle)}",
            "name the structure the points show",
        )
    return fit_points(
        points, structure, axes, landmarks, model=served.handle[structure], source="request"
    )


class FitAPI:
    """The shape models behind /fit."""

    CONCERN = CONCERN

    def setup(self) -> None:
        load_served_model(CONCERN, open_model=_open, warmup=_warmup)

    @bentoml.api(route="/fit")
    @user_errors
    def fit(
        self,
        structure: Annotated[str, Field(max_length=64, json_schema_extra={"example": "lungs"})],
        points: Annotated[list[Point] | None, Field(max_length=MAX_POINTS)] = None,
        mesh: Mesh | None = None,
        landmarks: Annotated[dict[str, Point] | None, Field(max_length=200)] = None,
        features: Features | None = None,
        axes: Literal["LPS", "RAS", "any"] = "LPS",
    ) -> FitResponse:
        """Fit the structure's shape model to surface points (world mm) and return residuals.

        Give `points` (surface points), or a `mesh` (its vertices are used), or only
        `landmarks` (name -> position); landmarks given with points anchor the fit. `axes`
        is the frame convention of the input ("any" searches all orientations). Features
        (catalogue names and units) are checked and returned with the shape features.
        """
        from dh.cohort import check_feature_values
        from models.fitting.api import shape_features

        served = require(CONCERN)
        if features:
            check_feature_values(features)
        lms = {k: np.asarray(v, dtype=float) for k, v in (landmarks or {}).items()} or None
        if points:
            observed = np.asarray(points, dtype=float)
        elif mesh is not None:
            observed = np.asarray(mesh.vertices, dtype=float)
        elif lms:
            observed = np.stack(list(lms.values()))
        else:
            fail("request", "points", "none", "points, a mesh or landmarks", "send one of them")

        result = fit_structure(served, structure, observed, lms, axes)
        shape = served.handle[structure]
        estimates = {
            f.name: FeaturePrediction(mean=f.value, sd=f.std)
            for f in shape_features(shape, result, 30)
        }
        for name, value in (features or {}).items():
            if name not in estimates and not isinstance(value, str):
                estimates[name] = FeaturePrediction(mean=float(value), sd=0.0)
        fit_id = FITS.put(
            StoredFit(structure, result.vertices, result.faces, result.coeffs, served.tag)
        )
        name, _, version = served.tag.partition(":")
        return FitResponse(
            fit_id=fit_id,
            model=ModelRef(name=name, version=version),
            structure=structure,
            coefficients=result.coeffs.tolist(),
            coefficient_sd=result.coeffs_std.tolist(),
            features=estimates,
            mesh=mesh_out(structure, result.vertices, result.faces, f"input frame ({axes}) mm"),
            residuals=Residuals(
                mean_mm=result.residual.mean_mm,
                p95_mm=result.residual.p95_mm,
                hausdorff_mm=result.residual.hausdorff_mm,
                per_point_mm=np.round(result.vertex_residual_mm, 3).tolist(),
            ),
            seconds=round(result.seconds, 3),
        )
