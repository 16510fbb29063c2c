"""Fit anny body-shape parameters to measured values, many subjects at once (torch autograd).

For each subject the unknowns are the 26 body-shape parameters of
:mod:`models.body.anny_body` (6 phenotypes in [0, 1], 20 local changes in [-1, 1]), kept in
range by a sigmoid reparameterisation. The loss is the mean squared misfit of every measured
value, each divided by its tolerance (:class:`models.body.measure.Measurement`), plus a small
ridge penalty pulling local changes towards 0 so that the phenotypes explain what they can.
Missing targets (NaN) do not count. Subjects are fitted in batches with Adam.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from models.body.anny_body import PHENOTYPES, BodyModel
from models.body.measure import MeasurementSet

logger = logging.getLogger(__name__)


@dataclass
class FitResult:
    """Fitted parameters and the residual of every subject and measurement.

    Attributes:
        params: `(n_subjects, n_params)` body-shape parameters.
        measured: `(n_subjects, n_measurements)` values measured on the fitted meshes (mm, kg).
        targets: `(n_subjects, n_measurements)` requested values (NaN where not given).
        names: measurement names, in column order.
    """

    params: np.ndarray
    measured: np.ndarray
    targets: np.ndarray
    names: list[str]

    @property
    def residuals(self) -> np.ndarray:
        """`(n_subjects, n_measurements)` measured minus target (mm, kg; NaN where no target)."""
        return self.measured - self.targets

    def mae(self) -> dict[str, float]:
        """Mean absolute residual per measurement (mm or kg)."""
        r = np.abs(self.residuals)
        return {n: float(np.nanmean(r[:, i])) for i, n in enumerate(self.names)}


def _to_z(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    u = np.clip((p - lo) / (hi - lo), 0.02, 0.98)
    return np.log(u / (1 - u))


def fit_bodies(
    body: BodyModel,
    measurements: MeasurementSet,
    targets: np.ndarray,
    init: np.ndarray,
    n_iter: int = 120,
    lr: float = 0.05,
    local_ridge: float = 0.01,
    batch_size: int = 64,
    volume_every: int = 10,
    on_batch: Callable[[int], None] | None = None,
) -> FitResult:
    """Fit body-shape parameters so that the mesh measurements match `targets`.

    Args:
        body: the anny body model.
        measurements: the measurement procedures (defines the target columns).
        targets: `(n_subjects, n_measurements)` values in mm / kg, NaN where unknown.
        init: `(n_subjects, n_params)` starting parameters (e.g. sex-specific defaults).
        n_iter: Adam iterations per batch.
        lr: Adam learning rate (on the unconstrained parameters).
        local_ridge: weight of the squared local changes in the loss.
        batch_size: subjects fitted together.
        volume_every: iterations between exact volume evaluations (the volume is
            linearised in the blendshape coefficients in between).
        on_batch: called with the number of subjects finished after each batch.
    """
    lo, hi = body.lower, body.upper
    tol = torch.as_tensor(measurements.tolerances)
    lo_t, span_t = torch.as_tensor(lo), torch.as_tensor(hi - lo)
    n_phen = len(PHENOTYPES)
    out = np.empty_like(init, dtype=float)
    for start in range(0, len(targets), batch_size):
        sl = slice(start, start + batch_size)
        tgt = torch.tensor(targets[sl], dtype=torch.float64)
        mask = torch.isfinite(tgt)
        tgt = torch.nan_to_num(tgt)
        z = torch.tensor(_to_z(init[sl], lo, hi), requires_grad=True)
        opt = torch.optim.Adam([z], lr=lr)
        for it in range(n_iter):
            opt.zero_grad()
            p = lo_t + span_t * torch.sigmoid(z)
            if it % volume_every == 0:
                lin = measurements.volume_linearisation(body, p)
            m = measurements(body, p, linear_volume=lin)
            misfit = (((m - tgt) / tol) ** 2 * mask).sum(1) / mask.sum(1).clamp(min=1)
            loss = misfit.sum() + local_ridge * (p[:, n_phen:] ** 2).sum()
            loss.backward()
            opt.step()
        with torch.no_grad():
            out[sl] = (lo_t + span_t * torch.sigmoid(z)).numpy()
        if on_batch:
            on_batch(min(start + batch_size, len(targets)))
        logger.info("fitted subjects %d..%d, loss %.3f", start, start + len(tgt), loss.item())
    return FitResult(out, measure_params(body, measurements, out), targets, measurements.names)


def measure_params(
    body: BodyModel, measurements: MeasurementSet, params: np.ndarray, batch_size: int = 128
) -> np.ndarray:
    """Measurements `(n, n_measurements)` of the bodies of parameters `(n, n_params)`."""
    rows = []
    with torch.no_grad():
        for start in range(0, len(params), batch_size):
            p = torch.as_tensor(params[start : start + batch_size], dtype=torch.float64)
            rows.append(measurements(body, p).numpy())
    return np.concatenate(rows) if rows else np.empty((0, len(measurements.items)))
