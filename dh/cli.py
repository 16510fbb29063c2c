"""The `dh` command line.

Each subcommand lives in its own module under :mod:`dh.commands` and exposes
``register(app: typer.Typer) -> None``; modules import heavy libraries inside their command
functions so that `dh --help` stays fast.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys

import typer

from dh import commands
from dh.config import apply_env_defaults
from dh.errors import DHError

app = typer.Typer(
    name="dh",
    help="Digital-human platform: data, segmentation, population model, fitting, simulation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register_commands() -> None:
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not verbose:
        for chatty in ("skfem", "pyacvd", "httpx", "distributed", "dvc", "numba"):
            logging.getLogger(chatty).setLevel(logging.WARNING)


_register_commands()


def main() -> None:
    """Entry point of the `dh` console script: user errors print cleanly and exit 2."""
    apply_env_defaults()
    try:
        app()
    except DHError as err:
        typer.secho("error:", fg="red", err=True, bold=True)
        for problem in err.problems:
            typer.echo(f"  - {problem}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
