"""PHI guard for tables: reject columns or values that look like personal details.

A cohort table may hold only subject ids, dataset names, coded categories and numbers. The
guard flags column names that announce personal details (name, birth date, address, phone,
e-mail, record numbers) and string values that look like person names, dates, addresses,
phone numbers, e-mail addresses or free text. Reports give counts and row numbers, never the
offending values themselves.
"""

from __future__ import annotations

import re

import pandas as pd

from dh.errors import Problem

# Column-name tokens (after splitting snake/camel case) that announce a personal detail.
_PHI_NAME_TOKENS = {
    "name", "names", "firstname", "lastname", "surname", "forename", "fullname", "patient",
    "dob", "birth", "birthdate", "birthday", "address", "street", "city", "zip", "zipcode",
    "postcode", "postal", "phone", "telephone", "tel", "mobile", "cell", "fax", "email",
    "mail", "ssn", "social", "mrn", "passport", "licence", "license", "insurance",
    "comment", "comments", "note", "notes", "remarks", "text", "freetext",
}  # fmt: skip

_VALUE_PATTERNS: dict[str, re.Pattern[str]] = {
    "dates": re.compile(
        r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}$|^\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}$"
        r"|^\d{1,2}[- ][A-Za-z]{3,9}[- ]\d{2,4}$|^[A-Za-z]{3,9} \d{1,2},? \d{4}$"
    ),
    "e-mail addresses": re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+"),
    "phone numbers": re.compile(r"^\+?[\d\s().-]{7,}$"),
    "street addresses": re.compile(
        r"\b\d{1,5}[A-Za-z]?\s+(\w+\s+){1,4}(street|st|avenue|ave|road|rd|lane|ln|drive|dr|"
        r"boulevard|blvd|way|court|ct|place|pl|square|sq|strasse|straße|rue)\b\.?",
        re.IGNORECASE,
    ),
    "person or place names": re.compile(
        r"^[A-Z][a-z'-]+(\s+[A-Z]\.?)?\s+[A-Z][a-z'-]+$"  # Jane Doe, Jane Q. Doe
        r"|^[A-Z][a-z'-]+,\s*[A-Z][a-z'-]+$"  # Doe, Jane
        r"|^[A-Za-z'-]+\^[A-Za-z'-]+"  # Doe^Jane (DICOM person name)
    ),
}


def _tokens(column: str) -> set[str]:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", str(column))
    return {t for t in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if t}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def phi_column_names(columns: list[str]) -> list[str]:
    """Columns whose name announces a personal detail, e.g. ``patient_name``, ``DOB``."""
    return [c for c in columns if _tokens(c) & _PHI_NAME_TOKENS]


def classify_value(value: str, free_text_words: int = 6) -> str | None:
    """The kind of personal detail a string looks like, or None."""
    text = value.strip()
    if not text:
        return None
    for kind, pattern in _VALUE_PATTERNS.items():
        if pattern.search(text):
            if kind == "phone numbers" and (
                sum(ch.isdigit() for ch in text) < 7 or _is_number(text)
            ):
                continue
            return kind
    if len(text.split()) >= free_text_words:
        return "free text"
    return None


def check_phi(
    table: pd.DataFrame,
    file: str,
    allowed: dict[str, str] | None = None,
    free_text_words: int = 6,
) -> list[Problem]:
    """Flag PHI-like column names and string values.

    Args:
        table: any table (raw or harmonised).
        file: the file named in the problems.
        allowed: columns whose values must match a regular expression instead (e.g.
            ``{"subject_id": r"[a-z0-9]+(-[a-z0-9]+)+"}``); their names are not flagged.
        free_text_words: a value with at least this many words counts as free text.

    Returns:
        One problem per flagged column (check ``phi``).
    """
    allowed = allowed or {}
    problems = [
        Problem(
            file,
            col,
            "column name announces a personal detail",
            "no names, birth dates, addresses, phone numbers or free text in a cohort table",
            "drop the column before ingest; keep only coded, de-identified features",
            "phi",
        )
        for col in phi_column_names([c for c in table.columns if c not in allowed])
    ]
    for col in table.columns:
        series = table[col]
        if not (pd.api.types.is_string_dtype(series) or series.dtype == object):
            continue
        values = series.dropna().astype(str)
        if col in allowed:
            bad = ~values.str.fullmatch(allowed[col])
            if bad.any():
                problems.append(
                    Problem(
                        file,
                        col,
                        f"{int(bad.sum())} of {len(values)} values do not match the pattern "
                        f"(first at row {_row(bad)})",
                        f"values matching {allowed[col]!r}",
                        "use coded, de-identified values (ids like `dataset-123`)",
                        "phi",
                    )
                )
            continue
        kinds = values.map(lambda v: classify_value(v, free_text_words))
        flagged = kinds.notna()
        if flagged.any():
            top = kinds[flagged].value_counts()
            problems.append(
                Problem(
                    file,
                    col,
                    f"{int(flagged.sum())} of {len(values)} values look like "
                    f"{', '.join(top.index)} (first at row {_row(flagged)})",
                    "no names, birth dates, addresses, phone numbers or free text",
                    "remove or code the column before ingest",
                    "phi",
                )
            )
    return problems


def _row(mask: pd.Series) -> int:
    return int(mask.to_numpy().nonzero()[0][0])
