"""Individual matching: fit structure shape models to one subject's observations (mm).

Public interface:

- :func:`fit_points(points_mm, structure, axes="LPS", ...) -> FitResult`: one structure from
  surface points in world mm (what the fitting service calls).
- :func:`read_inputs(paths, structure, features, axes) -> SubjectInputs`: label maps, `dh
  segment` folders, meshes, point CSVs, landmark CSVs and `NAME=VALUE` features, checked.
- :func:`fit_subject(inputs) -> SubjectFit` and :func:`write_fit_outputs(result, inputs, out)`:
  the `dh fit` output folder (fit.json, `<structure>.vtp`, `<structure>_residual.png`).
- :class:`FitResult`: fitted vertices (world mm), faces, standardised shape coefficients with
  posterior std, pose, per-vertex residual and std (mm), residual summary, time.
"""

from __future__ import annotations

from models.fitting.api import (
    FeatureEstimate,
    SubjectFit,
    fit_points,
    fit_subject,
    write_fit_outputs,
)
from models.fitting.core import FitOptions, FitResult, ResidualSummary, fit_model
from models.fitting.inputs import Observation, SubjectInputs, read_inputs

__all__ = [
    "FeatureEstimate",
    "FitOptions",
    "FitResult",
    "Observation",
    "ResidualSummary",
    "SubjectFit",
    "SubjectInputs",
    "fit_model",
    "fit_points",
    "fit_subject",
    "read_inputs",
    "write_fit_outputs",
]
