"""Quality checks for surface meshes and point sets (world millimetres).

Units: the cohort stores geometry in mm. A mesh or point set whose bounding-box diagonal is
too small for mm but plausible once multiplied by 1000 is taken to be in **metres** (the Human
Reference Atlas GLBs are): the check returns a note and the scale 1000, and ingest stores a
converted copy in mm. Anything implausible in both units fails. Surfaces matching the
`watertight_required` patterns (bones, which the FE simulation meshes into solids) must be
closed after merging duplicate vertices.
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dh.errors import DHError, Problem

logger = logging.getLogger(__name__)

MESH_SUFFIXES = {".wrl", ".vrml", ".vtp", ".vtk", ".ply", ".obj", ".stl", ".glb", ".gltf", ".off"}


@dataclass
class GeometryCheck:
    """Outcome for one mesh or point set.

    Attributes:
        problems: findings that fail the batch.
        notes: findings that do not (e.g. converted from metres).
        scale: factor that brings the coordinates to mm (1.0, or 1000.0 for metres).
        n_points: number of vertices or points.
    """

    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)
    scale: float = 1.0
    n_points: int = 0


def unit_scale(points: np.ndarray, file: str, extent_mm: tuple[float, float], check: str):
    """Decide the unit from the bounding-box diagonal: (scale to mm, problems, notes)."""
    diagonal = float(np.linalg.norm(np.ptp(points, axis=0))) if len(points) else 0.0
    lo, hi = extent_mm
    if lo <= diagonal <= hi:
        return 1.0, [], []
    if lo <= diagonal * 1000.0 <= hi:
        note = Problem(
            file,
            "units",
            f"bounding-box diagonal {diagonal:.4g} (metres)",
            f"millimetres ({lo:g}..{hi:g} mm)",
            "none needed: the cohort copy is converted to mm (x1000)",
            check,
        )
        return 1000.0, [], [note]
    problem = Problem(
        file,
        "units",
        f"bounding-box diagonal {diagonal:.4g}",
        f"{lo:g}..{hi:g} mm (or the same in metres)",
        "export the geometry in millimetres",
        check,
    )
    return 1.0, [problem], []


def check_mesh(path: Path, file: str, params: dict) -> GeometryCheck:
    """Readable, finite, plausible units, and closed where `watertight_required` matches."""
    import trimesh

    from models.meshio import read_mesh

    out = GeometryCheck()
    try:
        mesh = read_mesh(path)
    except DHError as err:
        for p in err.problems:
            out.problems.append(Problem(file, p.field, p.value, p.expected, p.fix, "mesh_readable"))
        return out
    vertices = np.asarray(mesh.vertices, dtype=float)  # (n_vertices, 3)
    out.n_points = len(vertices)
    if not np.all(np.isfinite(vertices)):
        out.problems.append(
            Problem(
                file,
                "vertices",
                f"{int((~np.isfinite(vertices)).any(axis=1).sum())} non-finite vertex(es)",
                "finite coordinates",
                "remove or repair the NaN/inf vertices and re-export",
                "mesh_finite",
            )
        )
        return out
    out.scale, problems, notes = unit_scale(
        vertices, file, tuple(params["mesh_extent_mm"]), "mesh_units"
    )
    out.problems += problems
    out.notes += notes
    if any(fnmatch.fnmatch(file, pat) for pat in params.get("watertight_required", [])):
        closed = trimesh.Trimesh(vertices, np.asarray(mesh.faces), process=True)
        if not closed.is_watertight:
            out.problems.append(
                Problem(
                    file,
                    "faces",
                    f"open surface ({len(closed.faces)} faces, Euler {closed.euler_number})",
                    f"a closed (watertight) surface, required for {params['watertight_required']}",
                    "fill the holes (e.g. trimesh.repair.fill_holes) and re-export",
                    "mesh_watertight",
                )
            )
    return out


def is_point_set(path: Path) -> bool:
    """A CSV point set starts with a `# x,y,z` header line."""
    if path.suffix.lower() != ".csv":
        return False
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline().strip().lower().replace(" ", "")
    return first.startswith("#") and first.lstrip("#") in ("x,y,z", "x,y,z,")


def check_points(path: Path, file: str, params: dict) -> GeometryCheck:
    """Point set `(n_points, 3)`: readable, finite, plausible units."""
    out = GeometryCheck()
    try:
        points = np.loadtxt(path, delimiter=",", comments="#", ndmin=2)
    except ValueError as exc:
        out.problems.append(
            Problem(
                file,
                "",
                f"unreadable ({str(exc)[:80]})",
                "rows of x,y,z numbers under a `# x,y,z` header",
                "write one point per row, three comma-separated numbers",
                "points_readable",
            )
        )
        return out
    out.n_points = len(points)
    if points.shape[1] != 3 or not len(points):
        out.problems.append(
            Problem(
                file,
                "columns",
                str(points.shape),
                "(n_points, 3)",
                "write x,y,z only",
                "points_readable",
            )
        )
        return out
    if not np.all(np.isfinite(points)):
        out.problems.append(
            Problem(
                file,
                "points",
                f"{int((~np.isfinite(points)).any(axis=1).sum())} non-finite point(s)",
                "finite coordinates",
                "remove or repair the NaN/inf rows",
                "points_finite",
            )
        )
        return out
    out.scale, problems, notes = unit_scale(
        points, file, tuple(params["mesh_extent_mm"]), "points_units"
    )
    out.problems += problems
    out.notes += notes
    return out
