"""Reading fit inputs: the demo label map, point CSVs, landmarks, features, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dh.errors import DHError
from models.fitting.inputs import parse_features, read_inputs, read_labelmap


def test_demo_label_map_gives_the_lower_left_lobe_without_fov_caps(raw_data):
    obs = read_labelmap(raw_data / "ct" / "example_seg.nii.gz")
    assert [o.structure for o in obs] == ["lungs"]
    pts = obs[0].points
    assert obs[0].axes == "RAS" and len(pts) > 500
    # the lobe is cut by the top slice (z = 181 mm): no points on that plane
    assert pts[:, 2].max() < 181.0 - 1.0


def test_point_csv_needs_a_structure(raw_data, tmp_path):
    src = raw_data / "lungs" / "lll" / "landmarksLLL-case0576.csv"
    with pytest.raises(DHError, match="--structure"):
        read_inputs([src])
    got = read_inputs([src], structure="lungs")
    assert got.observations["lungs"].points.shape == (6006, 3)


def test_landmarks_and_features(tmp_path):
    lm = tmp_path / "lm.csv"
    lm.write_text("name,x,y,z\nfemur_proximal_end,1,2,3\n", encoding="utf-8")
    pts = tmp_path / "p.csv"
    pts.write_text("x,y,z\n" + "\n".join(f"{i},{i % 7},{i % 5}" for i in range(50)))
    got = read_inputs([pts, lm], structure="femur_left", features=["age=35"])
    np.testing.assert_allclose(got.landmarks["femur_proximal_end"], [1, 2, 3])
    assert got.features == {"age": 35.0}
    with pytest.raises(DHError, match="NAME=VALUE"):
        parse_features(["age"])


def test_unknown_structure_and_missing_file(tmp_path):
    with pytest.raises(DHError, match="lungs"):
        read_inputs([tmp_path], structure="kidney")
    with pytest.raises(DHError, match="missing"):
        read_inputs([tmp_path / "nope.ply"], structure="lungs")


@pytest.mark.slow
def test_dh_fit_cli_on_the_demo_ct_label_map(raw_data, tmp_path):
    from typer.testing import CliRunner

    from dh.cli import app

    out = tmp_path / "fit"
    result = CliRunner().invoke(
        app, ["fit", str(raw_data / "ct" / "example_seg.nii.gz"), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "fit.json").read_text())
    lungs = doc["structures"]["lungs"]
    assert lungs["residual_mm"]["mean_mm"] < 2.0
    assert len(lungs["coefficients"]) == len(lungs["coefficients_std"])
    assert (out / "lungs.vtp").is_file() and (out / "lungs_residual.png").stat().st_size > 10_000
    assert doc["inputs"][0]["sha256"]
