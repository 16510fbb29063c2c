"""`dh data pull|list`: fetch the registered demo files and check their hashes."""

from __future__ import annotations

from pathlib import Path

import typer

data_app = typer.Typer(
    help="The data registry: pull and list the demo files.", no_args_is_help=True
)


@data_app.command("pull")
def pull_cmd(
    group: list[str] = typer.Option(None, "--group", "-g", help="Only these registry groups."),
    dest: Path = typer.Option(None, help="Destination folder (default data/raw)."),
) -> None:
    """Fetch every registered file into data/raw from the mirror or its URL, verifying sha256."""
    from dh import registry
    from dh.config import DATA_RAW
    from dh.console import progress

    entries = [e for e in registry.load_registry() if not group or e.group in group]
    with progress("pulling demo data", total=len(entries)) as advance:
        result = registry.pull(group or None, dest or DATA_RAW, on_file=lambda e: advance())
    typer.echo(
        f"{len(result.fetched)} fetched, {len(result.verified)} already verified "
        f"(source: {result.source}) -> {dest or DATA_RAW}"
    )


@data_app.command("list")
def list_cmd() -> None:
    """List the registered files: group, path, licence."""
    from dh import registry

    for e in registry.load_registry():
        typer.echo(f"{e.group:8s} {e.licence:14s} {e.path}")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
