"""Project paths, environment defaults and `params.yaml` access.

Every tunable number used by a stage lives in `params.yaml`; code reads it through
:func:`load_params` and records it in lineage.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(os.environ.get("DH_PROJECT_ROOT", Path(__file__).resolve().parents[1]))
PARAMS_PATH = PROJECT_ROOT / "params.yaml"
REGISTRY_PATH = PROJECT_ROOT / "data" / "registry.yaml"
DATA_RAW = PROJECT_ROOT / "data" / "raw"
ARTIFACTS = PROJECT_ROOT / "artifacts"
REPORTS = PROJECT_ROOT / "reports"
CACHE = PROJECT_ROOT / ".cache"
BENCH_RESULTS = PROJECT_ROOT / "benchmarks" / "results"

_ENV_DEFAULTS = {
    "DVC_NO_ANALYTICS": "1",
    "BENTOML_DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_HOME": str(CACHE / "prefect"),
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "BENTOML_HOME": str(CACHE / "bentoml"),
    "VTK_DEFAULT_OPENGL_WINDOW": "vtkOSOpenGLRenderWindow",
    "MESA_SHADER_CACHE_DISABLE": "true",
    "PYVISTA_OFF_SCREEN": "true",
}


def apply_env_defaults() -> None:
    """Set telemetry-off and embedded-component defaults, keeping what the user already set."""
    for key, value in _ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)


def data_mirror() -> Path | None:
    """The local mirror of the demo data.

    `$DH_DATA_MIRROR` when set; else the first existing of `../shared/data` beside the
    checkout and `/work/shared/data` (where the development and CI machines keep it); else
    None, and files are downloaded from their canonical URLs.
    """
    env = os.environ.get("DH_DATA_MIRROR")
    if env:
        return Path(env).expanduser().resolve()
    for candidate in (PROJECT_ROOT.parent / "shared" / "data", Path("/work/shared/data")):
        if candidate.is_dir():
            return candidate
    return None


@lru_cache(maxsize=4)
def _read_params(path: str, mtime: float) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def load_params(section: str | None = None, path: Path | None = None) -> dict[str, Any]:
    """Read `params.yaml` (or `path`), whole or one top-level section.

    Raises:
        KeyError: when `section` is not in the file, naming the sections that are.
    """
    p = Path(path or PARAMS_PATH)
    params = _read_params(str(p), p.stat().st_mtime)
    if section is None:
        return dict(params)
    if section not in params:
        raise KeyError(f"{p}: no section {section!r}; sections are {sorted(params)}")
    return dict(params[section])
