"""The cohort schema: the feature catalogue and the harmonised subjects table.

`data/feature_catalogue.yaml` names every feature with its unit, valid range and source
column per dataset. :func:`load_subjects` turns the raw ANSUR II and NHANES tables into one
subjects table in consistent units (mm, kg, years, mmHg), `sex` coded F/M and ids unified as
``<dataset>-...``; :func:`check_feature_values` validates a feature request (e.g. for
`dh generate`) against the catalogue.
"""

from __future__ import annotations

import difflib
import logging
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from dh.config import DATA_RAW, PROJECT_ROOT
from dh.errors import DHError, Problem

logger = logging.getLogger(__name__)

CATALOGUE_PATH = PROJECT_ROOT / "data" / "feature_catalogue.yaml"
ID_COLUMNS = ("subject_id", "dataset")
"""Columns of the subjects table that are not features."""


@dataclass(frozen=True)
class Feature:
    """One physiological feature of a subject.

    Attributes:
        name: snake_case name ending with its unit, e.g. ``stature_mm``.
        unit: ``mm``, ``kg``, ``years``, ``mmHg``, ``kg/m2`` or None (categorical).
        description: what is measured, and how, in one sentence.
        valid_min: smallest plausible value, in `unit` (None for categorical features).
        valid_max: largest plausible value, in `unit` (None for categorical features).
        kind: ``numeric`` or ``categorical``.
        sources: per dataset, how to read it: ``{column, scale}``, ``{columns, reduce, scale}``,
            ``{column, map}`` or ``{derived}`` (see the catalogue's header).
        categories: allowed values of a categorical feature.
    """

    name: str
    unit: str | None
    description: str
    valid_min: float | None
    valid_max: float | None
    kind: str
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dataset:
    """A source dataset: its files (relative to `data/raw`), id columns and id format."""

    name: str
    description: str
    files: tuple[str, ...]
    encoding: str
    id_columns: tuple[str, ...]
    id_format: str
    detect_columns: tuple[str, ...]


@dataclass(frozen=True)
class Catalogue:
    """The whole catalogue file: features, datasets and the source columns left out."""

    features: tuple[Feature, ...]
    datasets: dict[str, Dataset]
    excluded_columns: dict[str, dict[str, str]]


@lru_cache(maxsize=4)
def _read_catalogue(path: str, mtime: float) -> Catalogue:
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    features = []
    for i, row in enumerate(doc.get("features", [])):
        missing = [k for k in ("name", "kind", "description", "sources") if k not in row]
        if row.get("kind") == "numeric":
            missing += [k for k in ("valid_min", "valid_max", "unit") if row.get(k) is None]
        if missing:
            raise DHError(
                Problem(
                    path,
                    f"features[{i}]",
                    str(row.get("name")),
                    f"keys {missing}",
                    "give every feature a name, kind, description, sources, and for numeric "
                    "features a unit and valid_min/valid_max",
                    "catalogue",
                )
            )
        features.append(
            Feature(
                name=row["name"],
                unit=row.get("unit"),
                description=row["description"],
                valid_min=row.get("valid_min"),
                valid_max=row.get("valid_max"),
                kind=row["kind"],
                sources=row["sources"],
                categories=tuple(row.get("categories", ())),
            )
        )
    datasets = {
        name: Dataset(
            name=name,
            description=d.get("description", ""),
            files=tuple(d.get("files", ())),
            encoding=d.get("encoding", "utf-8"),
            id_columns=tuple(d["id_columns"]),
            id_format=d["id_format"],
            detect_columns=tuple(d["detect_columns"]),
        )
        for name, d in doc.get("datasets", {}).items()
    }
    return Catalogue(tuple(features), datasets, doc.get("excluded_columns", {}))


def load_full_catalogue(path: Path = CATALOGUE_PATH) -> Catalogue:
    """Read the catalogue file (cached until the file changes)."""
    return _read_catalogue(str(path), Path(path).stat().st_mtime)


def load_catalogue(path: Path = CATALOGUE_PATH) -> list[Feature]:
    """The features of the catalogue, in table order."""
    return list(load_full_catalogue(path).features)


def feature_names(path: Path = CATALOGUE_PATH) -> list[str]:
    """Names of every feature, in table order (``sex``, ``age_years``, ``stature_mm``, ...)."""
    return [f.name for f in load_catalogue(path)]


def feature_map(path: Path = CATALOGUE_PATH) -> dict[str, Feature]:
    """Features by name."""
    return {f.name: f for f in load_catalogue(path)}


# ---------------------------------------------------------------------------- harmonisation


def detect_dataset(columns: list[str], path: Path = CATALOGUE_PATH) -> str | None:
    """The source dataset whose `detect_columns` are all in `columns`, or None."""
    present = set(columns)
    for ds in load_full_catalogue(path).datasets.values():
        if set(ds.detect_columns) <= present:
            return ds.name
    return None


def read_source_csv(csv: Path, dataset: str, path: Path = CATALOGUE_PATH) -> pd.DataFrame:
    """Read a raw source table with the dataset's encoding; empty cells become NaN."""
    ds = load_full_catalogue(path).datasets[dataset]
    return pd.read_csv(csv, encoding=ds.encoding, low_memory=False)


def harmonise(raw: pd.DataFrame, dataset: str, path: Path = CATALOGUE_PATH) -> pd.DataFrame:
    """Turn one raw source table into subjects-table rows.

    Args:
        raw: the source table as read from its CSV (original column names).
        dataset: the catalogue's dataset name (``ansur2``, ``nhanes``).

    Returns:
        DataFrame with `subject_id`, `dataset`, then every catalogue feature (NaN where the
        dataset has no source for it); lengths in mm, mass in kg, pressures in mmHg.

    Raises:
        DHError: the table lacks the dataset's id column or a source column.
    """
    cat = load_full_catalogue(path)
    ds = cat.datasets[dataset]
    id_col = next((c for c in ds.id_columns if c in raw.columns), None)
    if id_col is None:
        raise DHError(
            Problem(
                dataset,
                "id column",
                str(list(raw.columns)[:5]),
                f"one of {list(ds.id_columns)}",
                "keep the dataset's subject id column in the table",
                "schema",
            )
        )
    columns: dict[str, pd.Series] = {}
    derived: list[Feature] = []
    for feat in cat.features:
        src = feat.sources.get(dataset)
        if src is None:
            columns[feat.name] = pd.Series(np.nan, index=raw.index, dtype=_dtype(feat))
        elif "derived" in src:
            derived.append(feat)
        else:
            columns[feat.name] = _read_source(raw, feat, src, dataset)
    out = pd.DataFrame(columns, index=raw.index)
    for feat in derived:
        out[feat.name] = out.eval(feat.sources[dataset]["derived"]).astype(float)

    sex_lower = out["sex"].str.lower() if "sex" in out else pd.Series("", index=raw.index)
    ids = [
        ds.id_format.format(id=_id_text(v), sex_lower=s)
        for v, s in zip(raw[id_col], sex_lower, strict=True)
    ]
    head = pd.DataFrame({"subject_id": ids, "dataset": dataset}, index=raw.index, dtype="str")
    out = pd.concat([head, out[[f.name for f in cat.features]]], axis=1)
    return out.reset_index(drop=True)


def _id_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _dtype(feat: Feature) -> str:
    return "str" if feat.kind == "categorical" else "float64"


def _read_source(raw: pd.DataFrame, feat: Feature, src: dict, dataset: str) -> pd.Series:
    cols = src.get("columns") or [src["column"]]
    missing = [c for c in cols if c not in raw.columns]
    if missing:
        raise DHError(
            Problem(
                dataset,
                ", ".join(missing),
                "absent",
                f"source column(s) of feature {feat.name}",
                "supply the column, or correct its source in data/feature_catalogue.yaml",
                "schema",
            )
        )
    if feat.kind == "categorical":
        mapping = src.get("map", {})
        lookup = {str(k): v for k, v in mapping.items()}
        return raw[cols[0]].map(lambda v: lookup.get(_id_text(v), v)).astype("str")

    block = raw[cols].apply(pd.to_numeric, errors="coerce").astype(float)
    for code in src.get("missing_values", []):
        block = block.mask(block == code)
    values = block.mean(axis=1, skipna=True) if src.get("reduce") == "mean" else block[cols[0]]
    return values * float(src.get("scale", 1.0))


def order_columns(table: pd.DataFrame, path: Path = CATALOGUE_PATH) -> pd.DataFrame:
    """Id columns first, then catalogue features in catalogue order, then anything else."""
    names = feature_names(path)
    first = [c for c in (*ID_COLUMNS, *names) if c in table.columns]
    return table[first + [c for c in table.columns if c not in first]]


def load_subjects(raw_dir: Path = DATA_RAW, path: Path = CATALOGUE_PATH) -> pd.DataFrame:
    """The harmonised subjects table of every dataset in the catalogue.

    Args:
        raw_dir: where the registry put the raw files (`data/raw`).

    Returns:
        One row per subject: `subject_id` (unique, e.g. ``ansur2-m-10027``, ``nhanes-83732``),
        `dataset`, `sex` (F/M), then every feature in catalogue units (mm, kg, years, mmHg).

    Raises:
        DHError: a dataset file is missing (run `dh data pull`).
    """
    cat = load_full_catalogue(path)
    parts = []
    for ds in cat.datasets.values():
        for rel in ds.files:
            csv = Path(raw_dir) / rel
            if not csv.is_file():
                raise DHError(
                    Problem(
                        str(csv),
                        "",
                        "missing file",
                        f"the {ds.name} table",
                        "run `dh data pull`",
                        "schema",
                    )
                )
            parts.append(harmonise(read_source_csv(csv, ds.name, path), ds.name, path))
    table = pd.concat(parts, ignore_index=True)
    logger.info("harmonised %d subjects from %d datasets", len(table), len(cat.datasets))
    return order_columns(table, path)


def load_cohort(root: Path = PROJECT_ROOT) -> pd.DataFrame:
    """The versioned subjects table, `data/cohort/subjects.parquet` (after `dh ingest`).

    Raises:
        DHError: nothing was ingested yet.
    """
    table = Path(root) / "data" / "cohort" / "subjects.parquet"
    if not table.is_file():
        raise DHError(
            Problem(
                str(table),
                "",
                "missing file",
                "the versioned subjects table",
                "run `dh data pull && dh ingest data/raw` (or `dvc pull data/cohort.dvc`)",
                "schema",
            )
        )
    return pd.read_parquet(table)


# ---------------------------------------------------------------------------- requests


def check_feature_values(values: dict[str, Any], path: Path = CATALOGUE_PATH) -> None:
    """Check a feature request against the catalogue (names, types, categories, ranges).

    Args:
        values: feature name -> value in catalogue units, e.g. ``{"stature_mm": 1750}``.

    Raises:
        DHError: one problem per unknown feature (with close matches), non-numeric or
            non-finite value, value outside the valid range, or unknown category.
    """
    features = feature_map(path)
    problems = []
    for name, value in values.items():
        feat = features.get(name)
        if feat is None:
            close = difflib.get_close_matches(name, features, n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}?" if close else "see `feature_names()`"
            problems.append(
                Problem("request", name, name, "a feature of the catalogue", hint, "feature")
            )
        elif feat.kind == "categorical":
            if value not in feat.categories:
                problems.append(
                    Problem(
                        "request",
                        name,
                        repr(value),
                        f"one of {list(feat.categories)}",
                        f"give {name} as one of {list(feat.categories)}",
                        "feature",
                    )
                )
        else:
            problems.extend(_check_numeric(feat, value))
    if problems:
        raise DHError(problems)


def _check_numeric(feat: Feature, value: Any) -> list[Problem]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        return [
            Problem(
                "request",
                feat.name,
                repr(value),
                f"a finite number in {feat.unit}",
                f"give {feat.name} as a number in {feat.unit}",
                "feature",
            )
        ]
    if not feat.valid_min <= number <= feat.valid_max:
        return [
            Problem(
                "request",
                feat.name,
                f"{number:g} {feat.unit}",
                f"{feat.valid_min:g}..{feat.valid_max:g} {feat.unit}",
                f"give {feat.name} in {feat.unit} within the valid range "
                "(check the unit: mm not cm, kg not lb)",
                "feature",
            )
        ]
    return []
