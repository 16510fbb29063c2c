"""The lung (left lower lobe) shape model from 37 subjects already in correspondence.

Registry group `lungs`: one CSV per subject with a `# x,y,z` header and 6,006 rows in mm;
row i is the same anatomical point in every subject. The points carry no triangulation, so
one is built once from the mean shape: every point is projected onto the unit sphere around
the mean's centroid and the convex hull of those directions gives the triangles. This is
exact for star-shaped surfaces; the lobe is nearly so, and the few folded triangles where it
is not are counted in the model's metadata (`folded_face_fraction`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from scipy.spatial import ConvexHull

from dh.errors import fail
from models.shape.align import generalised_procrustes
from models.shape.model import ShapeModel

logger = logging.getLogger(__name__)

LUNG_DIR = "lungs/lll"
N_POINTS = 6006


def lung_files(raw_dir: Path) -> list[Path]:
    """The lung CSVs under `raw_dir`, sorted."""
    return sorted((Path(raw_dir) / LUNG_DIR).glob("*.csv"))


def read_lung_points(path: Path) -> np.ndarray:
    """`(6006, 3)` points (mm) of one subject.

    Raises:
        DHError: wrong row count or non-finite values.
    """
    pts = np.loadtxt(path, delimiter=",", comments="#", dtype=float)
    if pts.shape != (N_POINTS, 3):
        fail(str(path), "rows", pts.shape, f"({N_POINTS}, 3)", "use the pyssam lung CSVs")
    if not np.isfinite(pts).all():
        fail(str(path), "x,y,z", "NaN/inf", "finite mm values", "re-export the points")
    return pts


def load_lungs(raw_dir: Path) -> tuple[list[str], np.ndarray]:
    """Subject ids and `(n_subjects, 6006, 3)` points (mm)."""
    files = lung_files(raw_dir)
    ids = [p.stem.replace("landmarksLLL-", "") for p in files]
    return ids, np.stack([read_lung_points(p) for p in files])


def triangulate_star(points: np.ndarray) -> np.ndarray:
    """`(n_faces, 3)` outward-oriented triangles over all points, by spherical projection."""
    centre = points.mean(axis=0)
    dirs = points - centre
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    faces = ConvexHull(dirs).simplices.astype(np.int64)
    mesh = trimesh.Trimesh(points, faces, process=False)
    trimesh.repair.fix_normals(mesh)
    if mesh.volume < 0:
        mesh.invert()
    return np.asarray(mesh.faces, dtype=np.int64)


def folded_face_fraction(vertices: np.ndarray, faces: np.ndarray, angle_deg: float = 90) -> float:
    """Fraction of adjacent face pairs whose normals differ by more than `angle_deg`."""
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    return float(np.mean(np.degrees(mesh.face_adjacency_angles) > angle_deg))


def build_lung_model(raw_dir: Path, params: dict[str, Any]) -> tuple[ShapeModel, dict]:
    """Rigidly align the 37 lungs (Procrustes), triangulate the mean, run PCA."""
    ids, shapes = load_lungs(raw_dir)
    aligned, _ = generalised_procrustes(shapes, with_scale=False)
    faces = triangulate_star(aligned.mean(axis=0))
    model = ShapeModel.from_shapes(
        aligned,
        faces,
        "lungs",
        subject_ids=ids,
        variance_kept=float(params.get("variance_kept", 1.0)),
        meta={
            "frame": "frame of the first subject's CSV, mm (pyssam lung data)",
            "axes": "LPS",
            "anatomy": "left lower lobe (TotalSegmentator label lung_lower_lobe_left)",
            "folded_face_fraction": folded_face_fraction(aligned.mean(axis=0), faces),
        },
    )
    return model, {"aligned": aligned}
