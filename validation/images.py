"""Quality checks for NIfTI and DICOM images and label maps, and DICOM de-identification.

Every volume is brought to one convention: an array indexed `(i, j, k)` in voxels and a
`(4, 4)` affine from voxel indices to world **RAS** millimetres (DICOM's LPS is converted).
Checks: readable, finite, spacing > 0, direction orthonormal, CT values plausible in HU,
label values inside the label catalogue, label map inside its image's field of view and over
tissue, and DICOM series consistency. Patient-identifying DICOM tags are reported as notes and
blanked by :func:`strip_dicom_phi` when the batch is ingested.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dh.errors import Problem
from validation.report import CheckReport

logger = logging.getLogger(__name__)

MR_NAME = re.compile(r"(^|[_\-.])(mr|mri|t1|t2|flair|dwi)([_\-.]|$)", re.IGNORECASE)
LABEL_NAME = re.compile(r"(seg|label|mask)", re.IGNORECASE)

# Patient-identifying attributes (after DICOM PS3.15 Annex E, basic profile, the patient and
# staff identity subset); they are blanked on ingest.
DICOM_PHI_TAGS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "MedicalRecordLocator",
    "PatientComments",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "InstitutionName",
    "InstitutionAddress",
    "AccessionNumber",
)


@dataclass
class Volume:
    """A checked volume: voxels `(ni, nj, nk)` and voxel -> world RAS mm affine `(4, 4)`."""

    file: str
    data: np.ndarray
    affine: np.ndarray
    is_label: bool
    is_ct: bool

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.data.shape[:3])


def is_label_name(name: str) -> bool:
    """Label maps are named `*seg*`, `*label*` or `*mask*` (the convention of a batch)."""
    return bool(LABEL_NAME.search(name))


def load_label_catalogue(path: Path) -> dict[int, str]:
    """Label values and structure names from a `value name` text file (e.g. ts_v2_labels.txt)."""
    labels = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            labels[int(parts[0])] = parts[1]
    return labels


def check_geometry(file: str, spacing: np.ndarray, affine: np.ndarray) -> list[Problem]:
    """Spacing > 0 (mm) and an orthonormal direction matrix."""
    problems = []
    norms = np.linalg.norm(affine[:3, :3], axis=0)
    if not (np.all(np.isfinite(spacing)) and np.all(spacing > 0) and np.all(norms > 0)):
        problems.append(
            Problem(
                file,
                "spacing",
                f"{np.round(spacing, 4).tolist()} mm (affine {np.round(norms, 4).tolist()})",
                "every voxel spacing > 0 mm",
                "rewrite the header with the true voxel size (pixdim / PixelSpacing)",
                "image_spacing",
            )
        )
        return problems
    direction = affine[:3, :3] / norms
    error = float(np.abs(direction.T @ direction - np.eye(3)).max())
    if not np.isfinite(error) or error > 1e-3:
        problems.append(
            Problem(
                file,
                "direction",
                f"max |D^T D - I| = {error:.3g}",
                "an orthonormal direction matrix (deviation <= 1e-3)",
                "re-export the image; sheared or scaled direction cosines are not supported",
                "image_direction",
            )
        )
    return problems


def check_values(vol: Volume, params: dict, labels: dict[int, str] | None) -> list[Problem]:
    """Finite voxels; CT intensities plausible in HU; label values in the label catalogue."""
    data = vol.data
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        first = np.argwhere(~np.isfinite(data))[0].tolist()
        return [
            Problem(
                vol.file,
                "voxels",
                f"{bad} non-finite voxel(s) (NaN/inf), first at voxel {first}",
                "finite values everywhere",
                "replace NaN/inf (e.g. by the background value) and re-export",
                "image_finite",
            )
        ]
    if vol.is_label:
        return _check_labels(vol, labels)
    if vol.is_ct:
        return _check_hu(vol, params)
    return []


def _check_labels(vol: Volume, labels: dict[int, str] | None) -> list[Problem]:
    values = np.unique(vol.data)
    if vol.data.dtype.kind == "f" and not np.all(values == np.round(values)):
        return [
            Problem(
                vol.file,
                "voxels",
                "non-integer values",
                "integer label values",
                "save label maps with an integer type and nearest-neighbour resampling",
                "label_values",
            )
        ]
    if labels is None:
        return []
    unknown = sorted(int(v) for v in values if int(v) != 0 and int(v) not in labels)
    if unknown:
        return [
            Problem(
                vol.file,
                "labels",
                f"values {unknown[:10]}{' ...' if len(unknown) > 10 else ''}",
                f"0 (background) or values of the label catalogue (1..{max(labels)})",
                "remap the label map to the catalogue's values (ts_v2_labels.txt)",
                "label_values",
            )
        ]
    return []


def _check_hu(vol: Volume, params: dict) -> list[Problem]:
    lo, hi = np.percentile(vol.data, [0.5, 99.5])
    problems = []
    if lo < params["ct_hu_min"] or hi > params["ct_hu_max"]:
        problems.append(
            Problem(
                vol.file,
                "intensity",
                f"0.5-99.5th percentiles {lo:.0f}..{hi:.0f}",
                f"within {params['ct_hu_min']}..{params['ct_hu_max']} HU",
                "store CT in Hounsfield units (apply RescaleSlope/RescaleIntercept)",
                "ct_hu",
            )
        )
    elif lo > params["ct_air_hu_max"]:
        problems.append(
            Problem(
                vol.file,
                "intensity",
                f"0.5th percentile {lo:.0f} HU: no air in the image",
                f"some voxels at or below {params['ct_air_hu_max']} HU (air, lung)",
                "check the rescale: raw stored values (air near 0) are not HU",
                "ct_hu",
            )
        )
    return problems


# ---------------------------------------------------------------------------- NIfTI


def read_nifti(path: Path, file: str, is_label: bool) -> tuple[Volume | None, list[Problem]]:
    """Load a NIfTI volume and check geometry; a truncated or corrupt file is a Problem."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
        zooms = np.asarray(img.header.get_zooms()[:3], dtype=float)
        affine = np.asarray(img.affine, dtype=float)
    except Exception as exc:  # nibabel, gzip and zlib raise many types for a damaged file
        return None, [
            Problem(
                file,
                "",
                f"unreadable ({type(exc).__name__}: {str(exc)[:80]})",
                "a complete NIfTI-1/2 file",
                "re-copy or re-export the file; it may be truncated",
                "image_readable",
            )
        ]
    if data.ndim != 3:
        return None, [
            Problem(
                file,
                "shape",
                str(data.shape),
                "a 3-D volume",
                "split 4-D series into 3-D volumes",
                "image_readable",
            )
        ]
    problems = check_geometry(file, zooms, affine)
    is_ct = not is_label and not MR_NAME.search(Path(file).name)
    return Volume(file, data, affine, is_label, is_ct), problems


# ---------------------------------------------------------------------------- DICOM


def is_dicom_file(path: Path) -> bool:
    """DICOM Part 10 files carry `DICM` after a 128-byte preamble."""
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def dicom_phi_tags(ds: Any) -> list[str]:
    """Patient-identifying tags that hold a value in a pydicom dataset."""
    return [tag for tag in DICOM_PHI_TAGS if str(ds.get(tag, "") or "").strip()]


def read_dicom_series(folder: Path, file: str, params: dict) -> tuple[Volume | None, CheckReport]:
    """Read a folder of DICOM slices as one volume and check it is one consistent series.

    Returns:
        The volume (HU, RAS affine) when readable, and a report whose notes list the
        patient-identifying tags found (they are blanked on ingest).
    """
    import pydicom

    report = CheckReport(checked=1)
    paths = sorted(p for p in folder.iterdir() if p.is_file() and is_dicom_file(p))
    slices = []
    for p in paths:
        try:
            ds = pydicom.dcmread(p)
            pixels = ds.pixel_array.astype(np.float32)
        except Exception as exc:  # pydicom raises many types for a damaged file
            report.problems.append(
                Problem(
                    f"{file}/{p.name}",
                    "",
                    f"unreadable ({type(exc).__name__})",
                    "a complete DICOM file with pixel data",
                    "re-export the slice from the scanner or PACS",
                    "dicom_readable",
                )
            )
            continue
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
        slices.append((p, ds, pixels * slope + intercept))
    if not slices:
        return None, report

    phi = sorted({tag for _, ds, _ in slices for tag in dicom_phi_tags(ds)})
    if phi:
        report.notes.append(
            Problem(
                file,
                ", ".join(phi),
                f"patient-identifying tags set in {len(slices)} slice(s)",
                "no patient identity in versioned images",
                "none needed: ingest blanks these tags (and private tags) in the cohort copy",
                "dicom_phi",
            )
        )
    report.problems += _series_consistency(slices, file, params)
    if not report.ok:
        return None, report

    volume = _stack(slices, file)
    report.problems += check_geometry(
        file, np.linalg.norm(volume.affine[:3, :3], axis=0), volume.affine
    )
    return volume, report


def _series_consistency(slices: list, file: str, params: dict) -> list[Problem]:
    """One series; same size, spacing and orientation; regularly spaced slice positions."""
    problems = []

    def differ(attr: str, fix: str) -> None:
        values = {str(ds.get(attr)) for _, ds, _ in slices}
        if len(values) > 1:
            problems.append(
                Problem(
                    file,
                    attr,
                    f"{len(values)} different values: {sorted(values)[:3]}",
                    f"one {attr} for the whole series",
                    fix,
                    "dicom_series",
                )
            )

    differ("SeriesInstanceUID", "put each series in its own folder")
    differ("Rows", "keep only slices of one acquisition")
    differ("Columns", "keep only slices of one acquisition")
    differ("PixelSpacing", "keep only slices of one acquisition")
    orient = np.array([[float(x) for x in ds.ImageOrientationPatient] for _, ds, _ in slices])
    if np.abs(orient - orient[0]).max() > 1e-4:
        problems.append(
            Problem(
                file,
                "ImageOrientationPatient",
                "differs between slices",
                "one orientation for the whole series",
                "keep only slices of one acquisition",
                "dicom_series",
            )
        )
    if problems or len(slices) < 2:
        return problems
    normal = np.cross(orient[0][:3], orient[0][3:])
    positions = np.sort([float(np.dot(normal, ds.ImagePositionPatient)) for _, ds, _ in slices])
    gaps = np.diff(positions)
    median = float(np.median(gaps))
    tol = params["slice_spacing_tolerance"] * max(median, 1e-6)
    if median <= 0 or np.abs(gaps - median).max() > tol:
        problems.append(
            Problem(
                file,
                "ImagePositionPatient",
                f"slice gaps {np.round(gaps.min(), 3)}..{np.round(gaps.max(), 3)} mm",
                f"regular spacing (all gaps within {params['slice_spacing_tolerance']:.0%} "
                "of the median, no duplicate or missing slice)",
                "remove duplicated slices or supply the missing ones",
                "dicom_series",
            )
        )
    return problems


def _stack(slices: list, file: str) -> Volume:
    """Stack slices along their normal: array `(columns, rows, n_slices)`, RAS affine."""
    ds0 = slices[0][1]
    iop = np.array([float(x) for x in ds0.ImageOrientationPatient])
    row_dir, col_dir = iop[:3], iop[3:]  # LPS directions of increasing column / row index
    normal = np.cross(row_dir, col_dir)
    order = sorted(slices, key=lambda s: float(np.dot(normal, s[1].ImagePositionPatient)))
    data = np.stack([s[2].T for s in order], axis=-1)  # (columns, rows, n_slices)
    dr, dc = (float(x) for x in ds0.PixelSpacing)  # row spacing, column spacing (mm)
    ipp = [np.array([float(x) for x in s[1].ImagePositionPatient]) for s in order]
    dz = float(np.median(np.diff([np.dot(normal, p) for p in ipp]))) if len(ipp) > 1 else 1.0
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row_dir * dc, col_dir * dr, normal * dz, ipp[0]
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    return Volume(file, data, ras, is_label=False, is_ct=str(ds0.get("Modality", "CT")) == "CT")


def strip_dicom_phi(src: Path, dst: Path) -> list[str]:
    """Copy a DICOM file, blanking patient-identifying tags and removing private tags.

    Returns:
        The tags that held a value and were blanked.
    """
    import pydicom

    ds = pydicom.dcmread(src)
    found = dicom_phi_tags(ds)
    for tag in DICOM_PHI_TAGS:
        if tag in ds:
            ds.data_element(tag).value = ""
    ds.remove_private_tags()
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "dh ingest: patient and staff identity tags blanked"
    dst.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dst, enforce_file_format=False)
    return found


# ---------------------------------------------------------------------------- alignment


def foreground_world(label: Volume, max_points: int = 200_000) -> np.ndarray:
    """World RAS mm of labelled voxel centres, `(n_points, 3)`, evenly subsampled."""
    ijk = np.argwhere(label.data > 0)
    if len(ijk) > max_points:
        ijk = ijk[:: int(np.ceil(len(ijk) / max_points))]
    return (label.affine @ np.c_[ijk, np.ones(len(ijk))].T).T[:, :3]


def fov_fraction(points: np.ndarray, image: Volume) -> tuple[float, np.ndarray]:
    """Share of world points inside the image's field of view, and their voxel indices."""
    ijk = (np.linalg.inv(image.affine) @ np.c_[points, np.ones(len(points))].T).T[:, :3]
    inside = np.all((ijk >= -0.5) & (ijk <= np.asarray(image.shape) - 0.5), axis=1)
    return float(inside.mean()) if len(points) else 0.0, np.rint(ijk[inside]).astype(int)


def check_label_alignment(label: Volume, images: list[Volume], params: dict) -> list[Problem]:
    """The label map lies inside its image's field of view, over tissue (world coordinates).

    The paired image is the one on the identical grid, else the one whose field of view holds
    the largest share of the label foreground (label maps may be on a different grid, e.g.
    a NIfTI label map for a DICOM series: they are compared in world RAS mm, never by index).
    """
    points = foreground_world(label)
    if not len(points) or not images:
        return []
    same = [im for im in images if im.shape == label.shape and np.allclose(im.affine, label.affine)]
    scored = [(fov_fraction(points, im), im) for im in (same or images)]
    (fraction, ijk), image = max(scored, key=lambda s: s[0][0])
    need = params["label_fov_min_fraction"]
    if fraction < need:
        return [
            Problem(
                label.file,
                "affine",
                f"{fraction:.1%} of the labelled voxels inside {image.file}",
                f"at least {need:.0%} inside the field of view of its image",
                "write the label map with its image's geometry (origin, direction, spacing; "
                "if the image failed its own checks, fix those first); "
                "resample by world coordinates, not voxel index",
                "label_alignment",
            )
        ]
    if image.is_ct:
        mean_hu = float(image.data[ijk[:, 0], ijk[:, 1], ijk[:, 2]].mean())
        if mean_hu < params["label_tissue_hu_min"]:
            return [
                Problem(
                    label.file,
                    "affine",
                    f"mean {mean_hu:.0f} HU under the labels in {image.file}",
                    f"labels over tissue (mean >= {params['label_tissue_hu_min']} HU)",
                    "check the label map's orientation (flipped axis, LPS vs RAS)",
                    "label_alignment",
                )
            ]
    logger.debug("%s pairs with %s (%.1f%% in view)", label.file, image.file, 100 * fraction)
    return []
