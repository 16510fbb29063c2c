"""Train a tiny model, export it with parity, and segment the DICOM series with it.

The session fixture trains in-sample on the DICOM subject (liver and spleen, 6 mm grid, a few
dozen iterations) so that the test runs in seconds yet its label map must land on the
reference one: a flipped or shifted world geometry anywhere between training, export,
inference and writing would break the overlap.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from dh.config import PROJECT_ROOT
from models.segmentation.grid import ras_affine, resample_to, to_xyz
from models.segmentation.imageio import read_ct
from models.segmentation.lineage import sha256_file
from models.segmentation.metrics import dice

pytestmark = pytest.mark.slow

TINY = {
    "train_subjects": ["ct_dicom"],
    "val_subjects": ["ct_sm"],
    "structures": {"liver": ["liver"], "spleen": ["spleen"]},
    "spacing_mm": [6.0, 6.0, 6.0],
    "patch_size": [32, 32, 8],
    "batch_size": 2,
    "iterations": 80,
    "learning_rate": 0.003,
    "val_every": 40,
    "init_filters": 8,
    "sw_batch_size": 4,
}


@pytest.fixture(scope="session")
def tiny_model(raw_data, prefect_server, tmp_path_factory) -> dict:
    """The `train_segmentation` Prefect flow with tiny params (no model-store registration)."""
    from flows.segmentation import run

    out = tmp_path_factory.mktemp("seg_model")
    result = run(TINY, out, register=False)
    return {"dir": out, "flow": result}


@pytest.fixture(scope="session")
def dicom_outputs(raw_data, tiny_model, tmp_path_factory) -> Path:
    """`dh segment` on the DICOM series, run as a real CLI process."""
    out = tmp_path_factory.mktemp("seg_out") / "seg_dicom"
    cmd = [
        sys.executable, "-m", "dh.cli", "segment", str(raw_data / "ct" / "example_ct_dicom"),
        "-o", str(out), "--model", str(tiny_model["dir"]),
    ]  # fmt: skip
    run = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    return out


def test_training_writes_checkpoint_lineage_and_metrics(tiny_model):
    out = tiny_model["dir"]
    lineage = json.loads((out / "model.pt.lineage.json").read_text())
    assert lineage["trained_on"] == ["ct_dicom"] and lineage["validated_on"] == ["ct_sm"]
    assert any(k.endswith("example_seg_dicom.nii.gz") for k in lineage["data_sha256"])
    assert len([k for k in lineage["data_sha256"] if "example_ct_dicom" in k]) == 20
    assert lineage["params"]["iterations"] == 80 and "commit" in lineage["git"]
    assert lineage["sha256"] == sha256_file(out / "model.pt")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == tiny_model["flow"]["train"]["metrics"]
    liver = metrics["train_fit"]["ct_dicom"]["structures"]["liver"]
    assert liver["dice"] > 0.5 and liver["hd95_mm"] is not None
    assert set(metrics["validation"]["ct_sm"]["structures"]) == {"liver", "spleen"}
    assert [h["iteration"] for h in metrics["history"]] == [40, 80]


def test_export_parity_and_dynamic_dims(tiny_model):
    import onnx

    out = tiny_model["dir"]
    parity = tiny_model["flow"]["export"]["parity"]
    assert parity["passed"] and parity["max_abs_logit"] < 1e-3 and parity["min_dice"] > 0.999
    model = onnx.load(str(out / "model.onnx"))
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 1 and all(isinstance(d, str) for d in dims[0:1] + dims[2:])
    assert not list(out.glob("*.data"))  # weights inside the hashed file
    manifest = json.loads((out / "model.json").read_text())
    assert manifest["onnx_sha256"] == sha256_file(out / "model.onnx")
    assert manifest["structures"] == ["liver", "spleen"]
    assert manifest["lineage"]["trained_on"] == ["ct_dicom"]


def test_segment_writes_all_outputs(dicom_outputs):
    names = {p.name for p in dicom_outputs.iterdir()}
    assert {"labelmap.nii.gz", "meshes", "meshes.glb", "volumes.csv", "render.png"} <= names
    assert "segment.json" in names
    assert (dicom_outputs / "meshes" / "liver.vtp").is_file()
    manifest = json.loads((dicom_outputs / "segment.json").read_text())
    assert manifest["structures"] == {"liver": 1, "spleen": 2}
    assert manifest["model_version"].startswith("seg-")
    rows = (dicom_outputs / "volumes.csv").read_text().splitlines()
    assert rows[0] == "structure,label,volume_ml" and rows[1].startswith("liver,1,")
    assert not [p for p in dicom_outputs.parent.iterdir() if p.name.startswith(".")]


def test_labelmap_in_input_world_space_and_overlaps_reference(raw_data, dicom_outputs):
    ct = read_ct(raw_data / "ct" / "example_ct_dicom")
    written = sitk.ReadImage(str(dicom_outputs / "labelmap.nii.gz"))
    assert written.GetSize() == ct.image.GetSize()
    np.testing.assert_allclose(
        nib.load(dicom_outputs / "labelmap.nii.gz").affine, ras_affine(ct.image), atol=1e-3
    )

    # Reference (LAS, its own grid) resampled by world coordinates onto the written grid.
    reference = sitk.ReadImage(str(raw_data / "ct" / "example_seg_dicom.nii.gz"))
    ref = to_xyz(resample_to(reference, written, labels=True))
    ours = to_xyz(written)
    assert dice(ours == 1, ref == 5) > 0.6  # liver
    assert dice(ours == 1, ref[::-1] == 5) < dice(ours == 1, ref == 5) - 0.2  # not L/R-mirrored


def test_meshes_lie_on_the_labelmap(dicom_outputs):
    from models.meshio import read_mesh

    liver = read_mesh(dicom_outputs / "meshes" / "liver.vtp")
    image = nib.load(dicom_outputs / "labelmap.nii.gz")
    idx = np.argwhere(np.asarray(image.dataobj) == 1)
    world = idx @ image.affine[:3, :3].T + image.affine[:3, 3]  # RAS mm
    np.testing.assert_allclose(liver.bounds[0], world.min(axis=0), atol=4.0)
    np.testing.assert_allclose(liver.bounds[1], world.max(axis=0), atol=4.0)


def test_inference_path_imports_no_torch(raw_data, tiny_model, tmp_path):
    code = (
        "import sys; from models.segmentation.infer import segment; "
        f"r = segment({str(raw_data / 'ct' / 'example_ct_sm.nii.gz')!r}, {str(tmp_path / 'o')!r}, "
        f"model_dir={str(tiny_model['dir'])!r}, render=False); "
        "assert 'torch' not in sys.modules, 'torch imported'; print(r.labelmap)"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "o" / "labelmap.nii.gz").is_file()


def test_bad_input_exits_2_and_leaves_no_output(raw_data, tiny_model, tmp_path):
    image = sitk.ReadImage(str(raw_data / "ct" / "example_ct_sm.nii.gz"))
    bad = tmp_path / "slice.nii.gz"
    sitk.WriteImage(image[:, :, 3:4], str(bad))
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "dh.cli",
        "segment",
        str(bad),
        "-o",
        str(out),
        "-m",
        str(tiny_model["dir"]),
    ]
    run = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert "single slice" in run.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


def test_tampered_model_is_refused(tiny_model, tmp_path, raw_data):
    import shutil

    from dh.errors import DHError
    from models.segmentation.infer import load_model

    copy = tmp_path / "model"
    shutil.copytree(tiny_model["dir"], copy)
    with open(copy / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(DHError, match="sha256"):
        load_model(copy)
