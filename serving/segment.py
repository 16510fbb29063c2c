"""POST /segment: a CT (NIfTI, or a zipped DICOM series) -> label map, volumes, meshes.

The upload is recognised by its content (gzip or NIfTI-1 header for NIfTI, zip for DICOM), not
by its name. Zips are extracted with limits (member count, total size, no paths leaving the
folder). Segmentation itself is :func:`models.segmentation.infer.segment` on the model
registered as `serving.models.segment`.
"""

from __future__ import annotations

import base64
import logging
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

import bentoml
import numpy as np

from dh.errors import DHError, Problem, fail
from serving.common import SETTINGS, ServedModel, load_served_model, require, user_errors
from serving.schemas import ModelRef, SegmentResponse, StructureResult, mesh_out

logger = logging.getLogger(__name__)

CONCERN = "segment"
MAX_ZIP_MEMBERS = 4000
MAX_UNZIPPED_BYTES = 2 * 2**30


def _open(model: ServedModel) -> None:
    from models.segmentation.infer import load_model

    model.handle = load_model(model.path, threads=SETTINGS.onnx_threads)
    model.providers = {model.handle.onnx_path.name: list(model.handle.providers)}


def _warmup(model: ServedModel) -> None:
    """One patch through the network (builds the TensorRT engine when TensorRT is in use)."""
    session = model.handle.session
    patch = [int(s) for s in model.handle.config["patch_size"]]
    name = session.get_inputs()[0].name
    session.run(None, {name: np.zeros([1, 1, *patch], dtype=np.float32)})


def _kind(path: Path) -> str:
    """`nifti`, `nifti.gz` or `zip`, from the first bytes of the upload."""
    with open(path, "rb") as f:
        head = f.read(352)
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "nifti.gz"
    if len(head) >= 348 and (head[344:347] in (b"n+1", b"ni1") or head[:4] == b"\x5c\x01\x00\x00"):
        return "nifti"
    fail(
        "upload",
        "scan",
        f"{len(head)}+ bytes starting {head[:8].hex()}",
        "a NIfTI file (.nii or .nii.gz) or a .zip of one DICOM series",
        "upload the CT as NIfTI, or zip the folder of DICOM slices",
    )
    raise AssertionError("unreachable")


def _check_nifti(path: Path, compressed: bool) -> None:
    """Reject a truncated or inconsistent NIfTI upload (its data must be all there)."""
    import gzip

    import nibabel as nib

    try:
        if compressed:
            size = 0
            with gzip.open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    size += len(chunk)
        else:
            size = path.stat().st_size
        header = nib.load(path).header
        needed = (
            int(header["vox_offset"])
            + int(np.prod(header.get_data_shape(), dtype=np.int64))
            * header.get_data_dtype().itemsize
        )
    except (OSError, EOFError, ValueError, nib.filebasedimages.ImageFileError) as exc:
        fail(
            "upload",
            "scan",
            f"unreadable NIfTI ({type(exc).__name__})",
            "a complete NIfTI file",
            "upload the whole file again; it may be truncated",
        )
    if size < needed:
        fail(
            "upload",
            "scan",
            f"{size} bytes of image data",
            f"{needed} bytes as its header says",
            "upload the whole file again; it is truncated",
        )


def _unzip(path: Path, dest: Path) -> Path:
    """Extract a zipped DICOM series safely; the folder holding the most files."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        fail("upload", "scan", "a broken zip", "a readable .zip", "re-create the zip")
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        total = sum(m.file_size for m in members)
        if not members or len(members) > MAX_ZIP_MEMBERS or total > MAX_UNZIPPED_BYTES:
            fail(
                "upload",
                "scan",
                f"{len(members)} files, {total} bytes unzipped",
                f"1..{MAX_ZIP_MEMBERS} files and at most {MAX_UNZIPPED_BYTES} bytes",
                "zip one DICOM series only",
            )
        root = dest.resolve()
        for m in members:
            target = (dest / m.filename).resolve()
            if not target.is_relative_to(root):
                fail("upload", "scan", m.filename[:60], "paths inside the zip", "re-create it")
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(m) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
    folders: dict[Path, int] = {}
    for f in dest.rglob("*"):
        if f.is_file():
            folders[f.parent] = folders.get(f.parent, 0) + 1
    return max(folders, key=folders.get)


def _clean(err: DHError, tmp: Path) -> DHError:
    """The same problems with the server's temporary paths replaced by `upload`."""
    problems = [
        Problem(
            p.file.replace(str(tmp), "upload"),
            p.field,
            p.value.replace(str(tmp), "upload"),
            p.expected,
            p.fix,
            p.check,
        )
        for p in err.problems
    ]
    return DHError(problems)


class SegmentAPI:
    """The segmentation network (ONNX) behind /segment."""

    CONCERN = CONCERN

    def setup(self) -> None:
        load_served_model(CONCERN, open_model=_open, warmup=_warmup)

    @bentoml.api(route="/segment")
    @user_errors
    def segment(self, scan: Path, meshes: bool = True) -> SegmentResponse:
        """Segment an uploaded CT: a NIfTI file (.nii, .nii.gz) or a .zip of one DICOM series.

        Returns the label map (gzipped NIfTI, base64, on the input's grid; affine in world
        RAS+ mm), each structure's volume in mL, and (unless `meshes` is false) its surface
        mesh in world RAS+ mm.
        """
        served = require(CONCERN)
        tmp = Path(tempfile.mkdtemp(prefix="dh-segment-"))
        try:
            kind = _kind(Path(scan))
            if kind == "zip":
                source = _unzip(Path(scan), tmp / "dicom")
            else:
                source = tmp / ("scan.nii.gz" if kind == "nifti.gz" else "scan.nii")
                shutil.copyfile(scan, source)
                _check_nifti(source, compressed=kind == "nifti.gz")
            try:
                return _segment(served, source, tmp, meshes)
            except DHError as err:
                raise _clean(err, tmp) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _segment(served: ServedModel, source: Path, tmp: Path, with_meshes: bool) -> SegmentResponse:
    """Label map, volumes and meshes through the segmentation subsystem's own functions."""
    import SimpleITK as sitk

    from dh.config import load_params
    from models.segmentation.grid import ras_affine, to_xyz
    from models.segmentation.imageio import read_ct
    from models.segmentation.infer import predict_labels
    from models.segmentation.mesh import mesh_label_array

    start = time.perf_counter()
    params = load_params("segmentation")
    try:
        ct = read_ct(
            source,
            float(params.get("max_input_mb", 2048)),
            float(params.get("hu_check_p01_max", -500.0)),
        )
    except RuntimeError as exc:  # SimpleITK or pydicom on a corrupt file
        fail("upload", "scan", f"unreadable ({type(exc).__name__})", "a valid CT", "re-export it")
    labels = predict_labels(ct, served.handle)
    names = served.handle.structures

    # Volumes in mL from voxel counts on the input grid.
    array = to_xyz(labels)  # (X, Y, Z)
    counts = np.bincount(array.ravel(), minlength=len(names) + 1)
    voxel_ml = float(np.prod(ct.spacing)) / 1000.0
    surfaces = {}
    if with_meshes:
        mesh_options = (
            {"mesh_spacing_mm": float(params["mesh_spacing_mm"])}
            if ("mesh_spacing_mm" in params)
            else {}
        )
        surfaces = mesh_label_array(
            array,
            ras_affine(labels),
            {name: [i] for i, name in enumerate(names, start=1)},
            int(params.get("mesh_smoothing_iterations", 10)),
            float(params.get("mesh_decimate_reduction", 0.5)),
            **mesh_options,
        )
    structures = []
    for label, name in enumerate(names, start=1):
        tri = surfaces.get(name)
        mesh = None
        if tri is not None:
            mesh = mesh_out(name, tri.vertices, tri.faces, "world RAS+ mm")
        volume = round(float(counts[label]) * voxel_ml, 3)
        structures.append(StructureResult(name=name, label=label, volume_ml=volume, mesh=mesh))

    out = tmp / "labelmap.nii.gz"
    sitk.WriteImage(labels, str(out), useCompression=True)
    name, _, version = served.tag.partition(":")
    return SegmentResponse(
        model=ModelRef(name=name, version=version),
        label_map_nifti_gz_b64=base64.b64encode(out.read_bytes()).decode(),
        shape=list(labels.GetSize()),
        spacing_mm=list(labels.GetSpacing()),
        structures=structures,
        seconds=round(time.perf_counter() - start, 3),
    )
