"""Shape-model quality: compactness, leave-one-out generalisation and specificity (mm).

Builds the lung and left-femur models exactly as the `build_shape_models` stage does (into a
temporary folder) and writes their metrics, with build times, to
benchmarks/results/shape_models.json.

Run: `python benchmarks/shape_models.py`
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from dh.bench import write_result
from dh.config import load_params
from flows.shape import build_and_evaluate
from models.shape.build import BUILT_STRUCTURES


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load_params("shape")
    with tempfile.TemporaryDirectory() as tmp:
        metrics = {name: build_and_evaluate(name, params, Path(tmp)) for name in BUILT_STRUCTURES}
    write_result(
        "shape_models",
        {
            "definitions": {
                "compactness": "cumulative variance fraction of the first k modes",
                "generalisation_mm": "LOO mean per-vertex error with k modes (correspondence)",
                "generalisation_nearest_mm": "LOO, all modes, mean nearest-vertex distance",
                "specificity_mm": "random instance -> closest training shape, per-vertex mean",
            },
            "structures": metrics,
        },
    )


if __name__ == "__main__":
    main()
