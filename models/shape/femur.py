"""Femur correspondence by non-rigid template registration, then a femur shape model.

The 7 left femurs (registry group `femur`, VRML, mm, CT scanner frame with z pointing
superior) have different vertex counts. One subject's surface, quadric-decimated to a few
thousand vertices, is the template; it is aligned to every subject by similarity ICP and
deformed onto it by :func:`models.shape.registration.nonrigid_register`. The registered
templates are aligned by rigid generalised Procrustes (size stays in the model) into the
frame of the template subject, and a PCA gives the model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from models.shape.align import generalised_procrustes
from models.shape.model import ShapeModel
from models.shape.registration import decimate, nonrigid_register, similarity_icp

logger = logging.getLogger(__name__)

FEMUR_DIR = "bones/femur"


@dataclass
class FemurCorrespondence:
    """Registered femurs in correspondence.

    Attributes:
        subject_ids: subject ids (file stems).
        shapes: `(n_subjects, n_vertices, 3)` registered template per subject, mm, each in its
            subject's own CT frame.
        faces: `(n_faces, 3)` template triangles.
        residual_mm: per subject, mean two-way distance between registration and surface, mm.
    """

    subject_ids: list[str]
    shapes: np.ndarray
    faces: np.ndarray
    residual_mm: list[float]


def femur_files(raw_dir: Path) -> list[Path]:
    """The femur surface files under `raw_dir`, sorted."""
    return sorted((Path(raw_dir) / FEMUR_DIR).glob("*.wrl"))


def load_femurs(raw_dir: Path) -> dict[str, trimesh.Trimesh]:
    """Subject id -> femur surface mesh (mm)."""
    from models.meshio import read_mesh

    return {p.stem: read_mesh(p) for p in femur_files(raw_dir)}


def build_correspondence(
    femurs: dict[str, trimesh.Trimesh], params: dict[str, Any]
) -> FemurCorrespondence:
    """Register a decimated template onto every femur.

    Args:
        femurs: subject id -> surface (mm).
        params: the `shape.femur` section: template_subject, template_vertices, sigmas_mm,
            iterations, step, target_points, seed.
    """
    ids = sorted(femurs)
    template_id = params.get("template_subject") or ids[0]
    template = decimate(femurs[template_id], int(params["template_vertices"]))
    rng = np.random.default_rng(int(params.get("seed", 0)))
    shapes, residuals = [], []
    for sid in ids:
        target = _surface_points(femurs[sid], int(params["target_points"]), rng)
        shapes.append(_register_one(np.asarray(template.vertices), target, params))
        reg = shapes[-1]
        residuals.append(reg[1])
        logger.info("femur %s registered: %.2f mm two-way mean distance", sid, reg[1])
    return FemurCorrespondence(
        subject_ids=ids,
        shapes=np.stack([s[0] for s in shapes]),
        faces=np.asarray(template.faces),
        residual_mm=residuals,
    )


def _register_one(
    template: np.ndarray, target: np.ndarray, params: dict[str, Any]
) -> tuple[np.ndarray, float]:
    init = similarity_icp(template, target, iterations=40, with_scale=True)
    moved = init.apply(template)
    result = nonrigid_register(
        moved,
        target,
        sigmas=tuple(float(s) for s in params["sigmas_mm"]),
        iterations=int(params["iterations"]),
        step=float(params.get("step", 0.5)),
    )
    return result.vertices, 0.5 * (result.forward_mm + result.backward_mm)


def _surface_points(mesh: trimesh.Trimesh, n: int, rng: np.random.Generator) -> np.ndarray:
    """Vertices plus area-uniform surface samples, so sparse regions are covered too."""
    pts, _ = trimesh.sample.sample_surface(mesh, n, seed=int(rng.integers(2**31)))
    return np.vstack([np.asarray(mesh.vertices), pts])


def build_femur_model(raw_dir: Path, params: dict[str, Any]) -> tuple[ShapeModel, dict]:
    """Build the left-femur shape model; returns it with correspondence diagnostics."""
    corr = build_correspondence(load_femurs(raw_dir), params)
    aligned, _ = generalised_procrustes(corr.shapes, with_scale=False)
    model = ShapeModel.from_shapes(
        aligned,
        corr.faces,
        "femur_left",
        subject_ids=corr.subject_ids,
        meta={
            "frame": "CT scanner frame of the template subject (z superior), mm",
            "axes": "LPS",
            "template_subject": params.get("template_subject") or corr.subject_ids[0],
            "registration_residual_mm": dict(
                zip(corr.subject_ids, map(float, corr.residual_mm), strict=True)
            ),
        },
    )
    model.landmarks = femur_landmarks(model.mean)
    return model, {"aligned": aligned, "correspondence": corr}


def femur_landmarks(mean: np.ndarray) -> dict[str, int]:
    """Named vertices of the mean femur: its most superior and most inferior points (z up)."""
    return {
        "femur_proximal_end": int(np.argmax(mean[:, 2])),
        "femur_distal_end": int(np.argmin(mean[:, 2])),
    }
