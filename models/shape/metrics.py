"""Shape-model quality: compactness, leave-one-out generalisation and specificity (mm).

All three are computed on shapes in correspondence, already aligned (rigid Procrustes):
- compactness: cumulative fraction of the variance explained by the first k modes;
- generalisation: each subject left out in turn, rigidly aligned to the model built from the
  others and reconstructed by projection on its first k modes; mean per-vertex distance;
- specificity: shapes sampled from the model, each compared with its closest training shape
  by mean per-vertex distance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial import cKDTree

from models.shape.align import umeyama
from models.shape.model import ShapeModel


@dataclass
class ShapeModelMetrics:
    """Quality figures of one shape model (distances in mm).

    Attributes:
        structure: catalogue name.
        n_subjects: training shapes.
        n_vertices: vertices per shape.
        compactness: cumulative variance fraction for k = 1..n_components.
        generalisation_mm: mean LOO per-vertex error for k = 1..max modes.
        generalisation_all_modes_mm: the same with every mode of the LOO model.
        generalisation_all_modes_std_mm: spread over left-out subjects.
        generalisation_nearest_mm: with all modes, mean distance from each reconstructed
            vertex to the nearest held-out vertex (correspondence-free, as often reported).
        specificity_mm: mean distance of random model samples to the closest training shape.
        specificity_std_mm: its spread over the samples.
    """

    structure: str
    n_subjects: int
    n_vertices: int
    compactness: list[float]
    generalisation_mm: list[float]
    generalisation_all_modes_mm: float
    generalisation_all_modes_std_mm: float
    generalisation_nearest_mm: float
    specificity_mm: float
    specificity_std_mm: float

    def to_dict(self) -> dict:
        return asdict(self)


def compactness(model: ShapeModel) -> list[float]:
    """Cumulative fraction of variance for k = 1..n_components."""
    ratio = np.cumsum(model.variances) / model.variances.sum()
    return [float(r) for r in ratio]


def mean_vertex_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Euclidean distance between corresponding vertices `(n, 3)`, mm."""
    return float(np.linalg.norm(a - b, axis=1).mean())


def generalisation(
    shapes: np.ndarray, faces: np.ndarray, structure: str
) -> tuple[np.ndarray, np.ndarray]:
    """LOO reconstruction errors (mm).

    Returns:
        `(n_subjects, n_subjects - 1)` per-vertex errors with k = 1..n-1 modes (the last
        column uses every mode of the LOO model), and `(n_subjects,)` nearest-point errors with
        every mode.
    """
    n = len(shapes)
    errors = np.zeros((n, n - 1))
    nearest = np.zeros(n)
    for i in range(n):
        rest = np.delete(shapes, i, axis=0)
        model = ShapeModel.from_shapes(rest, faces, structure)
        target = umeyama(shapes[i], model.mean, with_scale=False).apply(shapes[i])
        coeffs = model.project(target)
        for k in range(1, n):
            errors[i, k - 1] = mean_vertex_distance(model.instance(coeffs[:k]), target)
        nearest[i] = float(cKDTree(target).query(model.instance(coeffs))[0].mean())
    return errors, nearest


def residual_std(
    shapes: np.ndarray, faces: np.ndarray, structure: str, max_folds: int = 8
) -> float:
    """Per-coordinate std (mm) of what the model cannot represent, from LOO reconstruction.

    Uses up to `max_folds` evenly spaced held-out subjects; the mean 3-D error e of an
    isotropic Gaussian with per-coordinate std s is s * sqrt(8 / pi).
    """
    n = len(shapes)
    errs = []
    for i in np.linspace(0, n - 1, min(n, max_folds)).round().astype(int):
        model = ShapeModel.from_shapes(np.delete(shapes, i, axis=0), faces, structure)
        target = umeyama(shapes[i], model.mean, with_scale=False).apply(shapes[i])
        errs.append(mean_vertex_distance(model.instance(model.project(target)), target))
    return float(np.mean(errs) / np.sqrt(8.0 / np.pi))


def specificity(
    model: ShapeModel, shapes: np.ndarray, n_samples: int, rng: np.random.Generator
) -> np.ndarray:
    """`(n_samples,)` distance (mm) from each random model instance to its closest shape."""
    samples = model.sample(n_samples, rng)
    flat = shapes.reshape(len(shapes), -1, 3)
    out = np.empty(n_samples)
    for s, sample in enumerate(samples):
        out[s] = min(mean_vertex_distance(sample, t) for t in flat)
    return out


def evaluate(
    model: ShapeModel, shapes: np.ndarray, n_samples: int = 200, seed: int = 0
) -> ShapeModelMetrics:
    """All three figures for a model and the aligned shapes it was built from."""
    gen, nearest = generalisation(shapes, model.faces, model.structure)
    spec = specificity(model, shapes, n_samples, np.random.default_rng(seed))
    return ShapeModelMetrics(
        structure=model.structure,
        n_subjects=int(len(shapes)),
        n_vertices=model.n_vertices,
        compactness=compactness(model),
        generalisation_mm=[float(g) for g in gen.mean(axis=0)],
        generalisation_all_modes_mm=float(gen[:, -1].mean()),
        generalisation_all_modes_std_mm=float(gen[:, -1].std()),
        generalisation_nearest_mm=float(nearest.mean()),
        specificity_mm=float(spec.mean()),
        specificity_std_mm=float(spec.std()),
    )
