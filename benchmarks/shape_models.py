"""Shape-model quality: compactness, leave-one-out generalisation and specificity (mm).

Builds the lung and left-femur models exactly as the `build_shape_models` stage does (into a
temporary folder) and writes their metrics, with build times, to
benchmarks/results/shape_models.json. With `--from-stage` it instead reports the metrics the
stage wrote to artifacts/shape/metrics.json on its last run (no rebuild).

Run: `python benchmarks/shape_models.py [--from-stage]`
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

from dh.bench import write_result
from dh.config import load_params
from flows.shape import build_and_evaluate
from models.shape.build import BUILT_STRUCTURES, SHAPE_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from-stage", action="store_true", help="report the stage's metrics")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load_params("shape")
    if args.from_stage:
        metrics = json.loads((SHAPE_DIR / "metrics.json").read_text(encoding="utf-8"))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            metrics = {n: build_and_evaluate(n, params, Path(tmp)) for n in BUILT_STRUCTURES}
    write_result(
        "shape_models",
        {
            "definitions": {
                "compactness": "cumulative variance fraction of the first k modes",
                "generalisation_mm": "LOO mean per-vertex error with k modes (correspondence)",
                "generalisation_nearest_mm": "LOO, all modes, mean nearest-vertex distance",
                "specificity_mm": "random instance -> closest training shape, per-vertex mean",
            },
            "source": "artifacts/shape/metrics.json" if args.from_stage else "rebuilt",
            "structures": metrics,
        },
    )


if __name__ == "__main__":
    main()
