"""Sliding-window inference in numpy, with any predictor (ONNX Runtime session or torch).

No torch import here: the serving path runs the ONNX model through this window loop.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

Predictor = Callable[[np.ndarray], np.ndarray]  # (B, 1, x, y, z) -> (B, C, x, y, z) logits


def _starts(length: int, roi: int, step: int) -> list[int]:
    if length <= roi:
        return [0]
    starts = list(range(0, length - roi, step)) + [length - roi]
    return sorted(set(starts))


def _gaussian(roi: tuple[int, int, int], sigma_scale: float = 0.125) -> np.ndarray:
    axes = []
    for n in roi:
        x = np.arange(n, dtype=np.float64) - (n - 1) / 2
        sigma = max(n * sigma_scale, 1e-3)
        axes.append(np.exp(-0.5 * (x / sigma) ** 2))
    weight = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    weight = weight / weight.max()
    return np.maximum(weight, 1e-3).astype(np.float32)  # `(x, y, z)`


def sliding_window(
    volume: np.ndarray,
    predictor: Predictor,
    roi: tuple[int, int, int] | list[int],
    n_classes: int,
    overlap: float = 0.25,
    batch_size: int = 2,
) -> np.ndarray:
    """Logits of a whole volume from windows of size `roi`, blended with Gaussian weights.

    Args:
        volume: normalised image `(X, Y, Z)` float32.
        predictor: maps `(B, 1, *roi)` float32 to `(B, n_classes, *roi)` logits.
        roi: window size in voxels (x, y, z).
        n_classes: output channels (background first).
        overlap: fraction of the window shared by neighbouring windows, in [0, 1).
        batch_size: windows per predictor call.

    Returns:
        Logits `(n_classes, X, Y, Z)` float32. The volume is padded with its minimum up to
        `roi` where smaller, and the padding is cropped from the result.
    """
    roi = tuple(int(r) for r in roi)
    shape = volume.shape
    padded_shape = tuple(max(s, r) for s, r in zip(shape, roi, strict=True))
    padded = np.full(padded_shape, float(volume.min()), dtype=np.float32)
    padded[: shape[0], : shape[1], : shape[2]] = volume
    steps = [max(1, int(round(r * (1 - overlap)))) for r in roi]
    corners = list(
        itertools.product(
            *[_starts(n, r, s) for n, r, s in zip(padded_shape, roi, steps, strict=True)]
        )
    )
    weight = _gaussian(roi)
    logits = np.zeros((n_classes, *padded_shape), dtype=np.float32)
    norm = np.zeros(padded_shape, dtype=np.float32)
    for i in range(0, len(corners), batch_size):
        chunk = corners[i : i + batch_size]
        batch = np.stack(
            [padded[x : x + roi[0], y : y + roi[1], z : z + roi[2]] for x, y, z in chunk]
        )[:, None]
        out = np.asarray(predictor(batch.astype(np.float32)), dtype=np.float32)
        for (x, y, z), window in zip(chunk, out, strict=True):
            sl = (slice(x, x + roi[0]), slice(y, y + roi[1]), slice(z, z + roi[2]))
            logits[(slice(None), *sl)] += window * weight
            norm[sl] += weight
    logits /= norm[None]
    return logits[:, : shape[0], : shape[1], : shape[2]]


def onnx_predictor(session: object) -> Predictor:
    """A predictor over an ONNX Runtime session with one image input and logits first output."""
    name = session.get_inputs()[0].name

    def predict(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {name: batch})[0]

    return predict
