"""Whole-body skin fit benchmark: generated subjects scanned fully and from the front.

Each subject is a body generated from real features (population model built from the real
cohort: artifacts/population), sampled as a scan: 8000 area-uniform surface points, 1 mm
Gaussian noise, 5% outliers uniform in the enlarged bounding box, a rigid offset of
(30, -20, 15) mm. "partial" keeps the front half (the samples anterior of the median y).
The fit starts from the population mean body (no feature given). Errors are mean distances
(mm) from the true skin vertices to the fitted surface (all vertices, and for partial scans
the visible front and hidden back separately); time is the wall and CPU time per fit
(torch uses one thread). The start error (population mean body, centroid-aligned only by
the shared body frame) is given for reference.

Run: `python benchmarks/body_fit.py` -> benchmarks/results/body_fit.json
"""

from __future__ import annotations

import logging
import time

import numpy as np
import trimesh

from dh.bench import write_result
from models.fitting.body import fit_body
from models.fitting.distance import point_to_surface
from models.population.generate import Generator

logger = logging.getLogger("benchmarks.body_fit")

SUBJECTS = [
    {"sex": "F", "age_years": 35, "stature_mm": 1620, "weight_kg": 55},
    {"sex": "M", "age_years": 50, "stature_mm": 1780, "weight_kg": 90},
    {"sex": "F", "age_years": 65, "stature_mm": 1580, "weight_kg": 75},
    {"sex": "M", "age_years": 25, "stature_mm": 1850, "weight_kg": 70},
]
SHIFT_MM = np.array([30.0, -20.0, 15.0])
TARGETS = {"full_mean_surface_mm": 2.0, "seconds_per_fit": 60.0}


def scan_of(skin: trimesh.Trimesh, rng: np.random.Generator, front: bool) -> np.ndarray:
    """Scan points, mm: area-uniform samples, noise, outliers, rigid offset."""
    pts, _ = trimesh.sample.sample_surface(skin, 8000, seed=int(rng.integers(1 << 30)))
    pts = pts + rng.normal(0.0, 1.0, pts.shape)
    if front:
        pts = pts[pts[:, 1] > np.median(pts[:, 1])]
    lo, hi = skin.bounds
    out = rng.uniform(lo - 50, hi + 50, (int(0.05 * len(pts)), 3))
    return np.vstack([pts, out]) + SHIFT_MM


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    rng = np.random.default_rng(20261203)
    gen = Generator()
    fit_body(scan_of(gen.body.mesh(gen.body.default_params()), rng, False), gen, n_iter=5)
    rows = []
    for subject in SUBJECTS:
        truth = gen.generate(subject, with_organs=False)
        tv = truth.skin.vertices
        front_v = tv[:, 1] > np.median(tv[:, 1])
        for front in (False, True):
            scan = scan_of(truth.skin, rng, front)
            w0, c0 = time.perf_counter(), time.process_time()
            fit = fit_body(scan, gen)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            err = point_to_surface(fit.skin.vertices, fit.skin.faces, tv + SHIFT_MM)
            start = gen.body.mesh(fit.start_params)
            err0 = point_to_surface(start.vertices, start.faces, tv)
            row = {
                "subject": subject, "scan": "partial_front" if front else "full",
                "n_scan_points": len(scan), "mean_surface_mm": float(err.mean()),
                "p95_surface_mm": float(np.percentile(err, 95)),
                "start_mean_surface_mm": float(err0.mean()),
                "scan_residual_mean_mm": fit.residual_mean_mm,
                "param_error_fit": float(np.linalg.norm(fit.params - truth.body_params)),
                "param_error_start": float(np.linalg.norm(fit.start_params - truth.body_params)),
                "wall_s": wall, "cpu_s": cpu,
            }  # fmt: skip
            if front:
                row["visible_mean_surface_mm"] = float(err[front_v].mean())
                row["hidden_mean_surface_mm"] = float(err[~front_v].mean())
            logger.info("%s", row)
            rows.append(row)

    def summary(kind: str) -> dict[str, float]:
        sel = [r for r in rows if r["scan"] == kind]
        return {
            k: float(np.mean([r[k] for r in sel]))
            for k in ("mean_surface_mm", "start_mean_surface_mm", "wall_s", "cpu_s")
        }

    full, part = summary("full"), summary("partial_front")
    write_result(
        "body_fit",
        {
            "targets": TARGETS,
            "n_subjects": len(SUBJECTS),
            "full": full,
            "partial_front": part,
            "meets_targets": {
                "full_mean_surface_mm": full["mean_surface_mm"] < TARGETS["full_mean_surface_mm"],
                "seconds_per_fit": max(full["wall_s"], part["wall_s"]) < TARGETS["seconds_per_fit"],
            },
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
