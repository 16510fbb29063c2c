"""Model versions in the BentoML model store, each with its lineage record.

A model version is a folder in the store (`$BENTOML_HOME/models/<name>/<version>/`, with
`BENTOML_HOME` under `.cache/bentoml` by default) holding its ONNX files and arrays. Its
lineage record is stored in the model's metadata (`lineage_json`, the full record as canonical
JSON) and, shortened, in its labels; the same record is appended to the lineage log
(:func:`dh.lineage.append_record`).

Typical use, at the end of a build::

    record = make_record("population", inputs=[...], params=load_params("population"))
    reg = register_model("population", {"model.onnx": onnx_path}, record, arrays={"mean": m})
    later = load_model("population")          # the latest version
    later.file("model.onnx"), later.arrays()["mean"], later.record.metrics
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dh.config import apply_env_defaults
from dh.errors import DHError, fail
from dh.lineage import (
    LineageRecord,
    VerifyReport,
    append_record,
    find_in_log,
    hash_file,
    log_path,
    verify_record,
)

logger = logging.getLogger(__name__)

ARRAYS_FILE = "arrays.npz"
MODULE = "models.registry"


@dataclass
class RegisteredModel:
    """One model version in the store.

    Attributes:
        name: model name.
        version: model version.
        path: the version's folder in the store (its files lie directly inside).
        record: its lineage record (from the store metadata).
        labels: the short lineage labels.
        created_utc: creation time in the store.
    """

    name: str
    version: str
    path: Path
    record: LineageRecord
    labels: dict[str, str]
    created_utc: str

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"

    def file(self, name: str) -> Path:
        """Path of a stored file, e.g. `model.onnx`.

        Raises:
            DHError: the model version has no such file.
        """
        p = self.path / name
        if not p.is_file():
            stored = sorted(a.path for a in self.record.artefacts)
            fail(self.tag, "file", name, f"one of {stored}", "ask for a file the model stores")
        return p

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays stored with the model ({} when none)."""
        p = self.path / ARRAYS_FILE
        if not p.is_file():
            return {}
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


def _store(store_dir: Path | None) -> Any:
    apply_env_defaults()
    if store_dir is None:
        from bentoml._internal.configuration.containers import BentoMLContainer

        return BentoMLContainer.model_store.get()
    from bentoml._internal.models.model import ModelStore

    Path(store_dir).mkdir(parents=True, exist_ok=True)
    return ModelStore(str(store_dir))


def short_labels(record: LineageRecord) -> dict[str, str]:
    """Labels for the model store: a few short strings an operator can filter by."""
    return {
        "data_version": record.data_version[:40],
        "git_commit": record.git_commit[:12],
        "git_dirty": str(record.git_dirty).lower(),
        "parent": record.parent,
        "flow_run_id": record.flow_run_id,
        "record_sha256": record.record_sha256[:16],
    }


def register_model(
    name: str,
    files: dict[str, str | Path],
    record: LineageRecord,
    arrays: dict[str, np.ndarray] | None = None,
    store_dir: Path | None = None,
    log_file: Path | None = None,
) -> RegisteredModel:
    """Save a new model version: copy its files, hash them, seal and store its lineage.

    Args:
        name: model name (lowercase letters, digits, `-`, `_`, `.`).
        files: stored file name -> source path, e.g. {"model.onnx": Path("artifacts/x.onnx")}.
        record: lineage record from :func:`dh.lineage.make_record`; its `version`,
            `artefacts` and `record_sha256` are filled in here.
        arrays: named arrays saved together as `arrays.npz`.
        store_dir: model store folder (default: the BentoML store under `BENTOML_HOME`).
        log_file: lineage log (default :func:`dh.lineage.log_path`).

    Returns:
        The registered version.

    Raises:
        DHError: a source file is missing or a stored name would leave the model folder.
    """
    import bentoml

    for stored, src in files.items():
        if "/" in stored or stored.startswith(".") or stored == ARRAYS_FILE:
            fail(name, "files", stored, "a plain file name other than arrays.npz", "rename it")
        if not Path(src).is_file():
            fail(str(src), "", "missing file", "an existing artefact", "build the artefact first")

    store = _store(store_dir)
    record.model = name
    with bentoml.models.create(name, module=MODULE, _model_store=store) as ref:
        target = Path(ref.path)
        names = []
        for stored, src in files.items():
            shutil.copyfile(src, target / stored)
            names.append(stored)
            for data in onnx_external_data(Path(src)):  # weights stored beside the graph
                shutil.copyfile(Path(src).parent / data, target / data)
                names.append(data)
        if arrays:
            np.savez(target / ARRAYS_FILE, **{k: np.asarray(v) for k, v in arrays.items()})
            names.append(ARRAYS_FILE)
        names = sorted(set(names))

        record.version = ref.tag.version
        record.artefacts = [hash_file(target / n, target) for n in names]
        record.seal()
        ref.info.labels.update(short_labels(record))
        ref.info.metadata.update({"lineage_json": json.dumps(record.to_dict(), sort_keys=True)})
        tag = str(ref.tag)

    append_record(record, log_file)
    logger.info("registered %s with %d artefacts", tag, len(record.artefacts))
    return load_model(tag, store_dir)


def onnx_external_data(path: Path) -> list[str]:
    """Files an ONNX graph keeps its weights in (relative to its folder); [] for other files.

    Raises:
        DHError: an external data file is missing or lies outside the graph's folder.
    """
    if path.suffix.lower() != ".onnx":
        return []
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors

    model = onnx.load(str(path), load_external_data=False)
    locations = set()
    for tensor in _get_all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            locations.add(ExternalDataInfo(tensor).location)
    for loc in locations:
        full = (path.parent / loc).resolve()
        if "/" in loc or not full.is_file():
            fail(
                str(path),
                "external data",
                loc,
                "a file beside the ONNX graph",
                "re-export the model with its weights in one folder (or inside the graph)",
            )
    return sorted(locations)


def _to_registered(model: Any) -> RegisteredModel:
    meta = model.info.metadata
    raw = meta.get("lineage_json")
    if raw is None:
        record = LineageRecord(model=model.tag.name, version=model.tag.version)
    else:
        record = LineageRecord.from_dict(json.loads(raw))
    return RegisteredModel(
        name=model.tag.name,
        version=model.tag.version,
        path=Path(model.path),
        record=record,
        labels=dict(model.info.labels),
        created_utc=model.info.creation_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    )


def load_model(spec: str, store_dir: Path | None = None) -> RegisteredModel:
    """A model version by `name[:version]`; the latest version when no version is given.

    Raises:
        DHError: no such model or version, naming the versions that exist.
    """
    import bentoml
    from bentoml.exceptions import BentoMLException, NotFound

    store = _store(store_dir)
    name, _, version = spec.partition(":")
    tag = f"{name}:{version or 'latest'}"
    try:
        return _to_registered(bentoml.models.get(tag, _model_store=store))
    except (NotFound, BentoMLException, ValueError) as exc:
        known = sorted({m.tag for m in list_models(store_dir)})
        fail(
            "model store",
            "model",
            spec,
            f"a registered model version ({', '.join(known) or 'none registered'})",
            f"register the model first or pick a listed version ({type(exc).__name__})",
        )
    raise AssertionError("unreachable")


def list_models(store_dir: Path | None = None) -> list[RegisteredModel]:
    """Every model version in the store, by name, then oldest first."""
    import bentoml

    store = _store(store_dir)
    out = [_to_registered(m) for m in bentoml.models.list(_model_store=store)]
    return sorted(out, key=lambda m: (m.name, m.created_utc, m.version))


def verify_model(
    spec: str, store_dir: Path | None = None, log_file: Path | None = None
) -> VerifyReport:
    """Recompute every hash of a model version's lineage (see :func:`dh.lineage.verify_record`)."""
    model = load_model(spec, store_dir)
    log_file = Path(log_file or log_path())
    return verify_record(model.record, model.path, find_in_log(model.tag, log_file), log_file)


def chain(spec: str, store_dir: Path | None = None) -> list[RegisteredModel | LineageRecord]:
    """The model version and its ancestors (via `parent`), newest first.

    An ancestor missing from the store is taken from the lineage log when it is there.
    """
    out: list[RegisteredModel | LineageRecord] = [load_model(spec, store_dir)]
    seen = {out[0].tag}
    parent = out[0].record.parent
    while parent and parent not in seen:
        seen.add(parent)
        try:
            item: RegisteredModel | LineageRecord | None = load_model(parent, store_dir)
        except DHError:  # a parent removed from the store may still be in the log
            item = find_in_log(parent)
        if item is None:
            break
        out.append(item)
        parent = item.record.parent if isinstance(item, RegisteredModel) else item.parent
    return out
