"""The stance FE model on a real femur: frame, mesh quality, physics checks."""

from __future__ import annotations

import numpy as np
import pytest

from dh.config import load_params
from models.simulation.anatomy import femur_frame
from models.simulation.femur import combine, solve_stance
from models.simulation.loads import load_case


@pytest.fixture(scope="module")
def params() -> dict:
    return load_params("simulation")


@pytest.fixture(scope="module")
def solution(femur, params):  # noqa: ANN001, ANN201
    return solve_stance(femur, load_case("stance", 70.0, params), params, source="femur")


def test_frame_finds_head_and_trochanter(femur) -> None:  # noqa: ANN001
    frame = femur_frame(femur.vertices)
    assert 350 < frame.length < 500  # adult femur, mm
    assert 15 < frame.head_radius < 35
    assert frame.head_fit_rms < 2.0
    assert frame.axial_fraction(frame.head_center[None])[0] > 0.85
    assert frame.axial[2] > 0.9  # shaft close to the CT z axis, pointing superior
    assert frame.lateral_offset(frame.head_center[None])[0] < -25  # head is medial
    assert frame.lateral_offset(frame.trochanter_tip[None])[0] > 0  # trochanter is lateral


@pytest.mark.slow
def test_mesh_quality_and_boundary_sets(solution) -> None:  # noqa: ANN001
    q = solution.quality
    assert 2000 < q.n_tets < 20000
    assert q.min_dihedral_deg > 2.0
    assert q.fraction_below_10deg < 0.02
    assert q.max_radius_edge < 3.0
    # the tet mesh keeps the bone volume (remeshing smooths a little)
    assert q.volume_mm3 == pytest.approx(solution.surface.volume, rel=0.05)
    assert all(n >= 10 for n in solution.loaded.values())


@pytest.mark.slow
def test_physics_reciprocity_linearity_and_plausible_stress(solution, params) -> None:  # noqa: ANN001
    c = solution.node_unit.compliance
    # Maxwell-Betti: the cross compliances agree; energies are positive
    assert abs(c[0, 1] - c[1, 0]) < 1e-6 * np.abs(c).max()
    assert np.all(np.linalg.eigvalsh(0.5 * (c + c.T)) > 0)
    f70 = combine(solution.surface_unit, load_case("stance", 70.0, params))
    f140 = combine(solution.surface_unit, load_case("stance", 140.0, params))
    assert np.allclose(f140.von_mises, 2 * f70.von_mises)
    assert f140.strain_energy_j == pytest.approx(4 * f70.strain_energy_j)
    # single-leg stance, 70 kg: femoral shaft stresses of tens of MPa (far below ~100+ MPa
    # cortical yield), head deflection of millimetres
    assert 10 < f70.von_mises.max() < 150
    assert np.all(np.isfinite(f70.von_mises))
    assert 0.5 < np.linalg.norm(f70.displacement, axis=1).max() < 30
