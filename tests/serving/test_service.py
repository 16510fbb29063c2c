"""The live server: health, model info, metrics, API key, size limits and bad input."""

from __future__ import annotations

import httpx
import pytest

from tests.serving.conftest import API_KEY, LiveServer

pytestmark = pytest.mark.slow  # the session's live server builds and serves real models

CONCERNS = ("segment", "generate", "fit", "simulate")


def test_livez_and_readyz_report_providers(live_server: LiveServer) -> None:
    assert live_server.client.get("/livez").status_code == 200
    ready = live_server.client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True and body["warming_up"] == []
    assert set(body["models"]) | set(body["unavailable"]) == set(CONCERNS)
    for served in body["models"].values():
        for providers in served["providers"].values():
            assert providers and providers[-1] == "CPUExecutionProvider"


def test_models_lists_lineage(live_server: LiveServer) -> None:
    body = live_server.client.get("/models").json()
    for m in body["models"]:
        assert m["lineage"]["version"] == m["version"]
        assert m["lineage"]["record_sha256"] and m["lineage"]["artefacts"]


def test_metrics_are_prometheus(live_server: LiveServer) -> None:
    live_server.client.get("/livez")
    text = live_server.client.get("/metrics").text
    assert "# TYPE bentoml_service_request_total counter" in text


def test_openapi_has_every_endpoint_with_examples(live_server: LiveServer) -> None:
    spec = live_server.client.get("/docs.json").json()
    for concern in CONCERNS:
        assert f"/{concern}" in spec["paths"]
    assert "1620" in str(spec["paths"]["/generate"])


def test_api_key_is_required_everywhere(live_server: LiveServer) -> None:
    for method, path in [
        ("GET", "/livez"),
        ("GET", "/readyz"),
        ("GET", "/models"),
        ("GET", "/metrics"),
        ("POST", "/generate"),
    ]:
        r = httpx.request(method, live_server.url + path, json={}, timeout=10)
        assert r.status_code == 401, (path, r.status_code)
        wrong = httpx.request(method, live_server.url + path, headers={"X-API-Key": "nope"})
        assert wrong.status_code == 401
    bearer = httpx.get(
        live_server.url + "/livez",
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert bearer.status_code == 200


def test_oversized_bodies_get_413(live_server: LiveServer) -> None:
    big = b'{"features": {"sex": "F"}, "pad": "' + b"x" * (5 * 2**20) + b'"}'
    r = live_server.client.post(
        "/generate", content=big, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413 and "limit" in r.json()["error"]

    def chunks():  # streamed without a Content-Length
        for _ in range(6):
            yield b"x" * 2**20

    r = live_server.client.post(
        "/fit", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413


def test_malformed_json_is_400(live_server: LiveServer) -> None:
    for path in ("/generate", "/fit", "/simulate"):
        r = live_server.client.post(
            path, content=b'{"features": ', headers={"Content-Type": "application/json"}
        )
        assert r.status_code in (400, 503), (path, r.status_code)


def test_no_request_content_in_the_log(live_server: LiveServer) -> None:
    secret = "jane_doe_1984_03_07"
    for payload in ({"features": {secret: 1}}, {"features": {"sex": secret}}):
        r = live_server.client.post("/generate", json=payload)
        assert r.status_code in (400, 503)
        if r.status_code == 400:
            assert secret in r.text  # the user sees what was wrong
    r = live_server.client.post("/fit", json={"structure": secret})
    assert r.status_code in (400, 503)
    assert secret not in live_server.log.read_text(errors="replace")
