"""A small real model for tests: a PCA shape model of the 37 demo lungs, exported to ONNX.

Built from the real lung surfaces (6,006 corresponding points per subject, mm) so that lineage
and registry tests register a genuine artefact while the trained models of the platform may not
exist yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class LungPCA:
    """The PCA and where it was written.

    Attributes:
        onnx_path: ONNX graph `coefficients (batch, k) -> points (batch, 6006, 3)` in mm.
        mean: `(6006, 3)` mean shape, mm.
        components: `(k, 6006 * 3)` principal directions scaled by their standard deviation.
        inputs: the lung CSV files it was built from.
        explained: fraction of variance explained by the k modes.
    """

    onnx_path: Path
    mean: np.ndarray
    components: np.ndarray
    inputs: list[Path]
    explained: float


def build_lung_pca(raw: Path, out_dir: Path, k: int = 5) -> LungPCA:
    """Fit a k-mode PCA to the demo lungs under `raw/lungs/lll` and export it to ONNX."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    files = sorted((raw / "lungs" / "lll").glob("*.csv"))
    shapes = np.stack([np.loadtxt(f, delimiter=",", comments="#") for f in files])  # (37, 6006, 3)
    n_subjects, n_points, _ = shapes.shape
    flat = shapes.reshape(n_subjects, -1)
    mean = flat.mean(axis=0)
    _, s, vt = np.linalg.svd(flat - mean, full_matrices=False)
    sd = s / np.sqrt(n_subjects - 1)
    components = (vt[:k] * sd[:k, None]).astype(np.float32)  # (k, n_points * 3)
    explained = float((s[:k] ** 2).sum() / (s**2).sum())

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["coefficients", "components"], ["offsets"]),
            helper.make_node("Add", ["offsets", "mean"], ["flat"]),
            helper.make_node("Reshape", ["flat", "shape"], ["points"]),
        ],
        "lung_pca",
        [helper.make_tensor_value_info("coefficients", TensorProto.FLOAT, ["batch", k])],
        [helper.make_tensor_value_info("points", TensorProto.FLOAT, ["batch", n_points, 3])],
        initializer=[
            numpy_helper.from_array(components, "components"),
            numpy_helper.from_array(mean.astype(np.float32), "mean"),
            numpy_helper.from_array(np.array([-1, n_points, 3], dtype=np.int64), "shape"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "lung_pca.onnx"
    onnx.save(model, path)
    return LungPCA(path, mean.reshape(n_points, 3), components, files, explained)
