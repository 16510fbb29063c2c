"""Great Expectations suites for the harmonised subjects table.

One suite over the whole table checks types, units by range (a column in cm, m or 0.1 units
falls outside its catalogue range), unique ids and allowed categories; one suite per source
dataset checks missingness of the features that dataset is expected to supply. The suites run
in an ephemeral GX context; each failed expectation becomes a :class:`dh.errors.Problem`.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from dh.cohort import ID_COLUMNS, Feature, feature_map, load_full_catalogue
from dh.config import load_params
from dh.errors import Problem
from validation.phi import check_phi

logger = logging.getLogger(__name__)

SUBJECT_ID_PATTERN = r"[a-z0-9]+(?:-[a-z0-9]+)+"
DATASET_PATTERN = r"[a-z0-9_]+"

# Unit slips to suggest when a column's median lands in range only after rescaling.
_UNIT_SLIPS = {
    10.0: "cm instead of mm (multiply by 10)",
    1000.0: "m instead of mm (multiply by 1000)",
    0.1: "0.1-unit integers (multiply by 0.1)",
    0.45359237: "pounds instead of kg (multiply by 0.4536)",
    25.4: "inches instead of mm (multiply by 25.4)",
    0.001: "g instead of kg, or um instead of mm (multiply by 0.001)",
}


@lru_cache(maxsize=1)
def _context() -> Any:
    """The ephemeral GX context with the subjects data source (built once per process)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)  # chatty at INFO
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("cohort")
    source.add_dataframe_asset("subjects").add_batch_definition_whole_dataframe("whole")
    return context


def _batch(frame: pd.DataFrame) -> Any:
    asset = _context().data_sources.get("cohort").get_asset("subjects")
    return asset.get_batch_definition("whole").get_batch(batch_parameters={"dataframe": frame})


def build_table_suite(columns: list[str]) -> Any:
    """Suite over the wide subjects table: ids unique, present and coded; categories allowed."""
    import great_expectations as gx

    ex = gx.expectations
    suite = gx.ExpectationSuite(name="subjects-table")
    suite.add_expectation(ex.ExpectColumnValuesToBeUnique(column="subject_id"))
    for col in ID_COLUMNS:
        suite.add_expectation(ex.ExpectColumnValuesToNotBeNull(column=col))
    suite.add_expectation(
        ex.ExpectColumnValuesToMatchRegex(column="subject_id", regex=f"^{SUBJECT_ID_PATTERN}$")
    )
    suite.add_expectation(
        ex.ExpectColumnValuesToMatchRegex(column="dataset", regex=f"^{DATASET_PATTERN}$")
    )
    for feat in feature_map().values():
        if feat.kind == "categorical" and feat.name in columns:
            suite.add_expectation(
                ex.ExpectColumnValuesToBeInSet(column=feat.name, value_set=list(feat.categories))
            )
    return suite


def build_values_suite() -> Any:
    """Suite over the long table (one row per subject and numeric feature): types and ranges.

    The long form keeps the suite at three expectations however many features the catalogue
    holds (GX's cost grows with the number of expectations, not rows); failures are reported
    per feature through `unexpected_index_column_names`.
    """
    import great_expectations as gx

    ex = gx.expectations
    suite = gx.ExpectationSuite(name="subjects-values")
    suite.add_expectation(ex.ExpectColumnValuesToBeInTypeList(column="value", type_list=_NUMBER))
    for bound, a, b in (("valid_min", "number", "valid_min"), ("valid_max", "valid_max", "number")):
        suite.add_expectation(
            ex.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=a,
                column_B=b,
                or_equal=True,
                ignore_row_if="either_value_is_missing",
                meta={"bound": bound},
            )
        )
    return suite


def build_missingness_suite(max_missing: float) -> Any:
    """Suite over the coverage table (one row per dataset and expected feature)."""
    import great_expectations as gx

    suite = gx.ExpectationSuite(name="subjects-missingness")
    suite.add_expectation(
        gx.expectations.ExpectColumnValuesToBeBetween(
            column="missing_fraction", min_value=0.0, max_value=max_missing
        )
    )
    return suite


_NUMBER = ["float", "int", "float64", "int64", "Float64", "Int64", "float32", "int32"]
_INDEX = {"unexpected_index_column_names": ["feature"], "result_format": "COMPLETE"}


def validate_subjects(table: pd.DataFrame, file: str) -> list[Problem]:
    """Check a harmonised subjects table; every failed expectation becomes a Problem.

    Args:
        table: `subject_id`, `dataset`, then catalogue features in catalogue units.
        file: the file named in the problems (the batch table it came from).

    Returns:
        Problems with checks ``schema`` (missing or unknown columns), ``gx`` (expectations)
        and ``phi`` (the PHI guard).
    """
    params = load_params("validation")
    problems = _check_columns(table, file)
    problems += check_phi(
        table,
        file,
        allowed={"subject_id": SUBJECT_ID_PATTERN, "dataset": DATASET_PATTERN},
        free_text_words=int(params["phi_free_text_words"]),
    )
    if "subject_id" not in table.columns or "dataset" not in table.columns:
        return problems
    features = feature_map()
    known = [c for c in table.columns if c in features or c in ID_COLUMNS]
    frame = table[known].reset_index(drop=True)

    # ids and categories, on the wide table
    result = _batch(frame).validate(build_table_suite(known))
    problems += [_to_problem(r, file, frame) for r in result.results if not r.success]

    # types and units by range, on the long table
    numeric = [c for c in known if c in features and features[c].kind == "numeric"]
    long = _long_table(frame, numeric)
    result = _batch(long).validate(build_values_suite(), result_format=_INDEX)
    problems += _value_problems(result, long, file)

    # missingness of the features each dataset should supply
    max_missing = float(params["max_missing_fraction"])
    coverage = _coverage_table(frame)
    if len(coverage):
        result = _batch(coverage).validate(
            build_missingness_suite(max_missing),
            result_format={**_INDEX, "unexpected_index_column_names": ["dataset", "feature"]},
        )
        problems += _missing_problems(result, file, max_missing)
    logger.info("validated %d subjects: %d problem(s)", len(table), len(problems))
    return problems


def _long_table(frame: pd.DataFrame, numeric: list[str]) -> pd.DataFrame:
    """`(n_subjects * n_features, 5)`: feature, value (as given), number, valid_min, valid_max."""
    features = feature_map()
    mixed = any(not pd.api.types.is_numeric_dtype(frame[c]) for c in numeric)
    parts = [
        pd.DataFrame(
            {
                "feature": col,
                "value": frame[col].to_numpy(dtype=object if mixed else float),
                "number": pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float),
                "valid_min": float(features[col].valid_min),
                "valid_max": float(features[col].valid_max),
            }
        )
        for col in numeric
    ]
    columns = ["feature", "value", "number", "valid_min", "valid_max"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def _coverage_table(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for dataset, group in frame.groupby("dataset"):
        for feature in _expected_features(str(dataset), group):
            rows.append(
                {
                    "dataset": str(dataset),
                    "feature": feature,
                    "missing_fraction": float(group[feature].isna().mean()),
                }
            )
    return pd.DataFrame(rows, columns=["dataset", "feature", "missing_fraction"])


def _check_columns(table: pd.DataFrame, file: str) -> list[Problem]:
    import difflib

    features = feature_map()
    problems = [
        Problem(
            file,
            col,
            "absent",
            "a column of the subjects table",
            f"add {col!r} to the table",
            "schema",
        )
        for col in ("subject_id", "dataset", "sex")
        if col not in table.columns
    ]
    for col in table.columns:
        if col in features or col in ID_COLUMNS:
            continue
        close = difflib.get_close_matches(str(col), list(features), n=2, cutoff=0.75)
        fix = f"rename it to {' or '.join(close)}" if close else "add the feature to the catalogue"
        problems.append(
            Problem(
                file,
                str(col),
                "unknown column",
                "a feature of data/feature_catalogue.yaml",
                fix + " or drop it",
                "schema",
            )
        )
    return problems


def _expected_features(dataset: str, rows: pd.DataFrame) -> list[str]:
    """Features a dataset should supply: its catalogue sources, else the columns it filled."""
    cat = load_full_catalogue()
    if dataset in cat.datasets:
        return [f.name for f in cat.features if dataset in f.sources and f.name in rows]
    return [c for c in rows.columns if c not in ID_COLUMNS and rows[c].notna().any()]


def _to_problem(r: Any, file: str, frame: pd.DataFrame) -> Problem:
    """A failed wide-table expectation (ids, categories) as a Problem."""
    cfg = r.expectation_config
    kw = cfg.kwargs
    col = kw.get("column", "")
    res = r.result or {}
    count = res.get("unexpected_count")
    sample = res.get("partial_unexpected_list") or []
    if cfg.type == "expect_column_values_to_be_unique":
        dupes = frame[col][frame[col].duplicated(keep=False)]
        return Problem(
            file,
            col,
            f"{dupes.nunique()} duplicated id(s), e.g. {_fmt(sorted(set(dupes))[:3])}",
            "one row per subject (unique subject_id)",
            "remove repeated rows or give each subject its own id",
            "gx",
        )
    if cfg.type == "expect_column_values_to_be_in_set":
        return Problem(
            file,
            col,
            f"{count} value(s) outside the allowed set, e.g. {_fmt(sample[:3])}",
            f"one of {kw.get('value_set')}",
            f"recode {col} to the catalogue's categories",
            "gx",
        )
    if cfg.type == "expect_column_values_to_match_regex":
        return Problem(
            file,
            col,
            f"{count} value(s) not matching",
            f"values matching {kw.get('regex')}",
            "use lower-case coded ids such as `dataset-123`",
            "gx",
        )
    return Problem(
        file, col, f"{count} missing value(s)", f"{cfg.type}", f"fill in {col} for every row", "gx"
    )


def _failed_rows(result: Any) -> list[dict]:
    """The failed rows of every failed expectation, as dicts of their index columns."""
    rows = []
    for r in result.results:
        if not r.success:
            if r.exception_info and r.exception_info.get("raised_exception"):
                logger.warning("%s raised: %s", r.expectation_config.type, r.exception_info)
            rows += [x for x in (r.result or {}).get("unexpected_index_list") or [] if x]
    return rows


def _value_problems(result: Any, long: pd.DataFrame, file: str) -> list[Problem]:
    """Failed type and range expectations of the long table, one Problem per feature."""
    features = feature_map()
    problems = []
    failed = _failed_rows(result)
    text = pd.DataFrame([row for row in failed if "value" in row], columns=["feature", "value"])
    for name, rows in text.groupby("feature", sort=False):
        problems.append(
            Problem(
                file,
                str(name),
                f"{len(rows)} non-numeric value(s)",
                "a numeric column",
                f"store {name} as numbers in {features[str(name)].unit}, no text",
                "gx",
            )
        )
    out = pd.DataFrame([row for row in failed if "number" in row], columns=["feature", "number"])
    for name, rows in out.groupby("feature", sort=False):
        feat = features[str(name)]
        problems.append(
            Problem(
                file,
                str(name),
                f"{len(rows)} value(s) outside the range, e.g. {_fmt(rows.number.head(3))}",
                f"{feat.valid_min:g}..{feat.valid_max:g} {feat.unit}",
                _unit_fix(long.loc[long.feature == name, "number"], feat),
                "gx",
            )
        )
    return problems


def _missing_problems(result: Any, file: str, max_missing: float) -> list[Problem]:
    return [
        Problem(
            file,
            row["feature"],
            f"{row['missing_fraction']:.0%} missing in dataset {row['dataset']}",
            f"at most {max_missing:.0%} missing",
            f"supply {row['feature']} for more subjects of {row['dataset']}, "
            "or fix its source column",
            "gx",
        )
        for row in _failed_rows(result)
    ]


def _unit_fix(values: pd.Series, feat: Feature) -> str:
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    median = float(np.median(numbers)) if len(numbers) else float("nan")
    for factor, what in _UNIT_SLIPS.items():
        if feat.valid_min <= median * factor <= feat.valid_max:
            return f"the column looks like {what}; convert it to {feat.unit}"
    return f"correct the out-of-range values; {feat.name} is in {feat.unit}"


def _fmt(values: Any) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values) or "-"
