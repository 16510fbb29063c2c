"""Statistical shape models of structures (organs, bones), in mm.

Public interface:

- :class:`ShapeModel` (models.shape.model): a point-distribution model with fields
  `structure`, `mean` `(n_vertices, 3)` mm, `faces` `(n_faces, 3)`, `components`
  `(n_components, n_vertices, 3)` orthonormal, `variances` `(n_components,)` mm^2,
  `subject_ids`, `landmarks` (name -> vertex index) and `meta`. Shape coefficients are
  standardised: `model.instance(coeffs)` returns `mean + sum_k coeffs[k] * sqrt(var_k) *
  component_k` as `(n_vertices, 3)` mm; `model.sample(n, rng)` draws from the prior;
  `model.posterior(vertex_ids, points, noise_std)` conditions on observed points;
  `ShapeModel.load(path)` / `model.save(path)` use a compressed `.npz`.
- :func:`load_structure_model(name)`: `artifacts/shape/<name>.npz`, built if missing.
- Known structures: "lungs" (left lower lobe, 37 subjects, 6,006 vertices) and
  "femur_left" (7 subjects, registered template of about 4,000 vertices).
"""

from __future__ import annotations

from models.shape.build import STRUCTURES, build_structure_model, load_structure_model
from models.shape.model import Posterior, ShapeModel

__all__ = [
    "STRUCTURES",
    "Posterior",
    "ShapeModel",
    "build_structure_model",
    "load_structure_model",
]
