"""Reading a CT from a NIfTI file or a DICOM folder, refusing inputs that are not a 3D CT.

Images come back as SimpleITK images (world frame LPS+, mm) with float32 HU voxels. Checks run
on headers first (modality, series, slices, memory), so a bad input fails before its pixels
are decoded.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from dh.errors import fail

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass
class CTImage:
    """A CT volume and where it came from.

    Attributes:
        image: float32 HU image; origin/direction/spacing in world LPS+ mm.
        source: the input path.
        kind: "nifti" or "dicom".
        n_files: number of DICOM files read (1 for NIfTI).
    """

    image: sitk.Image
    source: str
    kind: str
    n_files: int = 1

    @property
    def size(self) -> tuple[int, int, int]:
        """Voxels along (x, y, z) of the image grid."""
        return tuple(int(s) for s in self.image.GetSize())

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel spacing (x, y, z) in mm."""
        return tuple(float(s) for s in self.image.GetSpacing())


def read_ct(path: str | Path, max_input_mb: float = 2048.0, p01_max: float = -500.0) -> CTImage:
    """Read a CT from a NIfTI file or a folder holding one DICOM series.

    Args:
        path: `.nii`/`.nii.gz` file, or a folder of DICOM files.
        max_input_mb: refuse volumes whose float32 voxels would exceed this many MiB.
        p01_max: the 1st intensity percentile must be at most this (air in HU is -1000).

    Raises:
        DHError: missing path, unknown format, non-CT modality, mixed DICOM series, a single
            slice, a volume over `max_input_mb`, or intensities that are not HU.
    """
    path = Path(path)
    if not path.exists():
        fail(str(path), "", "missing path", "a NIfTI file or a DICOM folder", "check the path")
    if path.is_dir():
        ct = _read_dicom_folder(path, max_input_mb)
    elif path.name.lower().endswith(NIFTI_SUFFIXES):
        ct = _read_nifti(path, max_input_mb)
    else:
        fail(
            str(path),
            "suffix",
            path.suffix,
            "a .nii/.nii.gz file or a DICOM folder",
            "convert the image to NIfTI or pass the folder holding the DICOM slices",
        )
    _check_hu(ct, p01_max)
    logger.info("read %s CT %s, %s voxels at %s mm", ct.kind, path.name, ct.size, ct.spacing)
    return ct


def _check_size(source: str, size: tuple[int, ...], max_input_mb: float) -> None:
    if len(size) != 3 or min(size) < 2:
        fail(
            source,
            "size",
            f"{tuple(size)} voxels",
            "a 3D volume with at least 2 voxels along each axis (not a single slice)",
            "pass the whole series or volume, not one slice",
        )
    megabytes = float(np.prod(size, dtype=np.float64)) * 4 / 2**20
    if megabytes > max_input_mb:
        fail(
            source,
            "size",
            f"{tuple(size)} voxels = {megabytes:.0f} MiB as float32",
            f"at most segmentation.max_input_mb = {max_input_mb:.0f} MiB",
            "crop or downsample the image, or raise max_input_mb in params.yaml",
        )


def _read_nifti(path: Path, max_input_mb: float) -> CTImage:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        fail(str(path), "", f"unreadable ({str(exc).splitlines()[0][:60]})", "a NIfTI", "re-export")
    size = tuple(int(s) for s in reader.GetSize())
    if len(size) == 4 and size[3] == 1:
        size = size[:3]
    _check_size(str(path), size, max_input_mb)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        fail(str(path), "", f"unreadable ({str(exc).strip()[:60]})", "a NIfTI", "re-export it")
    if image.GetDimension() == 4:
        image = image[:, :, :, 0]
    return CTImage(sitk.Cast(image, sitk.sitkFloat32), str(path), "nifti")


def _read_dicom_folder(folder: Path, max_input_mb: float) -> CTImage:
    import pydicom
    from pydicom.errors import InvalidDicomError

    headers = {}
    for f in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            headers[f] = pydicom.dcmread(f, stop_before_pixels=True)
        except (InvalidDicomError, OSError):
            logger.debug("skipping non-DICOM file %s", f.name)
    if not headers:
        fail(str(folder), "", "no DICOM files", "a folder of DICOM slices", "check the folder")

    # One series only: group by series UID and in-plane geometry.
    def series_key(ds: object) -> tuple:
        iop = tuple(round(float(v), 4) for v in getattr(ds, "ImageOrientationPatient", []) or [])
        return (
            str(getattr(ds, "SeriesInstanceUID", "")),
            int(getattr(ds, "Rows", 0)),
            int(getattr(ds, "Columns", 0)),
            iop,
        )

    groups = Counter(series_key(ds) for ds in headers.values())
    if len(groups) > 1:
        fail(
            str(folder),
            "SeriesInstanceUID/geometry",
            f"{len(groups)} series with {sorted(groups.values(), reverse=True)} files",
            "one DICOM series per folder",
            "move each series into its own folder and segment them one at a time",
        )
    modalities = sorted({str(getattr(ds, "Modality", "")) for ds in headers.values()})
    if modalities != ["CT"]:
        fail(
            str(folder),
            "Modality (0008,0060)",
            modalities,
            "['CT']",
            "segment CT series only; this model was trained on CT in Hounsfield units",
        )
    first = next(iter(headers.values()))
    _check_size(str(folder), (int(first.Columns), int(first.Rows), len(headers)), max_input_mb)

    # Pixel data: SimpleITK/GDCM sorts the slices by position and applies the rescale.
    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(folder))
    if len(names) != len(headers):
        names = [str(p) for p in headers]
    reader.SetFileNames(list(names))
    try:
        image = reader.Execute()
    except RuntimeError as exc:  # GDCM: truncated file, unsupported transfer syntax...
        fail(
            str(folder),
            "pixel data",
            f"unreadable ({str(exc).strip().splitlines()[-1][:60]})",
            "decodable DICOM slices",
            "re-export the series (uncompressed or JPEG 2000) and check no file is truncated",
        )
    return CTImage(sitk.Cast(image, sitk.sitkFloat32), str(folder), "dicom", len(names))


def _check_hu(ct: CTImage, p01_max: float) -> None:
    values = sitk.GetArrayViewFromImage(ct.image)
    sample = values.ravel()[:: max(1, values.size // 200_000)]
    p01, p99 = np.percentile(sample, [1, 99])
    if p01 > p01_max or p99 > 5000:
        fail(
            ct.source,
            "intensities",
            f"1st/99th percentiles {p01:.1f}/{p99:.1f}",
            f"CT in Hounsfield units (1st percentile <= {p01_max:g}, air near -1000)",
            "pass a CT in HU (apply RescaleSlope/Intercept); MR or normalised images are refused",
        )
