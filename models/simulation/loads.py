"""Load cases on the femur: magnitudes from body weight, directions in the anatomical frame.

The only load case so far is `stance` (single-leg stance, after Pauwels' frontal-plane model
with magnitudes in the range Bergmann et al. 2001 measured with instrumented hip implants):

- hip contact force `hip_force_bw` x body weight on the femoral head cap, pointing distal and
  lateral at `hip_angle_deg` from the shaft axis;
- abductor force `abductor_force_bw` x body weight on the greater trochanter, pointing
  proximal and medial at `abductor_angle_deg` from the shaft axis;
- the distal `distal_fixed_fraction` of the femur fixed (all displacements zero).

Directions lie in the plane of the shaft axis and the head centre (see
:mod:`models.simulation.anatomy`); antero-posterior components are neglected.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dh.errors import fail
from models.simulation.anatomy import FemurFrame

GRAVITY = 9.81  # m/s^2: body weight in kg -> newtons
LOAD_CASES = ("stance",)


@dataclass
class LoadCase:
    """One load case's parameters (magnitudes in body weights, angles in degrees)."""

    name: str
    body_weight_kg: float
    hip_force_bw: float
    hip_angle_deg: float
    abductor_force_bw: float
    abductor_angle_deg: float

    @property
    def hip_force_n(self) -> float:
        """Hip contact force magnitude in N."""
        return self.hip_force_bw * self.body_weight_kg * GRAVITY

    @property
    def abductor_force_n(self) -> float:
        """Abductor force magnitude in N."""
        return self.abductor_force_bw * self.body_weight_kg * GRAVITY

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "hip_force_n": self.hip_force_n,
            "abductor_force_n": self.abductor_force_n,
        }


def load_case(
    name: str,
    body_weight_kg: float,
    params: dict[str, Any],
    hip_force_bw: float | None = None,
    abductor_force_bw: float | None = None,
) -> LoadCase:
    """Build a load case from `params.yaml` (section `simulation`), checking plausibility.

    Raises:
        DHError: unknown load case, or a body weight outside the configured range.
    """
    if name not in LOAD_CASES:
        fail(
            "load case",
            "load_case",
            name,
            f"one of {', '.join(LOAD_CASES)}",
            "pass --load-case stance",
        )
    bw = params["body_weight_kg"]
    if not (np.isfinite(body_weight_kg) and bw["min"] <= body_weight_kg <= bw["max"]):
        fail(
            "load case",
            "body_weight_kg",
            body_weight_kg,
            f"a body weight between {bw['min']} and {bw['max']} kg",
            "pass the subject's body weight in kilograms (e.g. --body-weight-kg 70)",
        )
    st = params[name]
    for field, value in (("hip_force_bw", hip_force_bw), ("abductor_force_bw", abductor_force_bw)):
        if value is not None and not (np.isfinite(value) and 0.0 <= value <= 10.0):
            fail("load case", field, value, "0-10 body weights", "use a plausible multiple")
    return LoadCase(
        name=name,
        body_weight_kg=float(body_weight_kg),
        hip_force_bw=float(st["hip_force_bw"] if hip_force_bw is None else hip_force_bw),
        hip_angle_deg=float(st["hip_angle_deg"]),
        abductor_force_bw=float(
            st["abductor_force_bw"] if abductor_force_bw is None else abductor_force_bw
        ),
        abductor_angle_deg=float(st["abductor_angle_deg"]),
    )


def force_directions(frame: FemurFrame, case: LoadCase) -> tuple[np.ndarray, np.ndarray]:
    """Unit directions `(3,)` of the hip contact force and the abductor force (input frame)."""
    a = np.radians(case.hip_angle_deg)
    b = np.radians(case.abductor_angle_deg)
    hip = -np.cos(a) * frame.axial - np.sin(a) * frame.medial
    abductor = np.cos(b) * frame.axial + np.sin(b) * frame.medial
    return hip, abductor
