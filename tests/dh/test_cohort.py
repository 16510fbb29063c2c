"""The feature catalogue and the harmonised subjects table on the real ANSUR II and NHANES."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import yaml

from dh import cohort
from dh.errors import DHError


@pytest.fixture(scope="module")
def subjects(raw_data) -> pd.DataFrame:
    return cohort.load_subjects(raw_data)


def test_catalogue_names_end_with_units_and_ranges_are_tight():
    features = cohort.load_catalogue()
    assert len(features) >= 101
    assert len({f.name for f in features}) == len(features)
    suffix = {"mm": "_mm", "kg": "_kg", "years": "_years", "mmHg": "_mmhg", "kg/m2": "_kg_m2"}
    for f in features:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", f.name), f.name
        if f.kind == "numeric":
            assert f.name.endswith(suffix[f.unit]), f.name
            # a range wider than a factor 10 could not catch a column delivered in cm
            assert 0 < f.valid_min < f.valid_max <= 10 * f.valid_min, f.name
    ansur = [f for f in features if "ansur2" in f.sources and f.kind == "numeric"]
    assert len([f for f in ansur if "column" in f.sources["ansur2"]]) == 93 + 1  # + age


def test_subjects_table_harmonised(subjects):
    assert subjects.columns[:6].tolist() == [
        "subject_id",
        "dataset",
        "sex",
        "age_years",
        "stature_mm",
        "weight_kg",
    ]
    assert subjects.subject_id.is_unique
    assert subjects.loc[0, "subject_id"] == "ansur2-m-10027"
    assert "nhanes-83732" in set(subjects.subject_id)
    assert set(subjects.sex) == {"F", "M"}
    assert set(subjects.dataset) == {"ansur2", "nhanes"}
    by_id = subjects.set_index("subject_id")
    # ANSUR weightkg is in 0.1 kg, interpupillarybreadth in 0.1 mm; NHANES lengths in cm
    assert by_id.loc["ansur2-m-10027", "weight_kg"] == pytest.approx(81.5)
    assert by_id.loc["ansur2-m-10027", "interpupillary_breadth_mm"] == pytest.approx(68.5)
    assert by_id.loc["nhanes-83732", "stature_mm"] == pytest.approx(1845.0)
    assert by_id.loc["nhanes-83732", "systolic_bp_mmhg"] == pytest.approx(126.0)
    assert by_id.loc["nhanes-83732", "sex"] == "M"
    assert by_id.loc["nhanes-83732", "waist_circumference_mm"] == pytest.approx(1011.0)
    # no demographic codes or PHI-like columns
    for col in ("DODRace", "Date", "SubjectsBirthLocation", "Heightin", "WritingPreference"):
        assert col not in subjects.columns
    for f in cohort.load_catalogue():
        if f.kind == "numeric":
            values = subjects[f.name].dropna()
            assert values.between(f.valid_min, f.valid_max).all(), f.name


def test_nhanes_zero_diastolic_is_missing(subjects):
    nh = subjects[subjects.dataset == "nhanes"]
    assert (nh.diastolic_bp_mmhg.dropna() > 0).all()
    assert nh.bmi_kg_m2.notna().mean() > 0.9
    ansur = subjects[subjects.dataset == "ansur2"]
    bmi = ansur.weight_kg / (ansur.stature_mm / 1000) ** 2
    np.testing.assert_allclose(ansur.bmi_kg_m2, bmi)


def test_female_file_id_column_differs(raw_data):
    female = raw_data / "anthropometry/ansur2/ANSUR_II_FEMALE_Public.csv"
    raw = cohort.read_source_csv(female, "ansur2")
    assert "SubjectId" in raw.columns
    table = cohort.harmonise(raw, "ansur2")
    assert table.subject_id.str.startswith("ansur2-f-").all()
    assert cohort.detect_dataset(list(raw.columns)) == "ansur2"


def test_missing_source_column_names_it(raw_data):
    raw = cohort.read_source_csv(
        raw_data / "anthropometry/nhanes/nhanes_2015_2016.csv", "nhanes"
    ).drop(columns=["BMXHT"])
    with pytest.raises(DHError, match="BMXHT"):
        cohort.harmonise(raw, "nhanes")


def test_check_feature_values_accepts_and_rejects():
    cohort.check_feature_values({"stature_mm": 1750, "sex": "F", "weight_kg": 70.0})
    with pytest.raises(DHError, match="stature_mm") as err:
        cohort.check_feature_values({"statur_mm": 1750})
    assert "did you mean" in str(err.value)
    with pytest.raises(DHError, match="770..3100 mm"):
        cohort.check_feature_values({"stature_mm": 175.0})  # cm, not mm
    with pytest.raises(DHError, match="one of"):
        cohort.check_feature_values({"sex": "female"})
    with pytest.raises(DHError) as err:
        cohort.check_feature_values({"age_years": float("nan"), "bmi_kg_m2": 500})
    assert len(err.value.problems) == 2


def test_catalogue_is_data_driven(tmp_path):
    doc = yaml.safe_load(cohort.CATALOGUE_PATH.read_text())
    for i in range(100):  # a catalogue of 200+ features needs no code change
        doc["features"].append(
            {
                "name": f"extra_{i}_mm",
                "unit": "mm",
                "kind": "numeric",
                "description": "synthetic",
                "valid_min": 1,
                "valid_max": 10,
                "sources": {},
            }
        )
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert len(cohort.feature_names(path)) >= 200
    cohort.check_feature_values({"extra_99_mm": 5}, path)
