"""Reading and checking one subject's fit inputs: label maps, meshes, point sets, landmarks.

Every observation becomes surface points in world mm with the axis convention of its source:
NIfTI label maps and `dh segment` meshes are RAS (the NIfTI affine's frame); bare point sets and
meshes use the `axes` the caller gives (default LPS, the convention of the shape models' data).
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dh.errors import fail
from models.shape.build import STRUCTURES, check_structure

logger = logging.getLogger(__name__)

LABEL_TO_STRUCTURE = {
    "femur_left": "femur_left",
    "femur_right": "femur_right",
    "lung_lower_lobe_left": "lungs",
    "lungs": "lungs",
}
"""Label-map or mesh names (TotalSegmentator v2 names and our own) -> shape model name."""

AXES = ("LPS", "RAS", "any")
MESH_SUFFIXES = (".ply", ".obj", ".stl", ".vtp", ".vtk", ".off", ".glb", ".wrl")
MIN_POINTS = 20


@dataclass
class Observation:
    """Surface points of one structure from one input.

    Attributes:
        structure: shape model name.
        points: `(n_points, 3)` world mm.
        axes: "LPS", "RAS" or "any" (unknown).
        source: the input file.
    """

    structure: str
    points: np.ndarray
    axes: str
    source: str


@dataclass
class SubjectInputs:
    """Everything known about one subject for a fit.

    Attributes:
        observations: structure name -> observation (points of several inputs are merged).
        landmarks: landmark name -> world position, mm.
        features: feature name -> value given by the user.
        files: the input files and folders.
    """

    observations: dict[str, Observation] = field(default_factory=dict)
    landmarks: dict[str, np.ndarray] = field(default_factory=dict)
    features: dict[str, float] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def add(self, obs: Observation) -> None:
        prev = self.observations.get(obs.structure)
        if prev is not None:
            obs = Observation(
                obs.structure, np.vstack([prev.points, obs.points]), prev.axes, prev.source
            )
        self.observations[obs.structure] = obs


def read_inputs(
    paths: list[Path],
    structure: str | None = None,
    features: list[str] | None = None,
    axes: str = "LPS",
) -> SubjectInputs:
    """Read and check a subject's inputs (see the module docstring).

    Raises:
        DHError: missing file, unknown format or structure, empty or non-finite points.
    """
    if axes not in AXES:
        fail("--axes", "axes", axes, f"one of {AXES}", "pass --axes LPS, RAS or any")
    if structure is not None:
        structure = LABEL_TO_STRUCTURE.get(structure, structure)
        check_structure(structure)
    out = SubjectInputs(features=parse_features(features or []))
    for path in map(Path, paths):
        out.files.append(path)
        if not path.exists():
            fail(str(path), "", "missing", "an existing file or folder", "check the path")
        if path.is_dir():
            _read_folder(path, out)
        elif path.name.endswith((".nii", ".nii.gz")):
            for obs in read_labelmap(path):
                out.add(obs)
        elif path.suffix.lower() == ".csv" and _is_landmark_csv(path):
            out.landmarks.update(read_landmarks(path))
        else:
            points = read_points(path)
            out.add(Observation(_need_structure(structure, path), points, axes, str(path)))
    if not out.observations:
        fail(
            " ".join(map(str, paths)),
            "",
            "no surface observation",
            "a label map, mesh or point set of a known structure",
            f"give one of {sorted(STRUCTURES)} as a mesh/points with --structure, or a label map",
        )
    return out


def parse_features(items: list[str]) -> dict[str, float]:
    """`NAME=VALUE` strings -> floats."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            fail("--feature", "feature", item, "NAME=VALUE with a number", "e.g. --feature age=35")
    return out


def read_points(path: Path) -> np.ndarray:
    """`(n, 3)` points (mm as given) of a point CSV, point cloud or mesh file.

    Raises:
        DHError: unknown suffix, unreadable file, no points or non-finite values.
    """
    suffix = path.suffix.lower()
    if suffix == ".csv":
        points = _read_point_csv(path)
    elif suffix in MESH_SUFFIXES:
        points = _read_mesh_points(path)
    else:
        fail(
            str(path),
            "suffix",
            suffix,
            ".nii/.nii.gz label map, .csv points/landmarks, or a mesh " + " ".join(MESH_SUFFIXES),
            "convert the input to a supported format",
        )
    return check_points(points, str(path))


def check_points(points: np.ndarray, source: str) -> np.ndarray:
    """Reject empty clouds and NaN/inf coordinates; returns `(n, 3)` float points."""
    pts = np.asarray(points, dtype=float).reshape(-1, 3) if np.size(points) else np.zeros((0, 3))
    if len(pts) < MIN_POINTS:
        fail(source, "points", len(pts), f"at least {MIN_POINTS} surface points", "check the input")
    bad = ~np.isfinite(pts).all(axis=1)
    if bad.any():
        fail(
            source,
            "x,y,z",
            f"{int(bad.sum())} rows with NaN/inf (first row {int(np.argmax(bad))})",
            "finite coordinates in mm",
            "remove or repair those rows",
        )
    return pts


def check_units(points: np.ndarray, model_extent_mm: float, source: str) -> None:
    """Reject point sets whose size says they are not in mm (e.g. metres).

    Args:
        points: `(n, 3)` observed points.
        model_extent_mm: bounding-box diagonal of the structure's mean shape, mm.
        source: input name for the message.
    """
    lo, hi = np.percentile(points, [1, 99], axis=0)
    extent = float(np.linalg.norm(hi - lo))
    ratio = extent / model_extent_mm
    if ratio < 0.02:
        fail(
            source,
            "units",
            f"extent {extent:.4g} (model {model_extent_mm:.0f} mm)",
            "coordinates in millimetres",
            "the points look like metres: multiply them by 1000",
        )
    if ratio > 5.0:
        fail(
            source,
            "units",
            f"extent {extent:.4g} (model {model_extent_mm:.0f} mm)",
            "coordinates in millimetres of a single structure",
            "check the units (micrometres?) and that --structure names what the input shows",
        )


def read_landmarks(path: Path) -> dict[str, np.ndarray]:
    """Named landmarks `name,x,y,z` (mm) from a CSV (an optional header row is skipped)."""
    out = {}
    with open(path, encoding="utf-8", newline="") as f:
        for i, row in enumerate(csv.reader(f)):
            if not row or row[0].startswith("#") or (i == 0 and row[0].strip().lower() == "name"):
                continue
            try:
                xyz = np.array([float(v) for v in row[1:4]])
                if len(xyz) != 3 or not np.isfinite(xyz).all():
                    raise ValueError
            except ValueError:
                fail(str(path), f"row {i + 1}", row, "name,x,y,z in mm", "fix that row")
            out[row[0].strip()] = xyz
    return out


def read_labelmap(path: Path, names: dict[int, str] | None = None) -> list[Observation]:
    """Surface points (world RAS mm) of every modelled structure in a NIfTI label map.

    Label values are named by `names`, else by a `label_names.txt` beside the file (lines
    `value name`), else by the TotalSegmentator v2 names of the demo data.
    """
    import nibabel as nib

    try:
        image = nib.load(str(path))
        labels = np.asarray(image.dataobj)
    except Exception as exc:  # nibabel raises several types for broken files
        fail(str(path), "", f"{type(exc).__name__}: {exc}", "a NIfTI label map", "re-export it")
    if labels.ndim != 3 or not np.issubdtype(labels.dtype, np.integer):
        if labels.ndim != 3 or not np.allclose(labels, np.round(labels)):
            fail(str(path), "data", labels.dtype, "a 3-D integer label map", "pass a label map")
    names = names or _label_names(path)
    present = {int(v) for v in np.unique(labels) if v != 0}
    out = []
    for value in sorted(present):
        structure = LABEL_TO_STRUCTURE.get(names.get(value, ""))
        if structure is None:
            continue
        points = mask_surface_points(labels == value, image.affine)
        if len(points) >= MIN_POINTS:
            out.append(Observation(structure, points, "RAS", str(path)))
    if not out:
        found = sorted(names.get(v, str(v)) for v in present)[:12]
        fail(
            str(path),
            "labels",
            f"{len(present)} structures, e.g. {found}",
            f"a structure with a shape model: {sorted(k for k in LABEL_TO_STRUCTURE)}",
            "pass a label map that contains one of them",
        )
    return out


def mask_surface_points(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """`(n, 3)` world mm vertices of a binary mask's surface, without the field-of-view caps.

    Marching cubes closes a structure cut by the image border with a flat cap that is not
    anatomy; vertices on those border planes are dropped.
    """
    from skimage.measure import marching_cubes

    padded = np.pad(mask.astype(np.float32), 1)
    verts, _, _, _ = marching_cubes(padded, level=0.5)
    verts -= 1.0  # voxel indices of `mask`
    shape = np.array(mask.shape)
    inside = ((verts > 0.0) & (verts < shape - 1.0)).all(axis=1)
    verts = verts[inside]
    return verts @ affine[:3, :3].T + affine[:3, 3]


def _label_names(path: Path) -> dict[int, str]:
    side = path.parent / "label_names.txt"
    if side.is_file():
        return _read_names_file(side)
    from dh.config import DATA_RAW

    ts = DATA_RAW / "ct" / "ts_v2_labels.txt"
    if not ts.is_file():
        from dh.registry import pull

        pull(["ct"])
    return _read_names_file(ts)


def _read_names_file(path: Path) -> dict[int, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            out[int(parts[0])] = parts[1]
    return out


def _read_folder(path: Path, out: SubjectInputs) -> None:
    """A `dh segment` output folder: meshes/<structure>.vtp, else labelmap.nii.gz."""
    meshes = sorted((path / "meshes").glob("*.vtp")) if (path / "meshes").is_dir() else []
    known = [m for m in meshes if m.stem in LABEL_TO_STRUCTURE]
    for mesh in known:
        out.add(Observation(LABEL_TO_STRUCTURE[mesh.stem], read_points(mesh), "RAS", str(mesh)))
    if known:
        return
    labelmap = path / "labelmap.nii.gz"
    if labelmap.is_file():
        for obs in read_labelmap(labelmap):
            out.add(obs)
        return
    fail(
        str(path),
        "",
        f"meshes {[m.stem for m in meshes][:10]}",
        f"meshes/<structure>.vtp for one of {sorted(LABEL_TO_STRUCTURE)} or labelmap.nii.gz",
        "pass the output folder of `dh segment`, a label map, or a mesh with --structure",
    )


def _need_structure(structure: str | None, path: Path) -> str:
    if structure is None:
        fail(
            str(path),
            "--structure",
            "not given",
            f"the structure the points show, one of {sorted(STRUCTURES)}",
            "pass --structure NAME",
        )
    return structure


def _is_landmark_csv(path: Path) -> bool:
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.reader(f):
            if not row or row[0].startswith("#"):
                continue
            first = row[0].strip()
            if first.lower() in ("x", "name"):
                return first.lower() == "name"
            try:
                float(first)
                return False
            except ValueError:
                return True
    return False


def _read_point_csv(path: Path) -> np.ndarray:
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        for i, row in enumerate(csv.reader(f)):
            if not row or row[0].lstrip().startswith("#") or row[0].strip().lower() == "x":
                continue
            try:
                rows.append([float(v) for v in row[:3]])
            except ValueError:
                fail(str(path), f"row {i + 1}", row, "x,y,z numbers in mm", "fix that row")
            if len(rows[-1]) != 3:
                fail(str(path), f"row {i + 1}", row, "three columns x,y,z", "fix that row")
    return np.array(rows, dtype=float).reshape(-1, 3)


def _read_mesh_points(path: Path) -> np.ndarray:
    import trimesh

    from models.meshio import read_mesh

    if path.suffix.lower() in (".vtp", ".vtk", ".wrl"):
        loaded = read_mesh(path)
    else:
        try:
            loaded = trimesh.load(path, process=False)
        except Exception as exc:  # trimesh raises many types on malformed files
            fail(str(path), "", f"{type(exc).__name__}: {exc}", "a readable mesh", "re-export")
        if isinstance(loaded, trimesh.Scene):
            loaded = loaded.dump(concatenate=True)
    verts = np.asarray(loaded.vertices, dtype=float)
    faces = getattr(loaded, "faces", None)
    if faces is not None and len(faces) and len(verts) < 2000:
        extra, _ = trimesh.sample.sample_surface(loaded, 4000, seed=0)
        verts = np.vstack([verts, extra])
    return verts
