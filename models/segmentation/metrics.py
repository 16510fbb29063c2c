"""Dice and 95th-percentile Hausdorff distance per structure, in numpy (no torch)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage


@dataclass
class StructureScore:
    """Agreement of one structure between a predicted and a reference label map.

    Attributes:
        dice: 2|A∩B| / (|A| + |B|); None when the structure is absent from both.
        hd95_mm: symmetric 95th-percentile surface distance in mm; None when either is empty.
        voxels_pred: voxels predicted.
        voxels_ref: voxels in the reference.
    """

    dice: float | None
    hd95_mm: float | None
    voxels_pred: int
    voxels_ref: int

    def to_dict(self) -> dict:
        return asdict(self)


def dice(pred: np.ndarray, ref: np.ndarray) -> float | None:
    """Dice of two boolean masks of equal shape; None when both are empty."""
    total = int(pred.sum()) + int(ref.sum())
    if total == 0:
        return None
    return float(2 * np.logical_and(pred, ref).sum() / total)


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hd95(pred: np.ndarray, ref: np.ndarray, spacing_mm: tuple[float, ...]) -> float | None:
    """Symmetric 95th-percentile Hausdorff distance (mm) between mask surfaces.

    The larger of the two directed 95th percentiles, as MONAI computes it. None when either
    mask is empty.
    """
    if not pred.any() or not ref.any():
        return None
    sp, sr = _surface(pred), _surface(ref)
    to_ref = ndimage.distance_transform_edt(~sr, sampling=spacing_mm)
    to_pred = ndimage.distance_transform_edt(~sp, sampling=spacing_mm)
    return float(max(np.percentile(to_ref[sp], 95), np.percentile(to_pred[sr], 95)))


def score_labels(
    pred: np.ndarray, ref: np.ndarray, names: list[str], spacing_mm: tuple[float, ...]
) -> dict[str, StructureScore]:
    """Per-structure scores; label i + 1 is `names[i]`. Arrays `(X, Y, Z)` on one grid."""
    scores = {}
    for i, name in enumerate(names, start=1):
        p, r = pred == i, ref == i
        scores[name] = StructureScore(
            dice(p, r), hd95(p, r, spacing_mm), int(p.sum()), int(r.sum())
        )
    return scores


def mean_dice(scores: dict[str, StructureScore]) -> float | None:
    """Mean Dice over structures present in the reference; None when none is."""
    values = [s.dice for s in scores.values() if s.dice is not None and s.voxels_ref > 0]
    return float(np.mean(values)) if values else None
