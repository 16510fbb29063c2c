"""Resampling by world coordinates: label maps land where their CT's anatomy is."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from dh.errors import DHError
from models.segmentation.config import load_seg_params, structure_lookup
from models.segmentation.dataset import load_subject
from models.segmentation.grid import canonical_reference, ras_affine, resample_to, to_xyz
from models.segmentation.imageio import read_ct
from models.segmentation.metrics import dice

LIVER = 5  # TotalSegmentator v2 label value


def _world_centroid(image: sitk.Image, mask: np.ndarray) -> np.ndarray:
    """World LPS+ centroid (mm) of a `(X, Y, Z)` mask on `image`'s grid."""
    idx = np.argwhere(mask).mean(axis=0)
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint(idx.tolist()))


def test_reference_labelmap_on_dicom_grid_overlaps_where_it_should(raw_data):
    ct = read_ct(raw_data / "ct" / "example_ct_dicom")
    reference = sitk.ReadImage(str(raw_data / "ct" / "example_seg_dicom.nii.gz"))
    on_ct = to_xyz(resample_to(reference, ct.image, labels=True))
    ref_xyz = to_xyz(reference)
    hu = to_xyz(ct.image)

    # The label map is LAS at the CT's slices: by world coordinates it is the y-flipped array.
    assert on_ct.shape == hu.shape
    np.testing.assert_array_equal(on_ct, ref_xyz[:, ::-1, :])

    # Liver voxels are soft tissue in the CT; copying by voxel index would put them elsewhere.
    liver = on_ct == LIVER
    assert 20 < hu[liver].mean() < 200
    naive = ref_xyz == LIVER
    assert dice(liver, naive) < 0.8
    assert hu[naive].mean() < hu[liver].mean() - 20


def test_common_grid_keeps_world_position(raw_data):
    params = load_seg_params()
    subject = load_subject("ct_dicom", params, raw_data)
    reference = sitk.ReadImage(str(raw_data / "ct" / "example_seg_dicom.nii.gz"))

    # Liver centroid in world mm, before (reference grid) and after (common grid at 3 mm).
    before = _world_centroid(reference, to_xyz(reference) == LIVER)
    after = _world_centroid(subject.grid, subject.labels == 1)
    assert np.linalg.norm(before - after) < 3.0
    assert subject.grid.GetDirection() == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert subject.spacing_mm == (3.0, 3.0, 3.0)
    assert 20 < subject.image_hu[subject.labels == 1].mean() < 200


def test_canonical_grid_covers_rotated_image(raw_data):
    ct = read_ct(raw_data / "ct" / "example_ct_sm.nii.gz")  # RAS file = LPS direction -1, -1, 1
    grid = canonical_reference(ct.image, [3.0, 3.0, 3.0])
    assert grid.GetSize() == ct.image.GetSize()
    on_grid = to_xyz(resample_to(ct.image, grid, labels=False, default=-1024))
    np.testing.assert_allclose(on_grid, to_xyz(ct.image)[::-1, ::-1, :], atol=1e-3)


def test_ras_affine_matches_nifti_header(raw_data):
    import nibabel as nib

    path = raw_data / "ct" / "example_seg_dicom.nii.gz"
    np.testing.assert_allclose(
        ras_affine(sitk.ReadImage(str(path))), nib.load(str(path)).affine, atol=1e-3
    )


def test_structures_resolve_to_present_labels(raw_data):
    lookup = structure_lookup(load_seg_params(), raw_data)
    assert lookup["liver"] == [LIVER]
    assert 32 in lookup["vertebrae"] and 50 in lookup["vertebrae"] and 25 not in lookup["vertebrae"]
    ribs = structure_lookup(load_seg_params({"structures": {"ribs": ["rib_*"]}}), raw_data)
    assert ribs["ribs"] == list(range(92, 116))
    with pytest.raises(DHError, match="femurr"):
        structure_lookup(load_seg_params({"structures": {"x": ["femurr"]}}), raw_data)


def test_split_must_be_by_subject():
    with pytest.raises(DHError, match="val_subjects"):
        load_seg_params({"train_subjects": ["ct_sm"], "val_subjects": ["ct_sm"]})
    with pytest.raises(DHError, match="patch_size"):
        load_seg_params({"patch_size": [60, 64, 16]})
