"""Build the stance surrogate end to end: FE training/test sets, fit, ONNX export, evaluation.

Writes into `out_dir` (default `artifacts/simulation/`): `surrogate.onnx`, `surrogate.json`
(structure, template size, training details, metrics), `train.npz`, `test.npz` and
`metrics.json`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from models.simulation import surrogate as sg

logger = logging.getLogger(__name__)


def make_datasets(
    params: dict[str, Any], shape_model, on_shape: Callable[[int], None] | None = None
) -> tuple[sg.TrainingSet, sg.TrainingSet, np.ndarray]:  # noqa: ANN001
    """FE runs on sampled shapes: (train set, held-out test set, test loads `(n_test, 3)`).

    Train and test coefficients are independent draws (seeded by `surrogate.seed`).
    """
    sp = params["surrogate"]
    rng = np.random.default_rng(int(sp["seed"]))
    n_train, n_test = int(sp["n_train"]), int(sp["n_test"])
    coeffs = sg.sample_coefficients(
        n_train + n_test, shape_model.n_components, float(sp["coeff_std_range"]), rng
    )
    test_loads = sg.sample_loads(n_test, sp, rng)
    full = sg.generate(shape_model, coeffs, params, on_shape=on_shape)
    parts = [
        sg.TrainingSet(*(getattr(full, f.name)[sl] for f in _fields()))
        for sl in (slice(0, n_train), slice(n_train, None))
    ]
    return parts[0], parts[1], test_loads


def _fields():  # noqa: ANN202
    from dataclasses import fields

    return fields(sg.TrainingSet)


def build_surrogate(
    params: dict[str, Any], out_dir: Path, on_shape: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Run the whole surrogate build; returns the metrics dict (also written to disk)."""
    from models.shape import load_structure_model

    sp = params["surrogate"]
    model = load_structure_model(sp["structure"])
    t0 = time.perf_counter()
    train, test, test_loads = make_datasets(params, model, on_shape)
    t_fe = time.perf_counter() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    train.save(out_dir / "train.npz")
    test.save(out_dir / "test.npz")

    sur = sg.fit(train, params)
    onnx_path = sg.export_onnx(sur, out_dir / "surrogate.onnx")
    session = sg.OnnxSurrogate.open(onnx_path)
    metrics = sg.evaluate(sur, session, test, test_loads).to_dict()
    metrics.update(
        fe_generation_seconds=t_fe,
        n_tets_mean=float(np.mean(np.concatenate([train.n_tets, test.n_tets]))),
        total_seconds=time.perf_counter() - t0,
    )
    meta = {
        "structure": sp["structure"],
        "n_vertices": int(model.n_vertices),
        "n_components": int(model.n_components),
        "coeff_std_range": float(sp["coeff_std_range"]),
        "inputs": {
            "shape_coefficients": "standardised, (1, n_components)",
            "load": "[body_weight_kg, hip_force_bw, abductor_force_bw], (1, 3)",
        },
        "outputs": {
            "von_mises_mpa": "(1, n_vertices)",
            "displacement_mm": "(1, n_vertices, 3)",
            "strain_energy_j": "(1,)",
        },
        "frame": "shape model frame (mm)",
        **sur.params,
        "metrics": metrics,
    }
    (out_dir / "surrogate.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    logger.info(
        "surrogate: rel L2 von Mises %.3f (max %.3f), peak error %.3f, %.2f ms",
        metrics["rel_l2_von_mises_mean"],
        metrics["rel_l2_von_mises_max"],
        metrics["peak_error_rel_mean"],
        metrics["onnx_ms_median"],
    )
    return metrics
