"""Bad CT inputs get a clear DHError before any pixel is segmented."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from dh.errors import DHError
from models.segmentation.imageio import read_ct


@pytest.fixture
def dicom_copy(raw_data, tmp_path) -> Path:
    """A writable copy of the demo DICOM series."""
    folder = tmp_path / "series"
    shutil.copytree(raw_data / "ct" / "example_ct_dicom", folder)
    return folder


def _edit(files: list[Path], **tags: str) -> None:
    for f in files:
        ds = pydicom.dcmread(f)
        for key, value in tags.items():
            setattr(ds, key, value)
        ds.save_as(f)


def test_reads_dicom_series_and_nifti(raw_data):
    ct = read_ct(raw_data / "ct" / "example_ct_dicom")
    assert (ct.kind, ct.size, ct.n_files) == ("dicom", (512, 512, 20), 20)
    assert ct.spacing == pytest.approx((0.9765625, 0.9765625, 2.0))
    hu = sitk.GetArrayViewFromImage(ct.image)
    assert hu.min() == pytest.approx(-1024)  # rescale intercept applied
    nifti = read_ct(raw_data / "ct" / "example_ct_sm.nii.gz")
    assert (nifti.kind, nifti.size) == ("nifti", (122, 101, 30))


def test_non_ct_modality(dicom_copy):
    _edit(sorted(dicom_copy.iterdir()), Modality="MR")
    with pytest.raises(DHError, match="Modality") as err:
        read_ct(dicom_copy)
    assert "MR" in str(err.value)


def test_mixed_series(dicom_copy):
    files = sorted(dicom_copy.iterdir())
    _edit(files[:8], SeriesInstanceUID="1.2.826.0.1.3680043.8.498.1")
    _edit(files[8:], SeriesInstanceUID="1.2.826.0.1.3680043.8.498.2")
    with pytest.raises(DHError, match="one DICOM series per folder") as err:
        read_ct(dicom_copy)
    assert "[12, 8]" in str(err.value)


def test_single_dicom_slice(dicom_copy):
    for f in sorted(dicom_copy.iterdir())[1:]:
        f.unlink()
    with pytest.raises(DHError, match="single slice"):
        read_ct(dicom_copy)


def test_single_nifti_slice(raw_data, tmp_path):
    image = sitk.ReadImage(str(raw_data / "ct" / "example_ct_sm.nii.gz"))
    path = tmp_path / "one_slice.nii.gz"
    sitk.WriteImage(image[:, :, 10:11], str(path))
    with pytest.raises(DHError, match="single slice"):
        read_ct(path)


def test_nifti_not_in_hounsfield_units(raw_data, tmp_path):
    image = sitk.Cast(
        sitk.ReadImage(str(raw_data / "ct" / "example_ct_sm.nii.gz")), sitk.sitkFloat32
    )
    scaled = sitk.RescaleIntensity(image, 0.0, 1.0)  # a normalised image, as MR pipelines save
    path = tmp_path / "normalised.nii.gz"
    sitk.WriteImage(scaled, str(path))
    with pytest.raises(DHError, match="Hounsfield"):
        read_ct(path)


def test_over_memory_limit(raw_data):
    with pytest.raises(DHError, match="max_input_mb") as err:
        read_ct(raw_data / "ct" / "example_ct_dicom", max_input_mb=10)
    assert "20 MiB" in str(err.value)


def test_missing_and_unknown_inputs(tmp_path):
    with pytest.raises(DHError, match="missing path"):
        read_ct(tmp_path / "nope.nii.gz")
    other = tmp_path / "scan.mha"
    other.write_bytes(np.zeros(4, np.uint8).tobytes())
    with pytest.raises(DHError, match="suffix"):
        read_ct(other)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DHError, match="no DICOM files"):
        read_ct(empty)


def test_truncated_dicom_slice(dicom_copy):
    victim = sorted(dicom_copy.iterdir())[5]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 20000])  # pixel data cut short, header intact
    with pytest.raises(DHError, match="unreadable|pixel data"):
        read_ct(dicom_copy)
