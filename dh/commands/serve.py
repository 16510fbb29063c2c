"""`dh serve`: start every service (segment, generate, fit, simulate) on 127.0.0.1."""

from __future__ import annotations

import typer


def serve_cmd(
    port: int = typer.Option(None, "--port", "-p", help="Port (default serving.port)."),
    host: str = typer.Option(None, help="Interface (default serving.host, 127.0.0.1)."),
    service: str = typer.Option(
        "serving.service:DigitalHuman",
        help="Service to serve: DigitalHuman (all concerns in one process) or one of "
        "serving.service:Segment|Generate|Fit|Simulate.",
    ),
) -> None:
    """Serve the models of the BentoML store over HTTP until interrupted (Ctrl-C).

    The API key is read from the env var named by `serving.api_key_env` (DH_API_KEY) when set.
    """
    import os
    import subprocess
    import sys

    from dh.config import PROJECT_ROOT, apply_env_defaults, load_params

    apply_env_defaults()
    params = load_params("serving")
    host = host or params["host"]
    port = port or int(params["port"])
    typer.echo(f"serving {service} on http://{host}:{port} (docs at /, readiness at /readyz)")
    cmd = [sys.executable, "-m", "bentoml", "serve", service, "--host", host, "--port", str(port)]
    try:
        code = subprocess.call(cmd, cwd=PROJECT_ROOT, env=dict(os.environ))
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
