"""Build, save and load the structure shape models under `artifacts/shape/`.

`load_structure_model(name)` is the entry point for other subsystems: it reads
`artifacts/shape/<name>.npz`, building (and saving) the model first when the file is missing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from dh.config import ARTIFACTS, DATA_RAW, load_params
from dh.errors import fail
from models.shape.model import ShapeModel

logger = logging.getLogger(__name__)

SHAPE_DIR = ARTIFACTS / "shape"
STRUCTURES = {"lungs": "lungs", "femur_left": "femur", "femur_right": "femur"}
"""Structure name -> registry group of its training data (femur_right mirrors femur_left)."""
BUILT_STRUCTURES = ("lungs", "femur_left")
"""Structures built from data by the `build_shape_models` stage; the others are derived."""


def model_path(name: str, directory: Path = SHAPE_DIR) -> Path:
    """Where the model of structure `name` is stored."""
    return Path(directory) / f"{name}.npz"


def check_structure(name: str, source: str = "--structure") -> str:
    """Return `name` if a shape model exists for it, else raise a DHError listing the known."""
    if name not in STRUCTURES:
        fail(
            source,
            "structure",
            name,
            f"one of {sorted(STRUCTURES)}",
            "pass --structure with a known structure name",
        )
    return name


def build_structure_model(
    name: str, params: dict[str, Any] | None = None, raw_dir: Path | None = None
) -> tuple[ShapeModel, dict]:
    """Build one structure's model from the registry data; returns it and build details.

    Args:
        name: "lungs" or "femur_left".
        params: the `shape` section of params.yaml (default: read it).
        raw_dir: where the registry data is (default data/raw, pulled if missing).
    """
    from dh.registry import pull

    check_structure(name, "build_structure_model")
    params = params if params is not None else load_params("shape")
    raw_dir = Path(raw_dir or DATA_RAW)
    if raw_dir == DATA_RAW:
        pull([STRUCTURES[name]])
    from models.shape.metrics import residual_std

    if name == "femur_right":
        left = load_structure_model("femur_left", SHAPE_DIR)
        return mirror_model(left, "femur_right"), {}
    if name == "lungs":
        from models.shape.lungs import build_lung_model

        model, details = build_lung_model(raw_dir, params["lungs"])
    else:
        from models.shape.femur import build_femur_model

        model, details = build_femur_model(raw_dir, params["femur"])
    # what the linear model cannot represent; the fit adds it to unobserved vertices' std
    model.meta["residual_std_mm"] = residual_std(details["aligned"], model.faces, name)
    return model, details


def mirror_model(model: ShapeModel, structure: str) -> ShapeModel:
    """The model mirrored across its sagittal plane (x -> -x in its LPS frame), e.g. the
    right femur from the left-femur model; faces are reversed to stay outward."""
    flip = np.array([-1.0, 1.0, 1.0])
    return ShapeModel(
        structure=structure,
        mean=model.mean * flip,
        faces=model.faces[:, ::-1].copy(),
        components=model.components * flip,
        variances=model.variances.copy(),
        subject_ids=[f"{s} (mirrored)" for s in model.subject_ids],
        landmarks=dict(model.landmarks),
        meta={**model.meta, "mirrored_from": model.structure},
    )


def load_structure_model(name: str, directory: Path = SHAPE_DIR) -> ShapeModel:
    """The saved shape model of `name`, built and saved first if it is missing.

    Raises:
        DHError: unknown structure (the message lists the known ones).
    """
    check_structure(name)
    path = model_path(name, directory)
    if not path.is_file():
        logger.info("shape model %s missing at %s: building it", name, path)
        model, _ = build_structure_model(name)
        model.save(path)
    return ShapeModel.load(path)
