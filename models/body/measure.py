"""Anthropometric measurements taken on a body mesh in correspondence with the anny template.

Every procedure is defined once on the neutral anny template (all phenotypes 0.5, no local
change) and then carried to any body by correspondence, so a measurement is a fixed,
differentiable function of the vertices and can be batched and fitted with autograd.

Procedures (body frame RAS mm; "floor" is the lowest vertex of the body):

- **height** (``*_height_mm``): the z of a landmark vertex (or joint centre, or the mean z of
  a circumference loop) minus the floor.
- **stature**: highest vertex z minus the floor.
- **weight**: enclosed mesh volume (divergence theorem over the closed triangle surface)
  times a whole-body density (`population.body_density_kg_m3`, kg/m^3).
- **circumference**: a plane slice of the template restricted to one body part (vertices
  whose dominant skinning bone belongs to the part). Each crossing point is stored as an
  edge (i, j) and a fraction t, so on any body it is ``v_i + t (v_j - v_i)``. The girth is
  the perimeter of the template slice's convex hull taken through those points, i.e. a
  tape measure that bridges concavities (between the breasts, between the thighs).
  Horizontal planes for the trunk and legs; planes normal to the bone for arm and neck.
- **length**: Euclidean distance between two joint centres or landmark vertices.
- **breadth / depth**: extent of a loop or a vertex set along x (breadth) or y (depth).

Joint centres are anny's rest bone heads (they move with the shape parameters). Landmark
vertices are chosen on the template by rules written next to each one in
:func:`build_measurements`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.spatial import ConvexHull

from models.body.anny_body import BodyModel, combine_blendshapes

logger = logging.getLogger(__name__)

TORSO = ("spine", "root", "pelvis", "clavicle", "shoulder01", "breast")
LEG_L = ("upperleg01.L", "upperleg02.L", "lowerleg01.L", "lowerleg02.L", "pelvis.L")
ARM_L = ("upperarm01.L", "upperarm02.L", "lowerarm01.L", "lowerarm02.L", "wrist.L")
HAND_L = ("wrist.L", "finger", "metacarpal")


@dataclass
class PointBlock:
    """Points in correspondence, each on a template edge: ``v_i + t (v_j - v_i)``.

    A vertex is the edge (i, i) with t = 0. Circumference loops keep only the crossing
    points on the convex hull of the template slice, in hull order (the tape path).

    Attributes:
        i: `(n,)` first vertex of each edge.
        j: `(n,)` second vertex.
        t: `(n,)` fraction along the edge.
    """

    i: np.ndarray
    j: np.ndarray
    t: np.ndarray

    @classmethod
    def of_vertices(cls, idx: np.ndarray) -> PointBlock:
        idx = np.asarray(idx, dtype=np.int64).ravel()
        return cls(idx, idx, np.zeros(len(idx)))

    def interpolate(self, x: torch.Tensor) -> torch.Tensor:
        """The block's points of per-vertex values `(..., n_vertices, 3)` -> `(..., n, 3)`."""
        t = torch.as_tensor(self.t, dtype=x.dtype)[:, None]
        return x[..., self.i, :] * (1 - t) + x[..., self.j, :] * t


def _dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.linalg.norm(a - b, dim=-1)


def _girth(p: torch.Tensor) -> torch.Tensor:
    return torch.linalg.norm(p - torch.roll(p, 1, dims=1), dim=-1).sum(-1)


@dataclass
class Measurement:
    """One measurement: catalogue feature name, unit, procedure text and its function.

    Attributes:
        name: the catalogue feature it estimates, e.g. ``chest_circumference_mm``.
        unit: ``mm`` or ``kg``.
        procedure: how it is taken on the mesh, in one sentence.
        tolerance: the scale of a residual that counts as one unit of misfit in the fit
            (mm or kg).
        fn: `(vertices (B, V, 3), joints (B, J, 3)) -> (B,)`.
    """

    name: str
    unit: str
    procedure: str
    tolerance: float
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = field(repr=False)


class _Volume(torch.autograd.Function):
    """Enclosed volume (mm^3) as a function of blendshape coefficients, with a hand-written
    gradient (vertex gradient of the divergence-theorem sum, projected on the blendshapes):
    far cheaper than autograd through 27k gathered triangles."""

    @staticmethod
    def forward(ctx, coeffs, template, blend, faces):  # noqa: ANN001, ANN205
        with torch.no_grad():
            flat = blend.reshape(blend.shape[0], -1)  # a view: (n_coeffs, n_vertices * 3)
            v = template[None] + (coeffs @ flat).reshape(len(coeffs), *template.shape)
            a, b, c = v[:, faces[:, 0]], v[:, faces[:, 1]], v[:, faces[:, 2]]
            vol = (torch.cross(a, b, dim=-1) * c).sum(-1).sum(-1) / 6.0
            g = torch.zeros_like(v)
            g.index_add_(1, faces[:, 0], torch.cross(b, c, dim=-1))
            g.index_add_(1, faces[:, 1], torch.cross(c, a, dim=-1))
            g.index_add_(1, faces[:, 2], torch.cross(a, b, dim=-1))
            sign = torch.sign(vol)[:, None]
            # plain matmuls on views: einsum here copied the 58 MB blendshape tensor per call
            grad = (g.reshape(len(g), -1) / 6.0) @ flat.T * sign
        ctx.save_for_backward(grad)
        return vol.abs()

    @staticmethod
    def backward(ctx, grad_out):  # noqa: ANN001, ANN205
        (grad,) = ctx.saved_tensors
        return grad_out[:, None] * grad, None, None, None


@dataclass
class MeasurementSet:
    """The measurements taken on every body, in a fixed order.

    Measurement functions see only named point blocks (loops, landmark vertices, feet,
    hands), whose template positions and blendshapes are precomputed, so a batch costs a
    small fraction of the full mesh; weight uses the whole mesh through :class:`_Volume`.

    Attributes:
        items: the measurements.
        blocks: block name -> points in correspondence.
        faces: `(n_faces, 3)` mesh triangles (for the volume).
        density_kg_m3: whole-body density.
    """

    items: list[Measurement]
    blocks: dict[str, PointBlock]
    faces: torch.Tensor
    density_kg_m3: float
    _basis: tuple[torch.Tensor, torch.Tensor] | None = None

    def _block_basis(self, body: BodyModel) -> tuple[torch.Tensor, torch.Tensor]:
        if self._basis is None:
            tpl = torch.cat([b.interpolate(body.template) for b in self.blocks.values()])
            bl = torch.cat([b.interpolate(body.blendshapes) for b in self.blocks.values()], 1)
            self._basis = (tpl, bl)
        return self._basis

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.items]

    @property
    def tolerances(self) -> np.ndarray:
        return np.array([m.tolerance for m in self.items])

    def volume_linearisation(
        self, body: BodyModel, params: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`(coeffs, volume, d volume / d coeffs)` at `params`, for cheap fit iterations."""
        with torch.no_grad():
            c = body.coefficients(params.detach())
        c0 = c.clone().requires_grad_(True)
        vol = _Volume.apply(c0, body.template, body.blendshapes, self.faces)
        (grad,) = torch.autograd.grad(vol.sum(), c0)
        return c, vol.detach(), grad

    def __call__(
        self,
        body: BodyModel,
        params: torch.Tensor | np.ndarray,
        linear_volume: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Measurements `(batch, n_measurements)` (mm, kg) of parameters `(batch, n_params)`.

        Args:
            body: the anny body model.
            params: body-shape parameters.
            linear_volume: optional :meth:`volume_linearisation` near `params`; the volume
                is then its first-order expansion (used between exact steps of a fit).
        """
        params = torch.as_tensor(params, dtype=body.template.dtype)
        if params.ndim == 1:
            params = params[None]
        c = body.coefficients(params)
        tpl, bl = self._block_basis(body)
        pts = tpl[None] + combine_blendshapes(bl, c)
        sizes = [len(b.i) for b in self.blocks.values()]
        v = dict(zip(self.blocks, torch.split(pts, sizes, dim=1), strict=True))
        j = body.bone_template[None] + combine_blendshapes(body.bone_blendshapes, c)
        cols = []
        for m in self.items:
            if m.name == "weight_kg":
                if linear_volume is not None:
                    c0, v0, g = linear_volume
                    vol = v0 + ((c - c0) * g).sum(1)
                else:
                    vol = _Volume.apply(c, body.template, body.blendshapes, self.faces)
                cols.append(vol * 1e-9 * self.density_kg_m3)
            else:
                cols.append(m.fn(v, j))
        return torch.stack(cols, dim=1)

    def table(self) -> list[dict[str, str]]:
        """Name, unit and procedure of each measurement (for reports and docs)."""
        return [{"name": m.name, "unit": m.unit, "procedure": m.procedure} for m in self.items]


def slice_loop(
    vertices: np.ndarray,
    faces: np.ndarray,
    part: np.ndarray,
    point: np.ndarray,
    normal: np.ndarray,
) -> PointBlock:
    """Slice the template by a plane, keeping edges with both ends in `part`.

    Args:
        vertices: `(n_vertices, 3)` template, RAS mm.
        faces: `(n_faces, 3)`.
        part: vertex indices of the body part.
        point: a point of the plane, mm.
        normal: the plane normal (any length).

    Raises:
        ValueError: the plane misses the part (a bad template rule, not user input).
    """
    n = normal / np.linalg.norm(normal)
    d = (vertices - point) @ n
    inside = np.zeros(len(vertices), bool)
    inside[part] = True
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.unique(np.sort(edges, axis=1), axis=0)
    a, b = edges[:, 0], edges[:, 1]
    cross = (np.sign(d[a]) != np.sign(d[b])) & inside[a] & inside[b]
    a, b = a[cross], b[cross]
    if len(a) < 3:
        raise ValueError(f"plane at {point} misses the body part ({len(a)} crossings)")
    t = d[a] / (d[a] - d[b])
    pts = vertices[a] * (1 - t[:, None]) + vertices[b] * t[:, None]
    # 2-D coordinates in the plane for the hull
    u = np.cross(n, [1.0, 0, 0] if abs(n[0]) < 0.9 else [0, 1.0, 0])
    u /= np.linalg.norm(u)
    w = np.cross(n, u)
    hull = ConvexHull(np.stack([pts @ u, pts @ w], axis=1)).vertices
    return PointBlock(a[hull], b[hull], t[hull])


def _extent(points: torch.Tensor, axis: int) -> torch.Tensor:
    return points[..., axis].max(dim=1).values - points[..., axis].min(dim=1).values


def mesh_volume(v: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Enclosed volume `(batch,)` in mm^3 of closed meshes `(batch, n_vertices, 3)`."""
    a, b, c = v[:, faces[:, 0]], v[:, faces[:, 1]], v[:, faces[:, 2]]
    return (torch.cross(a, b, dim=-1) * c).sum(-1).sum(-1).abs() / 6.0


def build_measurements(body: BodyModel, density_kg_m3: float = 1010.0) -> MeasurementSet:
    """The measurement set of `body`, defined on its neutral template.

    Args:
        body: the anny body model.
        density_kg_m3: whole-body density used to turn volume into weight.
    """
    with torch.no_grad():
        p0 = torch.as_tensor(body.default_params(), dtype=torch.float64)
        v0 = body.vertices(p0)[0].numpy()
        j0 = body.joints(p0)[0].numpy()
    faces = body.faces
    faces_t = torch.as_tensor(faces)
    J = {name: body.bone(name) for name in body.bone_labels}
    hip, knee, ankle = j0[J["upperleg01.L"]], j0[J["lowerleg01.L"]], j0[J["foot.L"]]
    sho, elb, wri = j0[J["upperarm01.L"]], j0[J["lowerarm01.L"]], j0[J["wrist.L"]]
    neck, head = j0[J["neck01"]], j0[J["head"]]
    up = np.array([0.0, 0.0, 1.0])

    torso = body.part_vertices(TORSO)
    legs = body.part_vertices(TORSO + ("upperleg01",))
    thigh = body.part_vertices(LEG_L)
    lower_leg = body.part_vertices(("lowerleg01.L", "lowerleg02.L", "foot.L"))
    arm = body.part_vertices(ARM_L)
    neck_part = body.part_vertices(("neck", "spine01", "clavicle", "head"))
    head_part = body.part_vertices(("head",))
    foot = body.part_vertices(("foot.L", "toe"))
    foot = foot[v0[foot, 0] < 0]  # left foot only (left is -x in RAS)
    hand = body.part_vertices(HAND_L)
    hand = hand[v0[hand, 0] < 0]

    def at_z(z: float) -> np.ndarray:
        return np.array([0.0, 0.0, z])

    span_trunk = sho[2] - hip[2]
    loops = {
        "chest": slice_loop(v0, faces, torso, at_z(hip[2] + 0.62 * span_trunk), up),
        "waist": slice_loop(v0, faces, torso, at_z(hip[2] + 0.28 * span_trunk), up),
        "buttock": slice_loop(v0, faces, legs, at_z(hip[2] - 0.04 * span_trunk), up),
        "thigh": slice_loop(v0, faces, thigh, knee + 0.78 * (hip - knee), up),
        "lower_thigh": slice_loop(v0, faces, thigh, knee + 0.22 * (hip - knee), up),
        "calf": slice_loop(v0, faces, lower_leg, ankle + 0.70 * (knee - ankle), up),
        "ankle": slice_loop(v0, faces, lower_leg, ankle + 0.22 * (knee - ankle), up),
        "neck": slice_loop(v0, faces, neck_part, neck + 0.4 * (head - neck), head - neck),
        "neck_base": slice_loop(v0, faces, neck_part, neck + 0.1 * (head - neck), head - neck),
        "biceps": slice_loop(v0, faces, arm, sho + 0.5 * (elb - sho), elb - sho),
        "forearm": slice_loop(v0, faces, arm, elb + 0.25 * (wri - elb), wri - elb),
        "wrist": slice_loop(v0, faces, arm, elb + 0.93 * (wri - elb), wri - elb),
        "head": slice_loop(
            v0, faces, head_part, at_z(head[2] + 0.55 * (v0[:, 2].max() - head[2])), up
        ),
    }

    # landmark vertices (template rules)
    mid = np.abs(v0[:, 0]) < 15.0
    crotch = int(np.flatnonzero(mid)[np.argmin(v0[mid, 2])])  # lowest midline vertex
    sho_zone = body.part_vertices(("shoulder01.L", "clavicle.L", "upperarm01.L"))
    sho_zone = sho_zone[v0[sho_zone, 2] > sho[2] + 35.0]
    acromion_l = int(sho_zone[np.argmin(v0[sho_zone, 0])])  # lateral tip above the joint
    acromion_r = int(np.argmin(np.linalg.norm(v0 - v0[acromion_l] * [-1, 1, 1], axis=1)))
    back = np.flatnonzero(
        mid & (v0[:, 2] > neck[2]) & (v0[:, 2] < neck[2] + 0.3 * (head - neck)[2])
    )
    cervicale = int(back[np.argmin(v0[back, 1])])  # most posterior midline point at the neck base
    knee_zone = thigh[np.abs(v0[thigh, 2] - knee[2]) < 25.0]
    patella = int(knee_zone[np.argmax(v0[knee_zone, 1])])  # most anterior point at the knee
    hip_zone = thigh[np.abs(v0[thigh, 2] - hip[2]) < 30.0]
    trochanter = int(hip_zone[np.argmin(v0[hip_zone, 0])])  # most lateral point at the hip

    jn = {k: J[k] for k in ("upperarm01.L", "lowerarm01.L", "wrist.L", "foot.L")}

    blocks = dict(loops)
    blocks["landmarks"] = PointBlock.of_vertices(
        [crotch, acromion_l, acromion_r, cervicale, patella, trochanter]
    )
    blocks["top"] = PointBlock.of_vertices(np.flatnonzero(v0[:, 2] > v0[:, 2].max() - 40.0))
    blocks["sole"] = PointBlock.of_vertices(np.flatnonzero(v0[:, 2] < v0[:, 2].min() + 25.0))
    blocks["foot"] = PointBlock.of_vertices(foot)
    blocks["hand"] = PointBlock.of_vertices(hand)
    crotch, acromion_l, acromion_r, cervicale, patella, trochanter = range(6)

    def _floor(v: dict[str, torch.Tensor]) -> torch.Tensor:
        return v["sole"][..., 2].min(dim=1).values

    def height(landmark: int) -> Callable:
        return lambda v, j: v["landmarks"][:, landmark, 2] - _floor(v)

    def loop_height(name: str) -> Callable:
        return lambda v, j: v[name][..., 2].mean(1) - _floor(v)

    def girth(name: str) -> Callable:
        return lambda v, j: _girth(v[name])

    def extent(name: str, axis: int) -> Callable:
        return lambda v, j: _extent(v[name], axis)

    def joint_dist(a: str, b: str) -> Callable:
        return lambda v, j: _dist(j[:, jn[a]], j[:, jn[b]])

    def weight(v: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("weight is computed on the whole mesh by MeasurementSet")

    def hand_length(v: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        d = torch.linalg.norm(v["hand"] - j[:, jn["wrist.L"]][:, None], dim=-1)
        return d.max(dim=1).values

    M = Measurement
    items = [
        M("stature_mm", "mm", "highest vertex z minus the floor", 5.0,
          lambda v, j: v["top"][..., 2].max(1).values - _floor(v)),
        M("weight_kg", "kg", f"mesh volume x {density_kg_m3:g} kg/m^3", 1.0, weight),
        M("chest_circumference_mm", "mm", "hull girth of the trunk, horizontal plane at 62% "
          "from hip joint to shoulder joint", 15.0, girth("chest")),
        M("waist_circumference_mm", "mm", "hull girth of the trunk, horizontal plane at 28% "
          "from hip joint to shoulder joint (omphalion level)", 15.0, girth("waist")),
        M("buttock_circumference_mm", "mm", "hull girth of trunk and upper thighs, horizontal "
          "plane just below the hip joints", 15.0, girth("buttock")),
        M("thigh_circumference_mm", "mm", "girth of the left thigh, horizontal plane at 78% "
          "from knee to hip joint (gluteal furrow)", 10.0, girth("thigh")),
        M("lower_thigh_circumference_mm", "mm", "girth of the left thigh, horizontal plane at "
          "22% from knee to hip joint", 10.0, girth("lower_thigh")),
        M("calf_circumference_mm", "mm", "girth of the left leg, horizontal plane at 70% from "
          "ankle to knee joint", 10.0, girth("calf")),
        M("ankle_circumference_mm", "mm", "girth of the left leg, horizontal plane at 22% from "
          "ankle to knee joint", 8.0, girth("ankle")),
        M("neck_circumference_mm", "mm", "neck girth, plane normal to the neck halfway from "
          "neck base to skull base joint", 8.0, girth("neck")),
        M("neck_circumference_base_mm", "mm", "neck girth, plane normal to the neck at 10% "
          "above the neck base joint", 10.0, girth("neck_base")),
        M("biceps_circumference_flexed_mm", "mm", "left upper-arm girth normal to the arm "
          "halfway shoulder-elbow (arm relaxed in the mesh, not flexed)", 10.0, girth("biceps")),
        M("forearm_circumference_flexed_mm", "mm", "left forearm girth normal to the forearm "
          "at 25% from elbow to wrist (relaxed)", 10.0, girth("forearm")),
        M("wrist_circumference_mm", "mm", "left wrist girth normal to the forearm at 93% from "
          "elbow to wrist joint", 6.0, girth("wrist")),
        M("head_circumference_mm", "mm", "hull girth of the head, horizontal plane 55% from "
          "the skull base joint to the vertex", 8.0, girth("head")),
        M("crotch_height_mm", "mm", "lowest midline vertex of the trunk above the floor", 8.0,
          height(crotch)),
        M("acromial_height_mm", "mm", "lateral top-of-shoulder vertex (acromion) of the left "
          "shoulder, above the floor", 8.0, height(acromion_l)),
        M("cervicale_height_mm", "mm", "most posterior midline vertex at the neck base, above "
          "the floor", 8.0, height(cervicale)),
        M("knee_height_midpatella_mm", "mm", "most anterior left-knee vertex at the knee joint, "
          "above the floor", 8.0, height(patella)),
        M("lateral_malleolus_height_mm", "mm", "left ankle joint centre above the floor", 8.0,
          lambda v, j: j[:, jn["foot.L"], 2] - _floor(v)),
        M("trochanterion_height_mm", "mm", "most lateral left-hip vertex at the hip joint, "
          "above the floor", 8.0, height(trochanter)),
        M("waist_height_omphalion_mm", "mm", "mean height of the waist loop above the floor",
          8.0, loop_height("waist")),
        M("chest_height_mm", "mm", "mean height of the chest loop above the floor", 8.0,
          loop_height("chest")),
        M("acromion_radiale_length_mm", "mm", "left acromion vertex to elbow joint distance",
          8.0, lambda v, j: _dist(v["landmarks"][:, acromion_l], j[:, jn["lowerarm01.L"]])),
        M("radiale_stylion_length_mm", "mm", "left elbow joint to wrist joint distance", 8.0,
          joint_dist("lowerarm01.L", "wrist.L")),
        M("biacromial_breadth_mm", "mm", "distance between left and right top-of-shoulder "
          "vertices", 8.0,
          lambda v, j: _dist(v["landmarks"][:, acromion_l], v["landmarks"][:, acromion_r])),
        M("hip_breadth_mm", "mm", "x extent of the buttock loop", 8.0, extent("buttock", 0)),
        M("buttock_depth_mm", "mm", "y extent of the buttock loop", 8.0, extent("buttock", 1)),
        M("chest_breadth_mm", "mm", "x extent of the chest loop", 8.0, extent("chest", 0)),
        M("chest_depth_mm", "mm", "y extent of the chest loop", 8.0, extent("chest", 1)),
        M("waist_breadth_mm", "mm", "x extent of the waist loop", 8.0, extent("waist", 0)),
        M("waist_depth_mm", "mm", "y extent of the waist loop", 8.0, extent("waist", 1)),
        M("head_breadth_mm", "mm", "x extent of the head loop", 5.0, extent("head", 0)),
        M("head_length_mm", "mm", "y extent of the head loop", 5.0, extent("head", 1)),
        M("foot_length_mm", "mm", "y extent of the left foot and toes", 5.0,
          lambda v, j: _extent(v["foot"], 1)),
        M("hand_length_mm", "mm", "largest distance from the left wrist joint to a hand vertex",
          5.0, hand_length),
    ]  # fmt: skip
    return MeasurementSet(items, blocks, faces_t, density_kg_m3)
