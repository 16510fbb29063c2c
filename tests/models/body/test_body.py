"""The anny body wrapper, the mesh measurements and the batched fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow  # anny builds its blendshapes (minutes on a fresh machine)


@pytest.fixture(scope="module")
def body():
    from models.body.anny_body import load_body_model

    torch.set_num_threads(2)
    return load_body_model()


@pytest.fixture(scope="module")
def measurements(body):
    from models.body.measure import build_measurements

    return build_measurements(body)


def test_body_frame_is_ras_mm(body):
    v = body.vertices(body.default_params("M"))[0].numpy()
    j = body.joints(body.default_params("M"))[0].numpy()
    assert 1500 < v[:, 2].max() - v[:, 2].min() < 1900  # stature in mm
    assert j[body.bone("upperarm01.L"), 0] < 0 < j[body.bone("upperarm01.R"), 0]  # +x right
    nose_y = v[v[:, 2] > v[:, 2].max() - 150, 1].max()  # the face looks anterior (+y)
    assert nose_y > j[body.bone("head"), 1] + 50
    assert body.mesh(body.default_params("F")).is_watertight


def test_measurements_follow_phenotypes(body, measurements):
    p = np.tile(body.default_params("M"), (3, 1))
    p[1, 4] = 0.9  # taller
    p[2, 3] = 1.0  # heavier
    m = measurements(body, p).detach().numpy()
    names = measurements.names
    stature, weight = names.index("stature_mm"), names.index("weight_kg")
    waist = names.index("waist_circumference_mm")
    assert m[1, stature] > m[0, stature] + 50
    assert m[2, weight] > m[0, weight] + 2
    assert m[2, waist] > m[0, waist] + 15
    assert len(names) >= 20
    for row in measurements.table():
        assert row["procedure"] and row["unit"] in ("mm", "kg")


def test_weight_gradient_matches_autograd_through_the_mesh(body, measurements, rng):
    from models.body.measure import mesh_volume

    p0 = np.c_[rng.uniform(0.2, 0.8, (2, 6)), rng.uniform(-0.5, 0.5, (2, 20))]
    pa = torch.tensor(p0, requires_grad=True)
    mesh_volume(body.vertices(pa), measurements.faces).sum().backward()
    pb = torch.tensor(p0, requires_grad=True)
    w = measurements(body, pb)[:, measurements.names.index("weight_kg")]
    (w / (1e-9 * measurements.density_kg_m3)).sum().backward()
    np.testing.assert_allclose(pb.grad.numpy(), pa.grad.numpy(), rtol=1e-6, atol=1e-3)


def test_fit_matches_real_subjects(raw_data, body, measurements):
    from dh.cohort import load_subjects
    from models.body.fit import fit_bodies

    t = load_subjects(raw_data)
    t = t[t["dataset"] == "ansur2"].groupby("sex").head(1)
    targets = t[measurements.names].to_numpy(float)
    init = np.stack([body.default_params(s) for s in t["sex"]])
    before = np.abs(measurements(body, init).detach().numpy() - targets)
    fit = fit_bodies(body, measurements, targets, init, n_iter=30, batch_size=2)
    after = np.abs(fit.residuals)
    stature, weight = measurements.names.index("stature_mm"), measurements.names.index("weight_kg")
    assert np.all(after[:, stature] < 20.0)
    assert np.all(after[:, weight] < 4.0)
    assert np.nanmedian(after) < 0.5 * np.nanmedian(before)
    assert fit.params.shape == (2, body.n_params)
    assert np.all((fit.params >= body.lower) & (fit.params <= body.upper))
