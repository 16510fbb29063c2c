"""Segmentation parameters: the `segmentation:` section of `params.yaml` as a dataclass."""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dh.config import DATA_RAW, load_params
from dh.errors import fail


@dataclass
class SegParams:
    """Every tunable number of the segmentation subsystem (see `params.yaml`).

    Attributes:
        subjects: subject id -> {"image": path, "labels": path}, relative to `data/raw`.
        train_subjects: subject ids trained on.
        val_subjects: subject ids validated on (disjoint from `train_subjects`).
        label_names: file naming the reference label values, one `value name` per line.
        structures: structure name -> reference label-name patterns merged into it; output
            label values are 1..N in this order.
        spacing_mm: common grid spacing (x, y, z) in mm.
        hu_window: (low, high) HU clipped then scaled to [0, 1].
        patch_size: training/sliding-window patch (x, y, z) in voxels, multiples of 8.
    """

    subjects: dict[str, dict[str, str]]
    train_subjects: list[str]
    val_subjects: list[str]
    label_names: str
    structures: dict[str, list[str]]
    spacing_mm: list[float] = field(default_factory=lambda: [3.0, 3.0, 3.0])
    hu_window: list[float] = field(default_factory=lambda: [-1000.0, 1000.0])
    patch_size: list[int] = field(default_factory=lambda: [96, 96, 16])
    batch_size: int = 2
    iterations: int = 400
    learning_rate: float = 0.002
    val_every: int = 100
    init_filters: int = 8
    seed: int = 0
    num_threads: int = 1
    sw_overlap: float = 0.25
    sw_batch_size: int = 2
    min_component_fraction: float = 0.1
    parity_max_abs_logit: float = 1e-2
    parity_min_dice: float = 0.999
    max_input_mb: float = 2048.0
    hu_check_p01_max: float = -500.0
    mesh_smoothing_iterations: int = 10
    mesh_decimate_reduction: float = 0.5
    mesh_spacing_mm: float = 2.0

    @property
    def structure_names(self) -> list[str]:
        """Structure names in output-label order (label i + 1 is `structure_names[i]`)."""
        return list(self.structures)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, as recorded in lineage."""
        return asdict(self)


def load_seg_params(overrides: dict[str, Any] | None = None, path: Path | None = None) -> SegParams:
    """Read the `segmentation:` section, apply `overrides` (key -> value) and check it.

    Raises:
        DHError: unknown keys, overlapping train/validation subjects or a bad patch size.
    """
    raw = load_params("segmentation", path)
    raw.update(overrides or {})
    known = set(SegParams.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        fail("params.yaml", "segmentation", unknown, f"keys among {sorted(known)}", "remove them")
    params = SegParams(**raw)
    overlap = set(params.train_subjects) & set(params.val_subjects)
    if overlap:
        fail(
            "params.yaml",
            "segmentation.val_subjects",
            sorted(overlap),
            "subjects not also in train_subjects (split by subject)",
            "move each subject to one side only",
        )
    if any(int(p) % 8 for p in params.patch_size) or len(params.patch_size) != 3:
        fail(
            "params.yaml",
            "segmentation.patch_size",
            params.patch_size,
            "three multiples of 8 (SegResNet downsamples 3 times)",
            "use e.g. [96, 96, 16]",
        )
    return params


def read_label_names(path: Path) -> dict[str, int]:
    """Reference label name -> value, from lines `value name`."""
    names = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            names[parts[1]] = int(parts[0])
    return names


def structure_lookup(params: SegParams, root: Path = DATA_RAW) -> dict[str, list[int]]:
    """Structure name -> reference label values merged into it.

    Raises:
        DHError: a pattern that matches no reference label name.
    """
    names = read_label_names(root / params.label_names)
    lookup = {}
    for structure, patterns in params.structures.items():
        values = sorted(
            {v for pat in patterns for n, v in names.items() if fnmatch.fnmatchcase(n, pat)}
        )
        if not values:
            fail(
                str(root / params.label_names),
                f"segmentation.structures.{structure}",
                patterns,
                "patterns matching at least one reference label name",
                "fix the spelling against the label-name file",
            )
        lookup[structure] = values
    return lookup
