"""Fitting entry points: one structure from points, a whole subject, and the output folder.

`fit_points(points_mm, structure)` is what services call; `fit_subject(inputs)` fits every
observed structure; `write_fit_outputs(...)` writes the folder `dh simulate` reads:
`fit.json`, `<structure>.vtp` (fitted mesh, world mm, the input's frame, with per-vertex
`residual_mm` and `std_mm`) and `<structure>_residual.png`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dh.config import load_params
from models.fitting.core import FitOptions, FitResult, fit_model
from models.fitting.inputs import SubjectInputs, check_points, check_units
from models.shape.build import check_structure
from models.shape.model import ShapeModel

logger = logging.getLogger(__name__)

_AXIS_FLIP = {("LPS", "RAS"), ("RAS", "LPS")}


@dataclass
class FeatureEstimate:
    """A feature measured on the fitted structure, with its posterior spread.

    Attributes:
        name: feature name (e.g. "lungs_volume_ml").
        value: value on the fitted (posterior mean) shape.
        std: standard deviation over shapes drawn from the coefficient posterior.
        unit: unit of value and std.
        given: the value the user supplied for this feature, if any.
    """

    name: str
    value: float
    std: float
    unit: str
    given: float | None = None


@dataclass
class SubjectFit:
    """All structures fitted for one subject.

    Attributes:
        fits: structure name -> fit.
        features: estimates of shape-derived features, plus user-given features.
        seconds: total wall time, s.
    """

    fits: dict[str, FitResult]
    features: list[FeatureEstimate] = field(default_factory=list)
    seconds: float = 0.0


def orientation_for(model: ShapeModel, axes: str) -> np.ndarray | None:
    """Rotation model frame -> input frame implied by axis conventions (None if unknown)."""
    model_axes = model.meta.get("axes", "LPS")
    if axes == "any":
        return None
    if (model_axes, axes) in _AXIS_FLIP:
        return np.diag([-1.0, -1.0, 1.0])
    return np.eye(3)


def fit_points(
    points_mm: np.ndarray,
    structure: str,
    axes: str = "LPS",
    landmarks: dict[str, np.ndarray] | None = None,
    options: FitOptions | None = None,
    model: ShapeModel | None = None,
    source: str = "points",
) -> FitResult:
    """Fit one structure's shape model to surface points.

    Args:
        points_mm: `(n, 3)` surface points, world mm.
        structure: "lungs" or "femur_left".
        axes: the points' axis convention, "LPS", "RAS" or "any" (search all orientations).
        landmarks: optional name -> world position (mm) of the model's named landmarks.
        options: fit options (default: params.yaml `fitting`).
        model: the shape model (default: `load_structure_model(structure)`).
        source: name of the input, for error messages.

    Raises:
        DHError: unknown structure or landmark, too few points, NaN, or wrong units.
    """
    from dh.errors import fail
    from models.shape import load_structure_model

    check_structure(structure)
    model = model or load_structure_model(structure)
    points = check_points(points_mm, source)
    check_units(points, float(np.linalg.norm(np.ptp(model.mean, axis=0))), source)
    for name in landmarks or {}:
        if name not in model.landmarks:
            fail(
                source,
                "landmark",
                name,
                f"one of {sorted(model.landmarks)} for {structure}",
                "rename the landmark or leave it out",
            )
    opts = options or FitOptions.from_params(load_params("fitting"))
    return fit_model(model, points, opts, landmarks, orientation_for(model, axes))


def fit_subject(
    inputs: SubjectInputs,
    options: FitOptions | None = None,
    models: dict[str, ShapeModel] | None = None,
) -> SubjectFit:
    """Fit every observed structure of a subject and estimate shape-derived features.

    Args:
        inputs: the subject's checked inputs.
        options: fit options (default: params.yaml `fitting`).
        models: structure -> shape model to use instead of the built one (e.g. a model
            built without this subject, for a held-out demonstration).
    """
    from models.shape import load_structure_model

    t0 = time.perf_counter()
    fits, features = {}, []
    params = load_params("fitting")
    for name, obs in inputs.observations.items():
        model = (models or {}).get(name) or load_structure_model(name)
        lms = {k: v for k, v in inputs.landmarks.items() if k in model.landmarks}
        fit = fit_points(obs.points, name, obs.axes, lms, options, model, obs.source)
        fits[name] = fit
        features += shape_features(model, fit, int(params.get("feature_samples", 30)))
    known = {f.name for f in features}
    for f in features:
        f.given = inputs.features.get(f.name)
    for name, value in inputs.features.items():
        if name not in known:  # passed through; the structure models do not measure it
            features.append(FeatureEstimate(name, value, 0.0, "as given", value))
    return SubjectFit(fits, features, time.perf_counter() - t0)


def shape_features(model: ShapeModel, fit: FitResult, n_samples: int) -> list[FeatureEstimate]:
    """Volume (ml) and length along the mean's long axis (mm) of the fitted structure.

    The spread comes from shapes drawn from the coefficient posterior (shape model part only;
    the bounded refinement is not resampled).
    """
    rng = np.random.default_rng(0)
    axis = _long_axis(model.mean)
    chol = np.linalg.cholesky(np.diag(fit.coeffs_std**2) + 1e-12 * np.eye(len(fit.coeffs)))
    draws = fit.coeffs + rng.standard_normal((n_samples, len(fit.coeffs))) @ chol.T
    scale = fit.pose.scale
    local = fit.pose.inverse().apply(fit.vertices)
    vol = [_volume(model.instance(b), model.faces) * scale**3 / 1000.0 for b in draws]
    length = [float(np.ptp(model.instance(b) @ axis)) * scale for b in draws]
    return [
        FeatureEstimate(
            f"{model.structure}_volume_ml",
            _volume(local, model.faces) * scale**3 / 1000.0,
            float(np.std(vol)),
            "ml",
        ),
        FeatureEstimate(
            f"{model.structure}_length_mm",
            float(np.ptp(local @ axis)) * scale,
            float(np.std(length)),
            "mm",
        ),
    ]


def write_fit_outputs(result: SubjectFit, inputs: SubjectInputs, out_dir: Path) -> Path:
    """Write fit.json, `<structure>.vtp` and `<structure>_residual.png` into `out_dir`."""
    from models.meshio import write_vtp
    from models.render import render_meshes

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "structures": {},
        "features": [f.__dict__ for f in result.features],
        "seconds": round(result.seconds, 3),
        "inputs": [{"path": str(p), "sha256": _sha256(p)} for p in inputs.files],
        "frame": "world mm, the frame of the inputs (label maps: RAS)",
    }
    for name, fit in result.fits.items():
        mesh = fit.mesh
        write_vtp(
            mesh,
            out_dir / f"{name}.vtp",
            {"residual_mm": fit.vertex_residual_mm, "std_mm": fit.vertex_std_mm},
        )
        clip = float(max(3.0, np.percentile(fit.vertex_residual_mm[fit.observed], 95)))
        render_meshes(
            {name: mesh},
            out_dir / f"{name}_residual.png",
            scalars={name: np.minimum(fit.vertex_residual_mm, clip)},
            scalar_title="distance to data (mm)",
            clim=(0.0, clip),
            title=f"{name}: residual mean {fit.residual.mean_mm:.2f} mm; "
            f"{fit.observed.mean():.0%} of the surface observed (top of scale = unobserved)",
        )
        doc["structures"][name] = {
            "mesh": f"{name}.vtp",
            "residual_png": f"{name}_residual.png",
            "coefficients": [float(c) for c in fit.coeffs],
            "coefficients_std": [float(c) for c in fit.coeffs_std],
            "pose_model_to_world": fit.pose.to_matrix().tolist(),
            "scale": float(fit.pose.scale),
            "residual_mm": fit.residual.__dict__,
            "observed_vertex_fraction": float(fit.observed.mean()),
            "vertex_std_mm_mean": float(fit.vertex_std_mm.mean()),
            "vertex_std_mm_unobserved_mean": float(
                fit.vertex_std_mm[~fit.observed].mean() if (~fit.observed).any() else 0.0
            ),
            "seconds": round(fit.seconds, 3),
            "cpu_seconds": round(fit.cpu_seconds, 3),
            "model": {"n_vertices": int(len(fit.vertices)), "n_components": len(fit.coeffs)},
        }
    path = out_dir / "fit.json"
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return path


def _sha256(path: Path) -> str:
    path = Path(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            digest.update(p.relative_to(path).as_posix().encode())
            digest.update(p.read_bytes())
        return digest.hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Enclosed volume (mm^3) by the divergence theorem."""
    tri = vertices[faces]
    return float(abs(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum()) / 6.0)


def _long_axis(points: np.ndarray) -> np.ndarray:
    centred = points - points.mean(axis=0)
    return np.linalg.svd(centred, full_matrices=False)[2][0]
