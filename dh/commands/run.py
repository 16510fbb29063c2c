"""`dh run`: the whole pipeline on the demo cohort (Prefect flow `pipeline`), with progress."""

from __future__ import annotations

import typer


def run_cmd(
    force: bool = typer.Option(
        False, "--force", help="Rerun DVC-tracked steps even when their stage is up to date."
    ),
    only: list[str] = typer.Option(None, "--only", help="Run only these steps (repeatable)."),
) -> None:
    """Pull, ingest and validate the demo cohort; train and build every model; fit and simulate
    a demo subject; register the models; call the service once; write reports/report.md/.html.

    Works on a fresh clone (the data are pulled first). Steps whose DVC stage is up to date
    are not rerun; a part not built yet is skipped with a warning in the report. Exits 1 when
    a step failed.
    """
    import logging
    import time

    from dh.config import REPORTS
    from dh.console import progress
    from flows import pipeline as flow

    for chatty in ("httpx", "dvc", "distributed", "prefect"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    names = [name for name, _, _ in flow.steps() if not only or name in only] + ["report"]
    t0 = time.perf_counter()
    with progress("pipeline", total=len(names)) as advance:
        advance(0, description=f"pipeline: {names[0]}")

        def hook(name: str, status: str) -> None:
            nxt = names[names.index(name) + 1] if names.index(name) + 1 < len(names) else "end"
            advance(description=f"{name}: {status}; next {nxt}")

        flow.progress_hook = hook
        try:
            outcomes = flow.pipeline_impl(force=force, only=only or None)
        finally:
            flow.progress_hook = None

    for o in outcomes:
        line = f"{o.name:20s} {o.status:10s} {o.seconds:7.1f} s"
        typer.echo(line + (f"  {o.detail}" if o.detail and o.status != "done" else ""))
    typer.echo(f"total {time.perf_counter() - t0:.0f} s; report: {REPORTS / 'report.md'}")
    if any(o.status == "failed" for o in outcomes):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("run")(run_cmd)
