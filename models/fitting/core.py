"""Fit a structure shape model to observed surface points (world mm) in well under a second.

Three steps, each robust to partial views, noise and outliers:

1. **Alignment** (model frame -> world): start rotations (the 24 axis-aligned ones, or seven
   around a known orientation such as LPS -> RAS) times start translations (centroids
   matched, plus the best positions of an exhaustive translation grid scored on the mean
   shape's distance field, which finds where a partial view belongs); batched trimmed ICP of
   the mean shape from all starts; the best distinct poses are compared by a short shape fit.
   The pose is rigid by default (data in mm); a scale within `scale_bounds` is optional.
2. **Posterior shape fit**: alternate (a) closest-vertex correspondences for every observed
   point with outlier rejection (distance above `outlier_k` robust sigmas) and Cauchy weights,
   (b) the Gaussian posterior of the standardised shape coefficients given the point-to-plane
   and (damped) point-to-point residuals, (c) a weighted similarity update of the pose.
3. **Bounded non-rigid refinement** (optional): a Gaussian-smoothed displacement field towards
   the inlier points, limited to `refine_max_mm` per vertex and to vertices near data.

Only the data -> model direction is used for correspondences, so unobserved parts of the
structure follow the shape model's posterior mean and carry its posterior uncertainty
(plus the model's leave-one-out residual std away from the data).

Known limits: the posterior treats points as independent, so coefficient std is optimistic;
a partial view of a smooth surface can fit well in a wrong place (see
benchmarks/results/fitting.json, hidden-part errors per fold).
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from models.shape.align import Similarity, umeyama
from models.shape.model import ShapeModel

logger = logging.getLogger(__name__)


@dataclass
class FitOptions:
    """Tunable numbers of a fit (defaults mirror params.yaml `fitting`).

    Attributes:
        max_points: observed points used (random subset above this).
        noise_std_mm: observation noise of the posterior, mm.
        outlier_k: reject correspondences beyond this many robust sigmas.
        min_sigma_mm: floor of the robust sigma, mm.
        iterations: correspondence/posterior/pose rounds.
        tangent_weight: weight of the point-to-point term relative to point-to-plane.
        scale_bounds: allowed isotropic scale of the model (the data are in mm).
        fit_scale: estimate a scale in the pose (else rigid after the initial alignment).
        init_iterations: ICP rounds per alignment start.
        init_keep: distinct candidate poses kept after the alignment.
        n_anchors: best grid translations kept per rotation.
        grid_step_mm: translation grid step of the partial-view search, mm.
        grid_points: observed points scored per grid position.
        symmetric_weight: weight of model -> data pairs (vertices within `reverse_max_mm` of
            the data), which stop the model from wrapping around a full view (0: off).
        pose_perturb_deg: turn of the final local pose search (0: off).
        select_prior_weight: mm added per unit mean squared coefficient when comparing
            candidate poses.
        reverse_max_mm: farthest data point a vertex is paired with, mm.
        max_mahalanobis: bound on the norm of the standardised coefficients (0: none).
        orientation_prior_deg: with a known orientation, scores are multiplied by
            `1 + (angle / this)^2` for a pose turned by `angle` degrees away from it.
        candidate_ratio: candidates scoring above this multiple of the best are dropped.
        select_iterations: shape-fit rounds used to compare candidates.
        refine: run the bounded non-rigid refinement.
        refine_sigma_mm: smoothing width of the refinement field, mm.
        refine_max_mm: bound on each vertex's refinement displacement, mm.
        refine_iterations: refinement rounds.
        use_shape: fit shape coefficients (False: similarity of the mean shape only).
        robust: reject outliers and weight correspondences (False: plain ICP).
        multi_start: try several initial poses (False: one start from the centroids).
        seed: random subset seed.
    """

    max_points: int = 3000
    noise_std_mm: float = 1.0
    outlier_k: float = 3.0
    min_sigma_mm: float = 0.7
    iterations: int = 12
    tangent_weight: float = 0.1
    scale_bounds: tuple[float, float] = (1.0, 1.0)
    fit_scale: bool = False
    init_iterations: int = 8
    init_keep: int = 4
    candidate_ratio: float = 2.0
    n_anchors: int = 8
    orientation_prior_deg: float = 45.0
    max_mahalanobis: float = 0.0
    symmetric_weight: float = 0.0
    pose_perturb_deg: float = 0.0
    select_prior_weight: float = 1.0
    reverse_max_mm: float = 5.0
    grid_step_mm: float = 10.0
    grid_points: int = 60
    select_iterations: int = 4
    refine: bool = True
    refine_sigma_mm: float = 4.0
    refine_max_mm: float = 3.0
    refine_iterations: int = 5
    use_shape: bool = True
    robust: bool = True
    multi_start: bool = True
    seed: int = 0

    @classmethod
    def from_params(cls, params: dict[str, Any] | None = None, **overrides: Any) -> FitOptions:
        """Options from a `fitting` params section (unknown keys ignored) plus overrides."""
        names = set(cls.__dataclass_fields__)
        kwargs = {k: v for k, v in (params or {}).items() if k in names}
        kwargs.update(overrides)
        if "scale_bounds" in kwargs:
            kwargs["scale_bounds"] = tuple(float(x) for x in kwargs["scale_bounds"])
        return cls(**kwargs)


@dataclass
class ResidualSummary:
    """Distances between observed inlier points and the fitted surface, mm.

    Attributes:
        mean_mm: mean point -> surface distance over inliers.
        p95_mm: 95th percentile of the same.
        hausdorff_mm: maximum over inliers of the point -> surface distance and over observed
            vertices of the vertex -> nearest point distance.
        n_points: observed points given.
        n_inliers: points kept as inliers.
    """

    mean_mm: float
    p95_mm: float
    hausdorff_mm: float
    n_points: int
    n_inliers: int


@dataclass
class FitResult:
    """One structure fitted to one subject's observation.

    Attributes:
        structure: catalogue name.
        vertices: `(n_vertices, 3)` fitted surface, world mm (the input's frame).
        faces: `(n_faces, 3)` triangles.
        coeffs: `(n_components,)` standardised shape coefficients (posterior mean).
        coeffs_std: `(n_components,)` their posterior standard deviation.
        pose: model frame -> world similarity (`pose.to_matrix()` is 4x4).
        vertex_residual_mm: `(n_vertices,)` distance from each vertex to the nearest observed
            inlier point, mm (large where the surface was not observed).
        vertex_std_mm: `(n_vertices,)` positional standard deviation, mm: the coefficient
            posterior plus, away from the data, the model's residual std (meta
            `residual_std_mm`, from leave-one-out reconstruction).
        observed: `(n_vertices,)` bool, vertex within `2 * refine_sigma_mm` of an inlier.
        residual: summary of inlier point -> surface distances.
        seconds: wall time of the fit, s.
        cpu_seconds: CPU time of the fit's process, s (robust to a shared, loaded machine).
        inlier_mask: `(n_points,)` bool over all input points.
        details: extra numbers (alignment score, iterations, refinement displacement).
    """

    structure: str
    vertices: np.ndarray
    faces: np.ndarray
    coeffs: np.ndarray
    coeffs_std: np.ndarray
    pose: Similarity
    vertex_residual_mm: np.ndarray
    vertex_std_mm: np.ndarray
    observed: np.ndarray
    residual: ResidualSummary
    seconds: float
    cpu_seconds: float
    inlier_mask: np.ndarray
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def mesh(self) -> trimesh.Trimesh:
        """The fitted surface as a mesh (world mm)."""
        return trimesh.Trimesh(self.vertices, self.faces, process=False)


def cube_rotations() -> list[np.ndarray]:
    """The 24 proper rotations mapping coordinate axes onto coordinate axes."""
    rots = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            r = np.zeros((3, 3))
            r[np.arange(3), perm] = signs
            if np.linalg.det(r) > 0:
                rots.append(r)
    return rots


def near_rotations(center: np.ndarray, degrees: float = 20.0) -> list[np.ndarray]:
    """`center` and its turns by +-`degrees` about each axis (7 rotations)."""
    from scipy.spatial.transform import Rotation

    out = [np.asarray(center, dtype=float)]
    for axis in range(3):
        for sign in (1.0, -1.0):
            vec = np.zeros(3)
            vec[axis] = np.radians(sign * degrees)
            out.append(np.asarray(center) @ Rotation.from_rotvec(vec).as_matrix())
    return out


def initial_alignment(
    model: ShapeModel,
    points: np.ndarray,
    opts: FitOptions,
    orientation: np.ndarray | None = None,
) -> list[tuple[float, Similarity]]:
    """Candidate poses model frame -> world from multi-start trimmed ICP of the mean.

    The coarse round runs rigid ICP from every start at once: each start rotation with the
    centroids matched, and with the `opts.n_anchors` best translations of a grid search on
    the mean's distance field; the best distinct starts are then refined one by one.

    With a known `orientation` (the `(3, 3)` rotation model frame -> world expected for this
    input, e.g. LPS -> RAS), only rotations within about 20 degrees of it are tried and turned
    poses are penalised (`opts.orientation_prior_deg`).

    Returns up to `opts.init_keep` distinct candidates as (trimmed mean distance in mm,
    transform), best first.
    """
    mean = model.mean
    tree = cKDTree(mean)
    rng = np.random.default_rng(opts.seed)
    clean = _drop_isolated(points) if opts.robust else points
    sub = clean[rng.choice(len(clean), min(len(clean), 600), replace=False)]
    coarse = sub[: min(len(sub), 150)]
    centre_p = clean.mean(axis=0)
    anchors = [mean.mean(axis=0)[None]]
    if orientation is not None:
        rotations = np.stack(near_rotations(orientation) if opts.multi_start else [orientation])
    else:
        rotations = np.stack(cube_rotations() if opts.multi_start else [np.eye(3)])
    rot = np.repeat(rotations.transpose(0, 2, 1), 1, axis=0)  # (R, 3, 3) world -> model
    trans = anchors[0] - rot @ centre_p  # (R, 3)
    if opts.multi_start:
        # partial views need it: exhaustive translation search on the mean's distance field
        grid_rot, grid_trans = _grid_search(model, coarse - centre_p, rotations, opts)
        rot = np.concatenate([rot, grid_rot])
        trans = np.concatenate([trans, grid_trans + np.einsum("sij,j->si", grid_rot, -centre_p)])

    # Coarse round, all starts at once: world -> model x -> R x + t.
    rot, trans, scores = _batched_rigid_icp(tree, mean, coarse, rot, trans, opts)
    if orientation is not None:
        scores = scores * np.array([rotation_penalty(r.T, orientation, opts) for r in rot])
    order = np.argsort(scores)

    # Fine round on the best distinct starts.
    refined: list[tuple[float, Similarity]] = []
    for s in order[: 2 * max(1, opts.init_keep)]:
        tf, score = _icp_world_to_model(tree, mean, sub, Similarity(rot[s], trans[s]), 10, opts)
        if orientation is not None:
            score *= rotation_penalty(tf.rotation.T, orientation, opts)
        if not any(_same_pose(tf, other) for _, other in refined):
            refined.append((score, tf))
    refined.sort(key=lambda s: s[0])
    return [(score, tf.inverse()) for score, tf in refined[: max(1, opts.init_keep)]]


def rotation_penalty(rotation: np.ndarray, prior: np.ndarray | None, opts: FitOptions) -> float:
    """Multiplicative score penalty `1 + (angle / prior_deg)^2` for leaving the prior rotation."""
    if prior is None:
        return 1.0
    cos = (np.trace(rotation @ np.asarray(prior).T) - 1.0) / 2.0
    angle = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    return 1.0 + (angle / opts.orientation_prior_deg) ** 2


def _batched_rigid_icp(
    tree: cKDTree,
    mean: np.ndarray,
    pts: np.ndarray,
    rot: np.ndarray,
    trans: np.ndarray,
    opts: FitOptions,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trimmed rigid ICP of world points `(m, 3)` onto the mean from S starts at once.

    Returns the rotations `(S, 3, 3)`, translations `(S, 3)` (world -> model) and trimmed
    mean distances `(S,)` in mm.
    """
    n_starts, m = len(rot), len(pts)
    scores = np.full(n_starts, np.inf)
    for _ in range(opts.init_iterations):
        moved = np.einsum("sij,mj->smi", rot, pts) + trans[:, None, :]  # (S, m, 3)
        d, j = tree.query(moved.reshape(-1, 3))
        d, j = d.reshape(n_starts, m), j.reshape(n_starts, m)
        cut = np.quantile(d, 0.8, axis=1, keepdims=True) if opts.robust else np.inf
        w = (d <= cut).astype(float)  # (S, m)
        scores = (d * w).sum(1) / np.maximum(w.sum(1), 1.0)
        target = mean[j]  # (S, m, 3)
        wn = w / np.maximum(w.sum(1, keepdims=True), 1e-12)
        mu_s = wn @ pts  # (S, 3)
        mu_t = np.einsum("sm,smi->si", wn, target)
        cov = np.einsum("sm,smi,smj->sij", wn, target - mu_t[:, None], pts[None] - mu_s[:, None])
        u, _, vt = np.linalg.svd(cov)
        det = np.sign(np.linalg.det(u @ vt))
        u[:, :, -1] *= det[:, None]
        rot = u @ vt
        trans = mu_t - np.einsum("sij,sj->si", rot, mu_s)
    return rot, trans, scores


def _drop_isolated(points: np.ndarray, k: int = 8) -> np.ndarray:
    """Points whose mean distance to their k nearest neighbours is not an outlier (3 MADs)."""
    if len(points) <= 2 * k:
        return points
    d, _ = cKDTree(points).query(points, k=k + 1)
    spread = d[:, 1:].mean(axis=1)
    med = np.median(spread)
    mad = 1.4826 * np.median(np.abs(spread - med))
    keep = spread <= med + 3.0 * max(mad, 1e-6)
    return points[keep] if keep.sum() >= k else points


_FIELDS: dict[int, tuple[np.ndarray, float, np.ndarray]] = {}


def _distance_field(model: ShapeModel, n_cells: int = 48) -> tuple[np.ndarray, float, np.ndarray]:
    """(origin, spacing, `(nx, ny, nz)` distances in mm) of the mean shape's vertices, cached."""
    key = id(model.mean)
    if key not in _FIELDS:
        lo, hi = model.mean.min(axis=0), model.mean.max(axis=0)
        spacing = float((hi - lo).max() / n_cells)
        lo = lo - 4 * spacing
        shape = np.ceil((hi + 4 * spacing - lo) / spacing).astype(int) + 1
        axes = [lo[i] + spacing * np.arange(shape[i]) for i in range(3)]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        field = cKDTree(model.mean).query(grid)[0].reshape(shape)
        _FIELDS.clear()  # one model at a time is enough
        _FIELDS[key] = (lo, spacing, field)
    return _FIELDS[key]


def _grid_search(
    model: ShapeModel, centred: np.ndarray, rotations: np.ndarray, opts: FitOptions
) -> tuple[np.ndarray, np.ndarray]:
    """Best (rotation, translation) starts for centred points over a translation grid.

    Every rotation (model -> world) and every translation on a grid spanning the model is
    scored by the trimmed mean distance-field value of the moved points; returns the
    `opts.n_anchors` best per rotation as world -> model rotations `(S, 3, 3)` and the
    translations `(S, 3)` that place the points' centroid.
    """
    origin, spacing, field = _distance_field(model)
    pts = centred[: opts.grid_points]
    step = max(spacing * 2.0, opts.grid_step_mm)
    lo, hi = model.mean.min(axis=0), model.mean.max(axis=0)
    axes = [np.arange(lo[i], hi[i] + step, step) for i in range(3)]
    shifts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)  # (T, 3)
    out_rot, out_trans = [], []
    upper = np.array(field.shape) - 1
    for r in rotations:
        local = pts @ r  # world -> model rotation applied: r.T @ p for each row
        idx = np.rint((shifts[:, None, :] + local[None] - origin) / spacing).astype(int)
        np.clip(idx, 0, upper, out=idx)
        d = field[idx[..., 0], idx[..., 1], idx[..., 2]]  # (T, m)
        k = int(0.8 * d.shape[1])
        score = np.partition(d, k, axis=1)[:, :k].mean(axis=1)
        best = np.argsort(score)[: opts.n_anchors]
        out_rot += [r.T] * len(best)
        out_trans.append(shifts[best])
    return np.stack(out_rot), np.vstack(out_trans)


def _same_pose(a: Similarity, b: Similarity, deg: float = 15.0, mm: float = 10.0) -> bool:
    """Whether two world -> model transforms are within `deg` degrees and `mm` mm."""
    cos = (np.trace(a.rotation @ b.rotation.T) - 1.0) / 2.0
    angle = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    return bool(angle < deg and np.linalg.norm(a.translation - b.translation) < mm)


def _icp_world_to_model(
    tree: cKDTree,
    mean: np.ndarray,
    points: np.ndarray,
    inv: Similarity,
    iterations: int,
    opts: FitOptions,
) -> tuple[Similarity, float]:
    """Trimmed similarity ICP of world points onto the model's mean (world -> model)."""
    score = np.inf
    for _ in range(iterations):
        moved = inv.apply(points)
        d, j = tree.query(moved)
        keep = d <= np.quantile(d, 0.8) if opts.robust else np.ones(len(d), bool)
        score = float(d[keep].mean())
        bounds = (1.0 / opts.scale_bounds[1], 1.0 / opts.scale_bounds[0])
        inv = umeyama(points[keep], mean[j[keep]], with_scale=True, scale_bounds=bounds)
    return inv, score


def fit_model(
    model: ShapeModel,
    points: np.ndarray,
    opts: FitOptions | None = None,
    landmarks: dict[str, np.ndarray] | None = None,
    orientation: np.ndarray | None = None,
) -> FitResult:
    """Fit `model` to observed points `(n, 3)` in world mm; see the module docstring.

    Args:
        model: the structure's shape model.
        points: observed surface points, world mm (already validated).
        opts: fit options.
        landmarks: optional name -> world position (mm) of named model landmarks; they act as
            extra, always-inlier correspondences.
        orientation: optional `(3, 3)` rotation model frame -> world expected for this input
            (e.g. the LPS model frame to a RAS label map); None searches all 24 axis-aligned
            orientations, which is slower and, for small partial views, less reliable.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):  # small GEMMs: threads only contend
        return _fit_model(model, points, opts or FitOptions(), landmarks, orientation)


def _fit_model(
    model: ShapeModel,
    points: np.ndarray,
    opts: FitOptions,
    landmarks: dict[str, np.ndarray] | None,
    orientation: np.ndarray | None,
) -> FitResult:
    t0, c0 = time.perf_counter(), time.process_time()
    rng = np.random.default_rng(opts.seed)
    all_pts = pts = np.asarray(points, dtype=float)
    if len(pts) > opts.max_points:
        pts = pts[rng.choice(len(pts), opts.max_points, replace=False)]
    lm_ids, lm_pts = _landmark_arrays(model, landmarks)

    # 1. similarity alignment of the mean shape: a few candidate poses
    candidates = initial_alignment(model, pts, opts, orientation)
    init_score = candidates[0][0]
    basis = model.basis  # (n_vertices, 3, k)

    # 2. posterior shape fit from each plausible candidate; keep the best, then converge
    best = None
    for score, pose in candidates:
        if score > opts.candidate_ratio * init_score + 1e-9 and best is not None:
            continue
        state = _shape_fit(model, basis, pts, pose, opts.select_iterations, opts, lm_ids, lm_pts)
        # residual, times the orientation penalty, plus a price on implausible coefficients
        # (a wrong pose needs large coefficients to compensate)
        penalty = rotation_penalty(state[0].rotation, orientation, opts)
        prior = opts.select_prior_weight * float(np.mean(state[1] ** 2))
        state = (*state[:3], state[3] * penalty + prior)
        if best is None or state[3] < best[3]:
            best = state
    pose, coeffs, cov, score = _shape_fit(
        model, basis, pts, best[0], opts.iterations, opts, lm_ids, lm_pts, best[1]
    )

    # local pose search: the mean shape's ICP can settle 15-20 degrees off, and the shape
    # fit then compensates; restart from turned poses and keep any clearly better fit
    if opts.multi_start and opts.pose_perturb_deg > 0:
        centre = pose.apply(model.instance(coeffs)).mean(axis=0)
        for turn in near_rotations(np.eye(3), opts.pose_perturb_deg)[1:]:
            start = Similarity(turn, centre - turn @ centre).compose(pose)
            trial = _shape_fit(
                model, basis, pts, start, opts.select_iterations, opts, lm_ids, lm_pts, coeffs
            )
            if trial[3] < 0.97 * score:
                pose, coeffs, cov, score = _shape_fit(
                    model,
                    basis,
                    pts,
                    trial[0],
                    opts.iterations // 2,
                    opts,
                    lm_ids,
                    lm_pts,
                    trial[1],
                )

    shape = model.instance(coeffs)
    local = pose.inverse().apply(pts)
    _, _, inliers = _correspondences(shape, local, opts)

    # 3. bounded non-rigid refinement in the model frame
    refined = shape
    if opts.refine:
        refined = _refine(shape, local[inliers], opts)
    vertices = pose.apply(refined)

    # residuals and uncertainty, over every input point (not only the subset fitted)
    _, _, inliers = _correspondences(refined, pose.inverse().apply(all_pts), opts)
    inlier_pts = all_pts[inliers] if inliers.any() else all_pts
    d_vertex, _ = cKDTree(inlier_pts).query(vertices)
    observed = d_vertex <= 2.0 * opts.refine_sigma_mm
    d_points = _point_to_surface(vertices, model.faces, inlier_pts)
    # positional std: coefficient posterior, plus the model's unrepresented variation where
    # no data pins the surface (fading in with the distance to the nearest inlier point)
    unpinned = 1.0 - np.exp(-((d_vertex / (2.0 * opts.refine_sigma_mm)) ** 2))
    extra = float(model.meta.get("residual_std_mm", 0.0)) * unpinned
    vstd = np.sqrt((_vertex_std(model, cov) * pose.scale) ** 2 + extra**2)
    residual = ResidualSummary(
        mean_mm=float(d_points.mean()),
        p95_mm=float(np.percentile(d_points, 95)),
        hausdorff_mm=float(max(d_points.max(), d_vertex[observed].max(initial=0.0))),
        n_points=int(len(all_pts)),
        n_inliers=int(inliers.sum()),
    )
    return FitResult(
        structure=model.structure,
        vertices=vertices,
        faces=model.faces,
        coeffs=coeffs,
        coeffs_std=np.sqrt(np.clip(np.diag(cov), 0, None)),
        pose=pose,
        vertex_residual_mm=d_vertex,
        vertex_std_mm=vstd,
        observed=observed,
        residual=residual,
        seconds=time.perf_counter() - t0,
        cpu_seconds=time.process_time() - c0,
        inlier_mask=inliers,
        details={
            "init_trimmed_mm": init_score,
            "scale": float(pose.scale),
            "refine_max_displacement_mm": float(
                np.linalg.norm(refined - shape, axis=1).max() * pose.scale
            ),
        },
    )


def _shape_fit(
    model: ShapeModel,
    basis: np.ndarray,
    pts: np.ndarray,
    pose: Similarity,
    iterations: int,
    opts: FitOptions,
    lm_ids: np.ndarray,
    lm_pts: np.ndarray,
    coeffs: np.ndarray | None = None,
) -> tuple[Similarity, np.ndarray, np.ndarray, float]:
    """Alternate correspondences, coefficient posterior and pose; returns (pose, coeffs, cov,
    trimmed mean point -> vertex distance in mm)."""
    n_comp = model.n_components
    coeffs = np.zeros(n_comp) if coeffs is None else coeffs
    cov = np.eye(n_comp)
    for _ in range(iterations):
        shape = model.instance(coeffs)
        local = pose.inverse().apply(pts)  # observed points in the model frame
        ids, w, inliers = _correspondences(shape, local, opts)
        ids_all = np.concatenate([ids[inliers], lm_ids])
        pts_all = np.vstack([local[inliers], pose.inverse().apply(lm_pts)])
        w_all = np.concatenate([w[inliers], np.ones(len(lm_ids))])
        if opts.symmetric_weight > 0 and inliers.any():
            # model -> data pairs for vertices near the data (hidden parts are far: left out)
            v_ids, v_pts, v_w = _reverse_pairs(shape, local[inliers], opts)
            ids_all = np.concatenate([ids_all, v_ids])
            pts_all = np.vstack([pts_all, v_pts])
            w_all = np.concatenate([w_all, opts.symmetric_weight * v_w])
        if opts.use_shape:
            normals = _vertex_normals(shape, model.faces)[ids_all]
            coeffs, cov = _posterior(model, basis, ids_all, pts_all, normals, w_all, opts)
            coeffs = _plausible(coeffs, opts.max_mahalanobis)
            shape = model.instance(coeffs)
        world = pose.apply(pts_all)
        if opts.fit_scale:
            pose = umeyama(shape[ids_all], world, w_all, True, opts.scale_bounds)
        else:  # rigid update at the scale of the initial alignment
            rigid = umeyama(shape[ids_all] * pose.scale, world, w_all, with_scale=False)
            pose = Similarity(rigid.rotation, rigid.translation, pose.scale)
    d, _ = cKDTree(model.instance(coeffs)).query(pose.inverse().apply(pts))
    trimmed = float(d[d <= np.quantile(d, 0.8)].mean()) * pose.scale
    return pose, coeffs, cov, trimmed


def _reverse_pairs(
    shape: np.ndarray, local: np.ndarray, opts: FitOptions
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertex ids, their nearest inlier points, weights) for vertices close to the data."""
    d, j = cKDTree(local).query(shape)
    sigma = max(1.4826 * float(np.median(d)), opts.min_sigma_mm)
    near = d <= min(opts.outlier_k * sigma, opts.reverse_max_mm)
    ids = np.flatnonzero(near)
    return ids, local[j[near]], 1.0 / (1.0 + (d[near] / sigma) ** 2)


def _plausible(coeffs: np.ndarray, limit: float) -> np.ndarray:
    """Shrink standardised coefficients onto the ellipsoid |b| <= limit (plausible shapes).

    With thousands of correlated points the Gaussian prior alone is too weak to stop the
    model from wrapping around the data; this is the classic active-shape-model bound.
    """
    norm = float(np.linalg.norm(coeffs))
    return coeffs if norm <= limit or limit <= 0 else coeffs * (limit / norm)


def _correspondences(
    shape: np.ndarray, local: np.ndarray, opts: FitOptions
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closest vertex per point, Cauchy weights and the inlier mask (robust sigma rule)."""
    d, ids = cKDTree(shape).query(local)
    if not opts.robust:
        return ids, np.ones(len(d)), np.ones(len(d), bool)
    sigma = max(1.4826 * float(np.median(d)), opts.min_sigma_mm)
    inliers = d <= opts.outlier_k * sigma
    w = 1.0 / (1.0 + (d / sigma) ** 2)
    return ids, w, inliers


def _posterior(
    model: ShapeModel,
    basis: np.ndarray,
    ids: np.ndarray,
    pts: np.ndarray,
    normals: np.ndarray,
    w: np.ndarray,
    opts: FitOptions,
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and covariance of the coefficients: point-to-plane + damped point-to-point."""
    b = basis[ids]  # (n, 3, k)
    r = pts - model.mean[ids]  # (n, 3)
    a_n = np.einsum("nc,nck->nk", normals, b)  # (n, k)
    r_n = np.einsum("nc,nc->n", normals, r)
    a_p = b.reshape(-1, b.shape[-1])
    r_p = r.reshape(-1)
    w_p = np.repeat(w, 3) * opts.tangent_weight
    inv_var = 1.0 / opts.noise_std_mm**2
    precision = np.eye(b.shape[-1]) + inv_var * (
        (a_n * w[:, None]).T @ a_n + (a_p * w_p[:, None]).T @ a_p
    )
    rhs = inv_var * ((a_n * w[:, None]).T @ r_n + (a_p * w_p[:, None]).T @ r_p)
    cov = np.linalg.inv(precision)
    return cov @ rhs, cov


def _refine(shape: np.ndarray, local: np.ndarray, opts: FitOptions) -> np.ndarray:
    """Bounded smooth displacement of the vertices towards the inlier points (model frame)."""
    from models.shape.registration import smoothing_operator

    verts = shape.copy()
    op = smoothing_operator(shape, opts.refine_sigma_mm)
    for _ in range(opts.refine_iterations):
        _, ids = cKDTree(verts).query(local)
        force = np.zeros_like(verts)
        np.add.at(force, ids, local - verts[ids])
        count = np.zeros(len(verts))
        np.add.at(count, ids, 1.0)
        # smoothed mean displacement where supported, fading to zero away from the data
        num = op @ force
        den = op @ count
        support = np.clip(den * 3.0, 0.0, 1.0)
        step = np.where(den[:, None] > 1e-9, num / np.maximum(den, 1e-9)[:, None], 0.0)
        verts = verts + support[:, None] * step
        disp = verts - shape
        norm = np.linalg.norm(disp, axis=1, keepdims=True)
        verts = shape + disp * np.minimum(1.0, opts.refine_max_mm / np.maximum(norm, 1e-12))
    return verts


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """`(n_vertices, 3)` area-weighted unit vertex normals."""
    tri = vertices[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    vn = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)


def _vertex_std(model: ShapeModel, cov: np.ndarray) -> np.ndarray:
    """`(n_vertices,)` RMS positional std (mm) of each vertex under the coefficient posterior."""
    basis = model.basis  # (n, 3, k)
    chol = np.linalg.cholesky(cov + 1e-12 * np.eye(len(cov)))
    return np.sqrt((np.einsum("nck,kj->ncj", basis, chol) ** 2).sum(axis=(1, 2)) / 3.0)


def _point_to_surface(vertices: np.ndarray, faces: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """`(n_points,)` exact distance from points to the triangle surface, mm."""
    from models.fitting.distance import point_to_surface

    return point_to_surface(vertices, faces, pts)


def _landmark_arrays(
    model: ShapeModel, landmarks: dict[str, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray]:
    if not landmarks:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 3))
    names = list(landmarks)
    ids = np.array([model.landmarks[n] for n in names], dtype=np.int64)
    return ids, np.array([landmarks[n] for n in names], dtype=float)
