"""HRA organs: reading into RAS mm, skin affine, decimation and the skin-driven deformation."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from models.organs.hra import (
    OrganAtlas,
    carry,
    control_vertices,
    decimate,
    hra_path,
    read_hra,
    skin_affine,
)


@pytest.fixture(scope="module")
def hra(raw_data):
    skin = read_hra(hra_path(raw_data, "F", "Skin"))
    heart = read_hra(hra_path(raw_data, "F", "Heart"))
    liver = read_hra(hra_path(raw_data, "F", "Liver"))
    return skin, heart, liver


def test_hra_in_ras_mm(hra):
    skin, heart, liver = hra
    height = np.ptp(skin.vertices[:, 2])
    assert 1500 < height < 1900  # metres became millimetres, y-up became z-up
    assert liver.centroid[0] > heart.centroid[0]  # the liver is on the subject's right (+x)
    assert heart.centroid[2] > liver.centroid[2] - 50  # heart above (or level with) the liver


def test_skin_affine_recovers_a_known_scaling(hra):
    skin = np.asarray(hra[0].vertices)
    truth = np.diag([1.1, 1.1, 0.95])
    shift = np.array([5.0, -20.0, 300.0])
    body = skin @ truth.T + shift
    lo, hi = body[:, 2].min(), body[:, 2].max()
    a = skin_affine(skin, body, lo + 0.45 * (hi - lo), lo + 0.82 * (hi - lo))
    np.testing.assert_allclose(np.diag(a[:3, :3]), np.diag(truth), rtol=0.02)
    np.testing.assert_allclose(a[2, 3], shift[2], atol=5.0)


def test_decimate_keeps_the_shape(hra):
    heart = hra[1]
    small = decimate(heart, 2000)
    assert len(small.faces) <= 2200
    np.testing.assert_allclose(small.centroid, heart.centroid, atol=3.0)


def test_carry_reproduces_affine_skin_motion(hra, rng):
    skin, heart, liver = hra
    ref = np.asarray(skin.vertices)[::20]
    atlas = OrganAtlas("F", ref, control_vertices(ref, 150), {"heart": heart}, np.eye(4))
    same = carry(atlas, ref, smoothing=0.0)
    np.testing.assert_allclose(same["heart"].vertices, heart.vertices, atol=1e-6)
    a = np.diag([1.05, 0.97, 1.02]) + rng.normal(0, 0.01, (3, 3))
    t = np.array([10.0, -5.0, 40.0])
    moved = carry(atlas, ref @ a.T + t, smoothing=0.0)
    np.testing.assert_allclose(moved["heart"].vertices, heart.vertices @ a.T + t, atol=1e-3)
    assert isinstance(moved["heart"], trimesh.Trimesh)


def test_precomputed_carry_equals_scipy_thin_plate_spline(hra, rng):
    """The cached operator gives scipy's smoothed thin-plate-spline interpolant (to 1e-3 mm)."""
    from scipy.interpolate import RBFInterpolator

    skin, heart, liver = hra
    ref = np.asarray(skin.vertices)[::20]
    atlas = OrganAtlas(
        "F", ref, control_vertices(ref, 150), {"heart": heart, "liver": liver}, np.eye(4)
    )
    inst = ref + rng.normal(0.0, 8.0, ref.shape)  # a non-affine skin change (mm)
    moved = carry(atlas, inst, smoothing=1.0)
    src = ref[atlas.control]
    rbf = RBFInterpolator(src, inst[atlas.control] - src, kernel="thin_plate_spline", smoothing=1)
    for name, organ in atlas.organs.items():
        v = np.asarray(organ.vertices)
        np.testing.assert_allclose(moved[name].vertices, v + rbf(v), atol=1e-3)
    assert atlas.carry_operator(1.0) is atlas.carry_operator(1.0)  # built once, then cached
