"""The population model: per-sex joint Gaussians over features and anny body parameters.

Stored as one `.npz` (:meth:`PopulationModel.save`), documented here because serving reads it
without this code if it must:

- ``feature_names`` `(n_f,)` str: catalogue features, in catalogue units (mm, kg, years, mmHg);
- ``param_names`` `(n_p,)` str: anny body parameters (``models.body.anny_body.PARAMETER_NAMES``);
- ``mean_F``, ``mean_M`` `(n_f + n_p,)` and ``cov_F``, ``cov_M`` `(n_f + n_p, n_f + n_p)`:
  the joint Gaussian of ``[features, params]`` for female and male subjects;
- ``sex_prior`` `(2,)`: P(F), P(M) in the training cohort;
- ``valid_min``, ``valid_max`` `(n_f,)`: the catalogue's valid range of each feature;
- ``n_observed`` `(n_f + n_p,)`: training rows that observed each entry;
- ``meta``: JSON string (training sizes, parameters, residual summary of the body fits).

Structure shape coefficients (lungs, femur) are *not* in the joint vector: no subject has
both anthropometry and a lung or femur surface, so they are a priori independent of the
features; their distribution is the shape model's own (standard normal coefficients).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dh.errors import fail
from models.population.gaussian import Conditional, Gaussian, condition

logger = logging.getLogger(__name__)

SEXES = ("F", "M")


@dataclass
class PopulationModel:
    """Per-sex joint Gaussians over ``[features, body parameters]``.

    Attributes:
        feature_names: catalogue features modelled.
        param_names: anny body parameters modelled.
        components: sex -> joint Gaussian.
        sex_prior: sex -> prior probability.
        valid_min: `(n_f,)` catalogue lower bound of each feature.
        valid_max: `(n_f,)` catalogue upper bound.
        n_observed: `(n_f + n_p,)` observed training values per entry.
        meta: provenance (sizes, parameters, fit residuals).
    """

    feature_names: list[str]
    param_names: list[str]
    components: dict[str, Gaussian]
    sex_prior: dict[str, float]
    valid_min: np.ndarray
    valid_max: np.ndarray
    n_observed: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """Names of the joint vector's entries."""
        return self.feature_names + self.param_names

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def with_derived(self, given: dict[str, float]) -> dict[str, float]:
        """`given` plus the features that follow from it exactly: BMI from stature and weight.

        Conditioning on BMI as well adds the non-linear term weight / stature^2 to what is
        otherwise a linear prediction.
        """
        out = dict(given)
        if "bmi_kg_m2" in self.feature_names and "bmi_kg_m2" not in out:
            if "stature_mm" in out and "weight_kg" in out:
                out["bmi_kg_m2"] = out["weight_kg"] / (out["stature_mm"] / 1000.0) ** 2
        return out

    def conditionals(
        self, given: dict[str, float], sex: str | None
    ) -> tuple[dict[str, Conditional], dict[str, float]]:
        """Per-sex conditionals on `given` (feature name -> value) and the sex weights.

        Features derived exactly from the given ones (:meth:`with_derived`) are given too.
        With `sex` given only that component is used (weight 1); otherwise each sex is
        weighted by prior x marginal likelihood of the given values.
        """
        idx = {self.index(k): float(v) for k, v in self.with_derived(given).items()}
        sexes = (sex,) if sex else SEXES
        conds = {s: condition(self.components[s], idx) for s in sexes}
        logw = np.array([np.log(self.sex_prior[s]) + conds[s].log_evidence for s in sexes])
        w = np.exp(logw - logw.max())
        w /= w.sum()
        return conds, dict(zip(sexes, w.tolist(), strict=True))

    def save(self, path: str | Path) -> Path:
        """Write the model as a compressed `.npz` (layout in the module docstring)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {
            "feature_names": np.array(self.feature_names),
            "param_names": np.array(self.param_names),
            "sex_prior": np.array([self.sex_prior[s] for s in SEXES]),
            "valid_min": self.valid_min,
            "valid_max": self.valid_max,
            "n_observed": self.n_observed,
            "meta": np.array(json.dumps(self.meta)),
        }
        for s in SEXES:
            arrays[f"mean_{s}"] = self.components[s].mean
            arrays[f"cov_{s}"] = self.components[s].cov
        np.savez_compressed(path, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> PopulationModel:
        """Read a model written by :meth:`save`.

        Raises:
            DHError: the file is missing or lacks arrays.
        """
        path = Path(path)
        if not path.is_file():
            fail(
                str(path),
                "",
                "missing file",
                "a population model .npz",
                "run `dvc repro build_population` (or `python -m flows.population`)",
            )
        with np.load(path, allow_pickle=False) as z:
            need = {"feature_names", "param_names", "mean_F", "cov_F", "mean_M", "cov_M"}
            if not need <= set(z.files):
                fail(str(path), "arrays", sorted(need - set(z.files)), "all arrays", "rebuild")
            return cls(
                feature_names=[str(s) for s in z["feature_names"]],
                param_names=[str(s) for s in z["param_names"]],
                components={s: Gaussian(z[f"mean_{s}"], z[f"cov_{s}"]) for s in SEXES},
                sex_prior=dict(zip(SEXES, z["sex_prior"].tolist(), strict=True)),
                valid_min=z["valid_min"],
                valid_max=z["valid_max"],
                n_observed=z["n_observed"],
                meta=json.loads(str(z["meta"])),
            )
