"""POST /segment on the live server: real demo CTs (NIfTI and zipped DICOM) and bad uploads."""

from __future__ import annotations

import base64
import gzip
import io
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.serving.conftest import LiveServer

pytestmark = pytest.mark.slow


def _post(server: LiveServer, name: str, data: bytes, meshes: bool = True):
    return server.client.post(
        "/segment",
        files={"scan": (name, data, "application/octet-stream")},
        data={"meshes": "true" if meshes else "false"},
    )


def _zip_folder(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in sorted(folder.iterdir()):
            z.write(f, f"series/{f.name}")
    return buf.getvalue()


def test_segment_nifti(live_server: LiveServer, raw_data: Path) -> None:
    ct = raw_data / "ct" / "example_ct_sm.nii.gz"
    r = _post(live_server, "ct.nii.gz", ct.read_bytes())
    assert r.status_code == 200, r.text
    body = r.json()
    labels = nib.Nifti1Image.from_bytes(
        gzip.decompress(base64.b64decode(body["label_map_nifti_gz_b64"]))
    )
    image = nib.load(ct)
    assert labels.shape == image.shape == tuple(body["shape"])
    np.testing.assert_allclose(labels.affine, image.affine, atol=1e-3)  # same world grid
    names = [s["name"] for s in body["structures"]]
    meshes = [s["mesh"] for s in body["structures"] if s["mesh"]]
    assert meshes and all(m["frame"] == "world RAS+ mm" for m in meshes)
    assert "liver" in names and all(s["volume_ml"] >= 0 for s in body["structures"])
    found = np.unique(np.asarray(labels.dataobj))
    assert set(found.tolist()) <= set(range(len(names) + 1))
    assert body["model"]["name"] == "segmentation"


def test_segment_zipped_dicom(live_server: LiveServer, raw_data: Path) -> None:
    zipped = _zip_folder(raw_data / "ct" / "example_ct_dicom")
    r = _post(live_server, "series.zip", zipped, meshes=False)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["shape"] == [512, 512, 20]
    assert body["spacing_mm"][0] == pytest.approx(0.977, abs=1e-3)
    assert all(s["mesh"] is None for s in body["structures"])


def test_segment_rejects_bad_uploads(live_server: LiveServer, raw_data: Path) -> None:
    ct = (raw_data / "ct" / "example_ct_sm.nii.gz").read_bytes()
    image = nib.load(raw_data / "ct" / "example_ct_sm.nii.gz")
    one_slice = nib.Nifti1Image(np.asarray(image.dataobj)[:, :, :1], image.affine)
    csv_zip = io.BytesIO()
    with zipfile.ZipFile(csv_zip, "w") as z:
        z.write(next((raw_data / "lungs" / "lll").glob("*.csv")), "points.csv")
    cases = {
        "text": b"subject,age\n1,35\n",
        "truncated gzip": ct[: len(ct) // 3],
        "single slice": gzip.compress(one_slice.to_bytes()),
        "zip without DICOM": csv_zip.getvalue(),
        "broken zip": b"PK\x03\x04" + b"\x00" * 64,
    }
    for case, data in cases.items():
        r = _post(live_server, "scan.bin", data)
        assert 400 <= r.status_code < 500, (case, r.status_code, r.text)
        assert "upload" in r.text or "scan" in r.text, case
    missing = live_server.client.post("/segment", files={})
    assert missing.status_code == 400
