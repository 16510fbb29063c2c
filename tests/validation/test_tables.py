"""GX suites and the PHI guard on the real harmonised subjects table and corrupted copies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dh import cohort
from validation.phi import check_phi, classify_value
from validation.tables import validate_subjects


@pytest.fixture(scope="module")
def subjects(raw_data) -> pd.DataFrame:
    return cohort.load_subjects(raw_data)


@pytest.fixture
def sample(subjects) -> pd.DataFrame:
    """150 real subjects of each dataset."""
    parts = [g.head(150) for _, g in subjects.groupby("dataset")]
    return pd.concat(parts, ignore_index=True)


def _checks(problems) -> dict[str, list]:
    out: dict[str, list] = {}
    for p in problems:
        out.setdefault(p.field, []).append(p)
    return out


@pytest.mark.slow
def test_real_subjects_table_passes(subjects):
    assert validate_subjects(subjects, "subjects") == []


def test_sample_passes(sample):
    assert validate_subjects(sample, "sample.csv") == []


@pytest.mark.parametrize(
    ("column", "factor", "hint"),
    [("stature_mm", 0.1, "cm instead of mm"), ("stature_mm", 0.001, "m instead of mm")],
)
def test_swapped_units_fail_with_the_unit_named(sample, column, factor, hint):
    sample[column] = sample[column] * factor
    problems = _checks(validate_subjects(sample, "sample.csv"))
    (problem,) = problems[column]
    assert problem.check == "gx" and problem.file == "sample.csv"
    assert "770..3100 mm" in problem.expected
    assert hint in problem.fix


def test_duplicated_id_fails(sample):
    sample.loc[7, "subject_id"] = sample.loc[3, "subject_id"]
    (problem,) = _checks(validate_subjects(sample, "sample.csv"))["subject_id"]
    assert "duplicated" in problem.value and sample.loc[3, "subject_id"] in problem.value


def test_unknown_category_and_text_values_fail(sample):
    sample["sex"] = sample["sex"].replace({"F": "female"})
    sample["weight_kg"] = sample["weight_kg"].astype(object)
    sample.loc[2, "weight_kg"] = "heavy"
    problems = _checks(validate_subjects(sample, "sample.csv"))
    assert "one of ['F', 'M']" in problems["sex"][0].expected
    assert any("non-numeric" in p.value for p in problems["weight_kg"])


def test_missingness_limit_per_dataset(sample):
    nhanes = sample.dataset == "nhanes"
    sample.loc[nhanes, "systolic_bp_mmhg"] = np.nan
    (problem,) = _checks(validate_subjects(sample, "sample.csv"))["systolic_bp_mmhg"]
    assert "100% missing in dataset nhanes" in problem.value


def test_column_of_names_is_rejected(sample, rng):
    names = ["Jane Doe", "John Smith", "Maria Garcia", "Wei Chen", "Ahmed Khan"]
    sample["contact"] = rng.choice(names, size=len(sample))
    problems = _checks(validate_subjects(sample, "sample.csv"))["contact"]
    phi = [p for p in problems if p.check == "phi"]
    assert phi and "person or place names" in phi[0].value
    assert "Jane" not in phi[0].value  # reports never repeat the personal detail


def test_phi_column_names_and_values():
    table = pd.DataFrame(
        {
            "patient_name": ["x", "y"],
            "DOB": ["1980-01-02", "1975-12-30"],
            "code": ["a1", "b2"],
            "memo": ["lives at 12 Main Street", "no"],
            "tel": ["+44 20 7946 0958", "(555) 123-4567"],
        }
    )
    flagged = {p.field for p in check_phi(table, "t.csv")}
    assert flagged == {"patient_name", "DOB", "memo", "tel"}
    assert classify_value("81.5") is None
    assert classify_value("ansur2-m-10027") is None
    assert classify_value("DOE^JANE") == "person or place names"
    assert classify_value("seen today for follow up of knee pain") == "free text"
