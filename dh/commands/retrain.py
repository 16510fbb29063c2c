"""`dh retrain`: retrain the cohort models after a new batch; promote only on improvement."""

from __future__ import annotations

import typer


def retrain_cmd(
    force: bool = typer.Option(False, "--force", help="Retrain even without a new batch."),
    serve: bool = typer.Option(
        False, "--serve", help="Serve the `retrain` deployment (interval schedule) until Ctrl-C."
    ),
    on_ingest: bool = typer.Option(
        False,
        "--on-ingest",
        help="With --serve: trigger on the ingest flow's completion event "
        "(needs a Prefect server with event services, not the embedded one).",
    ),
) -> None:
    """Run the `retrain` flow once: challenger vs champion on the same held-out subjects.

    The decision and its figures are appended to artifacts/lineage/promotions.jsonl.
    """
    from flows.retrain import promotions_path, run_retrain, serve_deployment

    if serve:
        serve_deployment(on_ingest=on_ingest)
        return
    decision = run_retrain(force=force)
    if decision is None:
        typer.echo("no new batch in the ingest log: nothing to retrain (use --force)")
        return
    champ = "none" if decision.champion_error is None else f"{decision.champion_error:.3f}"
    chall = "none" if decision.challenger_error is None else f"{decision.challenger_error:.3f}"
    typer.echo(
        f"{decision.model}/{decision.structure}: {decision.decision}; held-out error "
        f"challenger {chall} vs champion {champ} "
        f"({decision.metric}, {len(decision.held_out)} subjects)"
    )
    if decision.challenger:
        typer.echo(f"new version {decision.challenger} (parent {decision.champion or '-'})")
    typer.echo(f"decision logged in {promotions_path()}")


def register(app: typer.Typer) -> None:
    app.command("retrain")(retrain_cmd)
