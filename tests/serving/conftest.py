"""A real `bentoml serve` of every concern on a free loopback port, for the serving tests.

The session fixture registers the models the server needs into a fresh BentoML home, starts
`bentoml serve serving.service:DigitalHuman` as a subprocess with an API key configured, waits
for /readyz, and stops the server at the end of the session.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from dh.config import PROJECT_ROOT

API_KEY = "test-key-3f9c"
STARTUP_TIMEOUT_S = 150


@dataclass
class LiveServer:
    """A running server: its base URL, an authorised client, and the store it serves from."""

    url: str
    client: httpx.Client
    home: Path
    log: Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    home: Path, port: int, log: Path, extra_env: dict[str, str], api_key: str = API_KEY
) -> subprocess.Popen:
    """`bentoml serve` of every concern from the store under `home`, API key required."""
    env = {
        **os.environ,
        "BENTOML_HOME": str(home),
        "DH_LINEAGE_LOG": str(home / "lineage.jsonl"),
        "DH_API_KEY": api_key,
        "BENTOML_DO_NOT_TRACK": "true",
        **extra_env,
    }
    cmd = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "serving.service:DigitalHuman",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with open(log, "wb") as out:
        return subprocess.Popen(
            cmd,
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_ready(proc: subprocess.Popen, url: str, log: Path, api_key: str = API_KEY) -> None:
    """Poll /readyz until 200; raise with the server log's tail when it exits or times out."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    headers = {"X-API-Key": api_key}
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", headers=headers, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server not ready in {STARTUP_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def served_models(raw_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BentoML home holding the models each concern serves, built here from real data."""
    from tests.serving.models import register_served_models

    home = tmp_path_factory.mktemp("bentoml-home")
    register_served_models(raw_data, home)
    return home


@pytest.fixture(scope="session")
def live_server(served_models: Path, tmp_path_factory: pytest.TempPathFactory) -> LiveServer:
    """`bentoml serve` of every concern on 127.0.0.1, API key required, ready to call."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    proc = start_server(served_models, port, log, {})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url, log)
        with httpx.Client(base_url=url, headers={"X-API-Key": API_KEY}, timeout=120) as client:
            yield LiveServer(url, client, served_models, log)
    finally:
        stop_server(proc)
