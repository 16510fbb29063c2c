"""Prefect flow `train_segmentation`: train, export to ONNX with parity, register the model.

Writes into `artifacts/segmentation/`: `model.pt` + `model.pt.lineage.json` (checkpoint and its
lineage: data sha256s, params, git commit), `metrics.json` (Dice and HD95 in mm per structure,
for the validation subjects and the fit on the training subjects), `model.onnx` + `model.json`
(exported model, parity report, config). The ONNX model and its manifest are then registered in
the model store as `segmentation` (see :mod:`models.registry`), which the /segment service
serves. Run with `python -m flows.segmentation` (the DVC stage `train_segmentation` does).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from dh.config import DATA_RAW, apply_env_defaults

logger = logging.getLogger(__name__)

MODEL_NAME = "segmentation"


def train_task(overrides: dict[str, Any] | None, out_dir: Path) -> dict[str, Any]:
    """Pull the CT data, train, and return the metrics dict."""
    from dh.registry import pull
    from models.segmentation.config import load_seg_params
    from models.segmentation.train import train

    pull(["ct"])
    params = load_seg_params(overrides)
    result = train(params, out_dir)
    return {"checkpoint": str(result.checkpoint), "metrics": result.metrics}


def export_task(overrides: dict[str, Any] | None, checkpoint: str) -> dict[str, Any]:
    """Export to ONNX, check parity (raises DHError when off), return the export summary."""
    from dataclasses import asdict

    from models.segmentation.config import load_seg_params
    from models.segmentation.export import export_model

    result = export_model(Path(checkpoint), load_seg_params(overrides))
    return {
        "onnx": str(result.onnx_path),
        "manifest": str(result.manifest_path),
        "model_version": result.model_version,
        "parity": asdict(result.parity),
    }


def register_task(
    overrides: dict[str, Any] | None, export: dict[str, Any], metrics: dict[str, Any]
) -> str:
    """Register `model.onnx` + `model.json` in the model store with a lineage record."""
    from dh.lineage import make_record
    from models.registry import register_model
    from models.segmentation.config import load_seg_params

    params = load_seg_params(overrides)
    inputs = []
    for sid in params.train_subjects + params.val_subjects:
        for key in ("image", "labels"):
            path = DATA_RAW / params.subjects[sid][key]
            inputs += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    summary = {
        "trained_on": metrics["trained_on"],
        "validated_on": metrics["validated_on"],
        "validation_mean_dice": {k: v["mean_dice"] for k, v in metrics["validation"].items()},
        "train_fit_mean_dice": {k: v["mean_dice"] for k, v in metrics["train_fit"].items()},
        "parity": export["parity"],
    }
    record = make_record(MODEL_NAME, inputs, params=params.to_dict(), metrics=summary)
    reg = register_model(
        MODEL_NAME, {"model.onnx": export["onnx"], "model.json": export["manifest"]}, record
    )
    return reg.tag


def _flow_impl(overrides: dict[str, Any] | None, out_dir: Path, register: bool) -> dict:
    from prefect import flow, task

    t_train = task(train_task, name="train_segmentation_model")
    t_export = task(export_task, name="export_segmentation_onnx")
    t_register = task(register_task, name="register_segmentation_model")

    @flow(name="train_segmentation")
    def train_segmentation() -> dict[str, Any]:
        trained = t_train(overrides, out_dir)
        export = t_export(overrides, trained["checkpoint"])
        tag = t_register(overrides, export, trained["metrics"]) if register else None
        return {"train": trained, "export": export, "registered": tag}

    return train_segmentation()


def run(
    overrides: dict[str, Any] | None = None, out_dir: Path | None = None, register: bool = True
) -> dict[str, Any]:
    """Run the flow (embedded Prefect server); returns metrics, export summary and model tag.

    Args:
        overrides: `segmentation` params to override (e.g. tiny settings in tests).
        out_dir: artefact folder (default `artifacts/segmentation`).
        register: also register the exported model in the model store.
    """
    from models.segmentation.train import DEFAULT_DIR

    apply_env_defaults()
    return _flow_impl(overrides, Path(out_dir or DEFAULT_DIR), register)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.nice(10)  # shared machines: training yields to interactive work
    out = run()
    logger.info(
        "model %s registered as %s; validation mean Dice %s; parity %s",
        out["export"]["model_version"],
        out["registered"],
        {k: v["mean_dice"] for k, v in out["train"]["metrics"]["validation"].items()},
        out["export"]["parity"]["passed"],
    )
