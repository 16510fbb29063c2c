"""`dh generate`: a digital human from any subset of physiological features.

Writes into the output folder (all geometry in the body frame, RAS mm):

- `digital_human.glb`: skin, placed structures and organs in one scene;
- `skin.vtp` (with the per-vertex `vertex_std_mm`), `<structure>.vtp`, `organ_<name>.vtp`;
- `features.json` and `features.csv`: given values, and every other feature predicted with
  its standard deviation and interval;
- `render.png`: the skin semi-transparent over the organs and structures (anterior view).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import typer

from dh.errors import fail


def parse_features(
    sex: str | None,
    age: float | None,
    height_mm: float | None,
    weight_kg: float | None,
    extra: list[str],
) -> dict[str, Any]:
    """Merge the named options and `NAME=VALUE` pairs into a catalogue feature request.

    Raises:
        DHError: a pair without `=`, or a non-numeric value for a numeric feature.
    """
    features: dict[str, Any] = {}
    if sex is not None:
        features["sex"] = sex.upper()
    for name, value in (("age_years", age), ("stature_mm", height_mm), ("weight_kg", weight_kg)):
        if value is not None:
            features[name] = value
    for item in extra or []:
        if "=" not in item:
            fail("--feature", "", item, "NAME=VALUE, e.g. chest_circumference_mm=950", "add =")
        name, text = (s.strip() for s in item.split("=", 1))
        if name == "sex":
            features[name] = text.upper()
            continue
        try:
            features[name] = float(text)
        except ValueError:
            fail("--feature", name, text, "a number in the feature's unit", "give a number")
    return features


def write_outputs(human, out: Path) -> dict[str, Path]:  # noqa: ANN001 (GeneratedHuman)
    """Write meshes, features and the rendering of a generated human into `out`."""
    import numpy as np

    from models.meshio import write_glb, write_vtp
    from models.render import render_meshes

    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    meshes = {"skin": human.skin, **human.structures}
    meshes.update({f"organ_{k}": m for k, m in human.organs.items()})
    paths["glb"] = write_glb(meshes, out / "digital_human.glb")
    write_vtp(human.skin, out / "skin.vtp", {"vertex_std_mm": human.vertex_std_mm})
    for name, mesh in meshes.items():
        if name != "skin":
            write_vtp(mesh, out / f"{name}.vtp")

    doc = {
        "given": human.given,
        "sex_probability": human.sex_probability,
        "predicted": {k: vars(p) for k, p in human.predictions.items()},
        "body_measurements": human.body_measurements,
        "body_parameters": human.body_params.tolist(),
        "vertex_std_mm": {
            "mean": float(human.vertex_std_mm.mean()),
            "max": float(human.vertex_std_mm.max()),
        },
        "seconds": human.seconds,
    }
    paths["json"] = out / "features.json"
    paths["json"].write_text(json.dumps(doc, indent=2), encoding="utf-8")
    paths["csv"] = out / "features.csv"
    with open(paths["csv"], "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["feature", "given", "mean", "sd", "lower", "upper", "level"])
        for k, v in human.given.items():
            w.writerow([k, "yes", v, "", "", "", ""])
        for k, p in human.predictions.items():
            w.writerow([k, "no", f"{p.mean:.2f}", f"{p.sd:.2f}", f"{p.lower:.2f}",
                        f"{p.upper:.2f}", p.level])  # fmt: skip

    # render from the front: the coronal view looks along +y, so turn the body to face it
    turn = np.diag([-1.0, -1.0, 1.0, 1.0])
    inside = {k: m.copy().apply_transform(turn) for k, m in meshes.items() if k != "skin"}
    skin = human.skin.copy().apply_transform(turn)
    opacity = {"skin": 0.25}
    title = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in human.given.items())  # fmt: skip
    paths["png"] = render_meshes(
        {**inside, "skin": skin}, out / "render.png", opacity=opacity, title=title
    )
    return paths


def generate_cmd(
    out: Path = typer.Option(..., "-o", "--out", help="Output folder."),
    sex: str = typer.Option(None, "--sex", help="F or M (omitted: inferred from the rest)."),
    age: float = typer.Option(None, "--age", help="Age in years."),
    height_mm: float = typer.Option(None, "--height-mm", help="Stature in mm."),
    weight_kg: float = typer.Option(None, "--weight-kg", help="Weight in kg."),
    feature: list[str] = typer.Option(
        None, "--feature", "-f", help="Any catalogue feature as NAME=VALUE (repeatable)."
    ),
    organs: bool = typer.Option(True, help="Place structures and HRA organs inside."),
    model_dir: Path = typer.Option(
        None, help="Folder of population.npz and organs_*.npz (default artifacts/population)."
    ),
) -> None:
    """Generate the expected digital human for the given features and write meshes, predicted
    features with intervals, and a rendering."""
    from dh.cohort import check_feature_values
    from dh.console import progress
    from models.population.generate import Generator

    features = parse_features(sex, age, height_mm, weight_kg, feature)
    check_feature_values(features)  # fail fast, before loading the models
    with progress("generating", total=None) as advance:
        gen = Generator(model_dir) if model_dir else Generator()
        gen.validate(features)
        advance(description="generating: body and organs")
        human = gen.generate(features, with_organs=organs)
        advance(description="generating: writing outputs")
        paths = write_outputs(human, out)
    typer.echo(
        f"sex P(F)={human.sex_probability.get('F', 0.0):.2f}; "
        f"{len(human.predictions)} features predicted; {len(human.organs)} organs, "
        f"{len(human.structures)} structures; {human.seconds:.1f} s -> {out}"
    )
    for key in ("glb", "json", "csv", "png"):
        typer.echo(f"  {key}: {paths[key]}")


def register(app: typer.Typer) -> None:
    app.command("generate")(generate_cmd)
