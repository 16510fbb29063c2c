"""Mesh and point-set checks on real femurs, HRA organs and lung points, and corrupted copies."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from dh.config import load_params
from models.meshio import read_mesh
from validation import meshes
from validation.batch import scan_batch


@pytest.fixture(scope="module")
def params() -> dict:
    return load_params("validation")


def test_real_femur_passes_watertight(raw_data, params):
    rel = "bones/femur/2008_0006_l.wrl"
    out = meshes.check_mesh(raw_data / rel, rel, params)
    assert out.problems == [] and out.notes == [] and out.scale == 1.0


def test_real_stl_with_unmerged_vertices_is_closed(raw_data, params):
    rel = "bones/tibia/tibia_surface.stl"
    assert meshes.check_mesh(raw_data / rel, rel, params).problems == []


def test_femur_with_a_hole_fails_where_watertight_required(raw_data, params, tmp_path):
    mesh = read_mesh(raw_data / "bones/femur/2008_0006_l.wrl")
    holed = trimesh.Trimesh(mesh.vertices, mesh.faces[50:], process=False)
    path = tmp_path / "femur.stl"
    holed.export(path)
    (problem,) = meshes.check_mesh(path, "bones/femur/femur.stl", params).problems
    assert problem.check == "mesh_watertight"
    # the same open surface elsewhere in a batch is not required to be closed
    assert meshes.check_mesh(path, "surfaces/femur.stl", params).problems == []


def test_hra_glb_in_metres_is_recognised_and_scaled(raw_data, params):
    rel = "meshes/hra/VH_F_Kidney_L.glb"
    out = meshes.check_mesh(raw_data / rel, rel, params)
    assert out.problems == [] and out.scale == 1000.0
    (note,) = out.notes
    assert note.check == "mesh_units" and "metres" in note.value


def test_nan_vertex_and_implausible_size_fail(raw_data, params, tmp_path):
    mesh = read_mesh(raw_data / "bones/femur/2008_0006_l.wrl")
    broken = mesh.copy()
    broken.vertices[3] = np.nan
    broken.export(tmp_path / "nan.ply")
    (problem,) = meshes.check_mesh(tmp_path / "nan.ply", "nan.ply", params).problems
    assert problem.check == "mesh_finite"
    huge = trimesh.Trimesh(mesh.vertices * 1e4, mesh.faces)  # neither mm nor m
    huge.export(tmp_path / "huge.ply")
    (problem,) = meshes.check_mesh(tmp_path / "huge.ply", "huge.ply", params).problems
    assert problem.check == "mesh_units"


def test_truncated_mesh_fails(raw_data, params, tmp_path):
    src = (raw_data / "meshes/hra/VH_F_Kidney_L.glb").read_bytes()
    (tmp_path / "k.glb").write_bytes(src[:5000])
    (problem,) = meshes.check_mesh(tmp_path / "k.glb", "k.glb", params).problems
    assert problem.check == "mesh_readable"


def test_lung_point_sets(raw_data, params, tmp_path):
    real = sorted((raw_data / "lungs/lll").glob("*.csv"))[0]
    assert meshes.is_point_set(real)
    out = meshes.check_points(real, real.name, params)
    assert out.problems == [] and out.scale == 1.0 and out.n_points == 6006

    points = np.loadtxt(real, delimiter=",", comments="#")
    np.savetxt(tmp_path / "m.csv", points / 1000.0, delimiter=",", header="x,y,z")
    out = meshes.check_points(tmp_path / "m.csv", "m.csv", params)
    assert out.scale == 1000.0 and out.notes[0].check == "points_units"

    points[17, 1] = np.nan
    np.savetxt(tmp_path / "nan.csv", points, delimiter=",", header="x,y,z")
    (problem,) = meshes.check_points(tmp_path / "nan.csv", "nan.csv", params).problems
    assert problem.check == "points_finite"


def test_scan_classifies_the_demo_batch(raw_data):
    kinds = {}
    for item in scan_batch(raw_data):
        kinds.setdefault(item.kind, []).append(item.rel)
    assert kinds["dicom"] == ["ct/example_ct_dicom"]
    assert len(kinds["table"]) == 3 and len(kinds["points"]) == 37
    assert "ct/example_seg_dicom.nii.gz" in kinds["label"]
    assert set(kinds["image"]) == {"ct/example_ct.nii.gz", "ct/example_ct_sm.nii.gz"}
    assert kinds["labels"] == ["ct/ts_v2_labels.txt"]
    assert len(kinds["mesh"]) == 9 + 38
