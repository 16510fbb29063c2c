"""Label-map clean-up shared by validation and inference (numpy/scipy, no torch)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def remove_small_components(
    labels: np.ndarray, n_structures: int, min_fraction: float
) -> np.ndarray:
    """Drop each structure's connected pieces smaller than `min_fraction` of its largest piece.

    Keeps several similar-sized pieces (e.g. two vertebrae) while removing scattered false
    positives far from the structure. 26-connectivity; removed voxels become background.

    Args:
        labels: label map `(X, Y, Z)`, values 0..n_structures.
        n_structures: highest structure label.
        min_fraction: in [0, 1]; 0 returns the labels unchanged.

    Returns:
        A cleaned copy, same shape and dtype.
    """
    if min_fraction <= 0:
        return labels
    out = labels.copy()
    connectivity = np.ones((3, 3, 3), dtype=bool)
    for value in range(1, n_structures + 1):
        mask = labels == value
        if not mask.any():
            continue
        pieces, n = ndimage.label(mask, structure=connectivity)
        if n <= 1:
            continue
        sizes = np.bincount(pieces.ravel())[1:]  # `(n,)` voxels per piece
        keep = np.flatnonzero(sizes >= min_fraction * sizes.max()) + 1
        out[mask & ~np.isin(pieces, keep)] = 0
    return out
