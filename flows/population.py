"""Prefect flow `build_population`: body fits, the population model, organ atlases, ONNX.

Writes under `artifacts/population/`:

- `population.npz`: the per-sex joint Gaussians (layout in :mod:`models.population.model`);
- `fit_residuals.csv`: residual of every fitted subject and measurement (mm, kg);
- `organs_F.npz`, `organs_M.npz`: HRA organs placed in each sex's mean body;
- `conditional_mean.onnx` (+ `.json`): conditional mean given age, stature, weight and sex;
- `metrics.json`: fit residual summary, sizes, timings.

Run with `python -m flows.population` (the DVC stage `build_population` does).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from dh.config import ARTIFACTS, DATA_RAW, apply_env_defaults, load_params

logger = logging.getLogger(__name__)

OUT_DIR = ARTIFACTS / "population"


def build_model_task(params: dict[str, Any], out: Path) -> dict[str, Any]:
    """Fit bodies, learn the model, save model and residuals; return fit metrics."""
    import pandas as pd

    from dh.cohort import load_subjects
    from dh.registry import pull
    from models.population.build import build_population

    pull(["ansur2", "nhanes"])
    t0 = time.perf_counter()
    result = build_population(load_subjects(DATA_RAW), params)
    result.model.meta["build_seconds"] = round(time.perf_counter() - t0, 1)
    result.model.save(out / "population.npz")
    res = pd.DataFrame(result.fit.residuals, index=result.fitted_ids, columns=result.fit.names)
    res.index.name = "subject_id"
    res.to_csv(out / "fit_residuals.csv", float_format="%.2f")
    return {
        "n_fitted": len(result.fitted_ids),
        "n_features": len(result.model.feature_names),
        "fit_mae": result.fit.mae(),
        "fit_mae_median_over_measurements": float(np.median(list(result.fit.mae().values()))),
        "build_seconds": result.model.meta["build_seconds"],
    }


def build_atlases_task(
    params: dict[str, Any], out: Path, organs: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """Place the HRA organs in each sex's mean body (given only the sex)."""
    import torch

    from dh.registry import pull
    from models.body.anny_body import load_body_model
    from models.organs.hra import ORGANS, build_atlas
    from models.population.model import SEXES, PopulationModel

    pull(["hra"])
    model = PopulationModel.load(out / "population.npz")
    body = load_body_model()
    counts = {}
    for s in SEXES:
        conds, _ = model.conditionals({}, s)
        c = conds[s]
        p = np.clip(c.mean[model.n_features :], body.lower, body.upper)
        with torch.no_grad():
            v = body.vertices(p)[0].numpy()
            j = body.joints(p)[0].numpy()
        hip_z = j[body.bone("upperleg01.L"), 2]
        neck_z = j[body.bone("neck01"), 2]
        crotch_z = hip_z - 0.1 * (neck_z - hip_z)
        atlas = build_atlas(
            s,
            v,
            crotch_z,
            neck_z,
            DATA_RAW,
            n_control=int(params["rbf_control_points"]),
            organs=organs or ORGANS,
        )
        atlas.save(out / f"organs_{s}.npz")
        counts[s] = len(atlas.organs)
    return {"organs": counts}


def export_task(out: Path) -> dict[str, Any]:
    """Export the conditional mean given age, stature and weight (per sex) to ONNX."""
    from models.population.export import export_onnx
    from models.population.model import PopulationModel

    path = export_onnx(PopulationModel.load(out / "population.npz"), out / "conditional_mean.onnx")
    return {"onnx": path.name}


def _flow_impl(out_dir: Path | None = None) -> dict[str, Any]:
    from prefect import flow, task

    out = Path(out_dir or OUT_DIR)
    out.mkdir(parents=True, exist_ok=True)
    params = load_params("population")
    t_model = task(build_model_task, name="fit_bodies_and_population_model")
    t_atlas = task(build_atlases_task, name="place_hra_organs")
    t_export = task(export_task, name="export_onnx")

    @flow(name="build_population")
    def build_population_flow() -> dict[str, Any]:
        metrics = t_model(params, out)
        metrics.update(t_atlas(params, out))
        metrics.update(t_export(out))
        return metrics

    metrics = build_population_flow()
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    return metrics


def run(out_dir: Path | None = None) -> dict[str, Any]:
    """Run the flow (embedded Prefect server) and return its metrics."""
    import torch

    apply_env_defaults()
    torch.set_num_threads(2)
    return _flow_impl(out_dir)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    m = run()
    logger.info("population model built: %s", {k: v for k, v in m.items() if k != "fit_mae"})
