"""Prefect flow `retrain`: rebuild the models a new cohort batch affects; promote on improvement.

When a batch is versioned by the `ingest` flow (a new `versioned` line in the ingest log), the
models built from the cohort are rebuilt from `data/cohort/` as a *challenger* and compared
with the *champion* (the model version now served) on the SAME held-out subjects, which no
build ever trains on. The challenger is registered (with lineage, parent = champion) and so
promoted only when its held-out error is lower by more than `pipeline.retrain.min_improvement`.
Every decision, promoted or not, is appended with its figures to
`artifacts/lineage/promotions.jsonl` (never rewritten).

Retrained: the `population` model (held-out error: mean absolute error, mm, of the ANSUR II
body lengths predicted from sex, age, stature and weight) and the `shape` model's lung
structure (held-out error: mean vertex distance, mm, after rigid alignment and projection on
the model). The femur structure is carried over from the champion: new femur meshes need the
`build_shape_models` stage (its correspondence takes minutes), which this flow does not run
yet.

How it runs (embedded Prefect server; see :func:`serve_deployment`):
- `dh retrain` runs the flow once: it retrains when the ingest log holds a batch not yet
  considered, and is a no-op otherwise;
- `dh retrain --serve` serves the `retrain` deployment on an interval schedule
  (`pipeline.retrain.poll_interval_s`), which with the embedded server is what works: event
  triggers need a Prefect server whose event services run (`prefect server start`), where
  `--on-ingest` adds a trigger on `prefect.flow-run.Completed` of the `ingest` flow.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dh.config import ARTIFACTS, DATA_RAW, PROJECT_ROOT, apply_env_defaults, load_params

logger = logging.getLogger(__name__)

SHAPE_MODEL = "shape"
PROMOTIONS_ENV = "DH_PROMOTIONS_LOG"


def promotions_path() -> Path:
    """`$DH_PROMOTIONS_LOG`, else `artifacts/lineage/promotions.jsonl`."""
    env = os.environ.get(PROMOTIONS_ENV)
    return Path(env) if env else ARTIFACTS / "lineage" / "promotions.jsonl"


@dataclass
class Decision:
    """One challenger-vs-champion comparison.

    Attributes:
        model: model name in the store.
        structure: the retrained structure.
        decision: `promoted`, `rejected` or `unchanged` (no new batch).
        metric: what the errors measure.
        champion: champion `name:version` ("" when there was none).
        challenger: registered challenger `name:version` ("" when not promoted).
        champion_error: champion's held-out error (None without a champion).
        challenger_error: challenger's held-out error.
        held_out: the held-out subject ids both were evaluated on.
        n_train: subjects the challenger was built from.
        batches: ingest batch ids this decision considered.
        time: UTC ISO time.
    """

    model: str
    structure: str
    decision: str
    metric: str
    champion: str
    challenger: str
    champion_error: float | None
    challenger_error: float | None
    held_out: list[str]
    n_train: int
    batches: list[str]
    time: str


# ------------------------------------------------------------------------ registration


def ensure_registered(
    name: str,
    files: dict[str, str | Path],
    inputs: list[str | Path],
    params: dict[str, Any],
    metrics: dict[str, Any],
    parent: str | None = None,
    store_dir: Path | None = None,
    log_file: Path | None = None,
    validation: dict[str, Any] | None = None,
) -> str:
    """Register `files` as a new version of `name` unless the latest version stores them already.

    The parent is the latest version (or `parent`). The validation result recorded is
    `validation`, else the last ingest's (:func:`ingest_validation`). Returns the tag of the
    version holding these files.
    """
    from dh.errors import DHError
    from dh.lineage import hash_file, make_record
    from models.registry import load_model, register_model

    try:
        latest = load_model(name, store_dir)
    except DHError:
        latest = None
    if latest is not None:
        stored = {a.path: a.sha256 for a in latest.record.artefacts}
        now = {k: hash_file(Path(p), None).sha256 for k, p in files.items()}
        if all(stored.get(k) == v for k, v in now.items()):
            return latest.tag
    record = make_record(
        name,
        inputs,
        params=params,
        metrics=metrics,
        validation=validation if validation is not None else ingest_validation(),
        parent=parent if parent is not None else (latest.tag if latest else ""),
    )
    return register_model(name, files, record, store_dir=store_dir, log_file=log_file).tag


def ingest_validation(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """The validation result of the last versioned ingest (the ingest log's last such line)."""
    from flows.ingest import read_log

    entries = [e for e in read_log(root) if e.get("status") == "versioned"]
    if not entries:
        return {}
    last = entries[-1]
    keys = ("batch_id", "data_version", "problems", "notes", "time", "flow_run_id", "dvc_file")
    return {"passed": True, "source": "data/ingest_log.jsonl", **{k: last.get(k) for k in keys}}


# ------------------------------------------------------------------------ held-out split


def is_held_out(subject_id: str, fraction: float, seed: int = 0) -> bool:
    """Stable split: a subject is held out by a hash of its id, so it stays held out as
    the cohort grows (new batches never move a subject between the sides)."""
    h = hashlib.sha256(f"{seed}:{subject_id}".encode()).hexdigest()
    return int(h[:8], 16) / 2**32 < fraction


def lung_ids(cohort_dir: Path) -> list[str]:
    from models.shape.lungs import lung_files

    return [p.stem.replace("landmarksLLL-", "") for p in lung_files(cohort_dir)]


def held_out_error(model_file: Path, ids: list[str], cohort_dir: Path) -> float:
    """Mean vertex distance (mm) of held-out lungs to their projection on the model."""
    from models.shape.align import umeyama
    from models.shape.lungs import LUNG_DIR, read_lung_points
    from models.shape.metrics import mean_vertex_distance
    from models.shape.model import ShapeModel

    model = ShapeModel.load(model_file)
    errors = []
    for sid in ids:
        shape = read_lung_points(Path(cohort_dir) / LUNG_DIR / f"landmarksLLL-{sid}.csv")
        target = umeyama(shape, model.mean, with_scale=False).apply(shape)
        errors.append(mean_vertex_distance(model.instance(model.project(target)), target))
    return float(np.mean(errors))


# ------------------------------------------------------------------------ the flow


def _retrain_impl(
    cohort_dir: Path,
    batches: list[str],
    shape_params: dict[str, Any] | None = None,
    store_dir: Path | None = None,
    log_file: Path | None = None,
    promotions: Path | None = None,
) -> Decision:
    from dh.errors import DHError
    from models.registry import load_model
    from models.shape.model import ShapeModel

    rp = load_params("pipeline")["retrain"]
    shape_params = shape_params or load_params("shape")
    ids = lung_ids(cohort_dir)

    # 1. champion: the version served now, and the subjects it was built from
    try:
        champion = load_model(SHAPE_MODEL, store_dir)
    except DHError:
        champion = None
    champion_lungs = champion.path / "lungs.npz" if champion is not None else None
    seen: set[str] = set()
    if champion_lungs is not None and champion_lungs.is_file():
        seen = set(ShapeModel.load(champion_lungs).subject_ids)
    else:
        champion_lungs = None

    # held out: by a stable hash of the id, and never seen by the champion either (a champion
    # built on the whole cohort, as the pipeline's is, is compared on new subjects only)
    hashed = [s for s in ids if is_held_out(s, float(rp["held_out_fraction"]), int(rp["seed"]))]
    held = [s for s in hashed if s not in seen]
    train = [s for s in ids if s not in hashed]
    with tempfile.TemporaryDirectory(prefix="retrain-") as tmp:
        out = Path(tmp)
        # 2. challenger, built by the owner's builder on the training side only
        lungs_file = _build_lungs(train, cohort_dir, shape_params, out / "lungs.npz")
        challenger_err = held_out_error(lungs_file, held, cohort_dir) if held else None
        champion_err = None
        if champion_lungs is not None and held:
            champion_err = held_out_error(champion_lungs, held, cohort_dir)

        # 3. decision on the same held-out subjects (none left: no evidence, no promotion)
        margin = float(rp["min_improvement"])
        if not held:
            better = champion_lungs is None
        else:
            better = champion_err is None or challenger_err < champion_err - margin
        tag = ""
        if better:
            files = {"lungs.npz": lungs_file}
            femur = _femur_file(champion)
            if femur is not None:
                files["femur_left.npz"] = femur
            metrics = {
                "held_out_lung_error_mm": challenger_err,
                "held_out": held,
                "champion_error_mm": champion_err,
                "n_train": len(train),
            }
            inputs = [cohort_dir / "lungs" / "lll" / f"landmarksLLL-{s}.csv" for s in ids]
            tag = ensure_registered(
                SHAPE_MODEL,
                files,
                inputs,
                shape_params,
                metrics,
                parent=champion.tag if champion else "",
                store_dir=store_dir,
                log_file=log_file,
            )
    decision = Decision(
        model=SHAPE_MODEL,
        structure="lungs",
        decision="promoted" if better else "rejected",
        metric="held-out lung mean vertex distance after projection (mm)"
        + ("" if held else "; no held-out subject unseen by the champion"),
        champion=champion.tag if champion else "",
        challenger=tag,
        champion_error=champion_err,
        challenger_error=challenger_err,
        held_out=held,
        n_train=len(train),
        batches=batches,
        time=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    log_decision(decision, promotions)
    return decision


POPULATION_MODEL = "population"
GIVEN = ("age_years", "stature_mm", "weight_kg")  # what a user gives /generate, plus sex


def cohort_subjects(cohort_dir: Path) -> Any:
    """The harmonised subjects table: `subjects.parquet` of the cohort, else from data/raw."""
    import pandas as pd

    table = Path(cohort_dir) / "subjects.parquet"
    if table.is_file():
        return pd.read_parquet(table)
    from dh.cohort import load_subjects

    return load_subjects(DATA_RAW)


def population_error(model_file: Path, held: Any) -> float:
    """Held-out mean absolute error (mm) of the body lengths predicted given sex, age,
    stature and weight (conditional mean of the population model), over observed values."""
    from models.population.model import PopulationModel

    model = PopulationModel.load(model_file)
    given_names = [g for g in GIVEN if g in model.feature_names]
    targets = [f for f in model.feature_names if f.endswith("_mm") and f not in GIVEN]
    errors = []
    for _, row in held.iterrows():
        given = {g: float(row[g]) for g in given_names if np.isfinite(row[g])}
        conds, _ = model.conditionals(given, row["sex"])
        c = conds[row["sex"]]
        pred = dict(zip([model.names[i] for i in c.index], c.mean, strict=True))
        errors += [abs(pred[f] - row[f]) for f in targets if f in pred and np.isfinite(row[f])]
    return float(np.mean(errors))


def _retrain_population(
    cohort_dir: Path,
    batches: list[str],
    params: dict[str, Any] | None,
    store_dir: Path | None,
    log_file: Path | None,
    promotions: Path | None,
) -> Decision:
    """Rebuild the population model without the held-out ANSUR II subjects; compare; promote.

    The atlases and ONNX export of a promoted challenger: the ONNX conditional mean is
    re-exported from it (owner's exporter); the organ atlases are carried over from the
    champion or the built artefacts (they are rebuilt by the `build_population` stage).
    Caveat: a champion built by that stage has seen every subject, held-out ones included, so
    the comparison favours it; champions made here never see them.
    """
    from dh.errors import DHError
    from models.population.build import build_population
    from models.population.export import export_onnx
    from models.registry import load_model

    rp = load_params("pipeline")["retrain"]
    params = params or load_params("population")
    subjects = cohort_subjects(cohort_dir)
    frac, seed = float(rp["held_out_fraction"]), int(rp["seed"])
    ansur = subjects[subjects["dataset"] == "ansur2"]
    held = ansur[[is_held_out(s, frac, seed) for s in ansur["subject_id"]]]
    held = held[held["sex"].isin(("F", "M"))]
    try:
        champion = load_model(POPULATION_MODEL, store_dir)
    except DHError:
        champion = None
    champion_file = champion.path / "population.npz" if champion is not None else None
    if champion_file is not None and not champion_file.is_file():
        champion_file = None

    with tempfile.TemporaryDirectory(prefix="retrain-pop-") as tmp:
        out = Path(tmp)
        result = build_population(subjects, params, exclude_ids=set(held["subject_id"]))
        challenger_file = result.model.save(out / "population.npz")
        challenger_err = population_error(challenger_file, held)
        champion_err = population_error(champion_file, held) if champion_file else None
        margin = float(rp["min_improvement"])
        better = champion_err is None or challenger_err < champion_err - margin
        tag = ""
        if better:
            files = {"population.npz": challenger_file}
            onnx = export_onnx(result.model, out / "conditional_mean.onnx")
            files[onnx.name] = onnx
            if onnx.with_suffix(".json").is_file():
                files[onnx.with_suffix(".json").name] = onnx.with_suffix(".json")
            for name in ("organs_F.npz", "organs_M.npz"):
                src = champion.path / name if champion is not None else None
                src = src if src is not None and src.is_file() else ARTIFACTS / "population" / name
                if src.is_file():
                    files[name] = src
            table = Path(cohort_dir) / "subjects.parquet"
            inputs = (
                [table] if table.is_file() else sorted((DATA_RAW / "anthropometry").rglob("*.csv"))
            )
            metrics = {
                "held_out_mae_mm": challenger_err,
                "champion_mae_mm": champion_err,
                "n_held_out": len(held),
                "fit_mae": result.fit.mae(),
            }
            tag = ensure_registered(
                POPULATION_MODEL,
                files,
                inputs,
                params,
                metrics,
                parent=champion.tag if champion else "",
                store_dir=store_dir,
                log_file=log_file,
            )
    decision = Decision(
        model=POPULATION_MODEL,
        structure="body",
        decision="promoted" if better else "rejected",
        metric="held-out ANSUR II body lengths: mean absolute error (mm) given sex, age, "
        "stature, weight",
        champion=champion.tag if champion else "",
        challenger=tag,
        champion_error=champion_err,
        challenger_error=challenger_err,
        held_out=sorted(held["subject_id"])[:20]
        + ([f"... {len(held)} in all"] if len(held) > 20 else []),
        n_train=int(len(subjects) - len(held)),
        batches=batches,
        time=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    log_decision(decision, promotions)
    return decision


def _build_lungs(ids: list[str], cohort_dir: Path, params: dict[str, Any], out: Path) -> Path:
    from flows.pipeline import raw_subset
    from models.shape.lungs import LUNG_DIR, build_lung_model

    rels = [f"{LUNG_DIR}/landmarksLLL-{s}.csv" for s in ids]
    with tempfile.TemporaryDirectory(prefix="lungs-") as tmp:
        model, _ = build_lung_model(raw_subset(cohort_dir, rels, Path(tmp)), params["lungs"])
    return model.save(out)


def _femur_file(champion: Any) -> Path | None:
    """The femur model carried over: the champion's, else the built artefact, else None."""
    if champion is not None and (champion.path / "femur_left.npz").is_file():
        return champion.path / "femur_left.npz"
    built = ARTIFACTS / "shape" / "femur_left.npz"
    return built if built.is_file() else None


def log_decision(decision: Decision, path: Path | None = None) -> Path:
    """Append one decision as a JSON line (exclusive lock, append mode, never rewritten)."""
    path = Path(path or promotions_path())
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.write(json.dumps(asdict(decision), sort_keys=True) + "\n")
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
    logger.info(
        "retrain %s: %s (champion %s, challenger %s)",
        decision.model,
        decision.decision,
        decision.champion_error,
        decision.challenger_error,
    )
    return path


def read_decisions(path: Path | None = None) -> list[dict[str, Any]]:
    path = Path(path or promotions_path())
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def pending_batches(root: Path = PROJECT_ROOT, promotions: Path | None = None) -> list[str]:
    """Ingested (versioned) batch ids that no retrain decision has considered yet."""
    from flows.ingest import read_log

    seen = {b for d in read_decisions(promotions) for b in d.get("batches", [])}
    return [
        e["batch_id"]
        for e in read_log(root)
        if e.get("status") == "versioned" and e["batch_id"] not in seen
    ]


def run_retrain(
    cohort_dir: Path | None = None,
    batches: list[str] | None = None,
    force: bool = False,
    shape_params: dict[str, Any] | None = None,
    store_dir: Path | None = None,
    log_file: Path | None = None,
    promotions: Path | None = None,
    models: list[str] | None = None,
    population_params: dict[str, Any] | None = None,
) -> list[Decision]:
    """Run the `retrain` flow (embedded Prefect server).

    Args:
        cohort_dir: the versioned cohort (default `data/cohort`, else `data/raw`).
        batches: the new batch ids (default: the pending ones in the ingest log).
        force: retrain even without a pending batch.
        shape_params: `shape` params override (tests use it to make a worse challenger).
        store_dir, log_file, promotions: model store, lineage log and decision log overrides.
        models: which models to retrain (default params.yaml `pipeline.retrain.models`).
        population_params: `population` params override (tests use small settings).

    Returns:
        One decision per model; [] when there was no new batch (and `force` is False).
    """
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    apply_env_defaults()
    if cohort_dir is None:
        cohort = PROJECT_ROOT / load_params("data")["cohort_dir"]
        cohort_dir = cohort if (cohort / "lungs").is_dir() else DATA_RAW
    if batches is None:
        batches = pending_batches(promotions=promotions)
    if not batches and not force:
        logger.info("no new batch in the ingest log: nothing to retrain")
        return []
    models = models or list(load_params("pipeline")["retrain"]["models"])
    shape_task = task(_retrain_impl, name="retrain_shape", cache_policy=NO_CACHE)
    pop_task = task(_retrain_population, name="retrain_population", cache_policy=NO_CACHE)

    @flow(name="retrain", validate_parameters=False)
    def retrain(batches: list[str]) -> list[Decision]:
        out = []
        if SHAPE_MODEL in models:
            out.append(
                shape_task(Path(cohort_dir), batches, shape_params, store_dir, log_file, promotions)
            )
        if POPULATION_MODEL in models:
            out.append(
                pop_task(
                    Path(cohort_dir), batches, population_params, store_dir, log_file, promotions
                )
            )
        return out

    return retrain(batches)


def retrain_entry(force: bool = False) -> None:
    """Deployment entry point (module-level, importable by a Prefect runner)."""
    run_retrain(force=force)


def serve_deployment(on_ingest: bool = False) -> None:
    """Serve the `retrain` deployment until interrupted.

    With `on_ingest`, a trigger on the `ingest` flow's completion event runs it (needs a
    Prefect server with event services); otherwise an interval schedule does.
    """
    from prefect import flow

    apply_env_defaults()
    deployed = flow(retrain_entry, name="retrain")
    if on_ingest:
        from prefect.events import DeploymentEventTrigger

        trigger = DeploymentEventTrigger(
            expect={"prefect.flow-run.Completed"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": "ingest"},
        )
        deployed.serve(name="on-ingest", triggers=[trigger])
    else:
        interval = int(load_params("pipeline")["retrain"]["poll_interval_s"])
        deployed.serve(name="poll-ingest-log", interval=interval)
