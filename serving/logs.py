"""Keep personal details out of the server log.

BentoML logs every exception an endpoint raises, with its message and traceback. For a user's
error (a 4xx: a request that failed validation) that message can echo what the user sent,
e.g. a feature name or value. :class:`RedactUserErrors` keeps those records but replaces them
by the error's type and status only. Our own code logs model tags, concerns and sizes, never
request content.
"""

from __future__ import annotations

import logging

BENTOML_ERROR_LOGGERS = ("bentoml._internal.server.http_app", "bentoml.serve")


def _status(exc: BaseException) -> int | None:
    code = getattr(exc, "error_code", None)
    if code is not None:
        return int(getattr(code, "value", code))
    if type(exc).__name__ in ("ValidationError", "JSONDecodeError", "DHError"):
        return 400
    return None


class RedactUserErrors(logging.Filter):
    """Rewrites log records of 4xx request errors to carry no request content."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            status = _status(record.exc_info[1])
            if status is not None and 400 <= status < 500:
                path = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
                record.msg = "request error %s on %s (%s; details sent to the client only)"
                record.args = (status, path, type(record.exc_info[1]).__name__)
                record.exc_info = None
                record.exc_text = None
                record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def install() -> None:
    """Attach the filter to BentoML's error loggers (idempotent)."""
    for name in BENTOML_ERROR_LOGGERS:
        log = logging.getLogger(name)
        if not any(isinstance(f, RedactUserErrors) for f in log.filters):
            log.addFilter(RedactUserErrors())
