"""`dh segment INPUT -o OUT`: segment a CT (NIfTI file or DICOM folder) into structures."""

from __future__ import annotations

from pathlib import Path

import typer


def segment_cmd(
    input_path: Path = typer.Argument(
        ..., help="A .nii/.nii.gz CT or a folder of one DICOM CT series."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (replaced on success)."),
    model_dir: Path = typer.Option(
        None,
        "--model",
        "-m",
        help="Folder with model.onnx + model.json (default artifacts/segmentation).",
    ),
    no_render: bool = typer.Option(False, "--no-render", help="Skip render.png."),
) -> None:
    """Segment a CT with the exported ONNX model.

    Writes OUT/labelmap.nii.gz (input grid, world RAS+ affine), OUT/meshes/<structure>.vtp and
    OUT/meshes.glb (world RAS+ mm), OUT/volumes.csv (mL), OUT/render.png and OUT/segment.json.
    """
    from dh.console import progress
    from models.segmentation.infer import segment

    with progress(f"segmenting {input_path.name}") as advance:
        result = segment(input_path, out, model_dir=model_dir, render=not no_render)
        advance()
    typer.echo(
        f"{len(result.meshes)} structures, model {result.model_version} "
        f"({', '.join(result.providers)}), {result.seconds:.1f} s -> {result.out_dir}"
    )
    for name, ml in result.volumes_ml.items():
        typer.echo(f"  {name:24s} {ml:10.1f} mL")


def register(app: typer.Typer) -> None:
    app.command("segment")(segment_cmd)
