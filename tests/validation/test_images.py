"""Image checks on the real demo CTs, label maps and DICOM series, and corrupted copies."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from dh.config import load_params
from validation import images


@pytest.fixture(scope="module")
def params() -> dict:
    return load_params("validation")


@pytest.fixture(scope="module")
def labels(raw_data) -> dict[int, str]:
    return images.load_label_catalogue(raw_data / "ct" / "ts_v2_labels.txt")


def _checks(path: Path, params, labels, rel: str | None = None) -> list:
    rel = rel or path.name
    vol, problems = images.read_nifti(path, rel, images.is_label_name(rel))
    if vol is not None and not problems:
        problems = images.check_values(vol, params, labels)
    return problems


def _save(data: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


@pytest.mark.parametrize(
    "name",
    ["example_ct.nii.gz", "example_ct_sm.nii.gz", "example_seg.nii.gz", "example_seg_dicom.nii.gz"],
)
def test_real_nifti_pass(raw_data, params, labels, name):
    assert _checks(raw_data / "ct" / name, params, labels) == []


def test_truncated_nifti_is_unreadable(raw_data, params, labels, tmp_path):
    src = (raw_data / "ct" / "example_ct_sm.nii.gz").read_bytes()
    bad = tmp_path / "example_ct_sm.nii.gz"
    bad.write_bytes(src[: len(src) // 3])
    (problem,) = _checks(bad, params, labels)
    assert problem.check == "image_readable" and "truncated" in problem.fix


def test_nan_voxel_fails(raw_data, params, labels, tmp_path):
    img = nib.load(str(raw_data / "ct" / "example_ct_sm.nii.gz"))
    data = np.asanyarray(img.dataobj).astype(np.float32)
    data[10, 20, 5] = np.nan
    (problem,) = _checks(_save(data, img.affine, tmp_path / "ct.nii.gz"), params, labels)
    assert problem.check == "image_finite" and "[10, 20, 5]" in problem.value


def test_zero_spacing_and_sheared_direction_fail(raw_data, params, labels, tmp_path):
    img = nib.load(str(raw_data / "ct" / "example_ct_sm.nii.gz"))
    data = np.asanyarray(img.dataobj)
    # nibabel refuses to write a zero spacing: patch the header bytes of a plain .nii
    flat = _save(data, img.affine, tmp_path / "flat.nii")
    raw = bytearray(flat.read_bytes())
    raw[88:92] = np.float32(0.0).tobytes()  # pixdim[3]: slice spacing
    raw[320:324] = np.float32(0.0).tobytes()  # srow_z[2]: the sform's z scaling
    flat.write_bytes(bytes(raw))
    (problem,) = _checks(flat, params, labels)
    assert problem.check == "image_spacing" and "0.0" in problem.value
    sheared = img.affine.copy()
    sheared[0, 1] = 1.5  # j axis leans into x
    (problem,) = _checks(_save(data, sheared, tmp_path / "shear.nii.gz"), params, labels)
    assert problem.check == "image_direction"


def test_ct_not_in_hounsfield_units_fails(raw_data, params, labels, tmp_path):
    img = nib.load(str(raw_data / "ct" / "example_ct_sm.nii.gz"))
    stored = np.asanyarray(img.dataobj).astype(np.int16) + 1024  # rescale intercept not applied
    (problem,) = _checks(_save(stored, img.affine, tmp_path / "ct.nii.gz"), params, labels)
    assert problem.check == "ct_hu" and "no air" in problem.value
    scaled = np.asanyarray(img.dataobj).astype(np.float32) * 10
    (problem,) = _checks(_save(scaled, img.affine, tmp_path / "ct10.nii.gz"), params, labels)
    assert problem.check == "ct_hu"


def test_label_value_outside_catalogue_fails(raw_data, params, labels, tmp_path):
    img = nib.load(str(raw_data / "ct" / "example_seg.nii.gz"))
    data = np.asanyarray(img.dataobj).copy()
    data[data == 5] = 200  # liver relabelled to a value the catalogue does not have
    (problem,) = _checks(_save(data, img.affine, tmp_path / "seg.nii.gz"), params, labels)
    assert problem.check == "label_values" and "200" in problem.value


def _volume(path: Path, rel: str) -> images.Volume:
    vol, problems = images.read_nifti(path, rel, images.is_label_name(rel))
    assert not problems
    return vol


def test_label_map_agrees_with_its_image_in_world_space(raw_data, params, tmp_path):
    ct_dir = raw_data / "ct"
    ct = _volume(ct_dir / "example_ct_sm.nii.gz", "ct.nii.gz")
    dicom, report = images.read_dicom_series(ct_dir / "example_ct_dicom", "dicom", params)
    assert report.ok
    seg = _volume(ct_dir / "example_seg.nii.gz", "seg.nii.gz")
    seg_dicom = _volume(ct_dir / "example_seg_dicom.nii.gz", "seg_dicom.nii.gz")
    # different grids (LAS, 2 mm) from the DICOM slices, but the same place in the world
    assert images.check_label_alignment(seg, [ct, dicom], params) == []
    assert images.check_label_alignment(seg_dicom, [ct, dicom], params) == []

    img = nib.load(str(ct_dir / "example_seg.nii.gz"))
    moved = img.affine.copy()
    moved[2, 3] += 400.0  # 40 cm up: outside every image
    path = _save(np.asanyarray(img.dataobj), moved, tmp_path / "seg_moved.nii.gz")
    (problem,) = images.check_label_alignment(_volume(path, "seg_moved.nii.gz"), [ct], params)
    assert problem.check == "label_alignment" and "0.0%" in problem.value


def test_real_dicom_series_passes_with_phi_note(raw_data, params):
    vol, report = images.read_dicom_series(raw_data / "ct" / "example_ct_dicom", "d", params)
    assert report.ok and vol.shape == (512, 512, 20)
    assert np.allclose(np.linalg.norm(vol.affine[:3, :3], axis=0), [0.9765625, 0.9765625, 2.0])
    assert images.check_values(vol, params, None) == []


@pytest.fixture
def dicom_copy(raw_data, tmp_path) -> Path:
    folder = tmp_path / "series"
    shutil.copytree(raw_data / "ct" / "example_ct_dicom", folder)
    return folder


def test_dicom_patient_name_flagged_and_stripped(dicom_copy, params, tmp_path):
    first = sorted(dicom_copy.iterdir())[0]
    ds = pydicom.dcmread(first)
    ds.PatientName = "Doe^Jane"
    ds.PatientBirthDate = "19800102"
    ds.save_as(first)
    _, report = images.read_dicom_series(dicom_copy, "series", params)
    assert report.ok  # flagged, not failed: ingest strips the tags
    (note,) = report.notes
    assert note.check == "dicom_phi" and "PatientName" in note.field
    assert "Doe" not in str(note)
    out = tmp_path / "clean" / first.name
    assert "PatientName" in images.strip_dicom_phi(first, out)
    clean = pydicom.dcmread(out)
    assert str(clean.PatientName) == "" and images.dicom_phi_tags(clean) == []
    assert np.array_equal(clean.pixel_array, ds.pixel_array)


def test_dicom_missing_slice_and_mixed_series_fail(dicom_copy, params):
    slices = sorted(dicom_copy.iterdir(), key=lambda p: pydicom.dcmread(p).ImagePositionPatient[2])
    slices[10].unlink()  # a gap in the stack
    _, report = images.read_dicom_series(dicom_copy, "series", params)
    assert [p.check for p in report.problems] == ["dicom_series"]
    assert report.problems[0].field == "ImagePositionPatient"

    ds = pydicom.dcmread(slices[3])
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.save_as(slices[3])
    _, report = images.read_dicom_series(dicom_copy, "series", params)
    assert "SeriesInstanceUID" in {p.field for p in report.problems}


def test_truncated_dicom_slice_fails(dicom_copy, params):
    victim = sorted(dicom_copy.iterdir())[5]
    victim.write_bytes(victim.read_bytes()[:2000])
    _, report = images.read_dicom_series(dicom_copy, "series", params)
    assert any(p.check == "dicom_readable" for p in report.problems)
