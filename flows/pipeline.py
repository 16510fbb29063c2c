"""Prefect flow `pipeline`: the whole job on the demo cohort, from raw files to a report.

Steps, in order (each a Prefect task or subflow; its outcome goes into the report):

1. `pull`: fetch the demo cohort into `data/raw/` (hash-checked registry);
2. `ingest`: validate the cohort and version it (flow `ingest`; quarantine on failure);
3. `train_segmentation`, `build_shape_models`, `build_population`, `train_surrogate`: the
   owners' flows; each is skipped when DVC says its stage is up to date, and recorded in
   `dvc.lock` (`dvc commit`) after it ran, so `dvc repro` has nothing left to do;
4. `fit_demo`: segment the demo CT, fit the left femur and a held-out lung (per-subject fits
   mapped by :mod:`flows.runners`); `simulate_demo`: FE and surrogate stance on the femur fit;
5. `register`: every exported model not yet in the store is registered with its lineage;
6. `serve`: `bentoml serve` on a free 127.0.0.1 port, one real HTTP call (GET /models), then
   stopped; every served model version is re-verified (`dh verify`);
7. `report`: `reports/report.md` and `.html` (:mod:`flows.report`).

A part that does not exist yet (its module is missing) is skipped with a warning that the
report shows; a step that fails is reported with its error and the run goes on.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dh.config import ARTIFACTS, DATA_RAW, PROJECT_ROOT, REPORTS, apply_env_defaults, load_params

logger = logging.getLogger(__name__)

PIPELINE_DIR = ARTIFACTS / "pipeline"
# Set by the CLI for the length of one run: called with (step name, status) as steps finish.
progress_hook: Callable[[str, str], None] | None = None


class MissingPart(Exception):
    """A part of the platform the step needs is not built yet (module or artefact absent)."""


@dataclass
class StepOutcome:
    """What one pipeline step did.

    Attributes:
        name: step name (the DVC stage name where there is one).
        status: `done`, `up to date` (DVC stage unchanged), `skipped` (part missing) or `failed`.
        seconds: wall time.
        detail: one line for the report (the warning or error when not done).
        metrics: figures the step measured.
    """

    name: str
    status: str
    seconds: float = 0.0
    detail: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------ per-subject work


@dataclass
class LungFit:
    """A lung shape model fitted to one held-out subject's points.

    Attributes:
        subject_id: pyssam case id.
        residual_mean_mm: mean inlier point -> fitted surface distance, mm.
        residual_p95_mm: its 95th percentile, mm.
        vertex_error_mm: mean distance between fitted vertices and the subject's own
            corresponding points (ground truth, the CSV's frame), mm.
        seconds: fit wall time.
        coeffs: `(n_components,)` standardised shape coefficients.
    """

    subject_id: str
    residual_mean_mm: float
    residual_p95_mm: float
    vertex_error_mm: float
    seconds: float
    coeffs: list[float]


def fit_lung_subject(
    subject_id: str, model_file: str, raw_dir: str, options: dict[str, Any] | None = None
) -> LungFit:
    """Fit the lung shape model in `model_file` to subject `subject_id`'s points (mm).

    A module-level function so that Dask and process pools can ship it to workers.
    """
    from models.fitting.api import fit_points
    from models.fitting.core import FitOptions
    from models.shape.lungs import LUNG_DIR, read_lung_points
    from models.shape.model import ShapeModel

    model = ShapeModel.load(model_file)
    truth = read_lung_points(Path(raw_dir) / LUNG_DIR / f"landmarksLLL-{subject_id}.csv")
    opts = FitOptions.from_params(options or {})
    fit = fit_points(truth, "lungs", "LPS", options=opts, model=model, source=subject_id)
    return LungFit(
        subject_id=subject_id,
        residual_mean_mm=float(fit.residual.mean_mm),
        residual_p95_mm=float(fit.residual.p95_mm),
        vertex_error_mm=float(np.linalg.norm(fit.vertices - truth, axis=1).mean()),
        seconds=float(fit.seconds),
        coeffs=[float(c) for c in fit.coeffs],
    )


def raw_subset(raw_dir: Path, rel_files: list[str], target: Path) -> Path:
    """A raw-data folder holding only `rel_files` (symlinks), for building on a subset."""
    for rel in rel_files:
        dst = target / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            dst.symlink_to((Path(raw_dir) / rel).resolve())
    return target


def lung_split(raw_dir: Path, n_held_out: int) -> tuple[list[str], list[str]]:
    """(training, held-out) lung subject ids: the last `n_held_out` in sorted order."""
    from models.shape.lungs import lung_files

    ids = [p.stem.replace("landmarksLLL-", "") for p in lung_files(raw_dir)]
    return ids[:-n_held_out], ids[-n_held_out:]


def build_lung_model_on(ids: list[str], raw_dir: Path, out_file: Path) -> Path:
    """Build the lung shape model (owner's builder) from subjects `ids` only; save it."""
    from models.shape.lungs import LUNG_DIR, build_lung_model

    rels = [f"{LUNG_DIR}/landmarksLLL-{sid}.csv" for sid in ids]
    with tempfile.TemporaryDirectory(prefix="lungs-") as tmp:
        model, _ = build_lung_model(
            raw_subset(raw_dir, rels, Path(tmp)), load_params("shape")["lungs"]
        )
    out_file.parent.mkdir(parents=True, exist_ok=True)
    return model.save(out_file)


# ------------------------------------------------------------------------ steps


def step_pull() -> dict[str, Any]:
    from dh.registry import load_registry, pull

    pull()
    return {"files": len(load_registry())}


def step_ingest() -> dict[str, Any]:
    try:
        from flows.ingest import run_ingest
    except ImportError as exc:
        raise MissingPart(f"flows.ingest ({exc})") from exc
    result = run_ingest(DATA_RAW)
    metrics = {
        "status": result.status,
        "batch_id": result.batch_id,
        "data_version": result.data_version,
        "problems": len(result.report.problems),
        "notes": len(result.report.notes),
        "subjects_added": result.subjects_added,
        "files_added": result.files_added,
    }
    _write_json(PIPELINE_DIR / "ingest.json", metrics)
    if result.status == "quarantined":
        raise RuntimeError(f"demo cohort quarantined in {result.quarantine}")
    return metrics


def _owner_flow(module: str, call: Callable[[Any], Any]) -> Callable[[], dict[str, Any]]:
    """A step that imports an owner's flow module and runs it (MissingPart when absent)."""

    def run() -> dict[str, Any]:
        import importlib

        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            raise MissingPart(f"{module} is not built yet ({exc})") from exc
        out = call(mod)
        return out if isinstance(out, dict) else {}

    return run


def step_fit_demo() -> dict[str, Any]:
    """Segment the demo CT, fit the left femur, fit held-out lungs; write the demo outputs."""
    from flows.runners import map_subjects, runner_config

    params = load_params("pipeline")["demo"]
    out = PIPELINE_DIR / "demo"
    out.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, Any] = {"warnings": []}

    # 1. segmentation of the demo CT by the trained model
    metrics["segmentation"] = _segment_demo(params, out, metrics["warnings"])

    # 2. left femur: the fitting API on the femur surface, written as a `dh fit` folder
    metrics["femur"] = _fit_femur(params, out)

    # 3. held-out lungs: model rebuilt without them, fits mapped over subjects
    train_ids, held_out = lung_split(DATA_RAW, int(params["lung_held_out"]))
    model_file = build_lung_model_on(train_ids, DATA_RAW, out / "lungs_train.npz")
    config = runner_config()
    fits = map_subjects(
        fit_lung_subject,
        held_out,
        config=config,
        model_file=str(model_file),
        raw_dir=str(DATA_RAW),
        options=load_params("fitting"),
    )
    metrics["lungs"] = {
        "n_training_subjects": len(train_ids),
        "held_out": [asdict(f) | {"coeffs": f.coeffs[:5]} for f in fits],
        "vertex_error_mm": float(np.mean([f.vertex_error_mm for f in fits])),
        "residual_mean_mm": float(np.mean([f.residual_mean_mm for f in fits])),
        "runner": config.describe(),
    }
    _write_json(PIPELINE_DIR / "fit_demo.json", metrics)
    return metrics


def _segment_demo(params: dict[str, Any], out: Path, warnings: list[str]) -> dict[str, Any]:
    """The trained segmentation model on the demo CT (outputs under `out/segmentation`)."""
    from dh.errors import DHError

    try:
        from models.segmentation.infer import segment

        seg = segment(DATA_RAW / params["ct"], out / "segmentation")
    except (ImportError, FileNotFoundError, DHError) as exc:
        warnings.append(f"segmentation of the demo CT skipped: {exc}")
        return {}
    if "femur_left" not in seg.volumes_ml:
        warnings.append(
            f"the segmentation has no femur_left ({params['ct']} is an abdominal CT whose field "
            "of view ends above the hip, and no demo CT shows a femur); femur_left is fitted to "
            f"the surface of femur subject {params['femur_subject']} instead"
        )
    return {
        "model_version": seg.model_version,
        "volumes_ml": seg.volumes_ml,
        "seconds": round(seg.seconds, 2),
        "providers": seg.providers,
    }


def _fit_femur(params: dict[str, Any], out: Path) -> dict[str, Any]:
    """femur_left fitted to a femur surface (mm) through the fitting API; `dh fit` outputs."""
    from models.fitting.api import fit_subject, write_fit_outputs
    from models.fitting.inputs import read_inputs
    from models.meshio import read_mesh
    from models.shape.femur import FEMUR_DIR

    # the fitting inputs take meshes as STL/PLY/VTP..., the femur data are VRML
    (out / "fit").mkdir(parents=True, exist_ok=True)
    surface = out / "fit" / f"observed_{params['femur_subject']}.stl"
    read_mesh(DATA_RAW / FEMUR_DIR / f"{params['femur_subject']}.wrl").export(surface)
    inputs = read_inputs([surface], structure="femur_left", axes="LPS")
    result = fit_subject(inputs)
    write_fit_outputs(result, inputs, out / "fit")
    fit = result.fits["femur_left"]
    return {
        "subject": params["femur_subject"],
        "residual_mean_mm": float(fit.residual.mean_mm),
        "residual_p95_mm": float(fit.residual.p95_mm),
        "hausdorff_mm": float(fit.residual.hausdorff_mm),
        "seconds": round(float(fit.seconds), 2),
        "n_components": int(len(fit.coeffs)),
        "features": {f.name: round(f.value, 2) for f in result.features},
    }


def demo_features(stats_file: Path) -> dict[str, Any]:
    """Catalogue features of the demo subject from the body statistics shipped with its CT.

    `body_stats_prediction.json` (TotalSegmentator) holds sex, age (years), size (cm) and
    weight (kg) estimated from the demo CT itself; they become `sex`, `age_years`,
    `stature_mm` and `weight_kg`.
    """
    doc = json.loads(stats_file.read_text(encoding="utf-8"))
    return {
        "sex": str(doc["sex"]["value"]).upper()[:1],
        "age_years": round(float(doc["age"]["value"]), 1),
        "stature_mm": round(float(doc["size"]["value"]) * 10.0, 1),
        "weight_kg": round(float(doc["weight"]["value"]), 1),
    }


def step_generate_demo() -> dict[str, Any]:
    """The demo subject's digital human: skin, structures and organs from its CT's body stats."""
    from dh.commands.generate import write_outputs
    from models.population.generate import Generator

    params = load_params("pipeline")["demo"]
    features = demo_features(DATA_RAW / params["body_stats"])
    human = Generator().generate(features, with_organs=True)
    out = PIPELINE_DIR / "demo" / "generate"
    write_outputs(human, out)
    doc = {
        "features": features,
        "seconds": human.seconds,
        "n_skin_vertices": len(human.skin.vertices),
        "organs": sorted(human.organs),
        "structures": sorted(human.structures),
        "vertex_std_mm_median": float(np.median(human.vertex_std_mm)),
        "stature_on_mesh_mm": human.body_measurements.get("stature_mm"),
        "weight_on_mesh_kg": human.body_measurements.get("weight_kg"),
    }
    _write_json(PIPELINE_DIR / "generate_demo.json", doc)
    return doc


def step_simulate_demo() -> dict[str, Any]:
    """Stance load case on the demo femur fit: FE, and the surrogate at the fit's coefficients."""
    from dh.errors import DHError

    try:
        from models.simulation.api import simulate
    except ImportError as exc:
        raise MissingPart(f"models.simulation.api ({exc})") from exc
    fit_dir = PIPELINE_DIR / "demo" / "fit"
    if not (fit_dir / "fit.json").is_file():
        raise MissingPart(f"{fit_dir / 'fit.json'} (fit_demo has not run)")
    bw = float(load_params("pipeline")["demo"]["body_weight_kg"])
    fe = simulate(fit_dir, "stance", bw, mode="fe")
    fe.write(PIPELINE_DIR / "demo" / "simulate_fe")
    metrics: dict[str, Any] = {"fe": _sim_summary(fe)}
    try:
        sur = simulate(fit_dir, "stance", bw, mode="surrogate")
        sur.write(PIPELINE_DIR / "demo" / "simulate_surrogate")
        metrics["surrogate"] = _sim_summary(sur)
        if len(sur.von_mises) == len(fe.von_mises):
            err = np.linalg.norm(sur.von_mises - fe.von_mises) / np.linalg.norm(fe.von_mises)
            metrics["surrogate_rel_l2_vs_fe"] = float(err)
            metrics["speedup"] = float(fe.seconds / max(sur.seconds, 1e-9))
    except DHError as exc:
        metrics["warnings"] = [f"surrogate skipped: {exc}"]
    _write_json(PIPELINE_DIR / "simulate_demo.json", metrics)
    return metrics


def _sim_summary(result: Any) -> dict[str, Any]:
    s = result.summary()
    keep = (
        "mode",
        "von_mises_peak_mpa",
        "von_mises_p99_mpa",
        "displacement_peak_mm",
        "strain_energy_j",
        "region_peaks_von_mises_mpa",
        "time_s",
    )
    return {k: s[k] for k in keep if k in s}


def step_serve() -> dict[str, Any]:
    """Start `bentoml serve` on a free loopback port, GET /models once, stop it."""
    import httpx

    try:
        import serving.service  # noqa: F401  (the service definition must import)
    except ImportError as exc:
        raise MissingPart(f"serving.service ({exc})") from exc
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = PIPELINE_DIR / "serve.log"
    cmd = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "serving.service:DigitalHuman",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    key = os.environ.get(load_params("serving")["api_key_env"], "")
    headers = {"X-API-Key": key} if key else {}
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + float(load_params("pipeline")["serve_timeout_s"])
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"bentoml serve exited with {proc.returncode}; see {log}")
            try:
                # /readyz answers 200 once every concern is loaded or known to be unavailable
                if httpx.get(f"{url}/readyz", headers=headers, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError(f"bentoml serve not ready within the timeout; see {log}")
        started = time.perf_counter() - t0
        t1 = time.perf_counter()
        resp = httpx.get(f"{url}/models", headers=headers, timeout=30)
        answer = {"status_code": resp.status_code, "latency_s": round(time.perf_counter() - t1, 3)}
        try:
            body = resp.json()
            answer["served"] = {m["concern"]: m["tag"] for m in body.get("models", [])}
            answer["unavailable"] = body.get("unavailable", {})
        except (ValueError, AttributeError, KeyError, TypeError):
            answer["body"] = resp.text[:200]
        metrics = {"port": port, "startup_s": round(started, 2), "call": "GET /models", **answer}
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
    metrics["verify"] = _verify_served(metrics.get("served", {}))
    _write_json(PIPELINE_DIR / "serve.json", metrics)
    if resp.status_code >= 400:
        raise RuntimeError(f"GET /models answered {resp.status_code}")
    return metrics


def _verify_served(served: dict[str, str]) -> dict[str, str]:
    """`dh verify` of every served model version: tag -> OK or the mismatch count."""
    from models.registry import verify_model

    out = {}
    for tag in served.values():
        rep = verify_model(tag)
        out[tag] = "OK" if rep.ok else f"FAILED ({len(rep.mismatches)} mismatches)"
    return out


def step_register() -> dict[str, Any]:
    """Register the exported models their own flows do not register, with lineage.

    Names and files are what the services load (params.yaml `serving.models`): `shape`
    (`<structure>.npz`), `population` (the `artifacts/population` files) and `simulation`
    (`surrogate.onnx` + `surrogate.json`, parent: the `shape` version whose femur model it
    was trained on). A version is added only when its files changed (no duplicates on rerun).
    `segmentation` is registered by its own flow.
    """
    from flows.retrain import ensure_registered

    served = load_params("serving")["models"]
    tags: dict[str, str] = {}
    missing: list[str] = []
    shape_dir, pop_dir, sim_dir = (
        ARTIFACTS / "shape",
        ARTIFACTS / "population",
        ARTIFACTS / "simulation",
    )

    shape_files = {n: shape_dir / n for n in ("lungs.npz", "femur_left.npz")}
    if all(p.is_file() for p in shape_files.values()):
        inputs = sorted((DATA_RAW / "lungs" / "lll").glob("*.csv"))
        inputs += sorted((DATA_RAW / "bones" / "femur").glob("*.wrl"))
        tags["shape"] = ensure_registered(
            served["fit"],
            shape_files,
            inputs,
            load_params("shape"),
            _read_json(shape_dir / "metrics.json"),
        )
    else:
        missing.append("shape")

    pop_names = (
        "population.npz",
        "organs_F.npz",
        "organs_M.npz",
        "conditional_mean.onnx",
        "conditional_mean.json",
    )
    pop_files = {n: pop_dir / n for n in pop_names if (pop_dir / n).is_file()}
    if "population.npz" in pop_files:
        inputs = sorted((DATA_RAW / "anthropometry").rglob("*.csv"))
        inputs += sorted((DATA_RAW / "meshes" / "hra").rglob("*.glb"))
        tags["population"] = ensure_registered(
            served["generate"],
            pop_files,
            inputs,
            load_params("population"),
            _read_json(pop_dir / "metrics.json"),
        )
    else:
        missing.append("population")

    sim_files = {n: sim_dir / n for n in ("surrogate.onnx", "surrogate.json")}
    if all(p.is_file() for p in sim_files.values()):
        sp = load_params("simulation")
        tags["simulation"] = ensure_registered(
            served["simulate"],
            sim_files,
            [shape_dir / "femur_left.npz"],
            {k: sp[k] for k in ("material", "mesh", "stance", "surrogate") if k in sp},
            _read_json(sim_dir / "metrics.json"),
            parent=tags.get("shape", ""),
        )
    else:
        missing.append("simulation")
    warnings = [f"{name}: exported files absent, not registered" for name in missing]
    return {"registered": tags, "warnings": warnings}


# ------------------------------------------------------------------------ orchestration


def steps() -> list[tuple[str, Callable[[], dict[str, Any]], bool]]:
    """(name, function, has a DVC stage) for every step, in run order."""
    return [
        ("pull", step_pull, False),
        ("ingest", step_ingest, False),
        ("train_segmentation", _owner_flow("flows.segmentation", lambda m: m.run()), True),
        ("build_shape_models", _owner_flow("flows.shape", lambda m: m.run()), True),
        ("build_population", _owner_flow("flows.population", lambda m: m.run()), True),
        ("train_surrogate", _owner_flow("flows.simulation", lambda m: m.run()), True),
        ("generate_demo", step_generate_demo, True),
        ("fit_demo", step_fit_demo, True),
        ("simulate_demo", step_simulate_demo, True),
        ("register", step_register, False),
        ("serve", step_serve, False),
    ]


def run_step(
    name: str, fn: Callable[[], dict[str, Any]], dvc_stage: bool, force: bool
) -> StepOutcome:
    """Run one step; DVC-tracked steps are skipped when up to date and committed after."""
    t0 = time.perf_counter()
    try:
        if dvc_stage and not force and _dvc_up_to_date(name):
            return StepOutcome(name, "up to date", time.perf_counter() - t0, "DVC stage unchanged")
        metrics = fn()
        note = _dvc_commit(name) if dvc_stage else ""
        return StepOutcome(name, "done", time.perf_counter() - t0, note, _jsonable(metrics))
    except MissingPart as exc:
        logger.warning("step %s skipped: %s", name, exc)
        return StepOutcome(
            name, "skipped", time.perf_counter() - t0, f"WARNING: part missing: {exc}"
        )
    except Exception as exc:  # noqa: BLE001 - every failure is reported, the run goes on
        logger.error("step %s failed: %s", name, traceback.format_exc())
        return StepOutcome(name, "failed", time.perf_counter() - t0, f"{type(exc).__name__}: {exc}")


def _dvc_stages() -> set[str]:
    import yaml

    path = PROJECT_ROOT / "dvc.yaml"
    if not path.is_file():
        return set()
    return set((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("stages", {}))


def _dvc_up_to_date(stage: str) -> bool:
    """True when `stage` is in dvc.yaml, recorded in dvc.lock, and `dvc status` is clean."""
    from dvc.repo import Repo

    if stage not in _dvc_stages():
        return False
    with Repo(str(PROJECT_ROOT)) as repo:
        return not repo.status(targets=[stage])


def _dvc_commit(stage: str) -> str:
    """Record the stage's current deps and outs in dvc.lock; returns a warning or ""."""
    from dvc.repo import Repo

    if stage not in _dvc_stages():
        note = f"WARNING: no DVC stage {stage} in dvc.yaml; not recorded in dvc.lock"
    else:
        try:
            with Repo(str(PROJECT_ROOT)) as repo:
                repo.commit(stage, force=True)
            return ""
        except Exception as exc:  # noqa: BLE001 - the step's work stands; the report says why
            note = f"WARNING: not recorded in dvc.lock ({type(exc).__name__}: {exc})"
    logger.warning("%s: %s", stage, note)
    return note


def pipeline_impl(force: bool = False, only: list[str] | None = None) -> list[StepOutcome]:
    """Run the `pipeline` flow: every step, then the report; returns the step outcomes."""
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    apply_env_defaults()

    @flow(name="pipeline", validate_parameters=False)
    def pipeline() -> list[StepOutcome]:
        from flows.report import write_report

        outcomes = []
        for name, fn, dvc_stage in steps():
            if only and name not in only:
                continue
            t = task(run_step, name=name, cache_policy=NO_CACHE)
            outcome = t(name, fn, dvc_stage, force)
            outcomes.append(outcome)
            if progress_hook:
                progress_hook(name, outcome.status)
        _write_json(PIPELINE_DIR / "steps.json", [asdict(o) for o in outcomes])
        t0 = time.perf_counter()
        write_report(outcomes, REPORTS)
        note = _dvc_commit("report")
        outcomes.append(StepOutcome("report", "done", time.perf_counter() - t0, note))
        if progress_hook:
            progress_hook("report", "done")
        return outcomes

    return pipeline()


# ------------------------------------------------------------------------ helpers


def _write_json(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(doc), indent=2, sort_keys=True), encoding="utf-8")
    return path


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _jsonable(doc: Any) -> Any:
    return json.loads(
        json.dumps(doc, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    )


def main(argv: list[str]) -> int:
    """`python -m flows.pipeline [STEP ...]`: run steps (DVC stage commands use this)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for chatty in ("httpx", "distributed", "dvc"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    known = {name: fn for name, fn, _ in steps()}
    if argv and argv[0] == "report":
        from flows.report import write_report

        write_report(None, REPORTS)
        return 0
    for name in argv:
        if name not in known:
            logger.error("unknown step %s; steps are %s", name, sorted(known))
            return 2
        known[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
