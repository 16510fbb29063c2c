"""`dh ingest PATH`: validate a cohort batch, then version it with DVC or quarantine it."""

from __future__ import annotations

from pathlib import Path

import typer


def ingest_cmd(
    path: Path = typer.Argument(..., help="The batch folder (e.g. data/raw)."),
    root: Path = typer.Option(
        None, help="The git + DVC repository holding data/ (default: this project)."
    ),
) -> None:
    """Validate a batch of tables, images and meshes; version it (DVC) or quarantine it.

    Prints the data version (md5 of data/cohort in data/cohort.dvc). A failing batch is
    copied to data/quarantine/<batch-id>/ with report.json and report.txt, and the command
    exits with status 2 naming each problem.
    """
    import logging

    from dh.config import PROJECT_ROOT
    from dh.console import progress
    from dh.errors import DHError, Problem
    from flows import ingest as flow
    from validation.batch import scan_batch

    for chatty in ("httpx", "dvc"):  # Prefect's API calls; DVC's git hints (we print ours)
        logging.getLogger(chatty).setLevel(logging.WARNING)
    if not path.is_dir():
        raise DHError(
            Problem(str(path), "", "not a folder", "a batch folder", "check the path", "batch")
        )
    with progress(f"checking {path}", total=len(scan_batch(path))) as advance:
        flow.progress_hook = lambda item: advance(description=f"checked {item.rel}")
        try:
            result = flow.run_ingest(path, root)
        finally:
            flow.progress_hook = None

    repo = Path(root or PROJECT_ROOT)
    notes = f", {len(result.report.notes)} note(s)" if result.report.notes else ""
    if result.status == "quarantined":
        typer.echo(f"batch {result.batch_id}: FAILED validation{notes}")
        typer.echo(f"report: {result.quarantine / 'report.txt'}")
        typer.echo(f"data version unchanged: {result.data_version}")
        raise DHError(
            result.report.problems,
            summary=f"batch {result.batch_id} quarantined in {result.quarantine}",
        )
    if result.status == "unchanged":
        typer.echo(f"batch {result.batch_id}: already ingested, nothing to do")
    else:
        typer.echo(
            f"batch {result.batch_id}: versioned{notes}; {result.subjects_added} subject(s) "
            f"and {result.files_added} file(s) added to {repo / 'data' / 'cohort'}"
        )
        typer.echo(
            "record it in git: git add data/cohort.dvc data/.gitignore data/ingest_log.jsonl"
        )
    typer.echo(f"data version: {result.data_version}")


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest_cmd)
