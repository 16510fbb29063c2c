"""Time to rebuild the population model as the cohort grows: 25%, 50% and 100% of ANSUR II.

Each size keeps a seeded random share of the ANSUR II subjects (both sexes alike) and all of
the other datasets, and rebuilds the model with the owner's builder
(`models.population.build.build_population`, params.yaml `population`), exactly as the
`build_population` stage does. The rebuild has two parts: the anny body fits (a fixed
`population.n_subjects` sample, so constant in the cohort size) and the per-sex EM over every
subject (linear in the subjects). The scaling exponent is the slope of log(time) against
log(ANSUR subjects). Writes benchmarks/results/retrain.json.

Run: `nice -n 10 python benchmarks/retrain.py`
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from dh.bench import write_result
from dh.config import DATA_RAW, load_params

FRACTIONS = (0.25, 0.5, 1.0)


def subset(subjects, fraction: float, seed: int):  # noqa: ANN001, ANN201 (pandas frames)
    """All non-ANSUR rows plus a seeded `fraction` of the ANSUR II rows."""
    ansur = subjects[subjects["dataset"] == "ansur2"]
    keep = ansur.sample(frac=fraction, random_state=seed) if fraction < 1.0 else ansur
    return subjects[(subjects["dataset"] != "ansur2") | subjects.index.isin(keep.index)]


def main() -> None:
    import torch

    from dh.cohort import load_subjects
    from dh.registry import pull
    from models.body.anny_body import load_body_model
    from models.population.build import build_population

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(2)
    pull(["ansur2", "nhanes"])
    params = load_params("population")
    subjects = load_subjects(DATA_RAW)
    load_body_model()  # the first anny build (about a minute) is not part of a rebuild

    runs = []
    for fraction in FRACTIONS:
        table = subset(subjects, fraction, int(params["seed"]))
        marks: list[float] = []
        t0 = time.perf_counter()
        result = build_population(
            table, params, on_batch=lambda _, m=marks: m.append(time.perf_counter())
        )
        total = time.perf_counter() - t0
        fits_s = (marks[-1] - t0) if marks else float("nan")
        runs.append(
            {
                "fraction_of_ansur": fraction,
                "ansur_subjects": int((table["dataset"] == "ansur2").sum()),
                "all_subjects": len(table),
                "rebuild_seconds": round(total, 2),
                "body_fit_seconds": round(fits_s, 2),
                "em_and_rest_seconds": round(total - fits_s, 2),
                "n_fitted_bodies": len(result.fitted_ids),
                "n_features": len(result.model.feature_names),
            }
        )
        logging.info("%.0f%% of ANSUR: %.1f s", 100 * fraction, total)

    n = np.log([r["ansur_subjects"] for r in runs])
    slope_total = float(np.polyfit(n, np.log([r["rebuild_seconds"] for r in runs]), 1)[0])
    rest = [max(r["em_and_rest_seconds"], 1e-3) for r in runs]
    slope_rest = float(np.polyfit(n, np.log(rest), 1)[0])
    write_result(
        "retrain",
        {
            "what": "population model rebuild time vs ANSUR II share (other datasets whole)",
            "threads": torch.get_num_threads(),
            "nice": os.nice(0),
            "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],  # shared machine
            "runs": runs,
            "scaling_exponent_total": round(slope_total, 3),
            "scaling_exponent_em_and_rest": round(slope_rest, 3),
            "note": "time ~ n^exponent; body fits use a fixed sample (population.n_subjects)",
        },
    )


if __name__ == "__main__":
    main()
