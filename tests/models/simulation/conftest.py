"""Fixtures: a real demo femur and a `dh fit`-like folder built from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trimesh

from models.meshio import read_mesh, write_vtp

FEMUR = "bones/femur/2008_0019_l.wrl"


@pytest.fixture(scope="session")
def femur(raw_data: Path) -> trimesh.Trimesh:
    """A real left femur surface (CT world mm, z superior)."""
    return read_mesh(raw_data / FEMUR)


@pytest.fixture
def fit_dir(tmp_path: Path, femur: trimesh.Trimesh) -> Path:
    """A folder shaped like `dh fit` output: fit.json + femur_left.vtp (no coefficients)."""
    write_vtp(femur, tmp_path / "femur_left.vtp")
    (tmp_path / "fit.json").write_text(json.dumps({"structure": "femur_left"}), encoding="utf-8")
    return tmp_path
