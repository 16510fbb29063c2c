"""Lineage records: which data files (sha256), parameters and code commit made an artefact."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from dh.config import PROJECT_ROOT


def sha256_file(path: str | Path) -> str:
    """sha256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_path(path: str | Path) -> dict[str, str]:
    """sha256 of a file, or of every file in a folder, keyed by path relative to the project."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {_rel(p): sha256_file(p) for p in files}


def git_commit() -> dict[str, Any]:
    """Current git commit of the project and whether the work tree has uncommitted changes."""

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=20
        )
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"commit": commit or None, "dirty": dirty}


def write_lineage(path: str | Path, record: dict[str, Any]) -> Path:
    """Write a lineage JSON (adds the git commit and a UTC timestamp)."""
    path = Path(path)
    doc = {
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git": git_commit(),
        **record,
    }
    path.write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
    return path


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT.resolve()))
    except ValueError:
        return str(path)
