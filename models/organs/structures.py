"""Place the structure shape models (lung lobe, femur) in a generated body (RAS mm).

No subject has both a body surface and a lung or femur surface, so the structures'
shape coefficients are independent of the features: the *mean* shape is placed, by rules on
the body's joints and skin:

- ``femur_left``: a similarity map sending the femur's proximal and distal end landmarks onto
  the body's left hip and knee joint centres (axis aligned, isotropic scale so that the
  end-to-end length is 1.05 x the joint distance, centred between the joints); the rotation
  about the shaft axis is the one of least rotation from the model frame (z superior).
- ``lungs`` (left lower lobe): translated, unscaled and unrotated (its source frame is a CT
  frame, z superior) so that its centroid sits in the left posterior lower thorax: a quarter
  of the chest breadth left of the midline, a tenth of the chest depth behind the chest
  centre, and 30% of the way from the waist level up to the shoulder joints.
"""

from __future__ import annotations

import logging

import numpy as np
import trimesh

logger = logging.getLogger(__name__)


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`(3, 3)` least rotation taking direction `a` onto direction `b`."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    v, c = np.cross(a, b), float(a @ b)
    if np.linalg.norm(v) < 1e-9:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k / (1 + c)


def place_femur(model, hip: np.ndarray, knee: np.ndarray) -> trimesh.Trimesh:  # noqa: ANN001
    """The femur mean shape between the hip and knee joint centres `(3,)` (RAS mm)."""
    mean = np.asarray(model.mean)
    p = mean[model.landmarks["femur_proximal_end"]]
    d = mean[model.landmarks["femur_distal_end"]]
    rot = _rotation_between(d - p, knee - hip)
    scale = 1.05 * np.linalg.norm(knee - hip) / np.linalg.norm(d - p)
    v = (mean - 0.5 * (p + d)) @ rot.T * scale + 0.5 * (hip + knee)
    return trimesh.Trimesh(v, model.faces, process=False)


def place_lung(model, skin: np.ndarray, sho_z: float, waist_z: float) -> trimesh.Trimesh:  # noqa: ANN001
    """The left-lower-lobe mean shape in the left posterior lower thorax (RAS mm)."""
    mean = np.asarray(model.mean)
    z = waist_z + 0.30 * (sho_z - waist_z)
    band = skin[np.abs(skin[:, 2] - z) < 15.0]
    band = band[np.abs(band[:, 0]) < 0.5 * (band[:, 0].max() - band[:, 0].min()) * 0.6]
    breadth = band[:, 0].max() - band[:, 0].min()
    depth = band[:, 1].max() - band[:, 1].min()
    centre = np.array(
        [-0.25 * breadth, 0.5 * (band[:, 1].max() + band[:, 1].min()) - 0.1 * depth, z]
    )
    v = mean - mean.mean(0) + centre
    return trimesh.Trimesh(v, model.faces, process=False)


def place_structures(
    models: dict,
    body,
    skin: np.ndarray,
    joints: np.ndarray,  # noqa: ANN001
) -> dict[str, trimesh.Trimesh]:
    """Place every available structure model in the body.

    Args:
        models: structure name -> :class:`models.shape.model.ShapeModel`.
        body: the :class:`models.body.anny_body.BodyModel` (for bone indices).
        skin: `(n_vertices, 3)` the body's skin, RAS mm.
        joints: `(n_bones, 3)` the body's joint centres, RAS mm.
    """
    out = {}
    hip, knee = joints[body.bone("upperleg01.L")], joints[body.bone("lowerleg01.L")]
    sho_z = joints[body.bone("upperarm01.L"), 2]
    waist_z = hip[2] + 0.28 * (sho_z - hip[2])
    for name, model in models.items():
        if name.startswith("femur") and "femur_proximal_end" in model.landmarks:
            out[name] = place_femur(model, hip, knee)
        elif name.startswith("lung"):
            out[name] = place_lung(model, skin, sho_z, waist_z)
        else:
            logger.info("no placement rule for structure %s; left out", name)
    return out
