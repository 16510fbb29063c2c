"""Errors that tell the user what failed, the value received, what was expected and the fix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Problem:
    """One finding about an input: where it is, what was seen, what was expected, how to fix it.

    Attributes:
        file: the file (or folder, or request part) the problem is in.
        field: the column, tag, key or property concerned ("" when it is the whole file).
        value: the offending value, as text (never a personal detail).
        expected: what a valid input holds there.
        fix: what the user should do.
        check: the short name of the check that found it.
    """

    file: str
    field: str
    value: str
    expected: str
    fix: str
    check: str = ""

    def __str__(self) -> str:
        where = f"{self.file}" + (f" [{self.field}]" if self.field else "")
        return f"{where}: got {self.value}; expected {self.expected}. Fix: {self.fix}"

    def to_dict(self) -> dict[str, str]:
        return {
            "check": self.check,
            "file": self.file,
            "field": self.field,
            "value": self.value,
            "expected": self.expected,
            "fix": self.fix,
        }


class DHError(Exception):
    """A user-facing error carrying one or more :class:`Problem` records.

    The CLI prints each problem on its own line and exits with status 2; the services map it
    to a 4xx response.
    """

    def __init__(self, problems: Problem | list[Problem], summary: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        self.summary = summary or "; ".join(str(p) for p in self.problems)
        super().__init__(self.summary)


def fail(file: str, field: str, value: object, expected: str, fix: str, check: str = "") -> None:
    """Raise a :class:`DHError` for a single problem."""
    raise DHError(Problem(str(file), field, _short(value), expected, fix, check))


def _short(value: object, limit: int = 80) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."
