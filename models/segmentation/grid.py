"""Resampling by world coordinates (never by voxel index), and LPS/RAS conversions.

SimpleITK images carry origin, spacing and direction in world LPS+ mm; resampling maps each
output voxel centre to world coordinates and samples the input there. The common grid used
for training and inference has identity direction (axes along +L, +P, +S) and a fixed spacing.
Arrays taken from these images are transposed to (x, y, z) order.
"""

from __future__ import annotations

import itertools

import numpy as np
import SimpleITK as sitk

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # flips x and y; its own inverse


def world_corners(image: sitk.Image) -> np.ndarray:
    """World LPS+ coordinates (mm) of the 8 corner voxel centres, `(8, 3)`."""
    size = image.GetSize()
    corners = [
        image.TransformContinuousIndexToPhysicalPoint([float(c) for c in idx])
        for idx in itertools.product(*[(0, s - 1) for s in size])
    ]
    return np.asarray(corners, dtype=float)


def canonical_reference(image: sitk.Image, spacing_mm: list[float] | tuple) -> sitk.Image:
    """An empty image grid with identity direction covering `image`'s world extent.

    Args:
        image: any 3D image (world LPS+ mm).
        spacing_mm: output spacing (x, y, z) in mm.
    """
    corners = world_corners(image)
    low, high = corners.min(axis=0), corners.max(axis=0)
    spacing = np.asarray(spacing_mm, dtype=float)
    size = np.maximum(np.floor((high - low) / spacing + 1e-6).astype(int) + 1, 2)
    ref = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    ref.SetOrigin(tuple(float(v) for v in low))
    ref.SetSpacing(tuple(float(v) for v in spacing))
    ref.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return ref


def resample_to(
    image: sitk.Image, reference: sitk.Image, labels: bool, default: float = 0.0
) -> sitk.Image:
    """Resample `image` onto `reference`'s grid by world coordinates.

    Args:
        image: input image (world LPS+ mm).
        reference: the target grid.
        labels: nearest-neighbour for label maps, linear for intensities.
        default: value outside the input (use -1024 HU for CT, 0 for labels).
    """
    interpolator = sitk.sitkNearestNeighbor if labels else sitk.sitkLinear
    out_type = image.GetPixelID() if labels else sitk.sitkFloat32
    return sitk.Resample(image, reference, sitk.Transform(), interpolator, float(default), out_type)


def to_xyz(image: sitk.Image) -> np.ndarray:
    """Voxel array in (x, y, z) index order (SimpleITK arrays are (z, y, x))."""
    return np.ascontiguousarray(np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0)))


def from_xyz(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """Image from an (x, y, z) array with `reference`'s world geometry."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, (2, 1, 0))))
    image.CopyInformation(reference)
    return image


def ras_affine(image: sitk.Image) -> np.ndarray:
    """4x4 affine from voxel index (x, y, z) to world RAS+ mm, as a NIfTI file would carry."""
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction @ np.diag(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    return LPS_TO_RAS @ lps


def same_grid(a: sitk.Image, b: sitk.Image, tol_mm: float = 1e-3) -> bool:
    """True when two images share size, spacing, origin and direction."""
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol_mm)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol_mm)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)
    )
