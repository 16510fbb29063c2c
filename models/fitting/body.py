"""Fit the whole-body anny skin to one person's surface scan (points, RAS mm) in seconds.

Steps: (1) rigid alignment of the start body (the population mean, or the neutral anny body)
to the scan by centroid and trimmed point-to-plane ICP (scipy cKDTree); (2) torch Adam on the
anny body parameters (clipped to their bounds) plus a translation, minimising a robust
two-way loss: scan -> mesh point-to-plane distances to each scan point's nearest mesh vertex
and mesh -> scan distances of the vertices that lie near the scan (so partial scans do not
pull the hidden side), both trimmed (the worst `trim` fraction is dropped as outliers).
Correspondences are recomputed every `refresh` steps.

Frames: the scan and every output are in the scan's frame, mm; the body model is in its body
frame (RAS mm), which is assumed to be roughly aligned with the scan axes (within ~30 deg).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
import trimesh
from scipy.spatial import cKDTree

from models.fitting.core import _vertex_normals

logger = logging.getLogger(__name__)


@dataclass
class BodyFitResult:
    """A body fitted to a scan (scan frame, mm).

    Attributes:
        params: `(n_params,)` anny body parameters (within the model's bounds).
        rotation: `(3, 3)` body frame -> scan frame rotation.
        translation: `(3,)` body frame -> scan frame translation, mm.
        skin: the fitted skin mesh, scan frame, mm.
        vertex_residual_mm: `(n_vertices,)` distance of each fitted vertex to its nearest scan
            point, mm (large on parts the scan does not cover).
        residual_mean_mm: mean scan -> fitted-surface distance of the inlier scan points, mm.
        residual_p95_mm: 95th percentile of the same distances, mm.
        hausdorff_mm: maximum of the same distances (one-sided, inliers only), mm.
        start_params: the parameters the optimisation started from.
        seconds: wall time of the fit, s.
    """

    params: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    skin: trimesh.Trimesh
    vertex_residual_mm: np.ndarray
    residual_mean_mm: float
    residual_p95_mm: float
    hausdorff_mm: float
    start_params: np.ndarray
    seconds: float


def start_parameters(generator_or_body) -> tuple[object, np.ndarray]:  # noqa: ANN001
    """(body model, start parameters): the population mean body (no feature given) for a
    `Generator`, the neutral anny body for a bare `BodyModel`."""
    if hasattr(generator_or_body, "generate"):
        human = generator_or_body.generate({}, with_organs=False)
        return generator_or_body.body, np.asarray(human.body_params, dtype=float)
    return generator_or_body, generator_or_body.default_params()


def fit_body(
    points_mm: np.ndarray,
    generator_or_body,  # noqa: ANN001
    n_iter: int = 200,
    lr: float = 0.02,
    lr_translation_mm: float = 1.0,
    refresh: int = 5,
    trim: float = 0.05,
    max_points: int = 6000,
    near_mm: float = 25.0,
    icp_iterations: int = 20,
    start: np.ndarray | None = None,
    prior_weight: float = 1.0,
    seed: int = 0,
) -> BodyFitResult:
    """Fit the anny body to scan points.

    Args:
        points_mm: `(n, 3)` scan points, mm, axes roughly RAS (any origin).
        generator_or_body: a `models.population.generate.Generator` (start: population mean)
            or a `models.body.anny_body.BodyModel` (start: neutral body).
        n_iter: Adam steps.
        lr: Adam learning rate of the body parameters (parameter units).
        lr_translation_mm: Adam learning rate of the translation, mm.
        refresh: steps between correspondence updates.
        trim: fraction of the worst residuals dropped per direction (outliers).
        max_points: the scan is subsampled (seeded) to at most this many points.
        near_mm: mesh vertices farther than this from the scan are not pulled (partial scans).
        icp_iterations: rigid ICP iterations of the initial alignment.
        start: optional start parameters (overrides the population mean).
        prior_weight: weight (mm of loss per squared parameter unit) of a ridge pulling the
            parameters towards the start; the local changes trade off against each other, so
            without it the parameters drift where the surface does not constrain them.
        seed: subsampling seed.

    Returns:
        The fit, in the scan frame.
    """
    from models.fitting.distance import point_to_surface

    t0 = time.perf_counter()
    torch.set_num_threads(1)
    pts = np.asarray(points_mm, dtype=float)
    pts = pts[np.isfinite(pts).all(1)]
    if len(pts) > max_points:
        pts = pts[np.random.default_rng(seed).choice(len(pts), max_points, replace=False)]
    body, p0 = start_parameters(generator_or_body)
    if start is not None:
        p0 = np.asarray(start, dtype=float)
    lo, hi = body.lower, body.upper
    p0 = np.clip(p0, lo, hi)
    faces = body.faces
    with torch.no_grad():
        v0 = body.vertices(p0)[0].numpy()
    rot, trans = _rigid_icp(v0, faces, pts, icp_iterations, trim)

    scan = torch.as_tensor(pts)
    rot_t = torch.as_tensor(rot)
    params = torch.tensor(p0, requires_grad=True)
    shift = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam(
        [{"params": [params], "lr": lr}, {"params": [shift], "lr": lr_translation_mm}]
    )
    lo_t, hi_t, p0_t = torch.as_tensor(lo), torch.as_tensor(hi), torch.as_tensor(p0)
    scan_tree = cKDTree(pts)
    trans_t = torch.as_tensor(trans)
    keep_s = int(np.ceil(len(pts) * (1 - trim)))
    for step in range(n_iter):
        verts = body.vertices(params)[0] @ rot_t.T + trans_t + shift
        if step % refresh == 0:
            vn = verts.detach().numpy()
            normals = torch.as_tensor(_vertex_normals(vn, faces))
            _, idx = cKDTree(vn).query(pts)
            dist_m, jdx = scan_tree.query(vn)
            near = np.flatnonzero(dist_m < near_mm)
            idx_t, jdx_t, near_t = map(torch.as_tensor, (idx, jdx, near))
        r_s = ((scan - verts[idx_t]) * normals[idx_t]).sum(-1)
        r_s = torch.sqrt(r_s**2 + 0.25)
        r_s = torch.topk(r_s, keep_s, largest=False).values
        loss = r_s.mean()
        if len(near):
            vm = verts[near_t]
            r_m = ((vm - scan[jdx_t[near_t]]) * normals[near_t]).sum(-1)
            r_m = torch.sqrt(r_m**2 + 0.25)
            r_m = torch.topk(r_m, int(np.ceil(len(near) * (1 - trim))), largest=False).values
            loss = loss + r_m.mean()
        if prior_weight:
            loss = loss + prior_weight * ((params - p0_t) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            params.copy_(torch.minimum(torch.maximum(params, lo_t), hi_t))

    p = params.detach().numpy().copy()
    trans = trans + shift.detach().numpy()
    with torch.no_grad():
        verts = body.vertices(p)[0].numpy() @ rot.T + trans
    skin = trimesh.Trimesh(verts, faces, process=False)
    d_scan = point_to_surface(verts, faces, pts)
    inl = np.sort(d_scan)[:keep_s]
    vertex_res, _ = scan_tree.query(verts)
    seconds = time.perf_counter() - t0
    logger.info("body fit: %.2f mm mean (inliers), %.1f s", inl.mean(), seconds)
    return BodyFitResult(
        params=p,
        rotation=rot,
        translation=trans,
        skin=skin,
        vertex_residual_mm=vertex_res,
        residual_mean_mm=float(inl.mean()),
        residual_p95_mm=float(np.percentile(inl, 95)),
        hausdorff_mm=float(inl.max()),
        start_params=p0,
        seconds=seconds,
    )


def _rigid_icp(
    verts: np.ndarray, faces: np.ndarray, pts: np.ndarray, n_iter: int, trim: float
) -> tuple[np.ndarray, np.ndarray]:
    """Rigid body -> scan transform `(R, t)`: centroid start, then trimmed scan -> mesh ICP
    (scan points matched to their nearest vertex; Kabsch on the kept pairs)."""
    rot = np.eye(3)
    trans = pts.mean(0) - verts.mean(0)
    keep = int(np.ceil(len(pts) * (1 - 2 * trim)))
    for _ in range(n_iter):
        moved = verts @ rot.T + trans
        d, idx = cKDTree(moved).query(pts)
        sel = np.argsort(d)[:keep]
        a, b = verts[idx[sel]], pts[sel]
        ca, cb = a.mean(0), b.mean(0)
        u, _, vt = np.linalg.svd((a - ca).T @ (b - cb))
        s = np.diag([1.0, 1.0, np.sign(np.linalg.det(vt.T @ u.T))])
        rot = vt.T @ s @ u.T
        trans = cb - ca @ rot.T
    return rot, trans


def fit_skin_files(
    inputs: list,
    out_dir,  # noqa: ANN001
    axes: str = "RAS",
) -> tuple[BodyFitResult, object]:
    """`dh fit --structure skin`: fit the body to point/mesh files and write the outputs.

    Args:
        inputs: mesh or point files (PLY, OBJ, STL, VTP, CSV x,y,z), mm.
        out_dir: output folder; gets `skin.vtp` (scan frame, mm, per-vertex `residual_mm`) and
            `fit.json` (named body parameters and residuals).
        axes: axis convention of the inputs: RAS, or LPS (x and y flipped to the body frame).

    Returns:
        The fit (in the input frame) and the path of `fit.json`.
    """
    import json
    from pathlib import Path

    from models.body.anny_body import PARAMETER_NAMES
    from models.fitting.inputs import read_points
    from models.meshio import write_vtp
    from models.population.generate import MODEL_DIR, Generator

    flip = np.array([-1.0, -1.0, 1.0]) if axes.upper() == "LPS" else np.ones(3)
    pts = np.vstack([read_points(Path(p)) for p in inputs]) * flip
    if (MODEL_DIR / "population.npz").exists():
        model = Generator()
    else:
        from models.body.anny_body import load_body_model

        model = load_body_model()
    result = fit_body(pts, model)
    result.skin.vertices = np.asarray(result.skin.vertices) * flip
    out = Path(out_dir)
    write_vtp(result.skin, out / "skin.vtp", {"residual_mm": result.vertex_residual_mm})
    doc = {
        "structure": "skin",
        "axes": axes.upper(),
        "params": dict(zip(PARAMETER_NAMES, result.params.tolist(), strict=True)),
        "residual_mean_mm": result.residual_mean_mm,
        "residual_p95_mm": result.residual_p95_mm,
        "hausdorff_mm": result.hausdorff_mm,
        "n_points": len(pts),
        "seconds": result.seconds,
    }
    path = out / "fit.json"
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return result, path
