"""The `ingest` flow: validate a cohort batch, then version it with DVC or quarantine it.

A batch is a folder of tables, images, label maps, meshes and point sets (`data/raw` itself is
one). Its id is the sha256 of its contents (relative paths and file hashes), so ingesting the
same batch twice does nothing the second time.

- failing batch: copied to `data/quarantine/<batch-id>/files/` with `report.json` and
  `report.txt`; `data/cohort` and its `.dvc` file are not touched.
- passing batch: merged into `data/cohort/` (`subjects.parquet`: the harmonised subjects
  table; images with DICOM patient tags blanked; meshes and point sets in mm), then
  `dvc add data/cohort` and `dvc push` to the default remote. The data version id is the md5
  in `data/cohort.dvc`.

Every versioning or quarantine appends one JSON line to `data/ingest_log.jsonl` (never
rewritten); a batch already versioned is a no-op. All paths
are relative to a repository `root` (a git + DVC repository), so tests run on a temporary one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dh.config import PROJECT_ROOT, apply_env_defaults, load_params
from dh.errors import DHError, Problem
from validation.batch import BatchItem, BatchValidation, validate_batch
from validation.report import CheckReport

logger = logging.getLogger(__name__)

COHORT_TABLE = "subjects.parquet"
# Set by the CLI for the length of one run: called once per batch item checked.
progress_hook: Callable[[BatchItem], None] | None = None


@dataclass
class IngestResult:
    """What one ingest did.

    Attributes:
        batch_id: content hash of the batch (16 hex digits of a sha256).
        status: ``versioned``, ``unchanged`` (batch already ingested) or ``quarantined``.
        data_version: md5 of `data/cohort` in `data/cohort.dvc` after the run (None if never
            versioned).
        report: the checks' problems and notes.
        quarantine: the quarantine folder of a failing batch.
        subjects_added: new rows in the subjects table.
        files_added: images, meshes and point sets written into the cohort.
    """

    batch_id: str
    status: str
    data_version: str | None
    report: CheckReport
    quarantine: Path | None = None
    subjects_added: int = 0
    files_added: int = 0


# ---------------------------------------------------------------------------- repository


def _paths(root: Path) -> dict[str, Path]:
    p = load_params("data")
    return {
        "cohort": root / p["cohort_dir"],
        "quarantine": root / p["quarantine_dir"],
        "log": root / p["ingest_log"],
        "dvcfile": root / (p["cohort_dir"] + ".dvc"),
    }


def init_data_repo(root: Path, remote: Path | None = None) -> None:
    """Make `root` a git + DVC repository with a local default remote (idempotent).

    Args:
        root: the repository folder.
        remote: the remote folder; default `<root>/<data.dvc_remote>` (git-ignored).
    """
    from dvc.repo import Repo

    params = load_params("data")
    root = Path(root)
    if not (root / ".git").exists():
        subprocess.run(["git", "init", "-q", str(root)], check=True)
    if not (root / ".dvc").exists():
        Repo.init(str(root))
    remote = Path(remote) if remote else root / params["dvc_remote"]
    with Repo(str(root)) as repo, repo.config.edit() as conf:
        conf["remote"][params["dvc_remote_name"]] = {"url": str(remote.resolve())}
        conf["core"]["remote"] = params["dvc_remote_name"]
        conf["core"]["analytics"] = False


def data_version(root: Path) -> str | None:
    """The md5 of `data/cohort` recorded in `data/cohort.dvc` (None before the first ingest)."""
    dvcfile = _paths(Path(root))["dvcfile"]
    if not dvcfile.is_file():
        return None
    doc = yaml.safe_load(dvcfile.read_text(encoding="utf-8"))
    return str(doc["outs"][0]["md5"])


def read_log(root: Path) -> list[dict]:
    """Every entry of the ingest log, oldest first."""
    log = _paths(Path(root))["log"]
    if not log.is_file():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line]


def _append_log(root: Path, entry: dict) -> None:
    log = _paths(root)["log"]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")


def _git_commit(root: Path) -> str | None:
    out = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    return out.stdout.strip() if out.returncode == 0 else None


# ---------------------------------------------------------------------------- batch


def batch_hash(folder: Path) -> str:
    """Content id of a batch: sha256 over sorted (relative path, file sha256), 16 hex digits."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            digest.update(rel.as_posix().encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def cohort_conflicts(subjects: pd.DataFrame | None, cohort_dir: Path) -> list[Problem]:
    """Subjects of the batch already in the cohort with different values."""
    table = cohort_dir / COHORT_TABLE
    if subjects is None or not table.is_file():
        return []
    old = pd.read_parquet(table).drop_duplicates("subject_id").set_index("subject_id")
    new = subjects.drop_duplicates("subject_id").set_index("subject_id")
    common = new.index.intersection(old.index)
    if not len(common):
        return []
    cols = [c for c in new.columns if c in old.columns]
    a, b = new.loc[common, cols], old.loc[common, cols]
    same = ((a == b) | (a.isna() & b.isna())).all(axis=1)
    changed = common[~same.to_numpy()]
    if not len(changed):
        return []
    return [
        Problem(
            "tables",
            "subject_id",
            f"{len(changed)} subject(s) already in the cohort with other values, e.g. {changed[0]}",
            "new subjects, or rows identical to the versioned ones",
            "give new subjects new ids; corrections need a deliberate cohort revision",
            "cohort_conflict",
        )
    ]


# ---------------------------------------------------------------------------- tasks


@task(name="validate-batch", cache_policy=NO_CACHE)
def validate_task(batch: Path, root: Path) -> BatchValidation:
    """Run every check on the batch, plus its consistency with the versioned cohort."""
    result = validate_batch(batch, on_item=progress_hook)
    result.report.problems += cohort_conflicts(result.subjects, _paths(root)["cohort"])
    get_run_logger().info(
        "%d item(s) checked: %d problem(s), %d note(s)",
        result.report.checked,
        len(result.report.problems),
        len(result.report.notes),
    )
    return result


@task(name="quarantine-batch", cache_policy=NO_CACHE)
def quarantine_task(batch: Path, root: Path, batch_id: str, report: CheckReport) -> Path:
    """Copy the failing batch and its report to `data/quarantine/<batch-id>/`."""
    target = _paths(root)["quarantine"] / batch_id
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(batch, target / "files", ignore=shutil.ignore_patterns(".*"))
    report.write(target, title=f"batch {batch_id} from {batch}")
    get_run_logger().warning("batch %s quarantined in %s", batch_id, target)
    return target


@task(name="merge-into-cohort", cache_policy=NO_CACHE)
def merge_task(result: BatchValidation, root: Path) -> tuple[int, int]:
    """Write the batch into `data/cohort/`: subjects table, images (de-identified), geometry.

    Returns:
        (subjects added, files written).
    """
    cohort = _paths(root)["cohort"]
    cohort.mkdir(parents=True, exist_ok=True)
    added = _merge_subjects(result.subjects, cohort / COHORT_TABLE)
    files = sum(_store(item, cohort, result.scales.get(item.rel, 1.0)) for item in result.items)
    return added, files


@task(name="version-cohort", cache_policy=NO_CACHE)
def version_task(root: Path) -> str:
    """`dvc add data/cohort` (commits to the cache) and `dvc push` to the default remote."""
    from dvc.logger import set_loggers_level
    from dvc.repo import Repo

    cohort = _paths(root)["cohort"]
    # WARNING: DVC's "to track the changes with git, run ..." hints name cwd-relative paths
    with set_loggers_level(logging.WARNING), Repo(str(root)) as repo:
        if not repo.config["core"].get("remote"):
            raise DHError(
                Problem(
                    str(root / ".dvc" / "config"),
                    "core.remote",
                    "no default remote",
                    "a default DVC remote",
                    "run `dvc remote add -d local dvc-remote`",
                    "dvc",
                )
            )
        repo.add([str(cohort)])  # absolute: DVC resolves relative targets from the cwd
        repo.push(targets=[str(_paths(root)["dvcfile"])])
    return str(data_version(root))


# ---------------------------------------------------------------------------- the flow


@flow(name="ingest", validate_parameters=False)
def ingest(batch: str, root: str | None = None) -> IngestResult:
    """Validate a batch folder; version it (DVC) when it passes, quarantine it otherwise.

    Args:
        batch: the batch folder.
        root: the git + DVC repository holding `data/` (default: this project).

    Returns:
        The outcome; the ingest log has one new line either way.
    """
    apply_env_defaults()
    batch_dir, repo = Path(batch).resolve(), Path(root or PROJECT_ROOT).resolve()
    log = get_run_logger()
    if not batch_dir.is_dir():
        raise DHError(
            Problem(str(batch), "", "not a folder", "a batch folder", "check the path", "batch")
        )
    batch_id = batch_hash(batch_dir)
    entry = {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "batch_id": batch_id,
        "source": _display(batch_dir, repo),
        "flow_run_id": _flow_run_id(),
        "previous_version": data_version(repo),
    }

    done = already_ingested(batch_dir, repo)
    if done is not None:  # nothing to do, and nothing is written (not even to the log)
        log.info("batch %s was ingested before; version %s", batch_id, done.data_version)
        return done

    result = validate_task(batch_dir, repo)
    report = result.report
    findings = {"problems": len(report.problems), "notes": len(report.notes)}
    if not report.ok:
        target = quarantine_task(batch_dir, repo, batch_id, report)
        _append_log(
            repo,
            {
                **entry,
                **findings,
                "status": "quarantined",
                "data_version": data_version(repo),
                "quarantine": _display(target, repo),
            },
        )
        return IngestResult(batch_id, "quarantined", data_version(repo), report, target)

    try:
        added, files = merge_task(result, repo)
        version = version_task(repo)
    except Exception:
        _restore(repo)  # leave the versioned cohort as it was
        raise
    _append_log(
        repo,
        {
            **entry,
            **findings,
            "status": "versioned",
            "data_version": version,
            "dvc_file": _display(_paths(repo)["dvcfile"], repo),
            "subjects_added": added,
            "files_added": files,
            "git_commit": _git_commit(repo),
        },
    )
    log.info("batch %s versioned as %s", batch_id, version)
    return IngestResult(batch_id, "versioned", version, report, None, added, files)


def already_ingested(batch: Path, root: Path | None = None) -> IngestResult | None:
    """The no-op result when this batch's content was versioned before, else None."""
    repo = Path(root or PROJECT_ROOT).resolve()
    batch_id = batch_hash(Path(batch))
    if not any(e["batch_id"] == batch_id and e["status"] == "versioned" for e in read_log(repo)):
        return None
    if not _cohort_present_or_restored(repo):
        # a fresh clone whose DVC cache and remote lack the versioned cohort: rebuild it from
        # the batch (same content, so `dvc add` gives the same data version)
        logger.warning(
            "batch %s is in the ingest log but data/cohort is absent and cannot be "
            "pulled from the DVC remote; ingesting it again",
            batch_id,
        )
        return None
    return IngestResult(batch_id, "unchanged", data_version(repo), CheckReport())


def _cohort_present_or_restored(repo: Path) -> bool:
    """True when `data/cohort/` is in the workspace, after a `dvc pull` of it if needed."""
    from dvc.logger import set_loggers_level
    from dvc.repo import Repo

    cohort, dvcfile = _paths(repo)["cohort"], _paths(repo)["dvcfile"]
    if cohort.is_dir() and any(cohort.iterdir()):
        return True
    if not dvcfile.is_file():
        return False
    try:
        with set_loggers_level(logging.ERROR), Repo(str(repo)) as dvc_repo:
            dvc_repo.pull(targets=[str(dvcfile)])
    except Exception as exc:  # noqa: BLE001 - DVC raises many kinds; absence is the answer
        logger.info("dvc pull of %s failed: %s", dvcfile, exc)
        return False
    return cohort.is_dir() and any(cohort.iterdir())


def run_ingest(batch: Path, root: Path | None = None) -> IngestResult:
    """Run the `ingest` flow (embedded Prefect server) and return its result.

    A batch already versioned returns at once, without starting Prefect.
    """
    apply_env_defaults()
    return already_ingested(batch, root) or ingest(str(batch), str(root) if root else None)


# ---------------------------------------------------------------------------- helpers


def _merge_subjects(subjects: pd.DataFrame | None, table: Path) -> int:
    if subjects is None:
        return 0
    if table.is_file():
        old = pd.read_parquet(table)
        new = subjects[~subjects.subject_id.isin(old.subject_id)]
        merged = pd.concat([old, new], ignore_index=True)
    else:
        new, merged = subjects, subjects
    if len(new):
        merged.to_parquet(table, index=False)
    return len(new)


def _store(item: BatchItem, cohort: Path, scale: float) -> int:
    """Write one item into the cohort; returns the number of files written."""
    from validation.images import is_dicom_file, strip_dicom_phi

    target = cohort / item.rel
    if item.kind in ("image", "label", "labels", "licence"):
        return _copy(item.path, target)
    if item.kind == "dicom":
        slices = sorted(p for p in item.path.iterdir() if p.is_file() and is_dicom_file(p))
        blanked = {tag for src in slices for tag in strip_dicom_phi(src, target / src.name)}
        if blanked:
            logger.info("%s: blanked %s", item.rel, ", ".join(sorted(blanked)))
        return len(slices)
    if item.kind == "mesh":
        return _copy(item.path, target) if scale == 1.0 else _write_mesh_mm(item, target, scale)
    if item.kind == "points":
        if scale == 1.0:
            return _copy(item.path, target)
        points = np.loadtxt(item.path, delimiter=",", comments="#", ndmin=2) * scale
        target.parent.mkdir(parents=True, exist_ok=True)
        np.savetxt(target, points, delimiter=",", header="x,y,z")
        return 1
    return 0  # tables are merged into subjects.parquet; other files are not ingested


def _copy(src: Path, dst: Path) -> int:
    if dst.is_file() and dst.read_bytes() == src.read_bytes():
        return 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return 1


def _write_mesh_mm(item: BatchItem, target: Path, scale: float) -> int:
    """Store a mesh given in metres as mm: GLB/STL/PLY/OBJ/OFF keep their format, else VTP."""
    from models.meshio import read_mesh, write_vtp

    mesh = read_mesh(item.path, scale=scale)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix.lower() in (".glb", ".stl", ".ply", ".obj", ".off"):
        mesh.export(str(target))
    else:
        write_vtp(mesh, target.with_suffix(".vtp"))
    return 1


def _restore(root: Path) -> None:
    """Put `data/cohort` back to its versioned state after a failed merge."""
    from dvc.repo import Repo

    paths = _paths(root)
    if paths["dvcfile"].is_file():
        with Repo(str(root)) as repo:
            repo.checkout(targets=[str(paths["dvcfile"])], force=True)
    elif paths["cohort"].exists():
        shutil.rmtree(paths["cohort"])


def _display(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None


if __name__ == "__main__":
    import sys

    outcome = run_ingest(Path(sys.argv[1] if len(sys.argv) > 1 else "data/raw"))
    sys.exit(0 if outcome.status != "quarantined" else 1)
