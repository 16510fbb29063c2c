from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from dh import registry
from dh.config import REGISTRY_PATH, data_mirror
from dh.errors import DHError


def test_registry_entries_are_complete_and_unique():
    entries = registry.load_registry()
    assert len(entries) >= 100
    assert len({e.path for e in entries}) == len(entries)
    for e in entries:
        assert len(e.sha256) == 64 and e.url.startswith("https://")
    groups = {e.group for e in entries}
    assert {"ansur2", "nhanes", "ct", "lungs", "femur", "hra"} <= groups


def test_pull_verifies_hashes(raw_data: Path):
    for e in registry.load_registry():
        assert registry.sha256_of(raw_data / e.path) == e.sha256


def test_pull_rejects_a_tampered_mirror_file(tmp_path: Path):
    mirror = data_mirror()
    assert mirror is not None, "tests need the demo-data mirror (DH_DATA_MIRROR)"
    entry = next(e for e in registry.load_registry() if e.group == "nhanes")
    fake = tmp_path / "mirror" / entry.path
    fake.parent.mkdir(parents=True)
    shutil.copyfile(mirror / entry.path, fake)
    with open(fake, "a", encoding="utf-8") as f:
        f.write("99999,1,,1,1,1,40,3\n")
    dest = tmp_path / "raw"
    with pytest.raises(DHError) as err:
        registry.pull(["nhanes"], dest=dest, mirror=tmp_path / "mirror")
    problem = err.value.problems[0]
    assert problem.field == "sha256" and problem.file == entry.path
    assert problem.expected == entry.sha256
    assert not (dest / entry.path).exists(), "a file failing its hash must not be left behind"


def test_unknown_group_is_named(tmp_path: Path):
    with pytest.raises(DHError, match="one of"):
        registry.pull(["no-such-group"], dest=tmp_path)


def test_incomplete_registry_row_is_rejected(tmp_path: Path):
    bad = tmp_path / "registry.yaml"
    doc = yaml.safe_load(REGISTRY_PATH.read_text())
    del doc["files"][0]["sha256"]
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(DHError, match="sha256"):
        registry.load_registry(bad)
