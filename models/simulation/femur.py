"""Finite-element stance simulation of one femur surface.

Pipeline: check the surface -> anatomical frame -> uniform remesh -> TetGen -> P2 stiffness ->
two unit load cases (1 N hip contact force, 1 N abductor force; one factorisation) ->
stresses at the nodes -> fields interpolated onto the input surface's vertices.

Because the problem is linear, any stance load is `F_hip * unit_hip + F_abd * unit_abd`;
:class:`UnitFields` keeps the two unit responses so that the surrogate can learn them and both
modes combine them the same way (:func:`combine`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import trimesh

from models.simulation import fe
from models.simulation.anatomy import FemurFrame, femur_frame
from models.simulation.loads import LoadCase, force_directions
from models.simulation.tetmesh import MeshQuality, check_surface, remesh, tetrahedralize

logger = logging.getLogger(__name__)


@dataclass
class UnitFields:
    """Responses to a 1 N hip contact force and a 1 N abductor force (input frame).

    Attributes:
        stress: `(2, n_points, 6)` Voigt stress in MPa/N (xx, yy, zz, yz, xz, xy).
        displacement: `(2, n_points, 3)` in mm/N.
        compliance: `(2, 2)` generalised compliance `u_i . f_j` in mm/N (strain energy
            `0.5 F^T C F` in N*mm).
    """

    stress: np.ndarray
    displacement: np.ndarray
    compliance: np.ndarray


@dataclass
class Fields:
    """Fields for one load: stress `(n, 6)` MPa, von Mises `(n,)` MPa, displacement `(n, 3)` mm,
    strain energy in J."""

    stress: np.ndarray
    von_mises: np.ndarray
    displacement: np.ndarray
    strain_energy_j: float


def combine(unit: UnitFields, case: LoadCase) -> Fields:
    """Superpose the unit responses for the load case's hip and abductor forces."""
    f = np.array([case.hip_force_n, case.abductor_force_n])
    stress = np.tensordot(f, unit.stress, axes=1)
    disp = np.tensordot(f, unit.displacement, axes=1)
    energy_nmm = 0.5 * f @ (0.5 * (unit.compliance + unit.compliance.T)) @ f
    return Fields(stress, fe.von_mises(stress), disp, float(energy_nmm) * 1e-3)


@dataclass
class FESolution:
    """One femur's FE solution.

    Attributes:
        surface: the input surface (mm); `surface_unit` holds fields at its vertices.
        frame: anatomical frame of the input surface.
        points, tets: the tetrahedral mesh (mm), `(n_nodes, 3)` and `(n_tets, 4)`.
        quality: mesh quality.
        n_dofs: displacement unknowns.
        node_unit: unit responses at the tet-mesh nodes.
        surface_unit: unit responses at the surface vertices.
        loaded: number of boundary facets loaded at the head, trochanter; fixed distal.
        seconds: wall time of meshing, assembly and solve.
    """

    surface: trimesh.Trimesh
    frame: FemurFrame
    points: np.ndarray
    tets: np.ndarray
    quality: MeshQuality
    n_dofs: int
    node_unit: UnitFields
    surface_unit: UnitFields
    loaded: dict[str, int]
    seconds: dict[str, float]


def solve_stance(
    surface: trimesh.Trimesh, case: LoadCase, params: dict[str, Any], source: str = "surface"
) -> FESolution:
    """Mesh a femur surface and solve the stance load case's two unit loads.

    Args:
        surface: closed femur surface in mm (see :mod:`models.simulation.anatomy` for the
            frame assumptions).
        case: the load case (its angles set the force directions; magnitudes are applied
            later by :func:`combine`).
        params: the `simulation` section of params.yaml.
        source: name of the input, for error messages.

    Raises:
        DHError: a broken surface (too few vertices, NaN, not watertight) or TetGen failure.
    """
    mp, st, mat = params["mesh"], params["stance"], params["material"]
    t0 = time.perf_counter()
    check_surface(surface, source, int(mp["min_surface_vertices"]))
    frame = femur_frame(surface.vertices)

    # 1. tetrahedral mesh
    coarse = remesh(surface, int(mp["surface_vertices"]))
    tm = tetrahedralize(coarse, float(mp["min_dihedral_deg"]), float(mp["max_radius_edge"]))
    t_mesh = time.perf_counter()

    # 2. stiffness
    model = fe.assemble(
        tm.points,
        tm.tets,
        float(mat["youngs_modulus_mpa"]),
        float(mat["poisson_ratio"]),
        int(mp["element_order"]),
    )
    t_asm = time.perf_counter()

    # 3. loaded and fixed boundary facets
    head, troch, fixed_facets = _boundary_sets(model.mesh, frame, case, st)
    d_hip, d_abd = force_directions(frame, case)
    loads = np.stack(
        [
            fe.traction_load(model, head, d_hip / fe.facet_areas(model.mesh, head).sum()),
            fe.traction_load(model, troch, d_abd / fe.facet_areas(model.mesh, troch).sum()),
        ],
        axis=1,
    )  # (3 n_dofs, 2): 1 N each
    fixed_scalar = fe.facet_dofs(model, fixed_facets)
    fixed = (3 * fixed_scalar[:, None] + np.arange(3)).ravel()

    # 4. solve both unit loads with one factorisation
    u = fe.solve(model, loads, fixed)
    t_solve = time.perf_counter()

    node_unit = UnitFields(
        stress=np.stack([fe.nodal_stress(model, u[:, k]) for k in range(2)]),
        displacement=np.stack([fe.vertex_displacement(model, u[:, k]) for k in range(2)]),
        compliance=u.T @ loads,
    )
    surface_unit = _to_surface(model.mesh, node_unit, np.asarray(surface.vertices))
    t_end = time.perf_counter()
    seconds = {
        "mesh": t_mesh - t0,
        "assemble": t_asm - t_mesh,
        "solve": t_solve - t_asm,
        "post": t_end - t_solve,
        "total": t_end - t0,
    }
    logger.info("FE stance: %d tets, %d dofs, %.1f s", len(tm.tets), model.n_dofs, seconds["total"])
    return FESolution(
        surface=surface,
        frame=frame,
        points=tm.points,
        tets=tm.tets,
        quality=tm.quality,
        n_dofs=model.n_dofs,
        node_unit=node_unit,
        surface_unit=surface_unit,
        loaded={
            "head_facets": len(head),
            "trochanter_facets": len(troch),
            "fixed_facets": len(fixed_facets),
        },
        seconds=seconds,
    )


def _boundary_sets(mesh, frame: FemurFrame, case: LoadCase, st: dict[str, Any]):  # noqa: ANN001, ANN202
    """Boundary facet indices of the head cap, the trochanter patch and the fixed distal end."""
    bf = mesh.boundary_facets()
    tri = mesh.p[:, mesh.facets[:, bf]].transpose(2, 1, 0)  # (n, 3 vertices, 3 xyz)
    centroid = tri.mean(axis=1)
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    # orient outward: away from the centroid of the tetrahedron that owns the facet
    owner = mesh.f2t[0, bf]
    tet_c = mesh.p[:, mesh.t[:, owner]].mean(axis=1).T
    normal *= np.sign(np.einsum("ij,ij->i", normal, centroid - tet_c))[:, None]

    d_hip, _ = force_directions(frame, case)
    cos_cap = np.cos(np.radians(st["head_cap_half_angle_deg"]))
    near_head = np.linalg.norm(centroid - frame.head_center, axis=1) < 1.2 * frame.head_radius
    head = bf[near_head & (normal @ -d_hip > cos_cap)]

    lateral = -frame.medial
    near_tip = np.linalg.norm(centroid - frame.trochanter_tip, axis=1) < st["trochanter_radius_mm"]
    outward = normal @ (lateral + frame.axial) > 0
    troch = bf[near_tip & outward & (frame.lateral_offset(centroid) > 0)]

    fixed = bf[frame.axial_fraction(centroid) < st["distal_fixed_fraction"]]
    for name, sel in (("head", head), ("trochanter", troch), ("distal", fixed)):
        if len(sel) == 0:
            from dh.errors import fail

            fail(
                "surface",
                name,
                "no boundary facets found",
                f"a {name} region on the femur",
                "check that the surface is a whole femur with superior +z (see anatomy)",
            )
    return head, troch, fixed


def _to_surface(mesh, node: UnitFields, vertices: np.ndarray) -> UnitFields:  # noqa: ANN001
    """Interpolate nodal fields onto `vertices` (mm) by closest point on the tet-mesh boundary."""
    bf = mesh.boundary_facets()
    tri_idx = mesh.facets[:, bf].T  # (n_facets, 3) node indices
    boundary = trimesh.Trimesh(mesh.p.T, tri_idx, process=False)
    closest, _, face = trimesh.proximity.closest_point(boundary, vertices)
    bary = trimesh.triangles.points_to_barycentric(boundary.triangles[face], closest)
    bary = np.clip(bary, 0.0, 1.0)
    bary /= bary.sum(axis=1, keepdims=True)
    nodes = tri_idx[face]  # (n_vertices, 3)

    def interp(values: np.ndarray) -> np.ndarray:  # (2, n_nodes, k) -> (2, n_vertices, k)
        return np.einsum("vj,cvjk->cvk", bary, values[:, nodes])

    return UnitFields(interp(node.stress), interp(node.displacement), node.compliance)
