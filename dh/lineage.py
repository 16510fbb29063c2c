"""Lineage records: what data, code and parameters made a model version, and proof of it.

A :class:`LineageRecord` is written once per model version. It is stored twice: with the model
in the BentoML model store (see :mod:`models.registry`) and as one line of the append-only log
`artifacts/lineage/lineage.jsonl`. Each log line carries the sha256 of the line before it, so an
edited or deleted earlier line breaks the chain, and each record carries the sha256 of its own
canonical JSON, so an edited record is detected too. :func:`verify_record` recomputes every
hash (inputs, artefacts, record, log chain) and lists each mismatch.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from dh.config import ARTIFACTS, PROJECT_ROOT

logger = logging.getLogger(__name__)

LOG_ENV = "DH_LINEAGE_LOG"
PACKAGES = (
    "numpy",
    "torch",
    "monai",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "scikit-learn",
    "scipy",
    "scikit-fem",
    "trimesh",
    "bentoml",
    "prefect",
    "dvc",
    "great-expectations",
    "anny",
)
_CHUNK = 1 << 20


def log_path() -> Path:
    """The append-only lineage log: `$DH_LINEAGE_LOG`, else `artifacts/lineage/lineage.jsonl`."""
    env = os.environ.get(LOG_ENV)
    return Path(env) if env else ARTIFACTS / "lineage" / "lineage.jsonl"


@dataclass
class FileHash:
    """One hashed file: an input of the model, or an artefact stored with it.

    Attributes:
        path: the file, relative to the project root when inside it (inputs), or relative to
            the model's folder in the model store (artefacts).
        md5: md5 hex digest (the hash DVC uses).
        sha256: sha256 hex digest.
        size: bytes.
    """

    path: str
    md5: str
    sha256: str
    size: int


@dataclass
class LineageRecord:
    """Everything an auditor needs to trace one model version back to its data and code.

    Attributes:
        model: model name, e.g. "population".
        version: model version in the model store (set on registration).
        created_utc: ISO-8601 UTC time the record was made.
        data_version: id of the data the model was made from (DVC md5, or a hash over inputs).
        inputs: every input file with its md5 and sha256.
        git_commit: commit of the code that made the model ("" outside a git checkout).
        git_dirty: whether the working tree had uncommitted changes to tracked files.
        params: the `params.yaml` values used.
        validation: the data validation result (e.g. {"success": true, "suite": ...}).
        metrics: evaluation figures of the model.
        artefacts: every file stored with the model (ONNX files, arrays) with its hashes.
        flow_run_id: the Prefect flow run that made it ("" when made outside a flow).
        parent: `name:version` of the model version this one was derived from ("" for none).
        packages: versions of the key packages installed when it was made.
        record_sha256: sha256 of the canonical JSON of all the fields above.
    """

    model: str
    version: str = ""
    created_utc: str = ""
    data_version: str = ""
    inputs: list[FileHash] = field(default_factory=list)
    git_commit: str = ""
    git_dirty: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    artefacts: list[FileHash] = field(default_factory=list)
    flow_run_id: str = ""
    parent: str = ""
    packages: dict[str, str] = field(default_factory=dict)
    record_sha256: str = ""

    @property
    def tag(self) -> str:
        """`name:version`."""
        return f"{self.model}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> LineageRecord:
        doc = dict(doc)
        doc["inputs"] = [FileHash(**f) for f in doc.get("inputs", [])]
        doc["artefacts"] = [FileHash(**f) for f in doc.get("artefacts", [])]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in doc.items() if k in known})

    def content_sha256(self) -> str:
        """sha256 of the canonical JSON of every field except `record_sha256`."""
        doc = self.to_dict()
        doc.pop("record_sha256", None)
        return hashlib.sha256(canonical_json(doc).encode("utf-8")).hexdigest()

    def seal(self) -> LineageRecord:
        """Set `record_sha256` from the current content; returns self."""
        self.record_sha256 = self.content_sha256()
        return self


def canonical_json(doc: Any) -> str:
    """JSON with sorted keys and no spaces: the form hashes are taken over."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def hash_file(path: Path, root: Path | None = PROJECT_ROOT) -> FileHash:
    """md5, sha256 and size of a file; `path` is stored relative to `root` when inside it."""
    path = Path(path)
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            md5.update(chunk)
            sha.update(chunk)
    return FileHash(
        _display_path(path, root), md5.hexdigest(), sha.hexdigest(), path.stat().st_size
    )


def _display_path(path: Path, root: Path | None) -> str:
    if root is None:
        return str(path)
    try:
        return str(path.resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path.resolve())


def resolve_input(path: str, root: Path = PROJECT_ROOT) -> Path:
    """The file a recorded input path points to (relative paths are under the project root)."""
    p = Path(path)
    return p if p.is_absolute() else root / p


def data_version_of(inputs: list[FileHash]) -> str:
    """A data version id from input hashes: "md5-" + md5 over sorted `path md5` lines."""
    lines = "\n".join(sorted(f"{f.path} {f.md5}" for f in inputs))
    return "md5-" + hashlib.md5(lines.encode("utf-8")).hexdigest()


def git_state(root: Path = PROJECT_ROOT) -> tuple[str, bool]:
    """(commit, dirty) of the checkout at `root`; ("", False) outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return commit, bool(status.strip())
    except (OSError, subprocess.CalledProcessError):
        return "", False


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of `names` (absent packages are left out)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def make_record(
    model: str,
    inputs: list[str | Path],
    params: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    validation: dict[str, Any] | None = None,
    data_version: str = "",
    flow_run_id: str = "",
    parent: str = "",
) -> LineageRecord:
    """A new record for a model made from `inputs`: hashes them and captures code state.

    Artefacts and version are filled in by :func:`models.registry.register_model`.

    Args:
        model: model name.
        inputs: input files (data files the model was built from).
        params: parameters used (from `params.yaml`).
        metrics: evaluation figures.
        validation: validation result of the input data.
        data_version: data version id; computed from the input md5s when empty.
        flow_run_id: Prefect flow run id; taken from the running flow when empty and inside one.
        parent: `name:version` of the parent model version.
    """
    hashed = [hash_file(Path(p)) for p in inputs]
    commit, dirty = git_state()
    return LineageRecord(
        model=model,
        created_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        data_version=data_version or data_version_of(hashed),
        inputs=hashed,
        git_commit=commit,
        git_dirty=dirty,
        params=dict(params or {}),
        validation=dict(validation or {}),
        metrics=dict(metrics or {}),
        flow_run_id=flow_run_id or _current_flow_run_id(),
        parent=parent,
        packages=package_versions(),
    )


def _current_flow_run_id() -> str:
    context = sys.modules.get("prefect.context")  # only inside a flow is prefect imported
    if context is None:
        return ""
    ctx = context.FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx and ctx.flow_run else ""


# -- the append-only log -------------------------------------------------------------------


def append_record(record: LineageRecord, path: Path | None = None) -> Path:
    """Append `record` (sealed) as one line of the log, chained to the line before it.

    The file is opened in append mode under an exclusive lock; earlier lines are never
    rewritten. Each line is `{"prev_sha256": ..., "record": {...}}` where `prev_sha256` is the
    sha256 of the previous line's bytes (without its newline), or "" for the first line.
    """
    path = Path(path or log_path())
    path.parent.mkdir(parents=True, exist_ok=True)
    if not record.record_sha256:
        record.seal()
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.seek(0)
            lines = f.read().splitlines()
            prev = hashlib.sha256(lines[-1]).hexdigest() if lines else ""
            line = canonical_json({"prev_sha256": prev, "record": record.to_dict()})
            f.seek(0, os.SEEK_END)
            f.write(line.encode("utf-8") + b"\n")
            f.flush()
            os.fsync(f.fileno())
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
    logger.info("lineage record %s appended to %s", record.tag, path)
    return path


def read_log(path: Path | None = None) -> list[LineageRecord]:
    """Every record in the log, oldest first (unparseable lines are skipped with a warning)."""
    path = Path(path or log_path())
    if not path.is_file():
        return []
    out = []
    for i, raw in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            out.append(LineageRecord.from_dict(json.loads(raw)["record"]))
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("%s line %d is not a lineage record (%s)", path, i, exc)
    return out


def find_in_log(tag: str, path: Path | None = None) -> LineageRecord | None:
    """The last log record for `name:version`, or None."""
    hits = [r for r in read_log(path) if r.tag == tag]
    return hits[-1] if hits else None


def check_log_chain(path: Path | None = None) -> list[str]:
    """Mismatches in the log's hash chain (an edited, inserted or deleted line); [] when intact."""
    path = Path(path or log_path())
    if not path.is_file():
        return [f"{path}: lineage log missing"]
    problems = []
    prev = ""
    for i, raw in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            doc = json.loads(raw)
        except ValueError:
            problems.append(f"{path} line {i}: not JSON")
            prev = hashlib.sha256(raw).hexdigest()
            continue
        if doc.get("prev_sha256") != prev:
            problems.append(
                f"{path} line {i}: prev_sha256 {doc.get('prev_sha256')!r} != sha256 of line "
                f"{i - 1} {prev!r} (an earlier line was changed or removed)"
            )
        prev = hashlib.sha256(raw).hexdigest()
    return problems


# -- verification --------------------------------------------------------------------------


@dataclass
class Check:
    """One recomputed hash (or consistency check) and its outcome."""

    what: str
    expected: str
    actual: str

    @property
    def ok(self) -> bool:
        return self.expected == self.actual


@dataclass
class VerifyReport:
    """All checks made for one model version; `ok` when none failed."""

    tag: str
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def mismatches(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


def verify_record(
    record: LineageRecord,
    artefact_dir: Path,
    log_record: LineageRecord | None,
    log_file: Path | None = None,
    root: Path = PROJECT_ROOT,
) -> VerifyReport:
    """Recompute every hash of `record` and compare.

    Checks: the record's own sha256; that the log holds the same record; the log's hash chain;
    md5 and sha256 of each input file (under `root`); sha256 of each artefact (under
    `artefact_dir`, the model's folder in the store).
    """
    checks = [Check("record sha256", record.record_sha256, record.content_sha256())]
    if log_record is None:
        checks.append(Check("record in lineage log", record.record_sha256, "absent"))
    else:
        checks.append(
            Check("record in lineage log", record.record_sha256, log_record.content_sha256())
        )
    for problem in check_log_chain(log_file):
        checks.append(Check("lineage log chain", "intact", problem))

    for f in record.inputs:
        p = resolve_input(f.path, root)
        if not p.is_file():
            checks.append(Check(f"input {f.path} sha256", f.sha256, "missing file"))
            continue
        now = hash_file(p, root)
        checks.append(Check(f"input {f.path} md5", f.md5, now.md5))
        checks.append(Check(f"input {f.path} sha256", f.sha256, now.sha256))
    for f in record.artefacts:
        p = Path(artefact_dir) / f.path
        actual = hash_file(p, None).sha256 if p.is_file() else "missing file"
        checks.append(Check(f"artefact {f.path} sha256", f.sha256, actual))
    return VerifyReport(record.tag, checks)
