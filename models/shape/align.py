"""Similarity and rigid alignment of point sets (mm): Umeyama and generalised Procrustes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Similarity:
    """`x -> scale * x @ rotation.T + translation` (mm in, mm out).

    Attributes:
        rotation: `(3, 3)` proper rotation.
        translation: `(3,)` mm.
        scale: isotropic scale (1 for a rigid transform).
    """

    rotation: np.ndarray
    translation: np.ndarray
    scale: float = 1.0

    @classmethod
    def identity(cls) -> Similarity:
        return cls(np.eye(3), np.zeros(3), 1.0)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transform `(n, 3)` points."""
        return self.scale * np.asarray(points) @ self.rotation.T + self.translation

    def inverse(self) -> Similarity:
        r = self.rotation.T
        return Similarity(r, -(r @ self.translation) / self.scale, 1.0 / self.scale)

    def compose(self, inner: Similarity) -> Similarity:
        """`self(inner(x))`."""
        return Similarity(
            self.rotation @ inner.rotation,
            self.scale * self.rotation @ inner.translation + self.translation,
            self.scale * inner.scale,
        )

    def to_matrix(self) -> np.ndarray:
        """`(4, 4)` homogeneous matrix."""
        m = np.eye(4)
        m[:3, :3] = self.scale * self.rotation
        m[:3, 3] = self.translation
        return m


def umeyama(
    source: np.ndarray,
    target: np.ndarray,
    weights: np.ndarray | None = None,
    with_scale: bool = True,
    scale_bounds: tuple[float, float] | None = None,
) -> Similarity:
    """Least-squares similarity (or rigid) transform mapping `source` onto `target`.

    Args:
        source: `(n, 3)` points, mm.
        target: `(n, 3)` corresponding points, mm.
        weights: `(n,)` non-negative weights (default all ones).
        with_scale: estimate an isotropic scale; otherwise scale is 1.
        scale_bounds: optional (low, high) clamp of the scale (translation re-solved).
    """
    w = np.ones(len(source)) if weights is None else np.asarray(weights, dtype=float)
    w = w / max(w.sum(), 1e-12)
    mu_s = w @ source
    mu_t = w @ target
    xs = source - mu_s
    xt = target - mu_t
    cov = (xt * w[:, None]).T @ xs
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    scale = 1.0
    if with_scale:
        var_s = w @ (xs**2).sum(axis=1)
        scale = float((d * sign).sum() / max(var_s, 1e-12))
        if scale_bounds is not None:
            scale = float(np.clip(scale, *scale_bounds))
    return Similarity(rot, mu_t - scale * rot @ mu_s, scale)


def generalised_procrustes(
    shapes: np.ndarray, with_scale: bool = False, iterations: int = 10
) -> tuple[np.ndarray, list[Similarity]]:
    """Align shapes in correspondence to their evolving mean (rigid by default).

    The mean is kept in the frame of the first shape, so the aligned shapes stay in world mm
    near where the first subject was.

    Args:
        shapes: `(n_subjects, n_vertices, 3)`, mm.
        with_scale: also remove size (off by default: size is shape information here).
        iterations: Procrustes rounds.

    Returns:
        The aligned shapes `(n_subjects, n_vertices, 3)` and each subject's transform.
    """
    shapes = np.asarray(shapes, dtype=float)
    reference = shapes[0].copy()
    transforms = [Similarity.identity() for _ in shapes]
    aligned = shapes.copy()
    for _ in range(iterations):
        transforms = [umeyama(s, reference, with_scale=with_scale) for s in shapes]
        aligned = np.stack([t.apply(s) for t, s in zip(transforms, shapes, strict=True)])
        new_ref = aligned.mean(axis=0)
        # keep the reference anchored on the first subject's pose
        new_ref = umeyama(new_ref, shapes[0], with_scale=False).apply(new_ref)
        if np.abs(new_ref - reference).max() < 1e-6:
            break
        reference = new_ref
    return aligned, transforms
