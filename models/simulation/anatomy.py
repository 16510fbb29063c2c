"""An anatomical frame for a femur surface, found from its shape alone.

Assumptions, stated once:

- The surface is a whole femur in millimetres, in a CT-derived world frame (RAS or LPS) or in
  the shape model's frame, where the world z axis points superior. The shaft axis is the
  principal axis of the vertices, refined through the centroids of mid-shaft slices; it is
  oriented so its z component is positive, which makes "proximal" the superior end.
- The femoral head is the sphere-like region at the proximal end farthest from the shaft
  axis; its fitted sphere gives the head centre and radius. The medial direction is the head
  centre's offset from the shaft axis, perpendicular to it.
- The greater trochanter is the most proximal part of the proximal end lying lateral of the
  shaft surface.
- The distal end is the distal `distal_fixed_fraction` of the femur length, measured along
  the shaft axis; it holds the condyles and is where the bone is fixed.

Frame: `axial` (distal -> proximal), `medial` (towards the head), `anterior_posterior`
(`axial x medial`; anterior for a right femur, posterior for a left one). All unit vectors
in the input frame.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)


@dataclass
class FemurFrame:
    """Anatomical landmarks and axes of one femur (mm, input frame).

    Attributes:
        origin: `(3,)` a point on the shaft axis (mid-shaft centroid).
        axial: `(3,)` shaft direction, distal to proximal.
        medial: `(3,)` direction from the shaft towards the femoral head.
        anterior_posterior: `(3,)` `axial x medial`.
        axial_min, axial_max: extent of the femur along `axial` from `origin` (mm).
        head_center: `(3,)` centre of the head sphere.
        head_radius: head sphere radius (mm).
        head_fit_rms: RMS distance of the head vertices to the sphere (mm).
        shaft_radius: mean distance of mid-shaft vertices to the axis (mm).
        trochanter_tip: `(3,)` superolateral-most proximal point lateral of the shaft.
    """

    origin: np.ndarray
    axial: np.ndarray
    medial: np.ndarray
    anterior_posterior: np.ndarray
    axial_min: float
    axial_max: float
    head_center: np.ndarray
    head_radius: float
    head_fit_rms: float
    shaft_radius: float
    trochanter_tip: np.ndarray

    @property
    def length(self) -> float:
        """Femur length along the shaft axis (mm)."""
        return self.axial_max - self.axial_min

    def axial_fraction(self, points: np.ndarray) -> np.ndarray:
        """Position along the shaft, 0 at the distal end and 1 at the proximal end."""
        s = (np.asarray(points) - self.origin) @ self.axial
        return (s - self.axial_min) / self.length

    def lateral_offset(self, points: np.ndarray) -> np.ndarray:
        """Signed distance (mm) lateral of the shaft axis (negative = medial)."""
        return -(np.asarray(points) - self.origin) @ self.medial


def fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares sphere (centre `(3,)`, radius) through `(n, 3)` points."""
    a = np.hstack([2 * points, np.ones((len(points), 1))])
    b = (points**2).sum(axis=1)
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    center = sol[:3]
    return center, float(np.sqrt(max(sol[3] + center @ center, 0.0)))


def femur_frame(vertices: np.ndarray) -> FemurFrame:
    """Find the shaft axis, the head sphere and the greater trochanter of a femur surface.

    Args:
        vertices: `(n_vertices, 3)` surface vertices in mm (see the module assumptions).
    """
    v = np.asarray(vertices, float)

    # 1. principal axis, oriented superior (+z of the CT/model frame)
    c = v.mean(axis=0)
    _, _, vt = np.linalg.svd(v - c, full_matrices=False)
    axis = vt[0] if vt[0][2] >= 0 else -vt[0]
    s = (v - c) @ axis
    lo, hi = s.min(), s.max()
    frac = (s - lo) / (hi - lo)

    # 2. refine the axis through mid-shaft slice centroids
    centroids = np.array(
        [v[(frac > f - 0.025) & (frac <= f + 0.025)].mean(axis=0) for f in np.linspace(0.3, 0.7, 9)]
    )
    origin = centroids.mean(axis=0)
    _, _, vt = np.linalg.svd(centroids - origin, full_matrices=False)
    axis = vt[0] if vt[0] @ axis >= 0 else -vt[0]
    s = (v - origin) @ axis
    lo, hi = s.min(), s.max()
    frac = (s - lo) / (hi - lo)
    radial = (v - origin) - np.outer(s, axis)
    dist = np.linalg.norm(radial, axis=1)
    mid = (frac > 0.35) & (frac < 0.65)
    shaft_radius = float(dist[mid].mean())

    # 3. head: seed at the proximal point farthest from the axis, then refit a sphere
    prox = np.flatnonzero(frac > 0.8)
    seed = v[prox[np.argmax(dist[prox])]]
    near = v[np.linalg.norm(v - seed, axis=1) < 35.0]
    center, radius = fit_sphere(near)
    for _ in range(4):
        d = np.linalg.norm(v - center, axis=1)
        sel = v[(np.abs(d - radius) < 0.2 * radius) & (frac > 0.7)]
        # keep the cap away from the neck: points farther from the axis than the centre
        sel = sel[((sel - center) @ _unit(_perp(center - origin, axis))) > -0.3 * radius]
        center, radius = fit_sphere(sel)
    rms = float(np.sqrt(np.mean((np.linalg.norm(sel - center, axis=1) - radius) ** 2)))
    if not 12.0 <= radius <= 40.0:
        warnings.warn(
            f"femoral head sphere radius {radius:.1f} mm is outside 12-40 mm: the frame "
            "assumptions (superior +z, whole femur) may not hold for this surface",
            stacklevel=2,
        )

    # 4. medial direction and greater trochanter
    medial = _unit(_perp(center - origin, axis))
    lateral = -(v - origin) @ medial
    cand = np.flatnonzero((frac > 0.75) & (lateral > shaft_radius))
    if len(cand) == 0:
        cand = np.flatnonzero((frac > 0.75) & (lateral > 0))
    tip = v[cand[np.argmax(s[cand] + lateral[cand])]]  # superolateral corner
    logger.debug("femur frame: length %.1f mm, head r %.1f mm", hi - lo, radius)
    return FemurFrame(
        origin=origin,
        axial=axis,
        medial=medial,
        anterior_posterior=np.cross(axis, medial),
        axial_min=float(lo),
        axial_max=float(hi),
        head_center=center,
        head_radius=radius,
        head_fit_rms=rms,
        shaft_radius=shaft_radius,
        trochanter_tip=tip,
    )


REGIONS = ("head_neck", "trochanter", "shaft", "distal")


def regions(frame: FemurFrame, points: np.ndarray, proximal: float, distal: float) -> np.ndarray:
    """Region label per point: index into :data:`REGIONS`.

    `head_neck` and `trochanter` split the proximal part (axial fraction above `proximal`)
    into medial and lateral of the shaft axis; `distal` is below `distal`; `shaft` between.
    """
    f = frame.axial_fraction(points)
    lat = frame.lateral_offset(points)
    label = np.full(len(points), REGIONS.index("shaft"))
    label[f < distal] = REGIONS.index("distal")
    label[(f > proximal) & (lat <= 0)] = REGIONS.index("head_neck")
    label[(f > proximal) & (lat > 0)] = REGIONS.index("trochanter")
    return label


def _perp(vec: np.ndarray, axis: np.ndarray) -> np.ndarray:
    return vec - (vec @ axis) * axis


def _unit(vec: np.ndarray) -> np.ndarray:
    return vec / np.linalg.norm(vec)
