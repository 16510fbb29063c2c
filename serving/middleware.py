"""ASGI middleware in front of every service: API key, request size limits, /readyz, /models.

- API key: when the env var named by `serving.api_key_env` (default `DH_API_KEY`) is set, every
  request, health and metrics included, must carry it as `X-API-Key: KEY` or
  `Authorization: Bearer KEY`; otherwise 401.
- Size: a body over `serving.max_request_mb` (`serving.max_upload_mb` for /segment) gets 413,
  whether it declares a Content-Length or is streamed in chunks.
- A concern whose model is not loaded answers 503 with the reason (not registered, failed to
  load, still warming up).
- `GET /readyz` answers JSON: 200 with the ONNX Runtime providers in use once every model has
  warmed up, 503 before. `GET /models` answers each served model's version and lineage record.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from typing import Any

from serving.common import SETTINGS, STATE, ServingSettings

logger = logging.getLogger(__name__)

UPLOAD_PATHS = ("/segment",)
CONCERN_PATHS = {
    "/segment": "segment",
    "/generate": "generate",
    "/fit": "fit",
    "/simulate": "simulate",
}


class GatewayMiddleware:
    """Pure ASGI middleware (no body buffering unless a request is streamed without a length)."""

    def __init__(self, app: Any, settings: ServingSettings = SETTINGS) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}

        key = os.environ.get(self.settings.api_key_env, "")
        if key and not _authorised(headers, key):
            await _json(
                send,
                401,
                {
                    "error": "missing or wrong API key",
                    "fix": "send the key as 'X-API-Key: KEY' or 'Authorization: Bearer KEY'",
                },
            )
            return

        if method == "GET" and path == "/readyz":
            body = STATE.readiness()
            await _json(send, 200 if body["ready"] else 503, body)
            return
        if method == "GET" and path == "/models":
            await _json(send, 200, STATE.catalogue())
            return

        limit = (
            self.settings.max_upload_bytes
            if path in UPLOAD_PATHS
            else self.settings.max_request_bytes
        )
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await _json(send, 400, {"error": f"bad Content-Length {declared[:20]!r}"})
                return
            if int(declared) > limit:
                await _too_large(send, int(declared), limit)
                return
        elif method in ("POST", "PUT", "PATCH"):
            body, more = await _read_bounded(receive, limit)
            if more:
                await _too_large(send, body, limit)
                return
            receive = _replay(body, receive)

        concern = CONCERN_PATHS.get(path)
        if concern is not None and concern not in STATE.models:
            reason = STATE.missing.get(concern, "the model is still loading; see GET /readyz")
            await _json(send, 503, {"error": f"{path} is unavailable: {reason}"})
            return
        await self.app(scope, receive, send)


def _authorised(headers: dict[str, str], key: str) -> bool:
    given = headers.get("x-api-key", "")
    auth = headers.get("authorization", "")
    if not given and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    return hmac.compare_digest(given.encode(), key.encode())


async def _read_bounded(receive: Any, limit: int) -> tuple[bytes, bool]:
    """Read a streamed body up to `limit` bytes; (body, True) when it goes over."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks), False


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _too_large(send: Any, size: int | bytes, limit: int) -> None:
    got = f"{size} bytes" if isinstance(size, int) else f"over {limit} bytes (streamed)"
    await _json(
        send,
        413,
        {
            "error": f"request body too large: {got}; the limit is {limit} bytes",
            "fix": "send a smaller request (fewer points, a cropped or downsampled scan)",
        },
    )


async def _json(send: Any, status: int, body: dict) -> None:
    payload = json.dumps(body, default=str).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
