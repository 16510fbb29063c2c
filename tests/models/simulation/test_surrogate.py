"""The surrogate: a small one built here from FE runs, its ONNX graph and the surrogate mode."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from dh.config import load_params
from models.meshio import write_vtp
from models.simulation.api import simulate
from models.simulation.surrogate import OnnxSurrogate


@pytest.fixture(scope="module")
def small_surrogate(raw_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A surrogate from 4 training + 1 held-out FE runs on coarse meshes (about a minute)."""
    from models.simulation.training import build_surrogate

    params = copy.deepcopy(load_params("simulation"))
    params["mesh"]["surface_vertices"] = 800
    params["surrogate"].update(n_train=4, n_test=1, n_basis=3)
    out = tmp_path_factory.mktemp("surrogate")
    build_surrogate(params, out)
    return out


@pytest.mark.slow
def test_build_writes_artefacts_and_honest_metrics(small_surrogate: Path) -> None:
    for name in ("surrogate.onnx", "surrogate.json", "train.npz", "test.npz", "metrics.json"):
        assert (small_surrogate / name).is_file()
    m = json.loads((small_surrogate / "metrics.json").read_text())
    assert m["n_train"] == 4 and m["n_test"] == 1
    assert m["onnx_parity_max_abs_mpa"] < 1e-2  # float32 graph vs float64 numpy
    # 4 training shapes only: loose bound, but a broken basis or GP gives errors near 100 %
    assert 0 <= m["rel_l2_von_mises_mean"] < 0.5
    assert np.isfinite(m["peak_error_rel_mean"])


@pytest.mark.slow
def test_onnx_graph_superposes_loads_exactly(small_surrogate: Path) -> None:
    session = OnnxSurrogate.open(small_surrogate / "surrogate.onnx")
    coeffs = np.array([0.5, -1.0, 0.3])
    vm, u, e = session.run(coeffs, [70.0, 2.5, 1.5])
    vm2, u2, e2 = session.run(coeffs, [140.0, 2.5, 1.5])
    assert np.allclose(vm2, 2 * vm, rtol=1e-4, atol=1e-4)
    assert np.allclose(u2, 2 * u, rtol=1e-4, atol=1e-6)
    assert e2 == pytest.approx(4 * e, rel=1e-4)
    assert vm.shape == (u.shape[0],) and np.all(vm >= 0) and e > 0


@pytest.mark.slow
def test_surrogate_mode_on_a_fit_folder(small_surrogate: Path, tmp_path: Path) -> None:
    from models.shape import load_structure_model

    model = load_structure_model("femur_left")
    coeffs = np.zeros(model.n_components)
    coeffs[:2] = [1.0, -0.5]
    mesh = model.mesh(coeffs)
    # place it in a "world" frame: a rotation about z and a shift (stress is invariant)
    angle = np.radians(20)
    rot = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    mesh.vertices = mesh.vertices @ rot.T + np.array([10.0, -5.0, 30.0])
    write_vtp(mesh, tmp_path / "femur_left.vtp")
    (tmp_path / "fit.json").write_text(
        json.dumps({"structure": "femur_left", "shape_coefficients": coeffs.tolist()})
    )
    res = simulate(tmp_path, "stance", 70.0, "surrogate", surrogate_dir=small_surrogate)
    session = OnnxSurrogate.open(small_surrogate / "surrogate.onnx")
    vm, u, e = session.run(coeffs, [70.0, 2.5, 1.5])
    assert res.mesh["similarity_scale"] == pytest.approx(1.0, abs=1e-4)
    assert np.allclose(res.von_mises, vm, rtol=1e-3, atol=1e-3)
    assert np.allclose(res.displacement, u @ rot.T, atol=1e-3)
    paths = res.write(tmp_path / "out")
    summary = json.loads(paths["summary"].read_text())
    assert summary["mode"] == "surrogate"
    assert summary["von_mises_peak_mpa"] == pytest.approx(float(vm.max()), rel=1e-3)
