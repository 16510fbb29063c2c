"""The body-surface model: `anny` rest-pose meshes as a differentiable function of parameters.

The `anny` package (Apache-2.0 code, CC0 MakeHuman-derived assets) builds a 13,718-vertex
body from six phenotypes (gender, age, muscle, weight, height, proportions, each in [0, 1])
and optional *local changes* (MakeHuman targets in [-1, 1]). This module keeps only the rest
pose (no skinning) and the twenty ``measure-*`` local changes, and evaluates the mesh as

    vertices = template + coeffs(params) @ blendshapes

with `coeffs` from anny's own phenotype interpolation, so the mesh is differentiable with
respect to the parameters (torch autograd) and batches cheaply.

Body frame: RAS millimetres (+x towards the subject's right, +y anterior, +z superior),
origin at anny's root (near the pelvis). anny itself is in metres with +x to the subject's
left and +y posterior; :data:`ANNY_TO_RAS` flips both.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

logger = logging.getLogger(__name__)

PHENOTYPES = ("gender", "age", "muscle", "weight", "height", "proportions")
"""anny phenotypes, each in [0, 1]; gender 0 = male, 1 = female."""

LOCAL_CHANGES = (
    "measure-upperarm-length-incr",
    "measure-upperarm-circ-incr",
    "measure-lowerarm-length-incr",
    "measure-ankle-circ-incr",
    "measure-wrist-circ-incr",
    "measure-calf-circ-incr",
    "measure-lowerleg-height-incr",
    "measure-upperleg-height-incr",
    "measure-knee-circ-incr",
    "measure-thigh-circ-incr",
    "measure-neck-circ-incr",
    "measure-neck-height-incr",
    "measure-underbust-circ-incr",
    "measure-napetowaist-dist-incr",
    "measure-waisttohip-dist-incr",
    "measure-shoulder-dist-incr",
    "measure-hips-circ-incr",
    "measure-waist-circ-incr",
    "measure-frontchest-dist-incr",
    "measure-bust-circ-incr",
)
"""anny local changes used as body-shape parameters, each in [-1, 1] (0 = none)."""

PARAMETER_NAMES = tuple(f"anny_{p}" for p in PHENOTYPES) + tuple(
    "anny_" + c.removeprefix("measure-").removesuffix("-incr").replace("-", "_")
    for c in LOCAL_CHANGES
)
"""Names of the body-shape parameters, in vector order (6 phenotypes, then local changes)."""

ANNY_TO_RAS = np.diag([-1.0, -1.0, 1.0]) * 1000.0
"""anny metres (x left, y posterior, z up) -> body-frame RAS millimetres."""

_LOCK = threading.Lock()
_CACHE: dict[str, BodyModel] = {}


@dataclass
class BodyModel:
    """The anny body restricted to rest pose, phenotypes and the `measure-*` local changes.

    Attributes:
        anny: the underlying `anny.Anny` model (used for phenotype interpolation).
        template: `(n_vertices, 3)` template vertices, RAS mm.
        blendshapes: `(n_coeffs, n_vertices, 3)` offsets, RAS mm per unit coefficient.
        bone_template: `(n_bones, 3)` rest bone heads (joint centres), RAS mm.
        bone_blendshapes: `(n_coeffs, n_bones, 3)` offsets of the bone heads.
        faces: `(n_faces, 3)` triangles (int64), outward-facing.
        bone_labels: anny bone names, in bone order.
        vertex_bone: `(n_vertices,)` index of each vertex's dominant skinning bone.
    """

    anny: object
    template: torch.Tensor
    blendshapes: torch.Tensor
    bone_template: torch.Tensor
    bone_blendshapes: torch.Tensor
    faces: np.ndarray
    bone_labels: list[str]
    vertex_bone: np.ndarray

    @property
    def n_params(self) -> int:
        return len(PARAMETER_NAMES)

    @property
    def n_vertices(self) -> int:
        return int(self.template.shape[0])

    @cached_property
    def lower(self) -> np.ndarray:
        """`(n_params,)` lower bounds of the parameters."""
        return np.array([0.0] * len(PHENOTYPES) + [-1.0] * len(LOCAL_CHANGES))

    @cached_property
    def upper(self) -> np.ndarray:
        """`(n_params,)` upper bounds of the parameters."""
        return np.ones(self.n_params)

    def default_params(self, sex: str | None = None) -> np.ndarray:
        """`(n_params,)` neutral parameters: phenotypes 0.5 (gender 0 M / 1 F), no local change."""
        p = np.zeros(self.n_params)
        p[: len(PHENOTYPES)] = 0.5
        if sex in ("M", "F"):
            p[0] = 0.0 if sex == "M" else 1.0
        return p

    def coefficients(self, params: torch.Tensor) -> torch.Tensor:
        """Blendshape coefficients `(batch, n_coeffs)` of parameters `(batch, n_params)`."""
        from anny.models.phenotype import phenotype_blendshape_weights

        a = self.anny
        phen = params[:, : len(PHENOTYPES)]
        local = params[:, len(PHENOTYPES) :]
        w = phenotype_blendshape_weights(
            phen,
            list(PHENOTYPES),
            a.anchors,
            a.stacked_phenotype_blend_shapes_mask,
            extrapolate=False,
        )
        if a.phenotype_blendshape_projection is not None:
            w = w @ a.phenotype_blendshape_projection
        # local changes enter as a ReLU pair (increase, decrease) per label
        pos = torch.clamp(local, min=0.0)
        neg = torch.clamp(-local, min=0.0)
        return torch.cat([w, pos, neg], dim=1)

    def vertices(self, params: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Rest-pose vertices `(batch, n_vertices, 3)`, RAS mm, of `(batch, n_params)`."""
        params = torch.as_tensor(params, dtype=self.template.dtype)
        if params.ndim == 1:
            params = params[None]
        c = self.coefficients(params)
        return self.template[None] + combine_blendshapes(self.blendshapes, c)

    def joints(self, params: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Rest-pose bone heads (joint centres) `(batch, n_bones, 3)`, RAS mm."""
        params = torch.as_tensor(params, dtype=self.template.dtype)
        if params.ndim == 1:
            params = params[None]
        c = self.coefficients(params)
        return self.bone_template[None] + combine_blendshapes(self.bone_blendshapes, c)

    def bone(self, label: str) -> int:
        """Index of the anny bone `label` (e.g. ``upperleg01.L``)."""
        return self.bone_labels.index(label)

    def part_vertices(self, bones: tuple[str, ...]) -> np.ndarray:
        """Indices of the vertices whose dominant bone name starts with one of `bones`."""
        keep = [i for i, b in enumerate(self.bone_labels) if b.startswith(bones)]
        return np.flatnonzero(np.isin(self.vertex_bone, keep))

    def mesh(self, params: np.ndarray):
        """The body of one parameter vector `(n_params,)` as a `trimesh.Trimesh` (RAS mm)."""
        import trimesh

        with torch.no_grad():
            v = self.vertices(params)[0].numpy()
        return trimesh.Trimesh(v, self.faces, process=False)


def combine_blendshapes(blend: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """`(batch, n_points, 3)` sum of `blend` `(n_coeffs, n_points, 3)` weighted by `coeffs`
    `(batch, n_coeffs)`: one matmul on a view (einsum copied the blendshapes per call)."""
    flat = blend.reshape(blend.shape[0], -1)
    return (coeffs @ flat).reshape(len(coeffs), *blend.shape[1:])


def load_body_model() -> BodyModel:
    """The body model, built once per process (anny caches its own data under ~/.cache/anny).

    The first build on a machine takes one to three minutes (anny assembles its blendshapes);
    later builds take about a second.
    """
    with _LOCK:
        if "default" not in _CACHE:
            _CACHE["default"] = _build()
        return _CACHE["default"]


def _build() -> BodyModel:
    import anny

    logger.info("building the anny body model (first build on a machine takes minutes)")
    a = anny.Anny(local_changes="default")  # cached by anny; unused columns are dropped
    a = a.to(torch.float64)
    labels = list(a.local_change_labels)
    n_local = len(labels)
    n_total = a.blendshapes.shape[0]
    n_phen = n_total - 2 * n_local
    # anny interleaves (incr, decr) per local change after the phenotype block
    order = [labels.index(c) for c in LOCAL_CHANGES]
    pos_cols = [n_phen + 2 * i for i in order]
    neg_cols = [n_phen + 2 * i + 1 for i in order]
    cols = torch.tensor(list(range(n_phen)) + pos_cols + neg_cols)

    rot = torch.as_tensor(ANNY_TO_RAS, dtype=torch.float64)
    template = a.template_vertices.detach().to(torch.float64) @ rot.T
    blend = a.blendshapes.detach().to(torch.float64)[cols] @ rot.T
    bone_t = a.template_bone_heads.detach().to(torch.float64) @ rot.T
    bone_b = a.bone_heads_blendshapes.detach().to(torch.float64)[cols] @ rot.T
    weights = a.vertex_bone_weights.detach().numpy()
    indices = a.vertex_bone_indices.detach().numpy()
    vertex_bone = indices[np.arange(len(indices)), weights.argmax(axis=1)]
    faces = a.faces.detach().numpy().astype(np.int64)
    if faces.shape[1] != 3:
        faces = np.concatenate([faces[:, [0, 1, 2]], faces[:, [0, 2, 3]]])
    # the x/y flip is a proper rotation (det +1), so the face orientation is kept
    return BodyModel(
        anny=a,
        template=template,
        blendshapes=blend,
        bone_template=bone_t,
        bone_blendshapes=bone_b,
        faces=faces,
        bone_labels=list(a.bone_labels),
        vertex_bone=vertex_bone,
    )
