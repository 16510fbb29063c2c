"""`dh lineage` and `dh verify`: trace a model version back to its raw files; re-check hashes."""

from __future__ import annotations

import sys

import typer


def lineage_cmd(
    model: str = typer.Argument(None, help="MODEL[:VERSION]; the latest version by default."),
    list_all: bool = typer.Option(False, "--list", help="List every model version, one a line."),
    as_json: bool = typer.Option(False, "--json", help="Print the full lineage records as JSON."),
) -> None:
    """Print the chain from a served model back to the raw files, or list every model version."""
    import json

    from dh.errors import fail
    from models.registry import chain, list_models

    if list_all:
        for m in list_models():
            r = m.record
            typer.echo(
                f"{m.tag}  created={m.created_utc}  data={r.data_version}  "
                f"commit={r.git_commit[:12] or '-'}{'+dirty' if r.git_dirty else ''}  "
                f"parent={r.parent or '-'}"
            )
        return
    if not model:
        fail("dh lineage", "MODEL", "nothing", "MODEL[:VERSION] or --list", "name a model")

    items = chain(model)
    if as_json:
        records = [getattr(i, "record", i).to_dict() for i in items]
        typer.echo(json.dumps(records, indent=2, sort_keys=True))
        return
    for depth, item in enumerate(items):
        record = getattr(item, "record", item)
        where = f"store: {item.path}" if hasattr(item, "path") else "lineage log only"
        _print_record(record, where, "  " * depth)


def _print_record(r, where: str, pad: str) -> None:
    """One record, from the model down to its raw files."""
    typer.echo(f"{pad}{r.tag}  ({where})")
    typer.echo(f"{pad}  created        {r.created_utc}")
    typer.echo(f"{pad}  record sha256  {r.record_sha256}")
    for a in r.artefacts:
        typer.echo(f"{pad}  artefact       {a.path}  sha256={a.sha256}  {a.size} B")
    typer.echo(f"{pad}  metrics        {_compact(r.metrics)}")
    typer.echo(f"{pad}  validation     {_compact(r.validation)}")
    typer.echo(f"{pad}  flow run       {r.flow_run_id or '-'}")
    dirty = " (dirty working tree)" if r.git_dirty else ""
    typer.echo(f"{pad}  code commit    {r.git_commit or '-'}{dirty}")
    typer.echo(f"{pad}  params         {_compact(r.params)}")
    typer.echo(f"{pad}  packages       {_compact(r.packages)}")
    typer.echo(f"{pad}  data version   {r.data_version}")
    for f in r.inputs:
        typer.echo(f"{pad}    input        {f.path}  md5={f.md5}  sha256={f.sha256}")
    typer.echo(f"{pad}  parent         {r.parent or '-'}")


def _compact(doc: dict, limit: int = 400) -> str:
    import json

    text = json.dumps(doc, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def verify_cmd(
    model: str = typer.Argument(..., help="MODEL[:VERSION]; the latest version by default."),
) -> None:
    """Recompute every hash of a model version's lineage; exit 1 on any mismatch."""
    from models.registry import verify_model

    report = verify_model(model)
    for c in report.mismatches:
        typer.echo(f"MISMATCH {c.what}: recorded {c.expected}, found {c.actual}")
    n_ok = sum(c.ok for c in report.checks)
    status = "OK" if report.ok else "FAILED"
    typer.echo(f"{report.tag}: {status} ({n_ok}/{len(report.checks)} checks passed)")
    if not report.ok:
        sys.exit(1)


def register(app: typer.Typer) -> None:
    app.command("lineage")(lineage_cmd)
    app.command("verify")(verify_cmd)
