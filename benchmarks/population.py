"""Benchmark of the population model -> `benchmarks/results/population.json`.

1. Held-out ANSUR II subjects (a seeded `holdout_fraction` of each sex, never seen by the
   model): mean absolute error of every other measurement predicted from sex, age, stature
   and weight, per measurement, against a per-measurement ordinary-least-squares baseline on
   [sex, age, stature, weight] fitted to the same training ANSUR II subjects.
   BMI, derived exactly from stature and weight, is given to the model too (and left out of
   the comparison).
2. Generated bodies for held-out requests: |measured on the mesh - requested| for the given
   features (sex/age/stature/weight; and with four girths and crotch height added).
3. Fraction of each placed organ / structure inside the generated skin (F, 35 y, 1620 mm,
   55 kg).
4. Time to generate one digital human (skin, structures, organs), and per human in a batch.

The benchmark model is built by the pipeline's own code with the held-out subjects excluded;
to keep the run short it fits fewer bodies (`BENCH_FIT`), which only affects the body
parameters, not the feature predictions.

Run: `python benchmarks/population.py` (needs `dvc repro build_population` first for the
organ atlases).
"""

from __future__ import annotations

import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dh.bench import write_result
from dh.config import ARTIFACTS, DATA_RAW, load_params

logger = logging.getLogger(__name__)

GIVEN = ["age_years", "stature_mm", "weight_kg"]
EXTRA = ["chest_circumference_mm", "waist_circumference_mm", "buttock_circumference_mm",
         "thigh_circumference_mm", "crotch_height_mm"]  # fmt: skip
BENCH_FIT = {"n_subjects": 24, "fit_iterations": 60}
N_GENERATED = 8


def split(subjects: pd.DataFrame, fraction: float, seed: int) -> set[str]:
    """Held-out ANSUR II subject ids: `fraction` of each sex, seeded."""
    rng = np.random.default_rng(seed)
    ansur = subjects[subjects["dataset"] == "ansur2"]
    held = []
    for _, group in ansur.groupby("sex"):
        ids = group["subject_id"].to_numpy()
        held += list(rng.choice(ids, size=int(round(fraction * len(ids))), replace=False))
    return set(held)


def baseline_predict(train: pd.DataFrame, test: pd.DataFrame, target: str) -> np.ndarray:
    """OLS of `target` on [1, sex==F, age, stature, weight]."""

    def design(t: pd.DataFrame) -> np.ndarray:
        return np.c_[np.ones(len(t)), (t["sex"] == "F").to_numpy(float), t[GIVEN].to_numpy()]

    ok = train[target].notna()
    beta, *_ = np.linalg.lstsq(design(train[ok]), train.loc[ok, target].to_numpy(), rcond=None)
    return design(test) @ beta


def model_predict(model, test: pd.DataFrame) -> pd.DataFrame:  # noqa: ANN001
    """Conditional means of every feature given sex, age, stature, weight."""
    from models.population.gaussian import condition

    rows = []
    for _, r in test.iterrows():
        given = model.with_derived({n: float(r[n]) for n in GIVEN})
        c = condition(model.components[r["sex"]], {model.index(n): v for n, v in given.items()})
        rows.append({model.names[i]: v for i, v in zip(c.index, c.mean, strict=True)})
    return pd.DataFrame(rows, index=test.index)


def prediction_errors(model, train: pd.DataFrame, test: pd.DataFrame) -> dict:  # noqa: ANN001
    pred = model_predict(model, test)
    targets = [
        f
        for f in model.feature_names
        if f not in GIVEN + ["bmi_kg_m2"] and test[f].notna().all() and train[f].notna().sum() > 100
    ]
    per = {}
    for f in targets:
        truth = test[f].to_numpy()
        per[f] = {
            "model_mae": float(np.mean(np.abs(pred[f].to_numpy() - truth))),
            "baseline_mae": float(np.mean(np.abs(baseline_predict(train, test, f) - truth))),
        }
        per[f]["model_better"] = per[f]["model_mae"] < per[f]["baseline_mae"]
    wins = [f for f, v in per.items() if v["model_better"]]
    return {
        "n_train_ansur": len(train),
        "n_held_out": len(test),
        "n_measurements": len(per),
        "model_beats_baseline_on": len(wins),
        "baseline_not_beaten_on": sorted(set(per) - set(wins)),
        "mean_model_mae_mm": float(np.mean([v["model_mae"] for v in per.values()])),
        "mean_baseline_mae_mm": float(np.mean([v["baseline_mae"] for v in per.values()])),
        "per_measurement": per,
    }


def generated_errors(gen, test: pd.DataFrame, names: list[str]) -> dict:  # noqa: ANN001
    errs = {n: [] for n in names}
    for _, r in test.head(N_GENERATED).iterrows():
        request = {"sex": r["sex"], **{n: float(r[n]) for n in names if n != "sex"}}
        human = gen.generate(request, with_organs=False)
        for n in names:
            if n in human.body_measurements:
                errs[n].append(abs(human.body_measurements[n] - request[n]))
    return {n: {"mae": float(np.mean(v)), "max": float(np.max(v))} for n, v in errs.items() if v}


def inside_fraction(human) -> dict[str, float]:  # noqa: ANN001
    """Fraction of each organ's / structure's vertices inside the skin (every 5th vertex)."""
    out = {}
    for name, mesh in {**human.structures, **human.organs}.items():
        pts = np.asarray(mesh.vertices)[::5]
        out[name] = float(np.mean(human.skin.contains(pts)))
    return out


def main() -> dict:
    import torch

    from dh.cohort import load_subjects
    from models.population.build import adults, build_population
    from models.population.generate import Generator

    torch.set_num_threads(2)
    params = load_params("population")
    subjects = load_subjects(DATA_RAW)
    held = split(subjects, float(params["holdout_fraction"]), int(params["seed"]))

    t0 = time.perf_counter()
    result = build_population(subjects, params | BENCH_FIT, exclude_ids=held)
    build_s = time.perf_counter() - t0
    model = result.model
    table = adults(subjects, float(params["min_age_years"]))
    ansur = table[table["dataset"] == "ansur2"]
    test = ansur[ansur["subject_id"].isin(held)]
    train = ansur[~ansur["subject_id"].isin(held)]
    prediction = prediction_errors(model, train, test)

    # generation with the held-out model and the pipeline's organ atlases
    tmp = Path(tempfile.mkdtemp(prefix="population_bench_"))
    model.save(tmp / "population.npz")
    for atlas in (ARTIFACTS / "population").glob("organs_*.npz"):
        shutil.copy(atlas, tmp / atlas.name)
    gen = Generator(tmp)
    generated = {
        "given_sex_age_stature_weight": generated_errors(gen, test, GIVEN),
        "given_plus_girths_and_crotch_height": generated_errors(gen, test, GIVEN + EXTRA),
    }
    request = {"sex": "F", "age_years": 35, "stature_mm": 1620, "weight_kg": 55}
    human = gen.generate(request)  # also the warm-up
    inside = inside_fraction(human)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        gen.generate(request)
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    gen.generate_batch([request] * 4)
    batch_s = (time.perf_counter() - t) / 4

    return {
        "held_out_prediction": prediction,
        "generated_body_error": generated,
        "inside_skin_fraction": inside,
        "generate_seconds_median": statistics.median(times),
        "generate_seconds_per_human_batch4": batch_s,
        "benchmark_model": {
            "build_seconds": build_s,
            "fitted_bodies": len(result.fitted_ids),
            "fit_mae": result.fit.mae(),
            "note": "built with the held-out subjects excluded and fewer fitted bodies; "
            "the organ atlases are the pipeline's (artifacts/population)",
        },
        "params": params,
    }


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = main()
    path = write_result("population", out)
    p = out["held_out_prediction"]
    logger.info(
        "%s: model beats the baseline on %d of %d measurements; mean MAE %.1f vs %.1f mm",
        path, p["model_beats_baseline_on"], p["n_measurements"], p["mean_model_mae_mm"],
        p["mean_baseline_mae_mm"],
    )  # fmt: skip
