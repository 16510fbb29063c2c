"""Benchmark the femur simulation: FE time and mesh size, surrogate latency and error vs FE.

Writes `benchmarks/results/simulation.json`. FE: the stance load case (70 kg) on three demo
femurs (raw CT surfaces, world mm), and a mesh-refinement series on one of them. Surrogate:
the trained ONNX surrogate (`artifacts/simulation/`, built by `python -m flows.simulation` if
missing) against the FE runs on its held-out shapes (`test.npz`) with loads drawn from the
training ranges, plus the end-to-end `simulate(..., mode="surrogate")` time on a fit-like
folder.

Run: `.venv/bin/python benchmarks/simulation.py`
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from dh.bench import write_result
from dh.config import DATA_RAW, apply_env_defaults, load_params

logger = logging.getLogger(__name__)
FEMURS = ["2007_5028_l", "2008_0019_l", "2008_1342_l"]


def bench_fe(params: dict) -> dict:
    from models.meshio import read_mesh
    from models.simulation.api import simulate

    runs = []
    for sid in FEMURS:
        mesh = read_mesh(DATA_RAW / "bones" / "femur" / f"{sid}.wrl")
        res = simulate(mesh, "stance", 70.0, "fe", params=params)
        s = res.summary()
        runs.append(
            {
                "subject": sid,
                "seconds": res.seconds,
                "n_tets": s["mesh"]["n_tets"],
                "n_nodes": s["mesh"]["n_nodes"],
                "n_dofs": s["mesh"]["n_dofs"],
                "min_dihedral_deg": s["mesh"]["min_dihedral_deg"],
                "fraction_below_10deg": s["mesh"]["fraction_below_10deg"],
                "max_radius_edge": s["mesh"]["max_radius_edge"],
                "stage_seconds": s["mesh"]["fe_seconds"],
                "von_mises_peak_mpa": s["von_mises_peak_mpa"],
                "displacement_peak_mm": s["displacement_peak_mm"],
                "strain_energy_j": s["strain_energy_j"],
                "region_peaks_von_mises_mpa": s["region_peaks_von_mises_mpa"],
            }
        )
    secs = [r["seconds"] for r in runs]
    return {
        "runs": runs,
        "seconds_mean": float(np.mean(secs)),
        "seconds_max": float(max(secs)),
        "target_seconds": 60.0,
        "meets_target": bool(max(secs) < 60.0),
    }


def bench_fe_refinement(params: dict, sizes=(800, 1200, 2000)) -> dict:
    """Mesh sensitivity on one femur: energy and stresses vs surface size (all on its vertices)."""
    import copy

    from models.meshio import read_mesh
    from models.simulation.api import simulate

    mesh = read_mesh(DATA_RAW / "bones" / "femur" / f"{FEMURS[1]}.wrl")
    rows, fields = [], []
    for n in sizes:
        p = copy.deepcopy(params)
        p["mesh"]["surface_vertices"] = int(n)
        res = simulate(mesh, "stance", 70.0, "fe", params=p)
        fields.append(res.von_mises)
        rows.append(
            {
                "surface_vertices": int(n),
                "n_tets": res.mesh["n_tets"],
                "n_dofs": res.mesh["n_dofs"],
                "seconds": res.seconds,
                "strain_energy_j": res.strain_energy_j,
                "von_mises_p99_mpa": float(np.percentile(res.von_mises, 99)),
                "von_mises_peak_mpa": float(res.von_mises.max()),
                "displacement_peak_mm": float(np.linalg.norm(res.displacement, axis=1).max()),
            }
        )
    for r, vm in zip(rows, fields, strict=True):
        r["rel_l2_von_mises_vs_finest"] = float(
            np.linalg.norm(vm - fields[-1]) / np.linalg.norm(fields[-1])
        )
    return {"subject": FEMURS[1], "runs": rows}


def bench_surrogate(params: dict) -> dict:
    from models.simulation.api import SURROGATE_DIR, simulate
    from models.simulation.femur import combine
    from models.simulation.surrogate import (
        OnnxSurrogate,
        TrainingSet,
        _case_from_load,
        sample_loads,
    )

    if not (SURROGATE_DIR / "surrogate.onnx").is_file():
        from flows.simulation import run

        run()
    meta = json.loads((SURROGATE_DIR / "surrogate.json").read_text())
    test = TrainingSet.load(SURROGATE_DIR / "test.npz")
    session = OnnxSurrogate.open(SURROGATE_DIR / "surrogate.onnx")
    rng = np.random.default_rng(12345)
    loads = sample_loads(len(test.coeffs), params["surrogate"], rng)
    rel, peak, ms = [], [], []
    for i in range(len(test.coeffs)):
        ref = combine(test.unit(i), _case_from_load(loads[i], meta))
        vm, _, _ = session.run(test.coeffs[i], loads[i])
        rel.append(float(np.linalg.norm(vm - ref.von_mises) / np.linalg.norm(ref.von_mises)))
        peak.append(float(abs(vm.max() - ref.von_mises.max()) / ref.von_mises.max()))
    for _ in range(100):
        t = time.perf_counter()
        session.run(test.coeffs[0], loads[0])
        ms.append(1e3 * (time.perf_counter() - t))

    # end to end: simulate() on a fit-like folder (reads the surface, loads the session)
    from models.meshio import write_vtp
    from models.shape import load_structure_model

    model = load_structure_model(meta["structure"])
    with tempfile.TemporaryDirectory() as tmp:
        write_vtp(model.mesh(test.coeffs[0]), Path(tmp) / "femur_left.vtp")
        (Path(tmp) / "fit.json").write_text(
            json.dumps({"structure": "femur_left", "shape_coefficients": test.coeffs[0].tolist()})
        )
        e2e = []
        for _ in range(3):
            e2e.append(simulate(tmp, "stance", 70.0, "surrogate", params=params).seconds)
    return {
        "n_train": meta["n_train"],
        "n_test": len(test.coeffs),
        "n_basis": meta["n_basis"],
        "n_vertices": meta["n_vertices"],
        "providers": session.providers,
        "rel_l2_von_mises": rel,
        "rel_l2_von_mises_mean": float(np.mean(rel)),
        "rel_l2_von_mises_max": float(np.max(rel)),
        "peak_error_rel": peak,
        "peak_error_rel_mean": float(np.mean(peak)),
        "peak_error_rel_max": float(np.max(peak)),
        "onnx_ms_median": float(np.median(ms)),
        "onnx_ms_p95": float(np.percentile(ms, 95)),
        "simulate_e2e_seconds_median": float(np.median(e2e)),
        "training_fe_seconds_mean": float(np.mean(meta["metrics"]["fe_seconds_mean"])),
        "training_total_seconds": meta["metrics"].get("total_seconds"),
        "targets": {"onnx_ms": 100.0, "rel_l2": 0.05},
        "meets_latency_target": bool(np.median(ms) < 100.0),
        "meets_error_target": bool(np.mean(rel) < 0.05),
    }


def main() -> None:
    import torch

    torch.set_num_threads(2)
    apply_env_defaults()
    logging.basicConfig(level=logging.WARNING)
    params = load_params("simulation")
    fe = bench_fe(params)
    fe["refinement"] = bench_fe_refinement(params)
    sur = bench_surrogate(params)
    doc = {"load_case": "stance, 70 kg", "fe": fe, "surrogate": sur, "params": params}
    # the 2 cores are shared: the load average says how contended the timings were
    doc["load_average_1_5_15_min"] = list(os.getloadavg())
    path = write_result("simulation", doc)
    logger.warning("wrote %s", path)


if __name__ == "__main__":
    main()
