"""Register, into a fresh BentoML home, the models the services serve, built from real data.

Each concern's model is built by its own subsystem's code, with small settings, from the demo
data. Slow builds are cached under `.cache/test-models/<concern>-<key>/`, where the key hashes
the settings and the subsystem's committed source tree, so they are rebuilt whenever either
changes; the build is always done by this code, never by hand.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
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
    """Cache folder keyed by the settings and the committed tree of the subsystem's sources.

    Keying by the committed tree (not the working files) rebuilds when the subsystem's code
    is committed, not on every edit in a shared checkout.
    """
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    folders = sorted({str(Path(pattern).parent) for pattern in sources})
    tree = subprocess.run(
        ["git", "rev-parse", *[f"HEAD:{f}" for f in folders]],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    ).stdout
    digest.update(tree.encode())
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


POP_OVERRIDES = {  # the smallest real build the generator tests also use (4 bodies)
    "n_subjects": 4,
    "fit_iterations": 10,
    "fit_batch_size": 4,
    "em_iterations": 20,
    "refine_iterations": 5,
    "vertex_std_samples": 4,
    "min_observed": 200,
}
POP_SOURCES = [
    "models/population/*.py",
    "models/body/*.py",
    "models/organs/*.py",
    "flows/population.py",
]


def _population_params() -> dict:
    from dh.config import load_params

    return {**load_params("population"), **POP_OVERRIDES}


def build_population(out: Path) -> None:
    """The population model of 4 ANSUR II subjects' body fits, with organ atlases and ONNX."""
    from flows.population import build_atlases_task, build_model_task, export_task

    params = _population_params()
    metrics = build_model_task(params, out)
    metrics.update(build_atlases_task(params, out))
    metrics.update(export_task(out))
    (out / "metrics.json").write_text(json.dumps(metrics, default=str))


def register_population(home: Path, log: Path) -> str:
    folder = _cached("population", POP_SOURCES, POP_OVERRIDES, build_population)
    files = {
        p.name: p
        for p in sorted(folder.iterdir())
        if p.suffix in (".npz", ".onnx") or p.name == "conditional_mean.json"
    }
    inputs = sorted((DATA_RAW / "anthropometry").rglob("*.csv"))
    record = make_record(
        "population",
        inputs,
        params=_population_params(),
        metrics=json.loads((folder / "metrics.json").read_text()),
    )
    return register_model("population", files, record, store_dir=home / "models", log_file=log).tag


def register_shape(home: Path, log: Path) -> str:
    """The lung and femur shape models, from the shape subsystem's own loader."""
    from models.shape import load_structure_model

    files = {}
    for name in ("lungs", "femur_left"):
        model = load_structure_model(name)
        files[f"{name}.npz"] = model.save(home / "build" / f"{name}.npz")
    inputs = sorted((DATA_RAW / "lungs" / "lll").glob("*.csv"))
    inputs += sorted((DATA_RAW / "bones" / "femur").glob("*.wrl"))
    record = make_record("shape", inputs, params={})
    return register_model("shape", files, record, store_dir=home / "models", log_file=log).tag


SIM_SOURCES = ["models/simulation/*.py"]


def _simulation_params() -> dict:
    import copy

    from dh.config import load_params

    params = copy.deepcopy(load_params("simulation"))
    params["mesh"]["surface_vertices"] = 800
    params["surrogate"].update(n_train=4, n_test=1, n_basis=3)
    return params


def build_simulation(out: Path) -> None:
    """A surrogate from 4 training + 1 held-out FE runs on coarse femur meshes."""
    from models.simulation.training import build_surrogate

    build_surrogate(_simulation_params(), out)


def register_simulation(home: Path, log: Path, parent: str) -> str:
    params = _simulation_params()
    folder = _cached("simulation", SIM_SOURCES, params, build_simulation)
    record = make_record(
        "simulation",
        [folder / "train.npz", folder / "test.npz"],
        params=params,
        metrics=json.loads((folder / "metrics.json").read_text()),
        parent=parent,
    )
    files = {n: folder / n for n in ("surrogate.onnx", "surrogate.json")}
    return register_model("simulation", files, record, store_dir=home / "models", log_file=log).tag


def register_served_models(raw: Path, home: Path) -> dict[str, str]:
    """Build and register every served model; returns concern -> tag."""
    log = home / "lineage.jsonl"
    (home / "build").mkdir(parents=True, exist_ok=True)
    tags = {"segment": register_segmentation(home, log)}
    tags["generate"] = register_population(home, log)
    tags["fit"] = register_shape(home, log)
    tags["simulate"] = register_simulation(home, log, parent=tags["fit"])
    return tags
