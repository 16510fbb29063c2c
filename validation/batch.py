"""Validate a cohort batch: a folder of tables, images, label maps, meshes and point sets.

File kinds are recognised by name and content:

- table: `.csv`/`.parquet` that is not a point set; either a raw source table (ANSUR II,
  NHANES, found by its columns) or a harmonised subjects table (a `subject_id` column);
- points: `.csv` starting with a `# x,y,z` line;
- image: `.nii`/`.nii.gz` not named like a label map (CT unless named `mr`, `t1`, `t2`, ...);
- label: `.nii`/`.nii.gz` named `*seg*`, `*label*` or `*mask*`;
- dicom: a folder holding DICOM files, which must form one series;
- mesh: `.wrl .vtp .vtk .ply .obj .stl .glb .gltf .off`;
- labels: `*labels*.txt`, a label catalogue (`value name` per line);
- licence: `LICENSE*`, `COPYING*`, kept with the data;
- other: anything else, not ingested (reported as a note).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dh import cohort
from dh.config import DATA_RAW, load_params
from dh.errors import DHError, Problem
from validation import images, meshes
from validation.phi import check_phi
from validation.report import CheckReport
from validation.tables import validate_subjects

logger = logging.getLogger(__name__)

LABEL_CATALOGUE = "ct/ts_v2_labels.txt"  # registry path of the default label catalogue


@dataclass
class BatchItem:
    """One thing in a batch: `rel` is its POSIX path relative to the batch folder."""

    rel: str
    kind: str
    path: Path


@dataclass
class BatchValidation:
    """Everything the checks found and derived.

    Attributes:
        report: problems (fail the batch) and notes.
        items: the batch's files (DICOM folders count as one item).
        subjects: harmonised subjects rows of all tables (None when there are no tables).
        scales: per mesh/point-set `rel`, the factor to mm (1000 for metres).
    """

    report: CheckReport
    items: list[BatchItem]
    subjects: pd.DataFrame | None = None
    scales: dict[str, float] = field(default_factory=dict)


def scan_batch(folder: Path) -> list[BatchItem]:
    """List and classify a batch's files (hidden files and folders are skipped)."""
    folder = Path(folder)
    items: list[BatchItem] = []
    for path in sorted(folder.rglob("*")):
        rel_parts = path.relative_to(folder).parts
        if any(part.startswith(".") for part in rel_parts) or not path.is_file():
            continue
        rel = path.relative_to(folder).as_posix()
        if images.is_dicom_file(path):
            parent = path.parent.relative_to(folder).as_posix()
            if not any(i.kind == "dicom" and i.rel == parent for i in items):
                items.append(BatchItem(parent, "dicom", path.parent))
            continue
        items.append(BatchItem(rel, _kind(path), path))
    return items


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "label" if images.is_label_name(path.name) else "image"
    if name.endswith(".csv"):
        return "points" if meshes.is_point_set(path) else "table"
    if name.endswith(".parquet"):
        return "table"
    if path.suffix.lower() in meshes.MESH_SUFFIXES:
        return "mesh"
    if name.endswith(".txt") and "labels" in name:
        return "labels"
    if name.startswith(("license", "licence", "copying")):
        return "licence"
    return "other"


def validate_batch(
    folder: Path, on_item: Callable[[BatchItem], None] | None = None
) -> BatchValidation:
    """Run every check on a batch folder.

    Args:
        folder: the batch (e.g. `data/raw`, or a folder of new subjects).
        on_item: called after each item (progress bars).

    Returns:
        The findings, the harmonised subjects rows and the unit scales of the geometry.
    """
    folder = Path(folder)
    params = load_params("validation")
    items = scan_batch(folder)
    out = BatchValidation(CheckReport(), items)
    if not items:
        out.report.problems.append(
            Problem(str(folder), "", "no files", "a batch with files", "check the path", "batch")
        )
        return out

    labels = _label_catalogue(items)
    tables: list[pd.DataFrame] = []
    volumes: list[images.Volume] = []
    label_maps: list[images.Volume] = []
    for item in items:
        try:
            _check_item(item, params, labels, out, tables, volumes, label_maps)
        except Exception as exc:  # one broken file must not hide the others' findings
            logger.exception("check of %s failed", item.rel)
            out.report.problems.append(
                Problem(
                    item.rel,
                    "",
                    f"check crashed ({type(exc).__name__}: {str(exc)[:80]})",
                    "a file the checks can read",
                    "inspect the file; report the crash if the file is valid",
                    "internal",
                )
            )
        out.report.checked += 1
        if on_item:
            on_item(item)

    # label maps against the images, in world coordinates
    for label in label_maps:
        out.report.problems += images.check_label_alignment(label, volumes, params)

    if tables:
        out.subjects = cohort.order_columns(pd.concat(tables, ignore_index=True))
        dupes = out.subjects.subject_id[out.subjects.subject_id.duplicated()]
        if len(dupes) and len(tables) > 1:
            out.report.problems.append(
                Problem(
                    "tables",
                    "subject_id",
                    f"{dupes.nunique()} id(s) in more than one table, e.g. {dupes.iloc[0]}",
                    "each subject in one table only",
                    "remove the repeated subjects from one of the tables",
                    "gx",
                )
            )
    return out


def _check_item(item, params, labels, out, tables, volumes, label_maps) -> None:  # noqa: ANN001
    report = out.report
    if item.kind == "table":
        table = _table(item, report)
        if table is not None:
            report.problems += validate_subjects(table, item.rel)
            tables.append(table)
    elif item.kind in ("image", "label"):
        vol, problems = images.read_nifti(item.path, item.rel, item.kind == "label")
        report.problems += problems
        if vol is not None and not problems:
            found = images.check_values(vol, params, labels)
            report.problems += found
            if not found:
                (label_maps if vol.is_label else volumes).append(vol)
    elif item.kind == "dicom":
        vol, sub = images.read_dicom_series(item.path, item.rel, params)
        report.problems += sub.problems
        report.notes += sub.notes
        if vol is not None and sub.ok:
            found = images.check_values(vol, params, None)
            report.problems += found
            if not found:
                volumes.append(vol)
    elif item.kind in ("mesh", "points"):
        check = meshes.check_mesh if item.kind == "mesh" else meshes.check_points
        result = check(item.path, item.rel, params)
        report.problems += result.problems
        report.notes += result.notes
        out.scales[item.rel] = result.scale
    elif item.kind == "other":
        report.notes.append(
            Problem(
                item.rel,
                "",
                "file of no known kind",
                "a table, image, label map, DICOM series, mesh, point set or licence",
                "none needed: the file is not ingested",
                "batch",
            )
        )


def _table(item: BatchItem, report: CheckReport) -> pd.DataFrame | None:
    """Read a table; raw source tables are harmonised, harmonised ones returned as they are."""
    try:
        if item.path.suffix.lower() == ".parquet":
            raw = pd.read_parquet(item.path)
        else:
            # latin-1 decodes any byte: ANSUR II needs it, and it is a superset of ASCII
            raw = pd.read_csv(item.path, encoding="latin-1", low_memory=False)
    except Exception as exc:  # pandas/pyarrow raise many types for a damaged table
        report.problems.append(
            Problem(
                item.rel,
                "",
                f"unreadable ({type(exc).__name__})",
                "a CSV or parquet table",
                "re-export the table",
                "table_readable",
            )
        )
        return None
    if "subject_id" in raw.columns:
        return raw
    dataset = cohort.detect_dataset(list(raw.columns))
    if dataset is None:
        report.problems.append(
            Problem(
                item.rel,
                "columns",
                f"{len(raw.columns)} columns, e.g. {list(raw.columns)[:4]}",
                "a harmonised subjects table (subject_id, dataset, features) or a source "
                "table of a dataset in data/feature_catalogue.yaml",
                "harmonise the table with dh.cohort, or add its dataset to the catalogue",
                "table_schema",
            )
        )
        return None
    report.problems += _unknown_source_columns(raw, dataset, item.rel)
    try:
        return cohort.harmonise(raw, dataset)
    except DHError as err:
        report.problems += [
            Problem(item.rel, p.field, p.value, p.expected, p.fix, "table_schema")
            for p in err.problems
        ]
        return None


def _unknown_source_columns(raw: pd.DataFrame, dataset: str, file: str) -> list[Problem]:
    """Columns of a source table that the catalogue neither maps nor excludes: PHI-guarded."""
    cat = cohort.load_full_catalogue()
    known = set(cat.datasets[dataset].id_columns) | set(cat.excluded_columns.get(dataset, {}))
    for feat in cat.features:
        src = feat.sources.get(dataset, {})
        known |= set(src.get("columns") or [src.get("column")])
    unknown = [c for c in raw.columns if c not in known]
    return check_phi(raw[unknown], file) if unknown else []


def _label_catalogue(items: list[BatchItem]) -> dict[int, str] | None:
    """The batch's own label catalogue, else the registry's (pulled when absent)."""
    own = [i for i in items if i.kind == "labels"]
    if own:
        return images.load_label_catalogue(own[0].path)
    if not any(i.kind == "label" for i in items):
        return None
    path = DATA_RAW / LABEL_CATALOGUE
    if not path.is_file():
        from dh.registry import pull

        pull(["ct"])
    return images.load_label_catalogue(path)
