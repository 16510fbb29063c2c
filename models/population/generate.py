"""Generate a digital human from any subset of features: the API `dh generate` and serving call.

``generate({"sex": "F", "age_years": 35, "stature_mm": 1620, "weight_kg": 55})`` conditions
the population model on the given features, predicts every other feature with an interval,
builds the expected body (anny skin, RAS mm) with its per-vertex standard deviation (mm),
places the lung and femur mean shapes and carries the HRA organs with the skin.
:func:`generate_batch` does the same for a list of requests (one body evaluation per batch).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import trimesh
from scipy.stats import norm

from dh.config import ARTIFACTS, load_params
from dh.errors import DHError, Problem
from models.population.model import SEXES, PopulationModel

logger = logging.getLogger(__name__)

MODEL_DIR = ARTIFACTS / "population"


@dataclass
class FeaturePrediction:
    """A predicted feature: mean, standard deviation and a two-sided interval (its unit)."""

    name: str
    mean: float
    sd: float
    lower: float
    upper: float
    level: float


@dataclass
class GeneratedHuman:
    """One generated digital human (all geometry in the body frame, RAS mm).

    Attributes:
        given: the request, as validated (sex as "F"/"M", numbers in catalogue units).
        sex_probability: P(F), P(M) given the request (1/0 when sex was given).
        predictions: every feature not given, with intervals.
        body_params: `(n_params,)` anny body-shape parameters of the skin.
        skin: the expected body surface.
        vertex_std_mm: `(n_vertices,)` per-vertex standard deviation of the skin position.
        body_measurements: measurements taken on the generated skin (mm, kg).
        structures: lung / femur mean shapes placed in the body.
        organs: HRA organs carried with the skin.
        seconds: wall time of the generation.
    """

    given: dict[str, Any]
    sex_probability: dict[str, float]
    predictions: dict[str, FeaturePrediction]
    body_params: np.ndarray
    skin: trimesh.Trimesh
    vertex_std_mm: np.ndarray
    body_measurements: dict[str, float]
    structures: dict[str, trimesh.Trimesh] = field(default_factory=dict)
    organs: dict[str, trimesh.Trimesh] = field(default_factory=dict)
    seconds: float = 0.0


class Generator:
    """Holds the loaded model, body model, organ atlases and structure models."""

    def __init__(self, model_dir: Path = MODEL_DIR, params: dict[str, Any] | None = None):
        from models.body.anny_body import load_body_model
        from models.body.measure import build_measurements

        self.params = params or load_params("population")
        self.model = PopulationModel.load(Path(model_dir) / "population.npz")
        self.body = load_body_model()
        self.measurements = build_measurements(self.body, self.params["body_density_kg_m3"])
        self.atlases = _load_atlases(Path(model_dir))
        self.structures = _load_structures()
        self._jacobians: dict[str, np.ndarray] = {}
        # per-template precomputations, once per sex (not per request)
        for sex in SEXES:
            self._vertex_jacobian(sex)
        for atlas in self.atlases.values():
            atlas.carry_operator()

    # ------------------------------------------------------------------ validation

    def validate(self, features: dict[str, Any]) -> tuple[str | None, dict[str, float]]:
        """Split a request into sex and numeric features, checking names and ranges.

        Raises:
            DHError: unknown feature, wrong type, or value outside the valid range (the
                message gives the valid range), or a feature the model does not cover.
        """
        from dh.cohort import check_feature_values

        check_feature_values(features)
        sex = features.get("sex")
        numeric = {k: float(v) for k, v in features.items() if k != "sex"}
        missing = [k for k in numeric if k not in self.model.feature_names]
        if missing:
            raise DHError(
                [
                    Problem(
                        "request",
                        k,
                        k,
                        "a feature the population model covers",
                        f"use one of {len(self.model.feature_names)} modelled features, "
                        "e.g. stature_mm, weight_kg, chest_circumference_mm",
                        "feature",
                    )
                    for k in missing
                ]
            )
        return sex, numeric

    # ------------------------------------------------------------------ generation

    def generate(
        self, features: dict[str, Any], with_organs: bool = True, seed: int = 0
    ) -> GeneratedHuman:
        """The expected digital human given `features` (any subset, catalogue units)."""
        return self.generate_batch([features], with_organs=with_organs, seed=seed)[0]

    def generate_batch(
        self, requests: list[dict[str, Any]], with_organs: bool = True, seed: int = 0
    ) -> list[GeneratedHuman]:
        """Generate one human per request; the body refinement runs as one batch.

        `seed` is kept for compatibility: generation is deterministic (the per-vertex std is
        a closed-form linearisation, :meth:`_vertex_std`)."""
        t0 = time.perf_counter()
        parsed = [self.validate(r) for r in requests]
        conds = [self._predict(sex, num) for sex, num in parsed]
        params0 = np.stack([c[2] for c in conds])
        targets = np.full((len(requests), len(self.measurements.names)), np.nan)
        for k, (_, num) in enumerate(parsed):
            for name, value in num.items():
                if name in self.measurements.names:
                    targets[k, self.measurements.names.index(name)] = value
        params, measured_all = self._refine(params0, targets)
        out = []
        for k, (sex, num) in enumerate(parsed):
            weights, predictions, p_mean, spread = conds[k]
            skin = self.body.mesh(params[k])
            std = self._vertex_std(params[k], p_mean, spread)
            measured = measured_all[k]
            human = GeneratedHuman(
                given={**({"sex": sex} if sex else {}), **num},
                sex_probability=weights,
                predictions=predictions,
                body_params=params[k],
                skin=skin,
                vertex_std_mm=std,
                body_measurements=dict(
                    zip(self.measurements.names, measured.tolist(), strict=True)
                ),
            )
            if with_organs:
                self._add_inside(human, sex or max(weights, key=weights.get))
            out.append(human)
        elapsed = time.perf_counter() - t0
        for h in out:
            h.seconds = elapsed / len(out)
        return out

    def _predict(self, sex: str | None, numeric: dict[str, float]):  # noqa: ANN202
        """Mixture conditional: sex weights, feature predictions, mean params, param samples."""
        model = self.model
        conds, weights = model.conditionals(numeric, sex)
        level = float(self.params["interval_level"])
        zq = float(norm.ppf(0.5 + level / 2))
        free = next(iter(conds.values())).index
        means = np.stack([conds[s].mean for s in conds])  # (n_sex, n_free)
        vars_ = np.stack([np.diag(conds[s].cov) for s in conds])
        w = np.array([weights[s] for s in conds])[:, None]
        mean = (w * means).sum(0)
        var = (w * (vars_ + means**2)).sum(0) - mean**2
        sd = np.sqrt(np.clip(var, 0, None))
        predictions = {}
        for pos, idx in enumerate(free):
            if idx < model.n_features:
                name = model.names[idx]
                predictions[name] = FeaturePrediction(
                    name, float(mean[pos]), float(sd[pos]),
                    float(mean[pos] - zq * sd[pos]), float(mean[pos] + zq * sd[pos]), level,
                )  # fmt: skip
        p_pos = np.flatnonzero(free >= model.n_features)
        lo, hi = self.body.lower, self.body.upper
        p_mean = np.clip(mean[p_pos], lo, hi)
        # per-sex conditional of the body parameters, for the per-vertex std
        spread = [
            (w[k, 0], s, conds[s].mean[p_pos], conds[s].cov[np.ix_(p_pos, p_pos)])
            for k, s in enumerate(conds)
        ]
        return weights, predictions, p_mean, spread

    def _refine(self, params0: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pull bodies onto the given mesh-measurable features (no-op where none given).

        Returns:
            `(n, n_params)` parameters and `(n, n_measurements)` measurements of their bodies
            (mm, kg; exact, taken once).
        """
        from models.body.fit import fit_bodies, measure_params

        n_iter = int(self.params["refine_iterations"])
        rows = np.flatnonzero(np.isfinite(targets).any(1))
        params = params0.copy()
        measured = np.empty((len(params0), len(self.measurements.names)))
        done = np.zeros(len(params0), dtype=bool)
        if n_iter and len(rows):
            fit = fit_bodies(
                self.body, self.measurements, targets[rows], params0[rows], n_iter=n_iter,
                lr=float(self.params["fit_learning_rate"]),
                local_ridge=float(self.params["fit_local_ridge"]), batch_size=len(rows),
            )  # fmt: skip
            params[rows] = fit.params
            measured[rows] = fit.measured
            done[rows] = True
        if not done.all():
            measured[~done] = measure_params(self.body, self.measurements, params[~done])
        return params, measured

    def _vertex_jacobian(self, sex: str) -> np.ndarray:
        """`(n_vertices * 3, n_params)` d vertex / d parameter (mm) at the sex's mean body.

        Central differences of half-width 0.05 (parameter units): at the zero kink of a
        local change (an increase/decrease blendshape pair) this is the secant slope across
        it. Computed once per sex and cached (one batched body evaluation).
        """
        if sex not in self._jacobians:
            comp = self.model.components[sex]
            p0 = np.clip(comp.mean[self.model.n_features :], self.body.lower, self.body.upper)
            h = 0.05
            eye = np.eye(len(p0)) * h
            with torch.no_grad():
                v = self.body.vertices(np.concatenate([p0 + eye, p0 - eye])).numpy()
            n = len(p0)
            jac = (v[:n] - v[n:]).reshape(n, -1).T / (2 * h)
            self._jacobians[sex] = jac
        return self._jacobians[sex]

    def _vertex_std(self, params: np.ndarray, p_mean: np.ndarray, spread: list) -> np.ndarray:
        """Per-vertex std (mm) of the skin position around the expected body.

        First-order (delta-method) estimate of the RMS distance of bodies drawn from the
        conditional parameter distribution (a mixture over sex, shifted so that its mean is
        the refined `params`) from the expected body. With `B_v` the `(3, n_params)` rows of
        the vertex Jacobian of sex `s` (:meth:`_vertex_jacobian`, at that sex's population
        mean), and the component's conditional mean `m_s` and covariance `S_s`::

            var_v = sum_s w_s (tr(B_v S_s B_v^T) + |B_v (m_s - p_mean)|^2)

        Approximation: the body is taken as linear in the parameters near the sex's mean, and
        the clipping of draws to the parameter bounds is ignored. Against a 400-draw
        Monte-Carlo estimate on a generated body it agrees to within the tolerance stated in
        tests/models/population/test_vertex_std.py.
        """
        del params  # the linearised spread does not depend on where it is centred
        var = np.zeros(self.body.n_vertices)
        for weight, sex, mean_s, cov_s in spread:
            if weight <= 0:
                continue
            jac = self._vertex_jacobian(sex)  # (V*3, n_p)
            d = mean_s - p_mean
            per_coord = ((jac @ cov_s) * jac).sum(1) + (jac @ d) ** 2
            var += weight * per_coord.reshape(-1, 3).sum(1)
        return np.sqrt(var)

    def _add_inside(self, human: GeneratedHuman, sex: str) -> None:
        from models.organs.hra import carry
        from models.organs.structures import place_structures

        verts = np.asarray(human.skin.vertices)
        if sex in self.atlases:
            human.organs = carry(self.atlases[sex], verts)
        with torch.no_grad():
            joints = self.body.joints(human.body_params)[0].numpy()
        human.structures = place_structures(self.structures, self.body, verts, joints)

    def sample(
        self, n: int, features: dict[str, Any], rng: np.random.Generator
    ) -> list[dict[str, Any]]:
        """Draw `n` virtual subjects given `features`: every feature and body parameter, and
        standardised shape coefficients of each structure (``<structure>_coeffs``, drawn from
        the shape model's own prior: they are independent of the features)."""
        sex, numeric = self.validate(features)
        conds, weights = self.model.conditionals(numeric, sex)
        sexes = list(conds)
        picks = rng.choice(len(sexes), size=n, p=[weights[s] for s in sexes])
        out = []
        for k in picks:
            c = conds[sexes[k]]
            draw = rng.multivariate_normal(c.mean, c.cov, method="eigh")
            row = {"sex": sexes[k], **numeric}
            row.update({self.model.names[i]: float(x) for i, x in zip(c.index, draw, strict=True)})
            for name, shape in self.structures.items():
                row[f"{name}_coeffs"] = rng.standard_normal(shape.n_components).tolist()
            out.append(row)
        return out


def _load_atlases(model_dir: Path) -> dict:
    from models.organs.hra import OrganAtlas

    out = {}
    for s in SEXES:
        path = model_dir / f"organs_{s}.npz"
        if path.is_file():
            out[s] = OrganAtlas.load(path)
    return out


def _load_structures() -> dict:
    try:
        from models.shape.model import ShapeModel
    except ImportError:  # the shape package is optional for the body alone
        return {}
    out = {}
    for path in sorted((ARTIFACTS / "shape").glob("*.npz")):
        try:
            out[path.stem] = ShapeModel.load(path)
        except (DHError, KeyError, ValueError) as exc:
            logger.warning("shape model %s not loaded: %s", path.name, exc)
    return out


_LOCK = threading.Lock()
_GENERATOR: dict[str, Generator] = {}


def default_generator() -> Generator:
    """The process-wide generator over `artifacts/population` (loaded once)."""
    with _LOCK:
        if "default" not in _GENERATOR:
            _GENERATOR["default"] = Generator()
        return _GENERATOR["default"]


def generate(features: dict[str, Any], with_organs: bool = True) -> GeneratedHuman:
    """Generate the expected digital human for `features` (see :class:`Generator`)."""
    return default_generator().generate(features, with_organs=with_organs)


def generate_batch(
    requests: list[dict[str, Any]], with_organs: bool = True
) -> list[GeneratedHuman]:
    """Batched :func:`generate` (for adaptive batching in serving)."""
    return default_generator().generate_batch(requests, with_organs=with_organs)
