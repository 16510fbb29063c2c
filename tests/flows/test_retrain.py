"""The `retrain` flow on a small real lung cohort: promote only a better challenger, log it."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from dh.config import load_params
from flows.pipeline import raw_subset
from flows.retrain import is_held_out, read_decisions, run_retrain
from models.shape.lungs import LUNG_DIR, lung_files


def _cohort(raw: Path, target: Path, n: int) -> Path:
    rels = [f"{LUNG_DIR}/{p.name}" for p in lung_files(raw)[:n]]
    return raw_subset(raw, rels, target)


def _shape_params(variance_kept: float) -> dict:
    params = copy.deepcopy(load_params("shape"))
    params["lungs"]["variance_kept"] = variance_kept
    return params


def test_held_out_split_is_stable_as_the_cohort_grows() -> None:
    ids = [f"case{i:04d}" for i in range(200)]
    held = {s for s in ids if is_held_out(s, 0.2)}
    assert 20 < len(held) < 60
    more = ids + [f"new{i:04d}" for i in range(100)]
    assert held == {s for s in more[:200] if is_held_out(s, 0.2)}


@pytest.mark.slow
def test_promotes_only_on_improvement(raw_data: Path, tmp_path: Path) -> None:
    cohort = _cohort(raw_data, tmp_path / "cohort", 20)
    logs = {
        "models": ["shape"],
        "store_dir": tmp_path / "store",
        "log_file": tmp_path / "lineage.jsonl",
        "promotions": tmp_path / "promotions.jsonl",
    }

    # batch 1: no champion yet -> a champion keeping 90% of the variance is promoted
    first = run_retrain(cohort, ["b1"], shape_params=_shape_params(0.9), **logs)[0]
    assert first.decision == "promoted" and first.champion == ""
    assert first.challenger.startswith("shape:")

    # batch 2 grows the cohort; a challenger with even fewer modes is worse -> kept out
    cohort = _cohort(raw_data, tmp_path / "cohort", 30)
    worse = run_retrain(cohort, ["b2"], shape_params=_shape_params(0.3), **logs)[0]
    assert worse.decision == "rejected"
    assert worse.champion == first.challenger and worse.challenger == ""
    assert worse.challenger_error > worse.champion_error

    # batch 3: the full model on the grown cohort is better on the same held-out subjects
    better = run_retrain(cohort, ["b3"], shape_params=_shape_params(1.0), **logs)[0]
    assert better.decision == "promoted"
    assert better.held_out == worse.held_out
    assert better.challenger_error < better.champion_error

    # every decision is logged with its figures; promotions carry lineage with the parent
    decisions = read_decisions(logs["promotions"])
    assert [d["decision"] for d in decisions] == ["promoted", "rejected", "promoted"]
    assert all(d["challenger_error"] > 0 for d in decisions)
    records = [json.loads(line)["record"] for line in logs["log_file"].read_text().splitlines()]
    assert [r["parent"] for r in records] == ["", first.challenger]
    assert records[-1]["metrics"]["champion_error_mm"] == pytest.approx(better.champion_error)
    assert records[-1]["flow_run_id"]


@pytest.mark.slow
def test_population_challenger_must_beat_the_champion(raw_data: Path, tmp_path: Path) -> None:
    """Small real builds: the first is promoted; the same build again is no better."""
    params = dict(load_params("population"))
    params.update(n_subjects=4, fit_iterations=2, fit_batch_size=4, em_iterations=3)
    logs = {
        "models": ["population"],
        "population_params": params,
        "store_dir": tmp_path / "store",
        "log_file": tmp_path / "lineage.jsonl",
        "promotions": tmp_path / "promotions.jsonl",
    }
    first = run_retrain(raw_data, ["b1"], **logs)[0]
    assert first.decision == "promoted" and first.challenger.startswith("population:")
    assert 1.0 < first.challenger_error < 100.0  # mm, body lengths given height and weight

    again = run_retrain(raw_data, ["b2"], **logs)[0]
    assert again.decision == "rejected" and again.champion == first.challenger
    assert again.challenger_error == pytest.approx(again.champion_error)
    decisions = read_decisions(logs["promotions"])
    assert [d["model"] for d in decisions] == ["population", "population"]
    assert decisions[-1]["champion_error"] == pytest.approx(first.challenger_error)
