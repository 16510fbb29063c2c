"""The point-distribution shape model: mean, principal components and variances in mm.

A :class:`ShapeModel` describes one structure (an organ or bone) as
`mean + sum_k b_k * sqrt(variance_k) * component_k`, where the shape coefficients `b` are
standardised (a priori independent standard normal). Vertices are in millimetres in the
model frame (see the builder of each structure for its frame); `faces` index the vertices.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from dh.errors import fail

logger = logging.getLogger(__name__)


@dataclass
class Posterior:
    """A Gaussian posterior over standardised shape coefficients.

    Attributes:
        mean: `(n_components,)` posterior mean coefficients (units of prior std).
        cov: `(n_components, n_components)` posterior covariance.
    """

    mean: np.ndarray
    cov: np.ndarray

    @property
    def std(self) -> np.ndarray:
        """`(n_components,)` posterior standard deviation of each coefficient."""
        return np.sqrt(np.clip(np.diag(self.cov), 0.0, None))


@dataclass
class ShapeModel:
    """A linear (PCA) shape model of one structure.

    Attributes:
        structure: catalogue name, e.g. "lungs" or "femur_left".
        mean: `(n_vertices, 3)` mean shape, mm, model frame.
        faces: `(n_faces, 3)` int triangles over the vertices.
        components: `(n_components, n_vertices, 3)` orthonormal principal directions
            (unit norm over all 3 * n_vertices values).
        variances: `(n_components,)` variance of each direction, mm^2.
        subject_ids: the training subjects, in the order used to build the model.
        landmarks: named vertex indices (e.g. anatomical points), may be empty.
        meta: free provenance details (frame, builder parameters, residuals).
    """

    structure: str
    mean: np.ndarray
    faces: np.ndarray
    components: np.ndarray
    variances: np.ndarray
    subject_ids: list[str] = field(default_factory=list)
    landmarks: dict[str, int] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_vertices(self) -> int:
        return int(self.mean.shape[0])

    @property
    def n_components(self) -> int:
        return int(self.variances.shape[0])

    @property
    def std(self) -> np.ndarray:
        """`(n_components,)` prior standard deviation of each mode, mm."""
        return np.sqrt(self.variances)

    @property
    def basis(self) -> np.ndarray:
        """`(n_vertices, 3, n_components)` displacement (mm) per unit standardised coefficient."""
        return np.moveaxis(self.components * self.std[:, None, None], 0, -1)

    @classmethod
    def from_shapes(
        cls,
        shapes: np.ndarray,
        faces: np.ndarray,
        structure: str,
        subject_ids: list[str] | None = None,
        variance_kept: float = 1.0,
        meta: dict[str, Any] | None = None,
    ) -> ShapeModel:
        """PCA of aligned shapes in correspondence.

        Args:
            shapes: `(n_subjects, n_vertices, 3)` aligned shapes, mm.
            faces: `(n_faces, 3)` triangles shared by all shapes.
            structure: catalogue name.
            subject_ids: ids of the shapes.
            variance_kept: keep the fewest modes explaining this fraction of the variance.
            meta: provenance to store with the model.
        """
        n, nv, _ = shapes.shape
        mean = shapes.mean(axis=0)
        centred = (shapes - mean).reshape(n, -1)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        variances = s**2 / max(n - 1, 1)
        keep = variances > 1e-10 * max(variances.max(), 1e-30)
        variances, vt = variances[keep], vt[keep]
        if variance_kept < 1.0:
            ratio = np.cumsum(variances) / variances.sum()
            k = int(np.searchsorted(ratio, variance_kept) + 1)
            variances, vt = variances[:k], vt[:k]
        return cls(
            structure=structure,
            mean=mean,
            faces=np.asarray(faces, dtype=np.int64),
            components=vt.reshape(-1, nv, 3),
            variances=variances,
            subject_ids=list(subject_ids or []),
            meta=dict(meta or {}),
        )

    def instance(self, coeffs: np.ndarray | None = None) -> np.ndarray:
        """`(n_vertices, 3)` shape (mm) for standardised coefficients (zeros-padded if short)."""
        b = self._pad(coeffs)
        return self.mean + np.tensordot(b * self.std, self.components, axes=1)

    def mesh(self, coeffs: np.ndarray | None = None) -> trimesh.Trimesh:
        """The instance as a triangle mesh (mm, model frame)."""
        return trimesh.Trimesh(self.instance(coeffs), self.faces, process=False)

    def project(self, shape: np.ndarray) -> np.ndarray:
        """Least-squares standardised coefficients of a shape `(n_vertices, 3)` in the frame."""
        d = (np.asarray(shape) - self.mean).reshape(-1)
        return (self.components.reshape(self.n_components, -1) @ d) / self.std

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """`(n, n_vertices, 3)` random shapes from the Gaussian prior."""
        b = rng.standard_normal((n, self.n_components))
        return np.stack([self.instance(bi) for bi in b])

    def posterior(
        self,
        vertex_ids: np.ndarray,
        points: np.ndarray,
        noise_std: float,
        weights: np.ndarray | None = None,
    ) -> Posterior:
        """Condition the model on observed points at known vertices (Gaussian posterior).

        Args:
            vertex_ids: `(n_obs,)` model vertex index of each observation.
            points: `(n_obs, 3)` observed positions, mm, model frame.
            noise_std: observation noise standard deviation, mm (isotropic).
            weights: `(n_obs,)` optional robust weights in [0, 1].
        """
        a = self.basis[vertex_ids].reshape(-1, self.n_components)  # (3 n_obs, k)
        r = (np.asarray(points) - self.mean[vertex_ids]).reshape(-1)
        w = np.ones(len(r)) if weights is None else np.repeat(np.asarray(weights), 3)
        aw = a * (w / noise_std**2)[:, None]
        precision = np.eye(self.n_components) + aw.T @ a
        cov = np.linalg.inv(precision)
        return Posterior(mean=cov @ (aw.T @ r), cov=cov)

    def truncated(self, n_components: int) -> ShapeModel:
        """The same model keeping only the first `n_components` modes."""
        k = min(n_components, self.n_components)
        return ShapeModel(
            self.structure,
            self.mean,
            self.faces,
            self.components[:k],
            self.variances[:k],
            list(self.subject_ids),
            dict(self.landmarks),
            dict(self.meta),
        )

    def save(self, path: str | Path) -> Path:
        """Write the model as a compressed `.npz` (arrays plus JSON metadata)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path,
            mean=self.mean.astype(np.float64),
            faces=self.faces.astype(np.int64),
            components=self.components.astype(np.float64),
            variances=self.variances.astype(np.float64),
            info=np.array(
                json.dumps(
                    {
                        "structure": self.structure,
                        "subject_ids": self.subject_ids,
                        "landmarks": self.landmarks,
                        "meta": self.meta,
                    }
                )
            ),
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> ShapeModel:
        """Read a model written by :meth:`save`.

        Raises:
            DHError: missing or malformed file.
        """
        path = Path(path)
        if not path.is_file():
            fail(str(path), "", "missing file", "a shape model .npz", "run `dvc repro shape`")
        with np.load(path, allow_pickle=False) as z:
            missing = {"mean", "faces", "components", "variances", "info"} - set(z.files)
            if missing:
                fail(str(path), "arrays", sorted(missing), "a shape model .npz", "rebuild it")
            info = json.loads(str(z["info"]))
            return cls(
                structure=info["structure"],
                mean=z["mean"],
                faces=z["faces"],
                components=z["components"],
                variances=z["variances"],
                subject_ids=list(info.get("subject_ids", [])),
                landmarks={k: int(v) for k, v in info.get("landmarks", {}).items()},
                meta=dict(info.get("meta", {})),
            )

    def _pad(self, coeffs: np.ndarray | None) -> np.ndarray:
        b = np.zeros(self.n_components)
        if coeffs is not None:
            c = np.asarray(coeffs, dtype=float).ravel()[: self.n_components]
            b[: len(c)] = c
        return b
