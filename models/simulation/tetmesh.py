"""Surface checks, decimation and quality tetrahedral meshing with TetGen.

All coordinates are millimetres in the frame of the input surface (world RAS/LPS for CT-derived
bones); nothing here moves the mesh.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import trimesh

from dh.errors import fail

logger = logging.getLogger(__name__)


@dataclass
class MeshQuality:
    """Quality of a tetrahedral mesh.

    Attributes:
        n_nodes: mesh vertices.
        n_tets: tetrahedra.
        min_dihedral_deg: smallest dihedral angle over all tets (degrees).
        median_min_dihedral_deg: median over tets of each tet's smallest dihedral angle.
        fraction_below_10deg: share of tets whose smallest dihedral angle is under 10 degrees.
        max_radius_edge: largest circumradius / shortest-edge ratio (1/sqrt(8)*3 ~ 0.61 ideal).
        volume_mm3: total volume (mm^3).
    """

    n_nodes: int
    n_tets: int
    min_dihedral_deg: float
    median_min_dihedral_deg: float
    fraction_below_10deg: float
    max_radius_edge: float
    volume_mm3: float


@dataclass
class TetMesh:
    """A tetrahedral mesh: `points (n_nodes, 3)` mm, `tets (n_tets, 4)`, and its quality."""

    points: np.ndarray
    tets: np.ndarray
    quality: MeshQuality


def check_surface(mesh: trimesh.Trimesh, source: str, min_vertices: int) -> None:
    """Refuse surfaces that cannot be meshed into a solid.

    Raises:
        DHError: too few vertices, non-finite coordinates, not watertight, or no volume.
    """
    v = np.asarray(mesh.vertices)
    if len(v) < min_vertices:
        fail(
            source,
            "vertices",
            len(v),
            f">= {min_vertices} vertices",
            "pass a full bone surface, not a fragment or a point subset",
        )
    if not np.all(np.isfinite(v)):
        fail(
            source,
            "vertices",
            f"{int((~np.isfinite(v)).any(axis=1).sum())} non-finite",
            "finite coordinates in mm",
            "re-run the fit; the surface contains NaN or inf",
        )
    if not mesh.is_watertight:
        fail(
            source,
            "faces",
            "surface with holes or non-manifold edges",
            "a closed (watertight) triangle surface",
            "close the holes or re-export the fit",
        )
    if not mesh.volume > 0:
        fail(
            source,
            "faces",
            f"enclosed volume {mesh.volume:.1f} mm^3",
            "a positive enclosed volume (outward normals)",
            "fix the face orientation",
        )


def remesh(mesh: trimesh.Trimesh, n_vertices: int) -> trimesh.Trimesh:
    """Uniform surface remesh to about `n_vertices` vertices (ACVD clustering, pyacvd).

    Uniform, near-equilateral triangles keep the tetrahedra next to the surface well shaped;
    quadric decimation leaves needles that TetGen cannot repair.

    Raises:
        DHError: the remeshed surface is not closed (the input has parts thinner than the
            cluster size).
    """
    import pyacvd

    from models.meshio import to_polydata

    if len(mesh.vertices) <= n_vertices:
        return mesh
    # ACVD needs an input several times finer than the target: subdivide coarse surfaces
    levels = int(np.clip(np.ceil(np.log(20.0 * n_vertices / len(mesh.vertices)) / np.log(4)), 0, 3))
    target = int(n_vertices)
    for _ in range(4):  # a cluster can straddle a thin part: retry a little finer
        clustering = pyacvd.Clustering(to_polydata(mesh))
        if levels:
            clustering.subdivide(levels)
        clustering.cluster(target)
        out = clustering.create_mesh().clean().triangulate()
        faces = np.asarray(out.faces).reshape(-1, 4)[:, 1:]
        result = trimesh.Trimesh(np.asarray(out.points, float), faces, process=True)
        if not (result.is_watertight and result.is_winding_consistent):
            result = _meshfix(result)
        if result.is_watertight and result.is_winding_consistent:
            trimesh.repair.fix_normals(result)
            return result
        logger.info("ACVD remesh with %d clusters is not closed; retrying finer", target)
        target = int(target * 1.25)
    fail(
        "surface",
        "faces",
        "remeshed surface is not closed",
        "a closed remeshed surface",
        "raise simulation.mesh.surface_vertices in params.yaml",
    )


def _meshfix(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Repair non-manifold edges and holes (MeshFix), keeping the largest component."""
    import pymeshfix

    fixer = pymeshfix.MeshFix(np.asarray(mesh.vertices, float), np.asarray(mesh.faces, np.int32))
    fixer.repair()
    return trimesh.Trimesh(np.asarray(fixer.points), np.asarray(fixer.faces), process=True)


def tetrahedralize(
    surface: trimesh.Trimesh, min_dihedral_deg: float, max_radius_edge: float
) -> TetMesh:
    """Quality-constrained Delaunay tetrahedralisation of a closed surface with TetGen.

    Args:
        surface: closed triangle surface (mm).
        min_dihedral_deg: TetGen's minimum dihedral angle constraint (degrees).
        max_radius_edge: TetGen's maximum radius-edge ratio constraint.

    Raises:
        DHError: TetGen fails (typically self-intersecting input).
    """
    import tetgen

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gen = tetgen.TetGen(np.asarray(surface.vertices, float), np.asarray(surface.faces))
        try:
            points, tets = gen.tetrahedralize(
                order=1,
                quality=True,
                nobisect=True,
                mindihedral=min_dihedral_deg,
                minratio=max_radius_edge,
                optmaxdihedral=160.0,
                opt_iterations=10,
                opt_max_flip_level=6,
                verbose=0,
            )[:2]
        except RuntimeError as exc:
            fail(
                "surface",
                "faces",
                str(exc),
                "a surface TetGen can mesh (no self-intersections)",
                "repair the surface or change simulation.mesh.surface_vertices",
            )
    points = np.asarray(points, float)
    tets = np.asarray(tets, np.int64)
    return TetMesh(points, tets, mesh_quality(points, tets))


def mesh_quality(points: np.ndarray, tets: np.ndarray) -> MeshQuality:
    """Dihedral angles and radius-edge ratios of a tetrahedral mesh (mm)."""
    p = points[tets]  # (n, 4, 3)
    # outward unit normal of the face opposite each local vertex
    normals = []
    for opp in range(4):
        i, j, k = (v for v in range(4) if v != opp)
        n = np.cross(p[:, j] - p[:, i], p[:, k] - p[:, i])
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        sign = np.sign(np.einsum("ij,ij->i", n, p[:, i] - p[:, opp]))
        normals.append(n * sign[:, None])
    # the dihedral angle at the edge shared by faces opposite u and v is pi - angle(n_u, n_v)
    angles = [
        np.pi - np.arccos(np.clip(np.einsum("ij,ij->i", normals[u], normals[v]), -1.0, 1.0))
        for u in range(4)
        for v in range(u + 1, 4)
    ]
    ang = np.degrees(np.min(np.stack(angles, axis=1), axis=1))

    edges = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    lengths = np.stack([np.linalg.norm(p[:, i] - p[:, j], axis=1) for i, j in edges], axis=1)
    radius = _circumradius(p)
    vol = (
        np.abs(
            np.einsum("ij,ij->i", p[:, 1] - p[:, 0], np.cross(p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]))
        )
        / 6.0
    )
    return MeshQuality(
        n_nodes=int(len(points)),
        n_tets=int(len(tets)),
        min_dihedral_deg=float(ang.min()),
        median_min_dihedral_deg=float(np.median(ang)),
        fraction_below_10deg=float(np.mean(ang < 10.0)),
        max_radius_edge=float((radius / lengths.min(axis=1)).max()),
        volume_mm3=float(vol.sum()),
    )


def _circumradius(p: np.ndarray) -> np.ndarray:
    a = p[:, 1] - p[:, 0]
    b = p[:, 2] - p[:, 0]
    c = p[:, 3] - p[:, 0]
    num = (
        np.einsum("ij,ij->i", a, a)[:, None] * np.cross(b, c)
        + np.einsum("ij,ij->i", b, b)[:, None] * np.cross(c, a)
        + np.einsum("ij,ij->i", c, c)[:, None] * np.cross(a, b)
    )
    den = 2.0 * np.einsum("ij,ij->i", a, np.cross(b, c))
    return np.linalg.norm(num, axis=1) / np.abs(den)
