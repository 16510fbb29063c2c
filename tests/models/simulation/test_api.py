"""simulate() and `dh simulate`: outputs, and clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from typer.testing import CliRunner

from dh.errors import DHError
from models.simulation.api import simulate


@pytest.mark.parametrize("weight", [-5.0, 0.0, 301.0, float("nan")])
def test_implausible_body_weight_is_refused(fit_dir: Path, weight: float) -> None:
    with pytest.raises(DHError, match="body_weight_kg"):
        simulate(fit_dir, "stance", weight, "fe")


def test_unknown_load_case_and_mode_are_refused(fit_dir: Path) -> None:
    with pytest.raises(DHError, match="load_case"):
        simulate(fit_dir, "jumping", 70.0, "fe")
    with pytest.raises(DHError, match="mode"):
        simulate(fit_dir, "stance", 70.0, "magic")


def test_broken_meshes_are_refused(femur: trimesh.Trimesh, rng: np.random.Generator) -> None:
    holed = trimesh.Trimesh(femur.vertices, femur.faces[rng.permutation(len(femur.faces))[10:]])
    with pytest.raises(DHError, match="watertight"):
        simulate(holed, "stance", 70.0, "fe")
    nan = femur.copy()
    nan.vertices[rng.integers(len(nan.vertices))] = np.nan
    with pytest.raises(DHError, match="non-finite"):
        simulate(nan, "stance", 70.0, "fe")
    with pytest.raises(DHError, match="vertices"):
        simulate(trimesh.creation.box((10, 10, 10)), "stance", 70.0, "fe")


def test_fit_folder_problems_are_named(tmp_path: Path, fit_dir: Path) -> None:
    with pytest.raises(DHError, match="dh fit output folder"):
        simulate(tmp_path / "empty_dir_that_is_missing", "stance", 70.0, "fe")
    (tmp_path / "nofit").mkdir()
    with pytest.raises(DHError, match="femur_left.vtp"):
        simulate(tmp_path / "nofit", "stance", 70.0, "fe")
    with pytest.raises(DHError, match="shape_coefficients|surrogate"):
        simulate(fit_dir, "stance", 70.0, "surrogate")


def test_cli_exits_2_on_bad_weight(fit_dir: Path, tmp_path: Path) -> None:
    from dh.cli import app

    res = CliRunner().invoke(
        app, ["simulate", str(fit_dir), "--body-weight-kg", "-3", "-o", str(tmp_path / "o")]
    )
    assert res.exit_code == 2


@pytest.mark.slow
def test_cli_fe_writes_fields_summary_and_png(fit_dir: Path, tmp_path: Path) -> None:
    from dh.cli import app

    out = tmp_path / "out"
    res = CliRunner().invoke(
        app,
        [
            "simulate",
            str(fit_dir),
            "--load-case",
            "stance",
            "--body-weight-kg",
            "80",
            "--mode",
            "fe",
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    for key in ("von_mises_peak_mpa", "displacement_peak_mm", "strain_energy_j"):
        assert np.isfinite(summary[key]) and summary[key] > 0
    assert summary["mode"] == "fe" and summary["load_case"]["body_weight_kg"] == 80
    assert set(summary["region_peaks_von_mises_mpa"]) == {
        "head_neck",
        "trochanter",
        "shaft",
        "distal",
    }
    assert summary["mesh"]["n_tets"] > 1000
    assert (out / "von_mises.png").stat().st_size > 10_000
    import pyvista as pv

    vol = pv.read(str(out / "volume.vtu"))
    assert vol.n_cells == summary["mesh"]["n_tets"]
    surf = pv.read(str(out / "surface.vtu"))
    assert np.nanmax(surf.point_data["von_mises_mpa"]) == pytest.approx(
        summary["von_mises_peak_mpa"]
    )
