"""`dh fit`: fit structure shape models to one subject's segmentation, scan and landmarks."""

from __future__ import annotations

from pathlib import Path

import typer


def fit_cmd(
    inputs: list[Path] = typer.Argument(
        ...,
        help="Label map (.nii/.nii.gz), `dh segment` output folder, mesh or point cloud "
        "(PLY, OBJ, STL, VTP, CSV x,y,z in mm) and/or landmarks CSV (name,x,y,z).",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    structure: str = typer.Option(
        None, "--structure", "-s", help="What a bare mesh/point set shows: lungs, femur_left, skin."
    ),
    feature: list[str] = typer.Option(
        None, "--feature", "-f", help="Known feature NAME=VALUE (repeatable)."
    ),
    model: list[Path] = typer.Option(
        None, "--model", help="Shape model .npz to use for its structure (default: built one)."
    ),
    axes: str = typer.Option(
        "LPS",
        "--axes",
        help="Axis convention of bare meshes/point sets: LPS, RAS or any (label maps are RAS).",
    ),
) -> None:
    """Fit shape models to a subject; writes fit.json, <structure>.vtp and a residual PNG."""
    from dh.console import console, progress
    from models.fitting import fit_subject, read_inputs, write_fit_outputs
    from models.shape import ShapeModel

    if structure == "skin":  # whole-body skin: anny body fit (models.fitting.body)
        from models.fitting.body import fit_skin_files

        fit, path = fit_skin_files(inputs, out, axes)
        console.print(f"skin: residual mean {fit.residual_mean_mm:.2f} mm, {fit.seconds:.1f} s")
        typer.echo(str(path))
        return
    custom = {m.structure: m for m in map(ShapeModel.load, model or [])}
    with progress("fitting", total=None) as advance:
        subject = read_inputs(inputs, structure, feature or [], axes)
        advance(description=f"fitting {', '.join(subject.observations)}")
        result = fit_subject(subject, models=custom)
        advance(description="writing outputs")
        path = write_fit_outputs(result, subject, out)
    for name, fit in result.fits.items():
        r = fit.residual
        console.print(
            f"{name}: residual mean {r.mean_mm:.2f} mm, p95 {r.p95_mm:.2f} mm, "
            f"Hausdorff {r.hausdorff_mm:.2f} mm, {r.n_inliers}/{r.n_points} inliers, "
            f"{fit.seconds:.2f} s"
        )
    for f in result.features:
        console.print(f"{f.name}: {f.value:.1f} +- {f.std:.1f} {f.unit}")
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    app.command("fit")(fit_cmd)
