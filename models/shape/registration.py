"""Surface registration in mm: similarity ICP and smooth non-rigid template deformation.

The non-rigid step moves template vertices along a displacement field that is the
Gaussian-smoothed average of closest-point forces in both directions (template -> target
and target -> template), with a coarse-to-fine kernel width. It is a simple relative of
coherent point drift: the smoothing keeps the deformation coherent, the two-way forces keep
the template from collapsing onto part of the target.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import trimesh
from scipy import sparse
from scipy.spatial import cKDTree

from models.shape.align import Similarity, umeyama

logger = logging.getLogger(__name__)


@dataclass
class RegistrationResult:
    """A template deformed onto a target.

    Attributes:
        vertices: `(n_template_vertices, 3)` deformed template, mm, target frame.
        forward_mm: mean template -> target surface distance, mm.
        backward_mm: mean target -> template vertex distance, mm.
    """

    vertices: np.ndarray
    forward_mm: float
    backward_mm: float


def decimate(mesh: trimesh.Trimesh, n_vertices: int) -> trimesh.Trimesh:
    """Quadric-decimate a closed mesh to about `n_vertices` vertices (VTK)."""
    from models.meshio import _polydata_to_trimesh, to_polydata

    if len(mesh.vertices) <= n_vertices:
        return mesh.copy()
    poly = to_polydata(mesh)
    reduction = 1.0 - n_vertices / len(mesh.vertices)
    out = poly.decimate(reduction)
    return _polydata_to_trimesh(out)


def smoothing_operator(points: np.ndarray, sigma: float) -> sparse.csr_matrix:
    """Row-normalised Gaussian kernel `(n, n)` over points (mm), cut at 3 sigma."""
    tree = cKDTree(points)
    dist = tree.sparse_distance_matrix(tree, 3.0 * sigma, output_type="coo_matrix")
    vals = np.exp(-0.5 * (dist.data / sigma) ** 2)
    k = sparse.coo_matrix((vals, (dist.row, dist.col)), shape=(len(points), len(points)))
    k = k.tocsr() + sparse.identity(len(points), format="csr")
    norm = np.asarray(k.sum(axis=1)).ravel()
    return sparse.diags(1.0 / norm) @ k


def similarity_icp(
    source: np.ndarray,
    target: np.ndarray,
    init: Similarity | None = None,
    iterations: int = 30,
    with_scale: bool = True,
    symmetric: bool = True,
) -> Similarity:
    """Similarity ICP of point set `source` onto `target` (both `(n, 3)` mm)."""
    tf = init or Similarity.identity()
    tree_t = cKDTree(target)
    for _ in range(iterations):
        moved = tf.apply(source)
        _, j = tree_t.query(moved)
        src, dst = source, target[j]
        if symmetric:
            _, i = cKDTree(moved).query(target)
            src = np.vstack([src, source[i]])
            dst = np.vstack([dst, target])
        new = umeyama(src, dst, with_scale=with_scale)
        change = np.abs(new.apply(source) - moved).max()
        tf = new
        if change < 1e-3:
            break
    return tf


def nonrigid_register(
    template: np.ndarray,
    target: np.ndarray,
    sigmas: Sequence[float] = (20.0, 10.0, 5.0, 3.0),
    iterations: int = 10,
    step: float = 1.0,
    target_normals: np.ndarray | None = None,
    max_displacement: float | None = None,
) -> RegistrationResult:
    """Deform template vertices onto a target point set with a smooth displacement field.

    Args:
        template: `(n, 3)` template vertices, mm, already roughly aligned to the target.
        target: `(m, 3)` target surface points, mm.
        sigmas: coarse-to-fine kernel widths, mm.
        iterations: updates per kernel width.
        step: fraction of the smoothed displacement applied per update.
        target_normals: unused hook for point-to-plane forces (None: point-to-point).
        max_displacement: bound on each vertex's total displacement, mm (None: unbounded).
    """
    del target_normals
    start = np.asarray(template, dtype=float)
    verts = start.copy()
    tree_t = cKDTree(target)
    for sigma in sigmas:
        op = smoothing_operator(verts, sigma)
        for _ in range(iterations):
            verts = verts + step * (op @ _two_way_forces(verts, target, tree_t))
            if max_displacement is not None:
                verts = _bound(verts, start, max_displacement)
    d_fwd, _ = tree_t.query(verts)
    d_bwd, _ = cKDTree(verts).query(target)
    return RegistrationResult(verts, float(d_fwd.mean()), float(d_bwd.mean()))


def _two_way_forces(verts: np.ndarray, target: np.ndarray, tree_t: cKDTree) -> np.ndarray:
    """`(n, 3)` mean of the forward and backward closest-point displacements per vertex."""
    _, j = tree_t.query(verts)
    forward = target[j] - verts
    _, i = cKDTree(verts).query(target)
    backward = np.zeros_like(verts)
    np.add.at(backward, i, target - verts[i])
    counts = np.bincount(i, minlength=len(verts)).astype(float)
    has = counts > 0
    backward[has] /= counts[has, None]
    return (forward + backward) / (1.0 + has[:, None])


def _bound(verts: np.ndarray, start: np.ndarray, limit: float) -> np.ndarray:
    disp = verts - start
    norm = np.linalg.norm(disp, axis=1, keepdims=True)
    factor = np.minimum(1.0, limit / np.maximum(norm, 1e-12))
    return start + disp * factor
