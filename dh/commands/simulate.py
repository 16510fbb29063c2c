"""`dh simulate FIT_OUTPUT --load-case stance [--body-weight-kg 70] [--mode fe|surrogate] -o OUT`.

Finite elements or the ONNX surrogate on a fitted femur (see models.simulation.api).
"""

from __future__ import annotations

from pathlib import Path

import typer


def simulate_cmd(
    fit_output: Path = typer.Argument(
        ..., help="Folder written by `dh fit` (fit.json + femur_left.vtp), or a femur mesh file."
    ),
    load_case: str = typer.Option("stance", "--load-case", help="Load case: stance."),
    body_weight_kg: float = typer.Option(None, "--body-weight-kg", help="Body weight in kg."),
    mode: str = typer.Option("fe", "--mode", help="fe (finite elements) or surrogate (ONNX)."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder."),
) -> None:
    """Simulate bone loading on a fitted femur: fields as VTU, summary.json, von Mises PNG."""
    import logging

    from dh.console import console, progress
    from dh.errors import DHError
    from models.simulation.api import simulate

    logging.getLogger("skfem").setLevel(logging.WARNING)
    try:
        with progress(f"simulating {load_case} ({mode})", total=None):
            result = simulate(fit_output, load_case, body_weight_kg, mode)
        paths = result.write(out)
    except DHError as exc:
        for problem in exc.problems:
            console.print(f"[red]error[/red] {problem}")
        raise typer.Exit(2) from exc
    s = result.summary()
    typer.echo(
        f"{mode}: von Mises peak {s['von_mises_peak_mpa']:.1f} MPa, displacement peak "
        f"{s['displacement_peak_mm']:.2f} mm, strain energy {s['strain_energy_j']:.3f} J, "
        f"{s['time_s']:.2f} s -> {paths['summary'].parent}"
    )


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_cmd)
