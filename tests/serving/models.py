"""Register, into a fresh BentoML home, the models the services serve, built from real data.

Each concern's model is built by its own subsystem's code, with small settings, from the demo
data. Slow builds are cached under `.cache/test-models/<concern>-<key>/`, where the key hashes
the subsystem's source and the settings, so they are rebuilt whenever either changes; the
build is always done by this code, never by hand.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from dh.config import CACHE, DATA_RAW, PROJECT_ROOT
from dh.lineage import make_record
from models.registry import register_model

logger = logging.getLogger(__name__)

# The smallest real training run: 2 iterations on a 6 mm grid, evaluated on the training CT.
SEG_OVERRIDES = {
    "iterations": 2,
    "val_every": 1000,
    "batch_size": 1,
    "spacing_mm": [6.0, 6.0, 6.0],
    "patch_size": [48, 48, 16],
    "val_subjects": [],
}
SEG_SOURCES = [
    f"models/segmentation/{m}.py"
    for m in ("config", "dataset", "grid", "network", "train", "export", "sliding")
]


def _cache_dir(concern: str, sources: list[str], settings: dict) -> Path:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for pattern in sources:
        for f in sorted(PROJECT_ROOT.glob(pattern)):
            digest.update(f.read_bytes())
    return CACHE / "test-models" / f"{concern}-{digest.hexdigest()[:16]}"


def _cached(
    concern: str, sources: list[str], settings: dict, build: Callable[[Path], None]
) -> Path:
    folder = _cache_dir(concern, sources, settings)
    if not (folder / "done").is_file():
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        build(tmp)
        (tmp / "done").write_text("ok")
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    return folder


def build_segmentation(out: Path) -> None:
    """Train the segmentation network for 2 iterations and export it (parity checked)."""
    from models.segmentation.config import load_seg_params
    from models.segmentation.export import export_model
    from models.segmentation.train import train

    params = load_seg_params(SEG_OVERRIDES)
    result = train(params, out)
    export_model(result.checkpoint, params)


def register_segmentation(home: Path, log: Path) -> str:
    from models.segmentation.config import load_seg_params

    folder = _cached("segmentation", SEG_SOURCES, SEG_OVERRIDES, build_segmentation)
    params = load_seg_params(SEG_OVERRIDES)
    inputs = [DATA_RAW / params.subjects[s]["image"] for s in params.train_subjects]
    record = make_record(
        "segmentation",
        inputs,
        params=params.to_dict(),
        metrics=json.loads((folder / "metrics.json").read_text()),
    )
    reg = register_model(
        "segmentation",
        {"model.onnx": folder / "model.onnx", "model.json": folder / "model.json"},
        record,
        store_dir=home / "models",
        log_file=log,
    )
    return reg.tag


def register_served_models(raw: Path, home: Path) -> dict[str, str]:
    """Build and register every available served model; returns concern -> tag."""
    log = home / "lineage.jsonl"
    tags = {"segment": register_segmentation(home, log)}
    return tags
