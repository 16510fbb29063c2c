"""Prefect flow `train_surrogate`: FE runs across the femur shape space -> ONNX surrogate.

Writes `artifacts/simulation/surrogate.onnx`, `surrogate.json`, `train.npz`, `test.npz` and
`metrics.json` (held-out relative L2 error of the von Mises field, peak-stress error, ONNX
latency). Run with `python -m flows.simulation` (the DVC stage `train_surrogate` does).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from dh.config import apply_env_defaults, load_params

logger = logging.getLogger(__name__)


def _flow_impl(out_dir: Path | None = None, params: dict[str, Any] | None = None):  # noqa: ANN202
    from prefect import flow, task

    from models.simulation.api import SURROGATE_DIR
    from models.simulation.training import build_surrogate

    out = Path(out_dir or SURROGATE_DIR)
    p = params if params is not None else load_params("simulation")
    build_task = task(build_surrogate, name="fe_runs_fit_export_evaluate")

    @flow(name="train_surrogate")
    def train_surrogate() -> dict[str, Any]:
        return build_task(p, out)

    return train_surrogate()


def run(out_dir: Path | None = None, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the flow (embedded Prefect server) and return the surrogate metrics."""
    apply_env_defaults()
    return _flow_impl(out_dir, params)


if __name__ == "__main__":
    import torch

    torch.set_num_threads(2)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    m = run()
    logger.info(
        "train_surrogate: rel L2 %.3f, peak error %.3f, %.2f ms, FE %.1f s/shape",
        m["rel_l2_von_mises_mean"],
        m["peak_error_rel_mean"],
        m["onnx_ms_median"],
        m["fe_seconds_mean"],
    )
