"""Numpy sliding window, Dice/HD95 and meshing of label maps in world RAS mm."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from models.segmentation.mesh import mesh_labelmap, mesh_mask, subsample
from models.segmentation.metrics import dice, hd95, score_labels
from models.segmentation.postprocess import remove_small_components
from models.segmentation.sliding import sliding_window


def _voxelwise(batch: np.ndarray) -> np.ndarray:
    """A predictor whose logits depend on each voxel only: [v, 1 - v]."""
    return np.concatenate([batch, 1.0 - batch], axis=1)


@pytest.mark.parametrize("shape", [(20, 30, 7), (70, 64, 40)])
def test_sliding_window_reassembles_voxelwise_predictor(rng, shape):
    volume = rng.random(shape, dtype=np.float32)
    logits = sliding_window(volume, _voxelwise, (32, 32, 16), n_classes=2, overlap=0.25)
    assert logits.shape == (2, *shape)
    np.testing.assert_allclose(logits[0], volume, atol=1e-5)
    np.testing.assert_allclose(logits[1], 1 - volume, atol=1e-5)


def test_dice_and_hd95_on_shifted_boxes():
    a = np.zeros((40, 40, 40), bool)
    a[10:30, 10:30, 10:30] = True
    b = np.roll(a, 2, axis=0)
    assert dice(a, a) == 1.0
    assert dice(a, b) == pytest.approx(18 / 20)
    assert hd95(a, b, (1.5, 1.0, 1.0)) == pytest.approx(3.0)
    assert dice(a & False, b & False) is None and hd95(a, b & False, (1, 1, 1)) is None
    scores = score_labels(a.astype(np.uint8), b.astype(np.uint8), ["box"], (1, 1, 1))
    assert scores["box"].voxels_pred == scores["box"].voxels_ref == 8000


@pytest.mark.parametrize("name", ["example_seg.nii.gz", "example_seg_dicom.nii.gz"])
def test_reference_liver_mesh_in_world_ras(raw_data, name):
    path = raw_data / "ct" / name
    image = nib.load(str(path))
    labels = np.asarray(image.dataobj)
    meshes = mesh_labelmap(path, {"liver": [5]}, mesh_spacing_mm=0)
    liver = meshes["liver"]

    # Closed, outward-facing, volume close to the voxel count (smoothing shrinks a little).
    voxel_ml = abs(np.linalg.det(image.affine[:3, :3])) / 1000
    voxels_ml = (labels == 5).sum() * voxel_ml
    assert liver.volume > 0
    assert liver.volume / 1000 == pytest.approx(voxels_ml, rel=0.12)

    # Same world frame as the NIfTI affine: bounding boxes agree within a voxel.
    idx = np.argwhere(labels == 5)
    world = idx @ image.affine[:3, :3].T + image.affine[:3, 3]
    step = np.abs(image.affine[:3, :3]).max(axis=0).max()
    np.testing.assert_allclose(liver.bounds[0], world.min(axis=0), atol=step)
    np.testing.assert_allclose(liver.bounds[1], world.max(axis=0), atol=step)


def test_subsample_keeps_world_frame():
    affine = np.diag([-1.0, 1.0, 2.0, 1.0])
    affine[:3, 3] = [10, -5, 3]
    mask = np.zeros((40, 40, 10), bool)
    mask[11, 21, 4] = True
    sub, sub_affine = subsample(mask, affine, 2.0)
    assert sub.shape == (20, 20, 10)
    ((i, j, k),) = np.argwhere(sub)
    np.testing.assert_allclose(sub_affine @ [i, j, k, 1], affine @ [11, 21, 4, 1])
    assert mesh_mask(np.zeros((4, 4, 4), bool), affine) is None


def test_small_pieces_removed_similar_pieces_kept():
    labels = np.zeros((30, 30, 30), np.uint8)
    labels[2:12, 2:12, 2:12] = 1  # 1000 voxels
    labels[20:29, 20:29, 20:29] = 1  # 729 voxels: kept (over 10 % of the largest)
    labels[15, 2, 2] = 1  # a stray voxel: removed
    labels[2:4, 20:22, 2:4] = 2  # structure 2, one piece: kept
    out = remove_small_components(labels, 2, 0.1)
    assert (out == 1).sum() == 1729 and out[15, 2, 2] == 0 and (out == 2).sum() == 8
    assert remove_small_components(labels, 2, 0.0) is labels
