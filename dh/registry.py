"""The data registry: every demo file with its canonical URL, sha256, licence and local path.

Files are fetched into `data/raw/<path>` from a local mirror folder when one is configured
(`DH_DATA_MIRROR`, else `../shared/data`), otherwise from the canonical URL with pooch, and
every file's sha256 is verified either way.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pooch
import yaml

from dh.config import DATA_RAW, REGISTRY_PATH, data_mirror
from dh.errors import DHError, Problem

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegistryEntry:
    """One registered file. `path` is relative to the mirror root and to `data/raw/`."""

    path: str
    group: str
    url: str
    sha256: str
    licence: str
    note: str = ""


def load_registry(path: Path = REGISTRY_PATH) -> list[RegistryEntry]:
    """Read the registry YAML into entries, rejecting incomplete rows by name."""
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    entries = []
    for i, row in enumerate(doc.get("files", [])):
        missing = [k for k in ("path", "group", "url", "sha256", "licence") if not row.get(k)]
        if missing:
            raise DHError(
                Problem(
                    str(path),
                    f"files[{i}]",
                    str(row.get("path")),
                    f"keys {missing}",
                    "give every registry entry a path, group, url, sha256 and licence",
                    "registry",
                )
            )
        entries.append(RegistryEntry(**{k: str(v) for k, v in row.items()}))
    return entries


def local_path(relpath: str, root: Path = DATA_RAW) -> Path:
    """Where a registered file lives once pulled."""
    return root / relpath


def sha256_of(path: Path) -> str:
    """The sha256 hex digest of a file."""
    return pooch.file_hash(str(path), alg="sha256")


@dataclass
class PullResult:
    """What `pull` did: files copied or downloaded, files already present and verified."""

    fetched: list[str]
    verified: list[str]
    source: str


def pull(
    groups: Iterable[str] | None = None,
    dest: Path = DATA_RAW,
    mirror: Path | None = None,
    registry: Path = REGISTRY_PATH,
    on_file: Callable[[RegistryEntry], None] | None = None,
) -> PullResult:
    """Fetch registered files into `dest`, verifying each sha256.

    Args:
        groups: only these registry groups (e.g. ``["ct", "lungs"]``); all when None.
        dest: destination root, `data/raw` by default.
        mirror: mirror folder; defaults to :func:`dh.config.data_mirror`. When no mirror is
            available, files are downloaded from their canonical URLs.
        registry: the registry YAML.
        on_file: called after each file (used for progress bars).

    Raises:
        DHError: a file's hash differs from the registry (the bad copy is removed), or a file
            is absent from the mirror and cannot be downloaded.
    """
    mirror = mirror if mirror is not None else data_mirror()
    wanted = set(groups) if groups else None
    entries = [e for e in load_registry(registry) if wanted is None or e.group in wanted]
    if wanted and not entries:
        known = sorted({e.group for e in load_registry(registry)})
        raise DHError(
            Problem(
                str(registry),
                "group",
                str(sorted(wanted)),
                f"one of {known}",
                "pass a registered group name",
                "registry",
            )
        )
    result = PullResult([], [], str(mirror) if mirror else "canonical URLs")
    for entry in entries:
        target = local_path(entry.path, dest)
        if target.exists() and sha256_of(target) == entry.sha256:
            result.verified.append(entry.path)
        else:
            _fetch_one(entry, target, mirror)
            result.fetched.append(entry.path)
        if on_file:
            on_file(entry)
    logger.info("pulled %d files, %d already present", len(result.fetched), len(result.verified))
    return result


def _fetch_one(entry: RegistryEntry, target: Path, mirror: Path | None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    if mirror is not None and (mirror / entry.path).is_file():
        shutil.copyfile(mirror / entry.path, tmp)
        source = str(mirror / entry.path)
    else:
        try:
            pooch.retrieve(
                entry.url, known_hash=None, fname=tmp.name, path=tmp.parent, progressbar=False
            )
        except Exception as exc:  # network errors come in many types
            raise DHError(
                Problem(
                    entry.path,
                    "url",
                    entry.url,
                    "a reachable download",
                    "set DH_DATA_MIRROR to a folder holding the demo data, or "
                    f"restore network access ({type(exc).__name__}: {exc})",
                    "registry",
                )
            ) from exc
        source = entry.url
    digest = sha256_of(tmp)
    if digest != entry.sha256:
        tmp.unlink(missing_ok=True)
        raise DHError(
            Problem(
                entry.path,
                "sha256",
                digest,
                entry.sha256,
                f"the copy from {source} differs from the registered file: "
                "replace it with the registered version, or update the registry "
                "entry if the dataset was deliberately re-released",
                "registry",
            )
        )
    tmp.replace(target)
