"""`simulate(...)`: the one entry point for the CLI, the flows and the HTTP service.

Input: a `dh fit` output folder (`fit.json` + `femur_left.vtp`, world mm), a mesh file, or a
:class:`trimesh.Trimesh`. Modes:

- `fe`: TetGen + P2 finite elements on the given surface (world frame);
- `surrogate`: the ONNX surrogate evaluated at the fit's shape coefficients; the fields live
  on the template vertices, which the fitted surface shares. The surrogate works in the shape
  model's frame; the similarity between the model instance and the fitted surface maps its
  fields to the world (stress scales with 1/s^2, displacement and energy with 1/s for a
  scale s, since the forces do not change).
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from dh.config import ARTIFACTS, load_params
from dh.errors import fail
from models.simulation.anatomy import REGIONS, femur_frame, regions
from models.simulation.femur import combine, solve_stance
from models.simulation.loads import LoadCase, load_case
from models.simulation.tetmesh import check_surface

logger = logging.getLogger(__name__)

SURROGATE_DIR = ARTIFACTS / "simulation"
MODES = ("fe", "surrogate")
FIT_SURFACE = "femur_left.vtp"
FIT_JSON = "fit.json"


@dataclass
class SimulationResult:
    """Fields on the femur surface (world mm, the input's frame) and their summary.

    Attributes:
        mode: "fe" or "surrogate".
        load: the load case.
        surface: the femur surface (mm).
        von_mises: `(n_vertices,)` MPa.
        displacement: `(n_vertices, 3)` mm.
        strain_energy_j: J.
        region: `(n_vertices,)` index into :data:`models.simulation.anatomy.REGIONS`.
        mesh: mesh size and quality (FE) or surrogate details.
        seconds: wall time of the simulation (s).
        volume: FE only: `points (n, 3)`, `tets (m, 4)`, nodal `von_mises`, `displacement`.
    """

    mode: str
    load: LoadCase
    surface: trimesh.Trimesh
    von_mises: np.ndarray
    displacement: np.ndarray
    strain_energy_j: float
    region: np.ndarray
    mesh: dict[str, Any]
    seconds: float
    volume: dict[str, np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)

    def region_peaks(self) -> dict[str, float]:
        """Peak von Mises stress (MPa) per region on the surface."""
        return {
            name: float(self.von_mises[self.region == i].max())
            for i, name in enumerate(REGIONS)
            if np.any(self.region == i)
        }

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (MPa, mm, J, s)."""
        return {
            "mode": self.mode,
            "load_case": self.load.to_dict(),
            "von_mises_peak_mpa": float(self.von_mises.max()),
            "von_mises_p99_mpa": float(np.percentile(self.von_mises, 99)),
            "displacement_peak_mm": float(np.linalg.norm(self.displacement, axis=1).max()),
            "strain_energy_j": float(self.strain_energy_j),
            "region_peaks_von_mises_mpa": self.region_peaks(),
            "mesh": self.mesh,
            "time_s": float(self.seconds),
            "frame": "input surface frame (world mm for a dh fit output)",
            "notes": self.notes,
        }

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write `surface.vtu` (+ `volume.vtu` for FE), `summary.json` and `von_mises.png`."""
        from models.render import render_meshes

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "surface_vtu": _write_vtu(
                out / "surface.vtu",
                np.asarray(self.surface.vertices),
                np.asarray(self.surface.faces),
                {
                    "von_mises_mpa": self.von_mises,
                    "displacement_mm": self.displacement,
                    "region": self.region,
                },
            )
        }
        if self.volume is not None:
            paths["volume_vtu"] = _write_vtu(
                out / "volume.vtu",
                self.volume["points"],
                self.volume["tets"],
                {
                    "von_mises_mpa": self.volume["von_mises"],
                    "displacement_mm": self.volume["displacement"],
                },
            )
        paths["summary"] = out / "summary.json"
        paths["summary"].write_text(
            json.dumps(self.summary(), indent=2, default=_json_default), encoding="utf-8"
        )
        hi = float(np.percentile(self.von_mises, 99))
        paths["png"] = render_meshes(
            {"femur": self.surface},
            out / "von_mises.png",
            scalars={"femur": self.von_mises},
            scalar_title="von Mises (MPa)",
            clim=(0.0, hi),
            title=f"{self.load.name}, {self.load.body_weight_kg:.0f} kg, {self.mode}",
        )
        return paths


def simulate(
    source: str | Path | trimesh.Trimesh,
    load_case_name: str = "stance",
    body_weight_kg: float | None = None,
    mode: str = "fe",
    params: dict[str, Any] | None = None,
    surrogate_dir: Path | None = None,
    hip_force_bw: float | None = None,
    abductor_force_bw: float | None = None,
    shape_coefficients: np.ndarray | list[float] | None = None,
) -> SimulationResult:
    """Simulate a load case on a femur.

    Args:
        source: a `dh fit` output folder, a mesh file, or a surface (world mm, z superior).
        load_case_name: "stance".
        body_weight_kg: body weight in kg (default from params.yaml).
        mode: "fe" or "surrogate" (the latter needs a fit folder with shape coefficients).
        params: the `simulation` section of params.yaml (default: read it).
        surrogate_dir: folder with `surrogate.onnx` and `surrogate.json`.
        hip_force_bw, abductor_force_bw: override the load multiples of body weight.
        shape_coefficients: standardised femur shape coefficients for the surrogate when
            `source` is a surface with the template's vertices (instead of a fit folder).

    Raises:
        DHError: unknown mode or load case, implausible body weight, broken surface, missing
            fit files or surrogate.
    """
    p = params if params is not None else load_params("simulation")
    if mode not in MODES:
        fail("mode", "mode", mode, " or ".join(MODES), "pass --mode fe or --mode surrogate")
    bw = p["body_weight_kg"]["default"] if body_weight_kg is None else body_weight_kg
    case = load_case(load_case_name, float(bw), p, hip_force_bw, abductor_force_bw)
    surface, coeffs, name = _read_source(source)
    if shape_coefficients is not None:
        coeffs = list(np.asarray(shape_coefficients, float).ravel())
    check_surface(surface, name, int(p["mesh"]["min_surface_vertices"]))
    t0 = time.perf_counter()
    if mode == "fe":
        result = _run_fe(surface, case, p, name)
    else:
        result = _run_surrogate(surface, coeffs, case, p, name, surrogate_dir or SURROGATE_DIR)
    result.seconds = time.perf_counter() - t0
    return result


def _run_fe(surface: trimesh.Trimesh, case: LoadCase, p: dict[str, Any], name: str):  # noqa: ANN202
    sol = solve_stance(surface, case, p, source=name)
    fields = combine(sol.surface_unit, case)
    nodes = combine(sol.node_unit, case)
    rp = p["regions"]
    q = sol.quality
    return SimulationResult(
        mode="fe",
        load=case,
        surface=surface,
        von_mises=fields.von_mises,
        displacement=fields.displacement,
        strain_energy_j=nodes.strain_energy_j,
        region=regions(sol.frame, surface.vertices, rp["proximal_fraction"], rp["distal_fraction"]),
        mesh={
            "n_nodes": q.n_nodes,
            "n_tets": q.n_tets,
            "n_dofs": sol.n_dofs,
            "element_order": int(p["mesh"]["element_order"]),
            "min_dihedral_deg": q.min_dihedral_deg,
            "median_min_dihedral_deg": q.median_min_dihedral_deg,
            "fraction_below_10deg": q.fraction_below_10deg,
            "max_radius_edge": q.max_radius_edge,
            "volume_mm3": q.volume_mm3,
            "loaded_facets": sol.loaded,
            "fe_seconds": sol.seconds,
            "head_radius_mm": sol.frame.head_radius,
            "femur_length_mm": sol.frame.length,
        },
        seconds=0.0,
        volume={
            "points": sol.points,
            "tets": sol.tets,
            "von_mises": nodes.von_mises,
            "displacement": nodes.displacement,
        },
        notes=["stresses at the fixed distal end are boundary artefacts of the clamp"],
    )


def _run_surrogate(surface, coeffs, case, p, name, sdir: Path):  # noqa: ANN001, ANN202
    from models.shape import load_structure_model

    onnx_path, meta_path = sdir / "surrogate.onnx", sdir / "surrogate.json"
    if not onnx_path.is_file() or not meta_path.is_file():
        fail(
            str(onnx_path),
            "",
            "missing surrogate",
            "a trained surrogate (ONNX + json)",
            "train it: python -m flows.simulation (DVC stage train_surrogate), or use --mode fe",
        )
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if coeffs is None:
        fail(
            name,
            "shape_coefficients",
            "none",
            "a dh fit folder whose fit.json holds the femur's shape coefficients",
            "run dh fit first, or use --mode fe",
        )
    model = load_structure_model(meta["structure"])
    if len(surface.vertices) != model.n_vertices:
        fail(
            name,
            "vertices",
            len(surface.vertices),
            f"{model.n_vertices} vertices (the {meta['structure']} template)",
            "pass the surface written by dh fit, or use --mode fe",
        )
    c = np.zeros(model.n_components)
    c[: min(len(coeffs), len(c))] = np.asarray(coeffs, float)[: len(c)]
    notes = []
    if np.any(np.abs(c) > meta["coeff_std_range"]):
        notes.append(f"shape coefficients beyond +-{meta['coeff_std_range']} std: extrapolating")
        warnings.warn(notes[-1], stacklevel=3)

    # similarity model instance -> fitted surface (world)
    instance = model.instance(c)
    scale, rot, rms = _similarity(instance, np.asarray(surface.vertices))
    if rms > 3.0:
        notes.append(f"fitted surface departs from the model instance by {rms:.1f} mm RMS")
    session = _open_session(str(onnx_path), onnx_path.stat().st_mtime)
    load = np.array([case.body_weight_kg, case.hip_force_bw, case.abductor_force_bw])
    vm, u, energy = session.run(c, load)
    frame = femur_frame(surface.vertices)
    rp = p["regions"]
    return SimulationResult(
        mode="surrogate",
        load=case,
        surface=surface,
        von_mises=vm / scale**2,
        displacement=(u @ rot.T) / scale,
        strain_energy_j=energy / scale,
        region=regions(frame, surface.vertices, rp["proximal_fraction"], rp["distal_fraction"]),
        mesh={
            "n_vertices": int(model.n_vertices),
            "onnx": str(onnx_path),
            "providers": session.providers,
            "n_train": meta.get("n_train"),
            "n_basis": meta.get("n_basis"),
            "similarity_scale": scale,
            "instance_rms_mm": rms,
            "shape_coefficients": c.tolist(),
        },
        seconds=0.0,
        notes=notes,
    )


@lru_cache(maxsize=2)
def _open_session(path: str, mtime: float):  # noqa: ANN202
    """One ONNX Runtime session per surrogate file version (reused across calls)."""
    from models.simulation.surrogate import OnnxSurrogate

    return OnnxSurrogate.open(Path(path))


def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, float]:
    """Scale, rotation `(3, 3)` and RMS residual (mm) of the similarity src -> dst."""
    ms, md = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - ms, dst - md
    u, s, vt = np.linalg.svd(b.T @ a)
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ d @ vt
    scale = float(np.trace(np.diag(s) @ d) / (a**2).sum())
    rms = float(np.sqrt(np.mean(((scale * a @ rot.T) - b) ** 2) * 3))
    return scale, rot, rms


def _read_source(source):  # noqa: ANN001, ANN202
    """(surface, shape coefficients or None, name for messages)."""
    from models.meshio import read_mesh

    if isinstance(source, trimesh.Trimesh):
        return source, None, "surface"
    path = Path(source)
    if not path.exists():
        fail(
            str(path),
            "",
            "missing",
            "a dh fit output folder or a femur mesh file",
            "check the path; run dh fit first to create the folder",
        )
    if path.is_dir():
        vtp = path / FIT_SURFACE
        if not vtp.is_file():
            fail(
                str(vtp),
                "",
                "missing file",
                f"the fitted femur surface {FIT_SURFACE}",
                "pass the folder written by dh fit (it holds fit.json and femur_left.vtp)",
            )
        coeffs = None
        fj = path / FIT_JSON
        if fj.is_file():
            try:
                fit = json.loads(fj.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                fail(str(fj), "", str(exc), "valid JSON", "re-run dh fit")
            coeffs = _find_coefficients(fit)
            structure = fit.get("structure", "femur_left")
            if "structures" in fit and "femur_left" not in fit["structures"]:
                structure = ",".join(fit["structures"]) or "none"
            if structure != "femur_left":
                fail(
                    str(fj),
                    "structure",
                    structure,
                    "femur_left",
                    "fit the femur: dh fit ... --structure femur_left",
                )
        return read_mesh(vtp), coeffs, str(vtp)
    return read_mesh(path), None, str(path)


def _find_coefficients(fit: dict[str, Any]) -> list[float] | None:
    """The femur's shape coefficients: `structures.femur_left.coefficients` (dh fit), else a
    top-level `shape_coefficients`/`coefficients`."""
    femur = fit.get("structures", {}).get("femur_left")
    if isinstance(femur, dict) and femur.get("coefficients") is not None:
        return list(femur["coefficients"])
    for key in ("shape_coefficients", "coeffs", "coefficients"):
        if key in fit and fit[key] is not None:
            return list(fit[key])
    for value in fit.values():
        if isinstance(value, dict):
            found = _find_coefficients(value)
            if found is not None:
                return found
    return None


def _write_vtu(path: Path, points: np.ndarray, cells: np.ndarray, data: dict) -> Path:
    import pyvista as pv

    n = cells.shape[1]
    cell_type = pv.CellType.TRIANGLE if n == 3 else pv.CellType.TETRA
    arr = np.hstack([np.full((len(cells), 1), n), cells]).astype(np.int64).ravel()
    grid = pv.UnstructuredGrid(arr, np.full(len(cells), cell_type, np.uint8), points)
    for key, value in data.items():
        grid.point_data[key] = np.asarray(value)
    grid.save(str(path))
    return path


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)
