"""The outcome of checking one batch: problems that fail it and notes that do not."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from dh.errors import Problem


@dataclass
class CheckReport:
    """Findings of the checks, each a :class:`dh.errors.Problem`.

    Attributes:
        problems: findings that fail the batch (it goes to quarantine).
        notes: findings that do not fail it but change what is stored, e.g. DICOM patient tags
            stripped on ingest, or a mesh in metres converted to millimetres.
        checked: number of files (or tables) examined.
    """

    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)
    checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def extend(self, other: CheckReport) -> CheckReport:
        self.problems.extend(other.problems)
        self.notes.extend(other.notes)
        self.checked += other.checked
        return self

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "problems": [p.to_dict() for p in self.problems],
            "notes": [p.to_dict() for p in self.notes],
        }

    def to_text(self, title: str = "") -> str:
        """A readable report: one line per problem, then one per note."""
        lines = [title] if title else []
        verdict = "PASSED" if self.ok else f"FAILED: {len(self.problems)} problem(s)"
        lines.append(f"{verdict}; {self.checked} item(s) checked; {len(self.notes)} note(s)")
        for i, p in enumerate(self.problems, 1):
            lines.append(f"{i:3d}. [{p.check}] {p}")
        if self.notes:
            lines.append("notes (the batch may pass with these):")
            lines.extend(f"   - [{p.check}] {p}" for p in self.notes)
        return "\n".join(lines) + "\n"

    def write(self, folder: Path, title: str = "") -> tuple[Path, Path]:
        """Write `report.json` and `report.txt` into `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        js, txt = folder / "report.json", folder / "report.txt"
        js.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        txt.write_text(self.to_text(title), encoding="utf-8")
        return js, txt
