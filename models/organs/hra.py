"""Human Reference Atlas organs placed in the body frame and carried along with the body shape.

The HRA 3D reference organs (registry group `hra`) are GLB files in metres in one shared
Visible Human frame (+x subject's left, +y superior, +z anterior). They are brought into
the body frame (RAS mm) of a *reference body* (the population's mean body of the same sex)
by an anisotropic affine map fitted on the skins:

- z: the HRA skin's floor and crown are mapped onto the reference body's (stature ratio);
- x and y: one in-plane scale, the ratio of the trunk depths (front-to-back extent of the
  midline strip |x| < 80 mm between crotch and neck, a region the hanging arms of the
  Visible Human do not touch), and the strip's centres are aligned.

A generated body then carries the organs by a smooth space deformation driven by the skin:
a thin-plate-spline radial basis function (with an affine part) interpolating the
displacement of `n_control` skin vertices from the reference body to the instance
(:func:`carry`). Organs are decimated when the atlas is built.

Known limitation: the affine placement ignores left-right trunk width differences and the
Visible Human's own posture; organs sit in the right region of the trunk, not at
subject-specific positions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh

from models.meshio import read_mesh

logger = logging.getLogger(__name__)

HRA_TO_RAS = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]) * 1000.0
"""HRA metres (x left, y up, z anterior) -> RAS millimetres (a proper rotation x 1000)."""

ORGANS = (
    "Heart",
    "Liver",
    "Kidney_L",
    "Kidney_R",
    "Spleen",
    "Pancreas",
    "Small_Intestine",
    "Urinary_Bladder",
    "Pelvis",
    "Thymus",
    "Uterus",
    "Prostate",
    "Spinal_Cord",
)
"""HRA organs carried into the body, where the sex's atlas has them."""


@dataclass
class OrganAtlas:
    """Organs of one sex in the body frame of a reference body.

    Attributes:
        sex: "F" or "M".
        reference_vertices: `(n_vertices, 3)` reference skin (RAS mm).
        control: `(n_control,)` skin vertex indices that drive the deformation.
        organs: organ name -> mesh in the reference body frame (RAS mm).
        affine: `(4, 4)` map from HRA RAS mm to the reference body frame.
    """

    sex: str
    reference_vertices: np.ndarray
    control: np.ndarray
    organs: dict[str, trimesh.Trimesh]
    affine: np.ndarray
    _operators: dict[float, np.ndarray] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def carry_operator(self, smoothing: float = 1.0) -> np.ndarray:
        """`(n_organ_vertices, n_control)` linear map from control displacements to the
        displacement of every organ vertex (organs stacked in `organs` order).

        The thin-plate-spline interpolant ``f(x) = sum_i c_i phi(|x - x_i|) + a + B x`` of
        the control displacements is linear in them, and its kernel matrix, polynomial block
        and evaluation at the organ vertices depend only on the reference body, so this map is
        computed once per atlas (and smoothing) and cached; :func:`carry` then costs one
        matrix product. ``phi(r) = r^2 log r`` (mm), smoothing added on the kernel diagonal,
        as in ``scipy.interpolate.RBFInterpolator(kernel="thin_plate_spline")``.
        """
        key = float(smoothing)
        if key not in self._operators:
            src = self.reference_vertices[self.control]
            stacked = np.concatenate([np.asarray(m.vertices) for m in self.organs.values()])
            n = len(src)
            centre = src.mean(0)
            scale = float(np.abs(src - centre).max()) or 1.0
            lhs = np.zeros((n + 4, n + 4))
            lhs[:n, :n] = _tps(src, src) + key * np.eye(n)
            poly = _affine_basis(src, centre, scale)
            lhs[:n, n:] = poly
            lhs[n:, :n] = poly.T
            inv = np.linalg.inv(lhs)[:, :n]  # columns: unit displacement of one control point
            out = np.empty((len(stacked), n), dtype=np.float32)
            for start in range(0, len(stacked), 4096):
                x = stacked[start : start + 4096]
                evl = np.hstack([_tps(x, src), _affine_basis(x, centre, scale)])
                out[start : start + len(x)] = evl @ inv
            self._operators[key] = out
        return self._operators[key]

    def save(self, path: str | Path) -> Path:
        """Write the atlas as `.npz`: reference, control, affine and `<organ>_v` / `<organ>_f`."""
        arrays = {
            "sex": np.array(self.sex),
            "reference_vertices": self.reference_vertices,
            "control": self.control,
            "affine": self.affine,
        }
        for name, m in self.organs.items():
            arrays[f"{name}_v"] = np.asarray(m.vertices)
            arrays[f"{name}_f"] = np.asarray(m.faces)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> OrganAtlas:
        with np.load(path, allow_pickle=False) as z:
            names = [k[:-2] for k in z.files if k.endswith("_v")]
            organs = {n: trimesh.Trimesh(z[f"{n}_v"], z[f"{n}_f"], process=False) for n in names}
            return cls(str(z["sex"]), z["reference_vertices"], z["control"], organs, z["affine"])


def _tps(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Thin-plate-spline kernel ``r^2 log r`` between point sets `(n, 3)` and `(m, 3)` (mm)."""
    r2 = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = 0.5 * r2 * np.log(r2)
    return np.nan_to_num(k, nan=0.0, posinf=0.0, neginf=0.0)


def _affine_basis(x: np.ndarray, centre: np.ndarray, scale: float) -> np.ndarray:
    """`(n, 4)` degree-1 polynomial basis [1, (x - centre) / scale] (scaled for conditioning)."""
    return np.hstack([np.ones((len(x), 1)), (x - centre) / scale])


def hra_path(raw_dir: Path, sex: str, organ: str) -> Path:
    return Path(raw_dir) / "meshes" / "hra" / f"VH_{sex}_{organ}.glb"


def read_hra(path: Path) -> trimesh.Trimesh:
    """One HRA GLB as a mesh in RAS mm (HRA frame origin)."""
    mesh = read_mesh(path)
    return trimesh.Trimesh(np.asarray(mesh.vertices) @ HRA_TO_RAS.T, mesh.faces, process=False)


def decimate(mesh: trimesh.Trimesh, max_faces: int) -> trimesh.Trimesh:
    """Quadric decimation (VTK) down to about `max_faces` triangles."""
    if len(mesh.faces) <= max_faces:
        return mesh
    from models.meshio import to_polydata

    poly = to_polydata(mesh).decimate(1.0 - max_faces / len(mesh.faces))
    faces = np.asarray(poly.faces).reshape(-1, 4)[:, 1:]
    return trimesh.Trimesh(np.asarray(poly.points), faces, process=False)


def _strip_profile(v: np.ndarray, z_lo: float, z_hi: float, n_bins: int = 12) -> np.ndarray:
    """Per z-bin (front y, back y) of the midline strip |x - centre| < 80 mm: `(n_bins, 2)`."""
    cx = 0.5 * (v[:, 0].min() + v[:, 0].max())
    sel = v[(np.abs(v[:, 0] - cx) < 80.0) & (v[:, 2] > z_lo) & (v[:, 2] < z_hi)]
    edges = np.linspace(z_lo, z_hi, n_bins + 1)
    out = np.full((n_bins, 2), np.nan)
    for k in range(n_bins):
        band = sel[(sel[:, 2] >= edges[k]) & (sel[:, 2] < edges[k + 1])]
        if len(band):
            out[k] = band[:, 1].max(), band[:, 1].min()
    return out


def skin_affine(
    hra_skin: np.ndarray, body: np.ndarray, crotch_z: float, neck_z: float
) -> np.ndarray:
    """`(4, 4)` affine from the HRA skin (RAS mm) onto a body's skin (RAS mm).

    Args:
        hra_skin: `(n, 3)` HRA skin vertices.
        body: `(n_vertices, 3)` body skin vertices.
        crotch_z: the body's crotch height (z, mm), lower end of the trunk strip.
        neck_z: the body's neck base height (z, mm), upper end of the trunk strip.
    """
    h_lo, h_hi = hra_skin[:, 2].min(), hra_skin[:, 2].max()
    b_lo, b_hi = body[:, 2].min(), body[:, 2].max()
    sz = (b_hi - b_lo) / (h_hi - h_lo)
    # the same trunk band, as fractions of stature, on both skins
    f_lo, f_hi = (crotch_z - b_lo) / (b_hi - b_lo), (neck_z - b_lo) / (b_hi - b_lo)
    hb = _strip_profile(hra_skin, h_lo + f_lo * (h_hi - h_lo), h_lo + f_hi * (h_hi - h_lo))
    bb = _strip_profile(body, crotch_z, neck_z)
    ok = np.isfinite(hb).all(1) & np.isfinite(bb).all(1)
    sxy = np.mean(bb[ok, 0] - bb[ok, 1]) / np.mean(hb[ok, 0] - hb[ok, 1])
    ty = np.mean(bb[ok].mean(1)) - sxy * np.mean(hb[ok].mean(1))
    tx = 0.5 * (body[:, 0].min() + body[:, 0].max()) - sxy * 0.5 * (
        hra_skin[:, 0].min() + hra_skin[:, 0].max()
    )
    a = np.eye(4)
    a[:3, :3] = np.diag([sxy, sxy, sz])
    a[:3, 3] = [tx, ty, b_lo - sz * h_lo]
    return a


def control_vertices(vertices: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """`(n,)` well-spread skin vertex indices (farthest-point sampling from a seeded start)."""
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(len(vertices)))]
    d = np.linalg.norm(vertices - vertices[chosen[0]], axis=1)
    for _ in range(n - 1):
        k = int(np.argmax(d))
        chosen.append(k)
        d = np.minimum(d, np.linalg.norm(vertices - vertices[k], axis=1))
    return np.array(chosen)


def build_atlas(
    sex: str,
    reference_vertices: np.ndarray,
    crotch_z: float,
    neck_z: float,
    raw_dir: Path,
    n_control: int = 300,
    max_faces: int = 6000,
    organs: tuple[str, ...] = ORGANS,
) -> OrganAtlas:
    """Place the HRA organs of `sex` into the reference body's frame.

    Args:
        sex: "F" or "M".
        reference_vertices: `(n_vertices, 3)` reference skin, RAS mm.
        crotch_z: reference crotch height (z, mm).
        neck_z: reference neck-base height (z, mm).
        raw_dir: `data/raw` (after `dh data pull -g hra`).
        n_control: skin vertices driving the deformation.
        max_faces: organs are decimated to about this many triangles.
        organs: HRA organ names to place (those the sex's atlas lacks are skipped).
    """
    skin = read_hra(hra_path(raw_dir, sex, "Skin"))
    a = skin_affine(np.asarray(skin.vertices), reference_vertices, crotch_z, neck_z)
    placed = {}
    for name in organs:
        path = hra_path(raw_dir, sex, name)
        if not path.is_file():
            continue
        m = decimate(read_hra(path), max_faces)
        v = np.asarray(m.vertices) @ a[:3, :3].T + a[:3, 3]
        placed[name.lower()] = trimesh.Trimesh(v, m.faces, process=False)
    logger.info("organ atlas %s: %d organs", sex, len(placed))
    control = control_vertices(reference_vertices, n_control)
    return OrganAtlas(sex, reference_vertices, control, placed, a)


def carry(
    atlas: OrganAtlas, instance_vertices: np.ndarray, smoothing: float = 1.0
) -> dict[str, trimesh.Trimesh]:
    """Deform the atlas organs with the skin, from the reference body to `instance_vertices`.

    Args:
        atlas: organs in the reference body frame.
        instance_vertices: `(n_vertices, 3)` the generated skin, RAS mm (same topology).
        smoothing: thin-plate-spline smoothing (mm^2 scale; 0 interpolates exactly).

    Returns:
        Organ name -> deformed mesh (RAS mm).
    """
    src = atlas.reference_vertices[atlas.control]
    disp = np.asarray(instance_vertices)[atlas.control] - src
    names = list(atlas.organs)
    stacked = np.concatenate([np.asarray(atlas.organs[n].vertices) for n in names])
    moved = stacked + atlas.carry_operator(smoothing) @ disp.astype(np.float32)
    out, start = {}, 0
    for n in names:
        k = len(atlas.organs[n].vertices)
        out[n] = trimesh.Trimesh(moved[start : start + k], atlas.organs[n].faces, process=False)
        start += k
    return out
