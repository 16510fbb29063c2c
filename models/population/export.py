"""ONNX export of the conditional mean for a fixed set of given features.

For given entries `o` the conditional mean of every other entry is affine in the given
values, per sex: ``mean = offset_s + x_o @ weight_s``. The exported graph takes
``given`` `(batch, k)` float32 (values of `given_names`, catalogue units) and ``female``
`(batch, 1)` float32 (1 for F, 0 for M) and returns ``mean`` `(batch, m)`: the features and
body parameters listed in the model's metadata (``free_names``), in that order. Intervals,
other given-sets and the mesh need the `.npz` model and :mod:`models.population.generate`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.population.gaussian import linear_map
from models.population.model import PopulationModel

DEFAULT_GIVEN = ("age_years", "stature_mm", "weight_kg")


def affine_maps(
    model: PopulationModel, given_names: tuple[str, ...]
) -> tuple[list[str], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Free entry names and per-sex `(offset (m,), weight (k, m))` of the conditional mean."""
    o = np.array([model.index(n) for n in given_names])
    maps, free = {}, None
    for s, g in model.components.items():
        free, offset, weight = linear_map(g, o)
        maps[s] = (offset, weight)
    return [model.names[i] for i in free], maps


def conditional_mean_numpy(
    model: PopulationModel, given_names: tuple[str, ...], given: np.ndarray, female: np.ndarray
) -> np.ndarray:
    """Reference numpy evaluation of the exported graph: `(batch, m)`."""
    _, maps = affine_maps(model, given_names)
    f = female.reshape(-1, 1)
    mf = maps["F"][0] + given @ maps["F"][1]
    mm = maps["M"][0] + given @ maps["M"][1]
    return f * mf + (1 - f) * mm


def export_onnx(
    model: PopulationModel, path: str | Path, given_names: tuple[str, ...] = DEFAULT_GIVEN
) -> Path:
    """Write the conditional-mean graph (opset 17) and a `.json` sidecar naming its columns."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    free, maps = affine_maps(model, given_names)
    k, m = len(given_names), len(free)
    inits = []
    for s in ("F", "M"):
        inits.append(numpy_helper.from_array(maps[s][1].astype(np.float32), f"W_{s}"))
        inits.append(numpy_helper.from_array(maps[s][0].astype(np.float32), f"b_{s}"))
    inits.append(numpy_helper.from_array(np.array([1.0], np.float32), "one"))
    nodes = [
        helper.make_node("MatMul", ["given", "W_F"], ["xf"]),
        helper.make_node("Add", ["xf", "b_F"], ["mf"]),
        helper.make_node("MatMul", ["given", "W_M"], ["xm"]),
        helper.make_node("Add", ["xm", "b_M"], ["mm"]),
        helper.make_node("Sub", ["one", "female"], ["male"]),
        helper.make_node("Mul", ["mf", "female"], ["wf"]),
        helper.make_node("Mul", ["mm", "male"], ["wm"]),
        helper.make_node("Add", ["wf", "wm"], ["mean"]),
    ]
    graph = helper.make_graph(
        nodes,
        "population_conditional_mean",
        [
            helper.make_tensor_value_info("given", TensorProto.FLOAT, ["batch", k]),
            helper.make_tensor_value_info("female", TensorProto.FLOAT, ["batch", 1]),
        ],
        [helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["batch", m])],
        inits,
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(onnx_model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(onnx_model, str(path))
    sidecar = {"given_names": list(given_names), "free_names": free, "female_input": "female"}
    path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2), encoding="utf-8")
    return path
