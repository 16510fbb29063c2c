"""The `ingest` flow, run for real (Prefect test server) against a temporary git + DVC repo."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import yaml

from flows import ingest as ingest_flow
from models.meshio import read_mesh

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def batch(raw_data, tmp_path_factory) -> Path:
    """A small real batch: CT + label map, a DICOM series with a patient name, an HRA mesh
    in metres, a lung point set and 120 NHANES subjects."""
    root = tmp_path_factory.mktemp("batch")
    (root / "ct").mkdir()
    for name in ("example_ct_sm.nii.gz", "example_seg.nii.gz", "ts_v2_labels.txt"):
        shutil.copy(raw_data / "ct" / name, root / "ct" / name)
    shutil.copytree(raw_data / "ct" / "example_ct_dicom", root / "ct" / "series")
    first = sorted((root / "ct" / "series").iterdir())[0]
    ds = pydicom.dcmread(first)
    ds.PatientName = "Doe^Jane"
    ds.save_as(first)
    (root / "meshes").mkdir()
    shutil.copy(raw_data / "meshes/hra/VH_F_Kidney_L.glb", root / "meshes" / "kidney_l.glb")
    (root / "lungs").mkdir()
    shutil.copy(sorted((raw_data / "lungs/lll").glob("*.csv"))[0], root / "lungs" / "lll.csv")
    nhanes = pd.read_csv(raw_data / "anthropometry/nhanes/nhanes_2015_2016.csv")
    nhanes.head(120).to_csv(root / "nhanes.csv", index=False)
    return root


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    ingest_flow.init_data_repo(root, remote=root.parent / f"{root.name}-remote")
    return root


@pytest.fixture(scope="module")
def versioned(prefect_server, batch, repo) -> ingest_flow.IngestResult:
    return ingest_flow.ingest(str(batch), str(repo))


def _dvc_status(repo: Path) -> tuple[dict, dict]:
    from dvc.repo import Repo

    with Repo(str(repo)) as r:
        target = [str(repo / "data" / "cohort.dvc")]
        return r.status(targets=target), r.status(targets=target, cloud=True)


def test_passing_batch_is_versioned_and_pushed(versioned, repo):
    assert versioned.status == "versioned", versioned.report.to_text()
    dvcfile = yaml.safe_load((repo / "data" / "cohort.dvc").read_text())
    assert versioned.data_version == dvcfile["outs"][0]["md5"]
    assert versioned.subjects_added == 120
    assert _dvc_status(repo) == ({}, {})  # workspace = cache = remote

    (entry,) = ingest_flow.read_log(repo)
    assert entry["status"] == "versioned" and entry["data_version"] == versioned.data_version
    assert entry["flow_run_id"] and entry["batch_id"] == versioned.batch_id

    cohort = repo / "data" / "cohort"
    subjects = pd.read_parquet(cohort / "subjects.parquet")
    assert subjects.subject_id.str.startswith("nhanes-").all()
    for path in (cohort / "ct" / "series").iterdir():  # patient name blanked on ingest
        assert str(pydicom.dcmread(path).get("PatientName", "")) == ""
    kidney = read_mesh(cohort / "meshes" / "kidney_l.glb")
    assert 100 < float(np.linalg.norm(np.ptp(kidney.vertices, axis=0))) < 300  # now in mm
    assert {n.check for n in versioned.report.notes} >= {"dicom_phi", "mesh_units"}


def test_second_run_is_a_no_op(versioned, batch, repo):
    log_before = (repo / "data" / "ingest_log.jsonl").read_bytes()
    dvc_before = (repo / "data" / "cohort.dvc").read_bytes()
    again = ingest_flow.ingest(str(batch), str(repo))
    assert again.status == "unchanged" and again.data_version == versioned.data_version
    assert (repo / "data" / "ingest_log.jsonl").read_bytes() == log_before
    assert (repo / "data" / "cohort.dvc").read_bytes() == dvc_before


def test_corrupted_batch_is_quarantined_and_cohort_untouched(
    versioned, batch, repo, tmp_path, monkeypatch, capsys, rng
):
    bad = tmp_path / "bad"
    shutil.copytree(batch, bad)
    ct = bad / "ct" / "example_ct_sm.nii.gz"
    ct.write_bytes(ct.read_bytes()[:20000])  # truncated NIfTI
    table = pd.read_csv(bad / "nhanes.csv")
    table["BMXHT"] = table["BMXHT"] / 100  # stature in m
    table["next_of_kin"] = rng.choice(["Jane Doe", "John Smith"], size=len(table))
    table.to_csv(bad / "nhanes.csv", index=False)

    from dh.cli import main

    monkeypatch.setattr(sys, "argv", ["dh", "ingest", str(bad), "--root", str(repo)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    for named in ("example_ct_sm.nii.gz", "next_of_kin", "stature_mm"):
        assert named in err

    entry = ingest_flow.read_log(repo)[-1]
    assert entry["status"] == "quarantined"
    assert entry["data_version"] == versioned.data_version
    folder = repo / entry["quarantine"]
    report = json.loads((folder / "report.json").read_text())
    assert {p["check"] for p in report["problems"]} >= {"image_readable", "phi", "gx"}
    assert "FAILED" in (folder / "report.txt").read_text()
    assert (folder / "files" / "nhanes.csv").is_file()
    assert _dvc_status(repo) == ({}, {})  # the versioned cohort is untouched
    assert ingest_flow.data_version(repo) == versioned.data_version


def test_fresh_clone_restores_the_cohort(versioned, batch, repo, tmp_path):
    """A clone holds the .dvc file and the log but no cohort: pulled from the remote, else
    rebuilt from the batch to the same data version."""
    clone = tmp_path / "clone"
    shutil.copytree(repo, clone, ignore=shutil.ignore_patterns("cohort", "cache", "tmp"))
    remote = repo.parent / f"{repo.name}-remote"
    again = ingest_flow.run_ingest(batch, clone)  # the clone's remote is the shared folder
    assert (
        again.status == "unchanged" and (clone / "data" / "cohort" / "subjects.parquet").is_file()
    )

    lonely = tmp_path / "lonely"
    shutil.copytree(clone, lonely, ignore=shutil.ignore_patterns("cohort", "cache", "tmp"))
    empty = tmp_path / "empty-remote"  # a remote that does not hold the cohort
    empty.mkdir()
    cfg = lonely / ".dvc" / "config"
    cfg.write_text(cfg.read_text().replace(str(remote), str(empty)))
    rebuilt = ingest_flow.run_ingest(batch, lonely)
    assert rebuilt.status == "versioned"
    assert rebuilt.data_version == versioned.data_version
