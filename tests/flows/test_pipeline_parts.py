"""Parts of the `pipeline` flow: step isolation and the report writer on real small artefacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dh.lineage import make_record
from flows.pipeline import MissingPart, StepOutcome, build_lung_model_on, lung_split, run_step
from flows.report import flatten, write_report
from flows.retrain import held_out_error
from models.registry import register_model


def _missing() -> dict:
    raise MissingPart("flows.population is not built yet")


def _broken() -> dict:
    raise ValueError("bad input")


def test_steps_are_isolated_and_say_why() -> None:
    done = run_step("a", lambda: {"x": 1.5}, False, False)
    skipped = run_step("b", _missing, False, False)
    failed = run_step("c", _broken, False, False)
    assert (done.status, done.metrics) == ("done", {"x": 1.5})
    assert skipped.status == "skipped" and skipped.detail.startswith("WARNING: part missing")
    assert failed.status == "failed" and "ValueError: bad input" in failed.detail


def test_flatten_nested_metrics() -> None:
    pairs = dict(flatten({"lungs": {"mm": 1.23456, "modes": list(range(10))}, "n": 3}))
    assert pairs["lungs.mm"] == "1.235"
    assert pairs["lungs.modes"].endswith("(10 values)]")
    assert pairs["n"] == "3"


@pytest.fixture(scope="module")
def artefacts(raw_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A real lung model (built on a subset), its held-out metrics, a rendering, a store."""
    from models.render import render_meshes
    from models.shape.model import ShapeModel

    root = tmp_path_factory.mktemp("pipeline")
    arts = root / "artifacts"
    train, held = lung_split(raw_data, 3)
    model_file = build_lung_model_on(train[:12], raw_data, arts / "shape" / "lungs.npz")
    err = held_out_error(model_file, held, raw_data)
    (arts / "shape" / "metrics.json").write_text(json.dumps({"held_out_error_mm": err}))
    model = ShapeModel.load(model_file)
    render_meshes({"lungs": model.mesh()}, arts / "shape" / "lungs_mean.png", title="mean lung")

    store, log = root / "store", root / "lineage.jsonl"
    inputs = sorted((raw_data / "lungs" / "lll").glob("*.csv"))[:12]
    record = make_record(
        "shape", inputs, params={"variance_kept": 1.0}, metrics={"held_out_error_mm": err}
    )
    reg = register_model("shape", {"lungs.npz": model_file}, record, store_dir=store, log_file=log)
    return {
        "artifacts": arts,
        "store": store,
        "log": log,
        "reports": root / "reports",
        "bench": root / "bench",
        "tag": Path(reg.tag),
        "model_dir": reg.path,
    }


@pytest.mark.slow
def test_report_has_steps_metrics_images_and_lineage(artefacts: dict[str, Path]) -> None:
    outcomes = [
        StepOutcome("build_shape_models", "done", 2.0),
        StepOutcome("build_population", "skipped", 0.0, "WARNING: part missing: flows.population"),
    ]
    md, page = write_report(
        outcomes,
        artefacts["reports"],
        artefacts["artifacts"],
        artefacts["bench"],
        store_dir=artefacts["store"],
        log_file=artefacts["log"],
    )
    text = md.read_text()
    err = json.loads((artefacts["artifacts"] / "shape" / "metrics.json").read_text())
    assert "| build_population | skipped |" in text
    assert "**WARNING** step build_population skipped" in text
    assert f"| held_out_error_mm | {err['held_out_error_mm']:.4g} |" in text
    assert (artefacts["reports"] / "img" / "shape_lungs_mean.png").stat().st_size > 1000
    assert "![shape/lungs_mean.png](img/shape_lungs_mean.png)" in text
    assert str(artefacts["tag"]) in text and "| `dh verify` | OK |" in text
    html = page.read_text()
    assert "<table>" in html and 'src="img/shape_lungs_mean.png"' in html

    # a tampered artefact is reported by the lineage section's re-verification
    stored = artefacts["model_dir"] / "lungs.npz"
    stored.write_bytes(stored.read_bytes() + b"x")
    md, _ = write_report(
        outcomes,
        artefacts["reports"],
        artefacts["artifacts"],
        artefacts["bench"],
        store_dir=artefacts["store"],
        log_file=artefacts["log"],
    )
    assert "| `dh verify` | FAILED (1 mismatches) |" in md.read_text()


def test_demo_features_come_from_the_ct_body_stats(raw_data: Path) -> None:
    from dh.cohort import check_feature_values
    from flows.pipeline import demo_features, steps

    features = demo_features(raw_data / "ct" / "body_stats_prediction.json")
    assert features["sex"] in ("F", "M")
    assert 1400 < features["stature_mm"] < 2100 and 40 < features["weight_kg"] < 150
    check_feature_values(features)  # catalogue names and ranges: raises on a bad request
    names = [name for name, _, _ in steps()]
    assert names.index("build_population") < names.index("generate_demo")
