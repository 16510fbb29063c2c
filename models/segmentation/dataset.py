"""Subjects (CT + reference label map) resampled by world coordinates onto the common grid.

The common grid has identity direction in world LPS+ and `spacing_mm` spacing, and covers the
CT's world extent; the reference label map is resampled onto it with nearest neighbour, by world
coordinates, so label maps stored in another grid or orientation (the DICOM subject's is LAS at
2 mm) line up with their CT. Arrays are (x, y, z).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from dh.config import DATA_RAW
from dh.errors import fail
from models.segmentation.config import SegParams, structure_lookup
from models.segmentation.grid import canonical_reference, resample_to, to_xyz
from models.segmentation.imageio import read_ct

logger = logging.getLogger(__name__)


@dataclass
class Subject:
    """One subject on the common grid.

    Attributes:
        subject_id: id from params (e.g. "ct_sm").
        image_hu: CT in HU, `(X, Y, Z)` float32.
        labels: output labels 0..N, `(X, Y, Z)` uint8 (0 = background).
        grid: the common grid (world LPS+ geometry, identity direction).
        image_path: CT file or DICOM folder.
        labels_path: reference label map file.
    """

    subject_id: str
    image_hu: np.ndarray
    labels: np.ndarray
    grid: sitk.Image
    image_path: Path
    labels_path: Path

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Grid spacing (x, y, z) in mm."""
        return tuple(float(s) for s in self.grid.GetSpacing())


def normalize_hu(hu: np.ndarray, window: list[float] | tuple[float, float]) -> np.ndarray:
    """Clip HU to `window` and scale to [0, 1], float32, same shape."""
    low, high = float(window[0]), float(window[1])
    return ((np.clip(hu, low, high) - low) / (high - low)).astype(np.float32)


def label_table(lookup: dict[str, list[int]], max_value: int = 255) -> np.ndarray:
    """Table reference value -> output label (1..N in `lookup` order), `(max_value + 1,)`."""
    table = np.zeros(max_value + 1, dtype=np.uint8)
    for i, values in enumerate(lookup.values(), start=1):
        table[np.asarray(values, dtype=int)] = i
    return table


def map_labels(reference: np.ndarray, table: np.ndarray, source: str) -> np.ndarray:
    """Reference label values -> output labels through `table`.

    Raises:
        DHError: negative or too large label values.
    """
    reference = np.asarray(reference)
    if reference.size and (reference.min() < 0 or reference.max() >= len(table)):
        fail(
            source,
            "label values",
            f"range {reference.min()}..{reference.max()}",
            f"integers in 0..{len(table) - 1}",
            "pass an integer label map with the label names of segmentation.label_names",
        )
    return table[reference.astype(np.int64)]


def load_subject(subject_id: str, params: SegParams, root: Path = DATA_RAW) -> Subject:
    """Read a subject's CT and reference label map onto the common grid.

    Raises:
        DHError: unknown subject id, unreadable files, bad label values.
    """
    if subject_id not in params.subjects:
        fail(
            "params.yaml",
            "segmentation.subjects",
            subject_id,
            f"one of {sorted(params.subjects)}",
            "add the subject under segmentation.subjects",
        )
    entry = params.subjects[subject_id]
    image_path, labels_path = root / entry["image"], root / entry["labels"]
    ct = read_ct(image_path, params.max_input_mb, params.hu_check_p01_max)
    grid = canonical_reference(ct.image, params.spacing_mm)
    image_hu = to_xyz(resample_to(ct.image, grid, labels=False, default=-1024.0))

    reference = sitk.ReadImage(str(labels_path))
    if reference.GetNumberOfComponentsPerPixel() != 1:
        fail(str(labels_path), "components", reference.GetNumberOfComponentsPerPixel(), "1", "")
    on_grid = to_xyz(resample_to(reference, grid, labels=True, default=0))
    table = label_table(structure_lookup(params, root))
    labels = map_labels(on_grid, table, str(labels_path))
    logger.info(
        "subject %s: grid %s at %s mm, %d labelled voxels",
        subject_id,
        image_hu.shape,
        params.spacing_mm,
        int((labels > 0).sum()),
    )
    return Subject(subject_id, image_hu.astype(np.float32), labels, grid, image_path, labels_path)
