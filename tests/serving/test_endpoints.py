"""POST /generate, /fit and /simulate on the live server with real demo inputs and bad ones."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from models.meshio import read_mesh
from tests.serving.conftest import LiveServer

pytestmark = pytest.mark.slow

EXAMPLE = {"sex": "F", "age_years": 35, "stature_mm": 1620, "weight_kg": 55}


def _lung_points(raw: Path, n: int = 1000, seed: int = 0) -> np.ndarray:
    pts = np.loadtxt(sorted((raw / "lungs" / "lll").glob("*.csv"))[-1], delimiter=",")
    return pts[np.random.default_rng(seed).choice(len(pts), n, replace=False)]  # (n, 3) mm


def test_generate_example(live_server: LiveServer) -> None:
    r = live_server.client.post("/generate", json={"features": EXAMPLE, "with_organs": True})
    assert r.status_code == 200, r.text
    body = r.json()
    skin = body["meshes"][0]
    assert len(body["meshes"]) > 1  # organs and structures inside the skin
    assert skin["name"] == "skin" and len(skin["vertices"]) > 1000 and skin["faces"]
    assert len(body["vertex_sd_mm"]["skin"]) == len(skin["vertices"])
    assert set(EXAMPLE).isdisjoint(body["predicted"]) and body["predicted"]
    for p in body["predicted"].values():
        assert p["lower"] <= p["mean"] <= p["upper"]
    height = np.ptp(np.asarray(skin["vertices"])[:, 2])
    assert 1400 < height < 1800  # mm, a 1620 mm tall person
    assert body["model"]["name"] == "population"


def test_generate_batches_concurrent_requests(live_server: LiveServer) -> None:
    requests = [
        {"features": {"sex": s, "stature_mm": h}}
        for s in ("F", "M")
        for h in (1550, 1650, 1750, 1850)
    ]
    with ThreadPoolExecutor(len(requests)) as pool:
        replies = list(pool.map(lambda j: live_server.client.post("/generate", json=j), requests))
    assert all(r.status_code == 200 for r in replies), [r.text[:200] for r in replies]
    assert max(r.json()["batch_size"] for r in replies) > 1
    heights = [np.ptp(np.asarray(r.json()["meshes"][0]["vertices"])[:, 2]) for r in replies]
    assert heights[3] > heights[0] and heights[7] > heights[4]  # taller requests, taller bodies


def test_generate_rejects_bad_features(live_server: LiveServer) -> None:
    cases = {
        "unknown name": {"features": {"heigth_mm": 1700}},
        "out of range": {"features": {"stature_mm": 16200}},
        "bad category": {"features": {"sex": "X"}},
        "not numeric": {"features": {"weight_kg": "heavy"}},
        "not an object": {"features": [1, 2, 3]},
        "missing": {},
    }
    for case, payload in cases.items():
        r = live_server.client.post("/generate", json=payload)
        assert r.status_code == 400, (case, r.status_code, r.text)
    r = live_server.client.post("/generate", json=cases["out of range"])
    assert "770..3100 mm" in r.text  # the valid range is named


def test_fit_lung_points(live_server: LiveServer, raw_data: Path) -> None:
    points = _lung_points(raw_data)
    r = live_server.client.post(
        "/fit", json={"structure": "lungs", "points": points.tolist(), "features": EXAMPLE}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["residuals"]["mean_mm"] < 3.0  # the lung is one the model was built from
    assert len(body["residuals"]["per_point_mm"]) == len(body["mesh"]["vertices"])
    assert len(body["coefficients"]) == len(body["coefficient_sd"]) > 0
    assert "lungs_volume_ml" in body["features"] and body["features"]["stature_mm"]["mean"] == 1620


def test_fit_femur_mesh_then_simulate(live_server: LiveServer, raw_data: Path) -> None:
    femur = read_mesh(raw_data / "bones" / "femur" / "2008_0019_l.wrl")
    mesh = {
        "name": "femur",
        "vertices": np.round(femur.vertices, 2).tolist(),
        "faces": femur.faces.tolist(),
    }
    r = live_server.client.post("/fit", json={"structure": "femur_left", "mesh": mesh})
    assert r.status_code == 200, r.text
    fit = r.json()
    assert fit["residuals"]["mean_mm"] < 5.0

    case = {"name": "stance", "body_weight_kg": 70}
    s = live_server.client.post("/simulate", json={"fit_id": fit["fit_id"], "load_case": case})
    assert s.status_code == 200, s.text
    sim = s.json()
    assert sim["mode"] == "surrogate" and sim["model"]["name"] == "simulation"
    assert len(sim["von_mises_mpa"]) == len(sim["mesh"]["vertices"]) == len(fit["mesh"]["vertices"])
    assert (
        0 < sim["summary"]["von_mises_peak_mpa"] < 1000
        and sim["summary"]["displacement_peak_mm"] > 0
    )

    heavier = live_server.client.post(
        "/simulate", json={"fit_id": fit["fit_id"], "load_case": {**case, "body_weight_kg": 105}}
    ).json()
    ratio = heavier["summary"]["von_mises_peak_mpa"] / sim["summary"]["von_mises_peak_mpa"]
    assert ratio == pytest.approx(1.5, rel=0.2)  # linear elastic: stress follows body weight


def test_fit_rejects_bad_input(live_server: LiveServer, raw_data: Path) -> None:
    points = _lung_points(raw_data, 300)
    tetra = {"vertices": [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], "faces": [[0, 1, 7]]}
    cases = {
        "unknown structure": {"structure": "liver", "points": points.tolist()},
        "metres": {"structure": "lungs", "points": (points / 1000).tolist()},
        "empty": {"structure": "lungs", "points": []},
        "nothing observed": {"structure": "lungs"},
        "two coordinates": {"structure": "lungs", "points": [[1.0, 2.0]] * 10},
        "face index out of range": {"structure": "lungs", "mesh": tetra},
        "bad feature": {
            "structure": "lungs",
            "points": points.tolist(),
            "features": {"weight_kg": 5000},
        },
        "unknown landmark": {
            "structure": "lungs",
            "points": points.tolist(),
            "landmarks": {"nose_tip": [0, 0, 0]},
        },
    }
    for case, payload in cases.items():
        r = live_server.client.post("/fit", json=payload)
        assert r.status_code == 400, (case, r.status_code, r.text)


def test_simulate_rejects_bad_input(live_server: LiveServer, raw_data: Path) -> None:
    lung = live_server.client.post(
        "/fit", json={"structure": "lungs", "points": _lung_points(raw_data, 500).tolist()}
    ).json()
    cases = {
        "unknown fit id": {"fit_id": "0" * 32, "load_case": {"name": "stance"}},
        "lung fit": {"fit_id": lung["fit_id"], "load_case": {"name": "stance"}},
        "implausible weight": {
            "fit_id": lung["fit_id"],
            "load_case": {"name": "stance", "body_weight_kg": 900},
        },
        "unknown load case": {"fit_id": lung["fit_id"], "load_case": {"name": "sprint"}},
        "nothing to simulate": {"load_case": {"name": "stance"}},
    }
    for case, payload in cases.items():
        r = live_server.client.post("/simulate", json=payload)
        assert r.status_code == 400, (case, r.status_code, r.text)
