"""Build the population model from the harmonised subjects table.

Steps: keep adults; fit anny to a sample of ANSUR II subjects (both sexes equally); stack
features and fitted body parameters (NaN where a subject has none); learn one joint Gaussian
per sex by EM with missing values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from models.body.anny_body import PARAMETER_NAMES, load_body_model
from models.body.fit import FitResult, fit_bodies
from models.body.measure import build_measurements
from models.population.gaussian import fit_gaussian_em
from models.population.model import SEXES, PopulationModel

logger = logging.getLogger(__name__)


@dataclass
class BuildResult:
    """The model, the body fits behind it and the ids of the fitted subjects."""

    model: PopulationModel
    fit: FitResult
    fitted_ids: list[str]


def model_features(subjects: pd.DataFrame, min_observed: int) -> list[str]:
    """Numeric catalogue features with at least `min_observed` values, in catalogue order."""
    from dh.cohort import load_catalogue

    return [
        f.name
        for f in load_catalogue()
        if f.kind == "numeric"
        and f.name in subjects
        and subjects[f.name].notna().sum() >= min_observed
    ]


def adults(subjects: pd.DataFrame, min_age_years: float) -> pd.DataFrame:
    """Subjects of known sex aged at least `min_age_years`."""
    keep = subjects["sex"].isin(SEXES) & (subjects["age_years"] >= min_age_years)
    return subjects[keep].reset_index(drop=True)


def fit_sample(
    subjects: pd.DataFrame,
    params: dict[str, Any],
    on_batch: Callable[[int], None] | None = None,
) -> tuple[FitResult, list[str]]:
    """Fit anny to `n_subjects` ANSUR II subjects (half of each sex, seeded sample)."""
    body = load_body_model()
    measurements = build_measurements(body, params["body_density_kg_m3"])
    ansur = subjects[subjects["dataset"] == "ansur2"]
    per_sex = int(params["n_subjects"]) // 2
    rng = np.random.default_rng(int(params["seed"]))
    picked = []
    for s in SEXES:
        ids = ansur.loc[ansur["sex"] == s, "subject_id"].to_numpy()
        picked += list(rng.choice(ids, size=min(per_sex, len(ids)), replace=False))
    sample = ansur.set_index("subject_id").loc[picked]
    targets = sample[measurements.names].to_numpy(dtype=float)
    init = np.stack([body.default_params(s) for s in sample["sex"]])
    fit = fit_bodies(
        body,
        measurements,
        targets,
        init,
        n_iter=int(params["fit_iterations"]),
        lr=float(params["fit_learning_rate"]),
        local_ridge=float(params["fit_local_ridge"]),
        batch_size=int(params["fit_batch_size"]),
        on_batch=on_batch,
    )
    return fit, picked


def build_population(
    subjects: pd.DataFrame,
    params: dict[str, Any],
    exclude_ids: set[str] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> BuildResult:
    """Fit bodies and learn the per-sex joint Gaussians.

    Args:
        subjects: the harmonised subjects table (`dh.cohort.load_subjects()`).
        params: the `population` section of params.yaml.
        exclude_ids: subject ids held out (never seen by the model).
        on_batch: progress callback of the body fits.
    """
    table = adults(subjects, float(params["min_age_years"]))
    if exclude_ids:
        table = table[~table["subject_id"].isin(exclude_ids)].reset_index(drop=True)
    features = model_features(table, int(params["min_observed"]))
    fit, fitted = fit_sample(table, params, on_batch)

    body_params = pd.DataFrame(fit.params, index=fitted, columns=list(PARAMETER_NAMES))
    joint = table.set_index("subject_id")[["sex", *features]].join(body_params, how="left")
    from dh.cohort import feature_map

    fmap = feature_map()
    components, prior, n_obs = {}, {}, np.zeros(len(features) + len(PARAMETER_NAMES))
    for s in SEXES:
        x = joint.loc[joint["sex"] == s, features + list(PARAMETER_NAMES)].to_numpy(float)
        components[s] = fit_gaussian_em(
            x, n_iter=int(params["em_iterations"]), ridge=float(params["em_ridge"])
        )
        prior[s] = float((joint["sex"] == s).mean())
        n_obs += np.isfinite(x).sum(0)
    meta = {
        "n_subjects": {s: int((joint["sex"] == s).sum()) for s in SEXES},
        "n_fitted": len(fitted),
        "params": {k: v for k, v in params.items() if not isinstance(v, dict)},
        "fit_mae": fit.mae(),
        "measurements": fit.names,
    }
    model = PopulationModel(
        feature_names=features,
        param_names=list(PARAMETER_NAMES),
        components=components,
        sex_prior=prior,
        valid_min=np.array([fmap[f].valid_min for f in features], dtype=float),
        valid_max=np.array([fmap[f].valid_max for f in features], dtype=float),
        n_observed=n_obs,
        meta=meta,
    )
    logger.info("population model: %d features, %d body parameters", len(features), 26)
    return BuildResult(model, fit, fitted)
