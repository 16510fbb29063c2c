"""Digital-human platform: shared configuration, data registry, cohort schema and the `dh` CLI."""

from __future__ import annotations

__version__ = "0.1.0"
