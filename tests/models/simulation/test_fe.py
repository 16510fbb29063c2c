"""Verification of the FE core against analytic solutions and scikit-fem's own assembly."""

from __future__ import annotations

import numpy as np
import pytest
from skfem import Basis, ElementTetP1, ElementTetP2, ElementVector, MeshTet, asm
from skfem.models.elasticity import lame_parameters, linear_elasticity

from models.simulation import fe
from models.simulation.tetmesh import mesh_quality

E, NU = 17000.0, 0.3  # MPa, cortical bone


def _box(length: float, width: float, nx: int, ny: int) -> MeshTet:
    return MeshTet.init_tensor(
        np.linspace(0, length, nx + 1), np.linspace(0, width, ny + 1), np.linspace(0, width, ny + 1)
    )


def _faces_at(mesh: MeshTet, axis: int, value: float) -> np.ndarray:
    bf = mesh.boundary_facets()
    mid = mesh.p[:, mesh.facets[:, bf]].mean(axis=1)
    return bf[np.isclose(mid[axis], value)]


def _cantilever_tip(nx: int, ny: int, order: int, length=100.0, h=10.0, load=10.0) -> float:
    """Tip deflection (mm) of a square cantilever, clamped at x=0, shear load (N) at x=L."""
    mesh = _box(length, h, nx, ny)
    model = fe.assemble(mesh.p.T, mesh.t.T, E, NU, order)
    f = fe.traction_load(model, _faces_at(mesh, 0, length), np.array([0, 0, -load / h**2]))
    root = fe.facet_dofs(model, _faces_at(mesh, 0, 0.0))
    u = fe.solve(model, f, (3 * root[:, None] + np.arange(3)).ravel())
    tip = np.isclose(mesh.p[0], length)
    return float(-fe.vertex_displacement(model, u)[tip, 2].mean())


def _timoshenko_tip(length=100.0, h=10.0, load=10.0) -> float:
    inertia = h**4 / 12
    shear = E / (2 * (1 + NU))
    return load * length**3 / (3 * E * inertia) + load * length / (5 / 6 * shear * h * h)


def test_cantilever_tip_deflection_within_2_percent() -> None:
    exact = _timoshenko_tip()
    tip = _cantilever_tip(20, 2, order=2)
    assert abs(tip - exact) / exact < 0.02, (tip, exact)


def test_cantilever_converges_under_refinement() -> None:
    exact = _timoshenko_tip()
    err_p2 = [abs(_cantilever_tip(n, m, 2) - exact) / exact for n, m in [(5, 1), (10, 1), (20, 2)]]
    assert err_p2[0] > err_p2[1] > err_p2[2]
    err_p1 = [abs(_cantilever_tip(n, m, 1) - exact) / exact for n, m in [(10, 1), (20, 2), (40, 4)]]
    assert err_p1[0] > err_p1[1] > err_p1[2]
    assert err_p1[2] > err_p2[2]  # linear tets are too stiff in bending: P2 is the default


@pytest.mark.parametrize("order", [1, 2])
def test_bar_in_tension_matches_analytic(order: int) -> None:
    length, width, stress = 50.0, 10.0, 20.0  # mm, mm, MPa
    mesh = _box(length, width, 10, 2)
    model = fe.assemble(mesh.p.T, mesh.t.T, E, NU, order)
    f = fe.traction_load(model, _faces_at(mesh, 0, length), np.array([stress, 0.0, 0.0]))
    # symmetry planes x=0, y=0, z=0: free lateral contraction, no rigid motion
    fixed = np.concatenate(
        [3 * fe.facet_dofs(model, _faces_at(mesh, c, 0.0)) + c for c in range(3)]
    )
    u = fe.solve(model, f, fixed)
    disp = fe.vertex_displacement(model, u)
    end = np.isclose(mesh.p[0], length)
    side = np.isclose(mesh.p[1], width)
    assert abs(disp[end, 0].mean() - stress * length / E) / (stress * length / E) < 0.02
    lateral = -NU * stress / E * width
    assert abs(disp[side, 1].mean() - lateral) / abs(lateral) < 0.02
    vm = fe.von_mises(fe.nodal_stress(model, u))
    assert np.allclose(vm, stress, rtol=0.02)
    energy = 0.5 * u @ f  # N mm
    assert energy == pytest.approx(0.5 * stress**2 / E * length * width**2, rel=0.02)


@pytest.mark.parametrize("order", [1, 2])
def test_assembly_matches_scikit_fem(order: int) -> None:
    mesh = _box(3.0, 2.0, 2, 1)
    model = fe.assemble(mesh.p.T, mesh.t.T, E, NU, order)
    elem = ElementVector(ElementTetP2() if order == 2 else ElementTetP1())
    ref = asm(linear_elasticity(*lame_parameters(E, NU)), Basis(mesh, elem, intorder=2))
    # skfem numbers vector dofs component-interleaved per node, as fe does for P1; for P2
    # compare invariants: the spectrum is independent of the dof numbering
    ours = np.sort(np.linalg.eigvalsh(model.stiffness.toarray()))
    theirs = np.sort(np.linalg.eigvalsh(ref.toarray()))
    assert np.allclose(ours, theirs, rtol=1e-8, atol=1e-6 * theirs.max())


def test_mesh_quality_of_regular_tetrahedron() -> None:
    p = np.array(
        [[0, 0, 0], [1, 0, 0], [0.5, np.sqrt(3) / 2, 0], [0.5, np.sqrt(3) / 6, np.sqrt(2 / 3)]]
    )
    q = mesh_quality(p, np.array([[0, 1, 2, 3]]))
    assert q.min_dihedral_deg == pytest.approx(np.degrees(np.arccos(1 / 3)))
    assert q.max_radius_edge == pytest.approx(np.sqrt(6) / 4)
    assert q.volume_mm3 == pytest.approx(1 / (6 * np.sqrt(2)))
