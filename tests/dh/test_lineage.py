"""Lineage: record -> register -> list -> chain -> verify, and tampering is detected."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dh.lineage import check_log_chain, make_record, read_log
from models.registry import chain, list_models, load_model, register_model, verify_model
from tests.serving.lung_pca import build_lung_pca


@pytest.fixture(scope="module")
def store(raw_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A fresh BentoML home and lineage log holding a lung PCA and a child version of it."""
    home = tmp_path_factory.mktemp("bentoml")
    log = home / "lineage.jsonl"
    pca = build_lung_pca(raw_data, home / "build")
    params = {"n_modes": 5}
    record = make_record(
        "lung-pca",
        pca.inputs,
        params=params,
        metrics={"explained_variance": pca.explained},
        validation={"success": True, "checks": 37},
    )
    parent = register_model(
        "lung-pca",
        {"model.onnx": pca.onnx_path},
        record,
        arrays={"mean": pca.mean},
        store_dir=home / "models",
        log_file=log,
    )
    child_record = make_record("lung-pca", pca.inputs[:20], params=params, parent=parent.tag)
    child = register_model(
        "lung-pca",
        {"model.onnx": pca.onnx_path},
        child_record,
        store_dir=home / "models",
        log_file=log,
    )
    return {"home": home, "log": log, "parent": parent, "child": child, "pca": pca}


def _dh(store: dict, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BENTOML_HOME": str(store["home"]), "DH_LINEAGE_LOG": str(store["log"])}
    return subprocess.run(
        [sys.executable, "-m", "dh.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_record_holds_inputs_code_and_artefacts(store: dict) -> None:
    rec = store["parent"].record
    assert len(rec.inputs) == 37 and all(len(f.md5) == 32 for f in rec.inputs)
    assert rec.inputs[0].path.startswith("data/raw/lungs/lll/")
    assert len(rec.git_commit) == 40
    assert {a.path for a in rec.artefacts} == {"model.onnx", "arrays.npz"}
    assert rec.packages["bentoml"] and rec.params == {"n_modes": 5}
    assert rec.record_sha256 == rec.content_sha256()
    assert store["parent"].labels["record_sha256"] == rec.record_sha256[:16]
    np.testing.assert_allclose(store["parent"].arrays()["mean"], store["pca"].mean)


def test_load_list_chain(store: dict) -> None:
    home = store["home"] / "models"
    assert load_model("lung-pca", home).tag == store["child"].tag  # latest by default
    assert load_model(store["parent"].tag, home).version == store["parent"].version
    tags = [m.tag for m in list_models(home)]
    assert tags == [store["parent"].tag, store["child"].tag]
    assert [m.tag for m in chain("lung-pca", home)] == tags[::-1]
    assert [r.tag for r in read_log(store["log"])] == tags
    assert check_log_chain(store["log"]) == []


def test_verify_passes_on_untouched_model(store: dict) -> None:
    report = verify_model(store["parent"].tag, store["home"] / "models", store["log"])
    assert report.ok, report.mismatches
    assert len(report.checks) >= 2 + 2 * 37 + 2


@pytest.mark.slow
def test_cli_list_chain_verify(store: dict) -> None:
    listed = _dh(store, "lineage", "--list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == [store["parent"].tag, store["child"].tag]

    shown = _dh(store, "lineage", "lung-pca")
    assert shown.returncode == 0, shown.stderr
    assert store["child"].tag in shown.stdout and store["parent"].tag in shown.stdout
    assert (
        "data/raw/lungs/lll/" in shown.stdout and store["parent"].record.git_commit in shown.stdout
    )
    as_json = json.loads(_dh(store, "lineage", "lung-pca", "--json").stdout)
    assert [r["version"] for r in as_json] == [store["child"].version, store["parent"].version]

    ok = _dh(store, "verify", store["parent"].tag)
    assert ok.returncode == 0 and "OK" in ok.stdout, ok.stdout + ok.stderr
    missing = _dh(store, "verify", "no-such-model")
    assert missing.returncode == 2 and "no-such-model" in missing.stderr


@pytest.mark.slow
def test_tampered_artefact_and_log_are_detected(store: dict, tmp_path: Path) -> None:
    # tamper one byte of the child's ONNX file in the store
    onnx_file = store["child"].path / "model.onnx"
    original = onnx_file.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0x01
    onnx_file.write_bytes(bytes(data))
    try:
        report = verify_model(store["child"].tag, store["home"] / "models", store["log"])
        assert not report.ok
        assert [c.what for c in report.mismatches] == ["artefact model.onnx sha256"]
        cli = _dh(store, "verify", store["child"].tag)
        assert cli.returncode == 1 and "MISMATCH artefact model.onnx sha256" in cli.stdout
    finally:
        onnx_file.write_bytes(original)

    # editing an earlier line of the append-only log breaks the chain
    log_copy = tmp_path / "lineage.jsonl"
    lines = store["log"].read_text().splitlines()
    lines[0] = lines[0].replace('"n_modes":5', '"n_modes":6')
    log_copy.write_text("\n".join(lines) + "\n")
    assert len(check_log_chain(log_copy)) == 1
    report = verify_model(store["parent"].tag, store["home"] / "models", log_copy)
    assert {c.what for c in report.mismatches} == {"record in lineage log", "lineage log chain"}
