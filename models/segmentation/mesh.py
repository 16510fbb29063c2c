"""Label map -> one surface mesh per structure, in world RAS+ mm (the NIfTI affine's frame).

Marching cubes runs on each structure's binary mask in voxel index space; vertices go through
the label map's voxel-to-RAS affine, so a mesh overlays the label map written as NIfTI. Faces
are wound outward (normals point out of the structure) whatever the affine's handedness. Masks
finer than `mesh_spacing_mm` are subsampled first; then light Taubin smoothing (volume
preserving) and topology-preserving decimation.

Works on any label map, without the network: e.g. the reference femur of a TotalSegmentator
label map, `mesh_labelmap("example_seg.nii.gz", {"femur_left": [75]})`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import trimesh

logger = logging.getLogger(__name__)


def subsample(
    mask: np.ndarray, affine: np.ndarray, spacing_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """Take every s-th voxel per axis so the spacing is about `spacing_mm`; the affine follows.

    Args:
        mask: voxels `(X, Y, Z)`.
        affine: 4x4 voxel index -> world mm.
        spacing_mm: target spacing; axes already coarser are kept (s = 1).

    Returns:
        The subsampled mask and its 4x4 affine (same world frame).
    """
    voxel = np.linalg.norm(affine[:3, :3], axis=0)  # `(3,)` mm per index step
    steps = np.maximum(1, np.round(spacing_mm / voxel)).astype(int)
    if (steps == 1).all():
        return mask, affine
    offsets = steps // 2
    sub = mask[tuple(slice(o, None, s) for o, s in zip(offsets, steps, strict=True))]
    scale = np.eye(4)
    scale[:3, :3] = np.diag(steps)
    scale[:3, 3] = offsets
    return sub, affine @ scale


def mesh_mask(
    mask: np.ndarray,
    affine_ras: np.ndarray,
    smoothing_iterations: int = 10,
    decimate_reduction: float = 0.5,
    mesh_spacing_mm: float = 0.0,
) -> trimesh.Trimesh | None:
    """Surface of a binary mask `(X, Y, Z)` in world RAS+ mm; None when the mask is empty.

    Args:
        mask: boolean voxels, index order (x, y, z) matching `affine_ras`.
        affine_ras: 4x4 voxel index -> world RAS+ mm.
        smoothing_iterations: Taubin passes (0 = none).
        decimate_reduction: fraction of triangles removed (0 = none).
        mesh_spacing_mm: subsample finer masks to about this spacing first (0 = never).
    """
    from skimage.measure import marching_cubes

    if mesh_spacing_mm > 0:
        mask, affine_ras = subsample(mask, affine_ras, mesh_spacing_mm)
    if mask.sum() == 0:
        return None
    padded = np.pad(mask.astype(np.float32), 1)
    verts, faces, _, _ = marching_cubes(padded, level=0.5)
    verts = verts - 1.0  # undo the padding: back to voxel indices of `mask`
    world = verts @ affine_ras[:3, :3].T + affine_ras[:3, 3]  # `(n_vertices, 3)` RAS mm
    if np.linalg.det(affine_ras[:3, :3]) < 0:
        faces = faces[:, ::-1]
    mesh = trimesh.Trimesh(world, faces, process=True)
    if mesh.volume < 0:  # closed surface (the mask is padded): signed volume < 0 = inward
        mesh.invert()
    if smoothing_iterations > 0:
        trimesh.smoothing.filter_taubin(mesh, lamb=0.5, nu=-0.53, iterations=smoothing_iterations)
    if 0 < decimate_reduction < 1 and len(mesh.faces) > 200:
        mesh = _decimate(mesh, decimate_reduction)
    return mesh


def _decimate(mesh: trimesh.Trimesh, reduction: float) -> trimesh.Trimesh:
    from models.meshio import to_polydata

    poly = to_polydata(mesh).decimate_pro(reduction, preserve_topology=True)
    faces = np.asarray(poly.faces).reshape(-1, 4)[:, 1:]
    return trimesh.Trimesh(np.asarray(poly.points, dtype=float), faces, process=True)


def mesh_label_array(
    labels: np.ndarray,
    affine_ras: np.ndarray,
    structures: dict[str, list[int] | int],
    smoothing_iterations: int = 10,
    decimate_reduction: float = 0.5,
    min_voxels: int = 8,
    mesh_spacing_mm: float = 0.0,
) -> dict[str, trimesh.Trimesh]:
    """Meshes of named structures of a label array `(X, Y, Z)`; structures under `min_voxels`
    voxels are left out. Values of a structure's list are merged."""
    meshes = {}
    for name, values in structures.items():
        mask = np.isin(labels, np.atleast_1d(values))
        if mask.sum() < min_voxels:
            logger.info("structure %s: %d voxels, no mesh", name, int(mask.sum()))
            continue
        mesh = mesh_mask(
            mask, affine_ras, smoothing_iterations, decimate_reduction, mesh_spacing_mm
        )
        if mesh is not None and len(mesh.faces):
            meshes[name] = mesh
    return meshes


def mesh_labelmap(
    labelmap: str | Path,
    structures: dict[str, list[int] | int] | None = None,
    label_names: str | Path | None = None,
    smoothing_iterations: int = 10,
    decimate_reduction: float = 0.5,
    mesh_spacing_mm: float = 0.0,
) -> dict[str, trimesh.Trimesh]:
    """Meshes (world RAS+ mm, the NIfTI affine's frame) of a NIfTI label map.

    Args:
        labelmap: `.nii`/`.nii.gz` label map.
        structures: name -> label value(s); default every non-zero value present, named from
            `label_names` (lines `value name`) or `label_<value>`.
        label_names: optional label-name file (e.g. `ts_v2_labels.txt`).
        smoothing_iterations: Taubin passes.
        decimate_reduction: fraction of triangles removed.
        mesh_spacing_mm: subsample finer label maps to about this spacing (0 = never).
    """
    import nibabel as nib

    image = nib.load(str(labelmap))
    labels = np.asarray(image.dataobj).astype(np.int32)
    if structures is None:
        names = {}
        if label_names:
            from models.segmentation.config import read_label_names

            names = {v: k for k, v in read_label_names(Path(label_names)).items()}
        structures = {
            names.get(int(v), f"label_{int(v)}"): [int(v)] for v in np.unique(labels) if v != 0
        }
    return mesh_label_array(
        labels,
        image.affine,
        structures,
        smoothing_iterations,
        decimate_reduction,
        mesh_spacing_mm=mesh_spacing_mm,
    )
