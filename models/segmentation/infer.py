"""Segmenting a CT through ONNX Runtime (no torch) and writing label map, meshes and volumes.

`segment(input_path, out_dir)` reads a NIfTI file or a DICOM folder, runs the exported model
with a numpy sliding window on the common grid (identity direction, world LPS+), resamples the
label map back onto the input's own grid by world coordinates, and writes, in `out_dir`:

- `labelmap.nii.gz`: output labels 1..N on the input grid (its NIfTI affine is world RAS+);
- `meshes/<structure>.vtp` and `meshes.glb`: surfaces in world RAS+ mm, same frame as the
  label map's affine;
- `volumes.csv`: structure, label, volume_ml;
- `render.png`: offscreen rendering of the meshes;
- `segment.json`: manifest (input, model version and sha256, structures, spacing, files).

Everything is written to a temporary sibling folder first and moved into place at the end, so
a failed run leaves no partial output that looks complete.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from dh.config import ARTIFACTS, load_params
from dh.errors import fail
from models.segmentation.dataset import normalize_hu
from models.segmentation.grid import (
    canonical_reference,
    from_xyz,
    ras_affine,
    resample_to,
    to_xyz,
)
from models.segmentation.imageio import CTImage, read_ct
from models.segmentation.lineage import sha256_file
from models.segmentation.postprocess import remove_small_components
from models.segmentation.sliding import onnx_predictor, sliding_window

logger = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = ARTIFACTS / "segmentation"


@dataclass
class SegmentationModel:
    """An exported model ready for inference.

    Attributes:
        session: ONNX Runtime session (from `models.onnx_runtime.make_session`).
        providers: providers the session uses.
        config: `model.json` (structures, spacing_mm, hu_window, patch_size, lineage...).
        onnx_path: the `.onnx` file.
        sha256: its sha256.
    """

    session: Any
    providers: list[str]
    config: dict[str, Any]
    onnx_path: Path
    sha256: str

    @property
    def structures(self) -> list[str]:
        """Structure names; label i + 1 is `structures[i]`."""
        return list(self.config["structures"])

    @property
    def version(self) -> str:
        """Model version id (`seg-` + first 12 hex digits of the ONNX sha256)."""
        return str(self.config.get("model_version", f"seg-{self.sha256[:12]}"))


def load_model(model_dir: str | Path | None = None, threads: int = 0) -> SegmentationModel:
    """Open `model_dir/model.onnx` with its `model.json`, checking the recorded sha256.

    Raises:
        DHError: missing files, or an ONNX file whose sha256 differs from `model.json`.
    """
    from models.onnx_runtime import make_session

    model_dir = Path(model_dir or DEFAULT_MODEL_DIR)
    manifest = model_dir / "model.json"
    if not manifest.is_file():
        fail(
            str(manifest),
            "",
            "missing file",
            "an exported segmentation model (model.onnx + model.json)",
            "train and export it: `dvc repro train_segmentation` or `python -m flows.segmentation`",
        )
    config = json.loads(manifest.read_text(encoding="utf-8"))
    onnx_path = model_dir / config.get("onnx", "model.onnx")
    digest = sha256_file(onnx_path) if onnx_path.is_file() else "missing file"
    if digest != config.get("onnx_sha256"):
        fail(
            str(onnx_path),
            "sha256",
            digest,
            f"{config.get('onnx_sha256')} as recorded in model.json",
            "re-export the model; the ONNX file does not match its manifest",
        )
    info = make_session(onnx_path, intra_op_threads=threads)
    return SegmentationModel(info.session, info.providers, config, onnx_path, digest)


def predict_labels(ct: CTImage, model: SegmentationModel) -> sitk.Image:
    """Label map (uint8, 0 = background) on the input CT's own grid, by world coordinates."""
    cfg = model.config
    grid = canonical_reference(ct.image, cfg["spacing_mm"])
    volume = normalize_hu(
        to_xyz(resample_to(ct.image, grid, labels=False, default=-1024.0)), cfg["hu_window"]
    )
    logits = sliding_window(
        volume,
        onnx_predictor(model.session),
        cfg["patch_size"],
        len(model.structures) + 1,
        overlap=cfg["sw_overlap"],
        batch_size=cfg["sw_batch_size"],
    )
    labels = remove_small_components(
        logits.argmax(0).astype(np.uint8),
        len(model.structures),
        float(cfg.get("min_component_fraction", 0.0)),
    )
    labels = from_xyz(labels, grid)
    return resample_to(labels, ct.image, labels=True, default=0)


@dataclass
class SegmentationResult:
    """What `segment` wrote (paths inside `out_dir`) and measured.

    Attributes:
        out_dir: output folder.
        labelmap: `labelmap.nii.gz` (input grid; NIfTI affine in world RAS+).
        meshes: structure -> `.vtp` path (world RAS+ mm).
        glb: `meshes.glb` (all structures, world RAS+ mm).
        volumes_ml: structure -> volume in mL (0 when not found).
        render: `render.png` or None.
        manifest: `segment.json`.
        model_version: model version id.
        seconds: wall time.
    """

    out_dir: Path
    labelmap: Path
    meshes: dict[str, Path]
    glb: Path | None
    volumes_ml: dict[str, float]
    render: Path | None
    manifest: Path
    model_version: str
    seconds: float
    providers: list[str] = field(default_factory=list)


def segment(
    input_path: str | Path,
    out_dir: str | Path,
    model_dir: str | Path | None = None,
    model: SegmentationModel | None = None,
    render: bool = True,
) -> SegmentationResult:
    """Segment a CT (NIfTI file or DICOM folder) and write all outputs into `out_dir`.

    Args:
        input_path: `.nii`/`.nii.gz` file or a folder with one DICOM CT series.
        out_dir: output folder; replaced as a whole when the run succeeds.
        model_dir: folder with `model.onnx` + `model.json` (default artifacts/segmentation).
        model: an already loaded model (services keep one), instead of `model_dir`.
        render: write `render.png`.

    Raises:
        DHError: bad input (non-CT, single slice, mixed series, over the memory limit,
            intensities not in HU) or a missing/mismatched model.
    """
    start = time.perf_counter()
    params = load_params("segmentation")
    ct = read_ct(
        input_path,
        float(params.get("max_input_mb", 2048)),
        float(params.get("hu_check_p01_max", -500.0)),
    )
    model = model or load_model(model_dir, threads=int(params.get("num_threads", 1)))
    labels = predict_labels(ct, model)

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        written = _write_outputs(ct, labels, model, tmp, params, render)
        manifest = {
            "input": str(input_path),
            "input_kind": ct.kind,
            "input_size_voxels": list(ct.size),
            "input_spacing_mm": list(ct.spacing),
            "world_frame": "labelmap.nii.gz affine and meshes: world RAS+ mm",
            "model_version": model.version,
            "model_sha256": model.sha256,
            "model_spacing_mm": model.config["spacing_mm"],
            "providers": model.providers,
            "structures": {name: i for i, name in enumerate(model.structures, start=1)},
            "volumes_ml": written["volumes_ml"],
            "files": sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file()),
            "seconds": round(time.perf_counter() - start, 2),
        }
        (tmp / "segment.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        _move_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SegmentationResult(
        out_dir,
        out_dir / "labelmap.nii.gz",
        {k: out_dir / "meshes" / p.name for k, p in written["meshes"].items()},
        out_dir / "meshes.glb" if written["meshes"] else None,
        written["volumes_ml"],
        out_dir / "render.png" if written["render"] else None,
        out_dir / "segment.json",
        model.version,
        time.perf_counter() - start,
        model.providers,
    )


def _write_outputs(
    ct: CTImage,
    labels: sitk.Image,
    model: SegmentationModel,
    out: Path,
    params: dict[str, Any],
    render: bool,
) -> dict[str, Any]:
    from models.meshio import write_glb, write_vtp
    from models.render import color_for, render_meshes
    from models.segmentation.mesh import mesh_label_array

    sitk.WriteImage(labels, str(out / "labelmap.nii.gz"), useCompression=True)
    array = to_xyz(labels)  # `(X, Y, Z)` on the input grid
    names = model.structures

    # Volumes in mL from voxel counts on the input grid.
    voxel_ml = float(np.prod(ct.spacing)) / 1000.0
    counts = np.bincount(array.ravel(), minlength=len(names) + 1)
    volumes = {name: round(float(counts[i]) * voxel_ml, 3) for i, name in enumerate(names, 1)}
    with open(out / "volumes.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["structure", "label", "volume_ml"])
        for i, name in enumerate(names, start=1):
            writer.writerow([name, i, volumes[name]])

    # Meshes in world RAS+ mm (the affine SimpleITK writes into the NIfTI).
    meshes = mesh_label_array(
        array,
        ras_affine(labels),
        {name: [i] for i, name in enumerate(names, start=1)},
        int(params.get("mesh_smoothing_iterations", 10)),
        float(params.get("mesh_decimate_reduction", 0.5)),
        mesh_spacing_mm=float(params.get("mesh_spacing_mm", 2.0)),
    )
    paths = {name: write_vtp(mesh, out / "meshes" / f"{name}.vtp") for name, mesh in meshes.items()}
    colors = {name: color_for(names.index(name)) for name in meshes}
    if meshes:
        write_glb(meshes, out / "meshes.glb", colors)
    rendered = False
    if render and meshes:
        # Coronal view, unless the scan is a thin slab (then axial, looking along z).
        points = np.vstack([m.vertices for m in meshes.values()])
        extent = points.max(axis=0) - points.min(axis=0)  # `(3,)` mm
        view = "xy" if extent[2] < 0.5 * max(extent[0], extent[1]) else "xz"
        title = f"{model.version}: {len(meshes)} structures (world RAS, view {view})"
        render_meshes(meshes, out / "render.png", title=title, view=view)
        rendered = True
    return {"volumes_ml": volumes, "meshes": paths, "render": rendered}


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    """Replace `out_dir` by `tmp` (same parent, so the renames are atomic)."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{time.time_ns()}")
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
