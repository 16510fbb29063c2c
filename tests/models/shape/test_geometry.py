"""Alignment, lung triangulation and femur registration on the real demo shapes."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from models.shape.align import Similarity, generalised_procrustes, umeyama
from models.shape.femur import load_femurs
from models.shape.lungs import folded_face_fraction, load_lungs, triangulate_star
from models.shape.registration import decimate, nonrigid_register, similarity_icp


@pytest.fixture(scope="module")
def femur(raw_data):
    femurs = load_femurs(raw_data)
    return decimate(femurs["2008_0158_l"], 2000)


def test_umeyama_recovers_a_similarity(femur, rng):
    rot = Rotation.random(random_state=1).as_matrix()
    truth = Similarity(rot, np.array([10.0, -5.0, 30.0]), 1.07)
    src = np.asarray(femur.vertices)
    est = umeyama(src, truth.apply(src))
    np.testing.assert_allclose(est.rotation, rot, atol=1e-8)
    assert est.scale == pytest.approx(1.07)
    np.testing.assert_allclose(est.inverse().apply(truth.apply(src)), src, atol=1e-6)


def test_procrustes_removes_rigid_motion(femur):
    src = np.asarray(femur.vertices)
    moved = Similarity(Rotation.from_euler("z", 30, degrees=True).as_matrix(), np.ones(3)).apply(
        src
    )
    aligned, _ = generalised_procrustes(np.stack([src, moved]))
    np.testing.assert_allclose(aligned[0], aligned[1], atol=1e-6)


def test_similarity_icp_from_a_small_offset(femur):
    src = np.asarray(femur.vertices)
    truth = Similarity(Rotation.from_euler("x", 5, degrees=True).as_matrix(), np.full(3, 4.0))
    est = similarity_icp(src, truth.apply(src), iterations=60, with_scale=False)
    assert np.abs(est.apply(src) - truth.apply(src)).max() < 0.5


def test_nonrigid_registration_follows_a_smooth_deformation(femur, rng):
    src = np.asarray(femur.vertices)
    centre = src.mean(0)
    # bend the shaft smoothly: x shift growing with height, up to about 6 mm
    z = (src[:, 2] - src[:, 2].min()) / np.ptp(src[:, 2])
    target = src + np.c_[6.0 * z**2, np.zeros_like(z), np.zeros_like(z)]
    before = np.linalg.norm(src - target, axis=1).mean()
    result = nonrigid_register(src, target, sigmas=(20.0, 10.0), iterations=10, step=0.5)
    assert result.forward_mm < 0.5 * before
    assert np.isfinite(result.vertices).all()
    assert abs(result.vertices.mean(0) - centre).max() < 10


def test_lung_triangulation_uses_every_point(raw_data):
    _, shapes = load_lungs(raw_data)
    assert shapes.shape == (37, 6006, 3)
    mean = shapes.mean(0)
    faces = triangulate_star(mean)
    mesh = trimesh.Trimesh(mean, faces, process=False)
    assert len(np.unique(faces)) == 6006
    assert mesh.is_watertight and mesh.volume > 0
    assert folded_face_fraction(mean, faces) < 0.05
