"""Load benchmark of the live services: 16 concurrent clients for 30 s on /generate and /fit.

Starts `bentoml serve serving.service:DigitalHuman` on a free 127.0.0.1 port (or uses
`--url`), then runs three phases of `--clients` asyncio clients each: POST /generate only (the
issue's example features), POST /fit only (1,000 surface points of a real demo lung), and
both alternating; each phase lasts until `--seconds` have passed or `--max-requests` were
sent (a bounded loop either way), then waits for the requests in flight. Loopback only.

Models: by default the ones in the project's model store (`BENTOML_HOME`, .cache/bentoml)
when /generate and /fit are both registered there, else small demo models built from the real
data and registered into a temporary store (`--demo-models` forces that).

Run: `python benchmarks/serving.py [--seconds 30] [--clients 16]`
-> benchmarks/results/serving.json (requests/s, p50/p95/p99 latency in ms, error count,
observed /generate batch sizes).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dh.bench import write_result  # noqa: E402
from dh.config import DATA_RAW, apply_env_defaults  # noqa: E402

logger = logging.getLogger("benchmarks.serving")

API_KEY = "bench-key"
PHASES = {"generate": ("/generate",), "fit": ("/fit",), "mixed": ("/generate", "/fit")}
GENERATE = {"features": {"sex": "F", "age_years": 35, "stature_mm": 1620, "weight_kg": 55}}


def fit_payload(n_points: int = 1000, seed: int = 0) -> dict:
    """1,000 surface points (mm) of the first demo lung, in its own frame."""
    lung = sorted((DATA_RAW / "lungs" / "lll").glob("*.csv"))[0]
    points = np.loadtxt(lung, delimiter=",", comments="#")  # (6006, 3) mm
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(points), size=n_points, replace=False)
    return {"structure": "lungs", "points": np.round(points[pick], 3).tolist()}


def percentiles(ms: list[float]) -> dict[str, float | None]:
    if not ms:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "mean_ms": None}
    a = np.asarray(ms)
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 1),
        "p95_ms": round(float(np.percentile(a, 95)), 1),
        "p99_ms": round(float(np.percentile(a, 99)), 1),
        "mean_ms": round(float(a.mean()), 1),
    }


async def run_load(
    url: str, clients: int, seconds: float, max_requests: int, payloads: dict[str, dict]
) -> dict:
    """The load itself: `clients` workers cycling through the paths of `payloads` until time
    is up (or `max_requests` were sent)."""
    import httpx

    lat: dict[str, list[float]] = {p: [] for p in payloads}
    errors: dict[str, list[str]] = {p: [] for p in payloads}
    batch_sizes: list[int] = []
    sent = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"X-API-Key": API_KEY}

    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=120
    ) as client:

        async def worker(k: int) -> None:
            nonlocal sent
            paths = list(payloads)
            i = k
            while time.monotonic() < deadline and sent < max_requests:
                sent += 1
                path = paths[i % len(paths)]
                i += 1
                t0 = time.perf_counter()
                try:
                    r = await client.post(path, json=payloads[path])
                    ms = (time.perf_counter() - t0) * 1000
                    if r.status_code == 200:
                        lat[path].append(ms)
                        if path == "/generate":
                            batch_sizes.append(int(r.json().get("batch_size", 1)))
                    else:
                        errors[path].append(f"{r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as exc:
                    errors[path].append(f"{type(exc).__name__}: {exc}")

        t_start = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(clients)))
        elapsed = time.perf_counter() - t_start

    per_endpoint = {}
    for path in payloads:
        n_ok = len(lat[path])
        per_endpoint[path] = {
            "requests_ok": n_ok,
            "errors": len(errors[path]),
            "error_examples": errors[path][:3],
            "requests_per_s": round(n_ok / elapsed, 2),
            **percentiles(lat[path]),
        }
    all_ms = [ms for p in payloads for ms in lat[p]]
    n_err = sum(len(e) for e in errors.values())
    sizes = np.asarray(batch_sizes) if batch_sizes else np.zeros(1, dtype=int)
    counts = {int(k): int(v) for k, v in zip(*np.unique(sizes, return_counts=True), strict=True)}
    return {
        "clients": clients,
        "duration_s": round(elapsed, 2),
        "requests_ok": len(all_ms),
        "errors": n_err,
        "requests_per_s": round(len(all_ms) / elapsed, 2),
        **percentiles(all_ms),
        "endpoints": per_endpoint,
        "generate_batch_size": {
            "mean": round(float(sizes.mean()), 2),
            "max": int(sizes.max()),
            "responses_by_batch_size": counts,
        },
    }


def store_has(home: Path, names: list[str]) -> bool:
    return all((home / "models" / n / "latest").is_file() for n in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="benchmark a running server instead of starting one")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--max-requests", type=int, default=100_000)
    parser.add_argument("--demo-models", action="store_true", help="always use demo models")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    apply_env_defaults()

    proc, url, source = None, args.url, "given url"
    if url is None:
        from tests.serving.conftest import free_port, start_server, stop_server, wait_ready

        home = Path(os.environ["BENTOML_HOME"])
        env = {}
        if args.demo_models or not store_has(home, ["population", "shape"]):
            from dh.registry import pull
            from tests.serving.models import register_served_models

            pull()
            home = Path(tempfile.mkdtemp(prefix="bench-bentoml-"))
            register_served_models(DATA_RAW, home)
            source = "demo models built from the real data (tests/serving/models.py)"
        else:
            source = f"model store {home}"
        port = free_port()
        log = Path(tempfile.mkdtemp(prefix="bench-serve-")) / "server.log"
        url = f"http://127.0.0.1:{port}"
        proc = start_server(home, port, log, env, api_key=API_KEY)
        try:
            wait_ready(proc, url, log, api_key=API_KEY)
        except Exception:
            stop_server(proc)
            raise
    bodies = {"/generate": GENERATE, "/fit": fit_payload()}
    load_before = os.getloadavg()
    result: dict = {"phases": {}}
    try:
        for name, paths in PHASES.items():
            logger.info(
                "phase %s: %d clients for %.0f s on %s", name, args.clients, args.seconds, paths
            )
            result["phases"][name] = asyncio.run(
                run_load(
                    url,
                    args.clients,
                    args.seconds,
                    args.max_requests,
                    {p: bodies[p] for p in paths},
                )
            )
        import httpx

        models = httpx.get(f"{url}/models", headers={"X-API-Key": API_KEY}, timeout=10).json()
    finally:
        if proc is not None:
            stop_server(proc)
    result["load_average_1m"] = {"before": load_before[0], "after": os.getloadavg()[0]}
    result["models"] = {m["concern"]: m["tag"] for m in models.get("models", [])}
    result["model_source"] = source
    result["loop"] = {"seconds": args.seconds, "max_requests": args.max_requests}
    result["errors"] = sum(p["errors"] for p in result["phases"].values())
    path = write_result("serving", result)
    for name, r in result["phases"].items():
        logger.info(
            "%s: %d ok, %d errors, %.2f req/s, p50 %s ms, p95 %s ms, p99 %s ms",
            name, r["requests_ok"], r["errors"], r["requests_per_s"],
            r["p50_ms"], r["p95_ms"], r["p99_ms"],
        )  # fmt: skip
    logger.info("total errors %d -> %s", result["errors"], path)


if __name__ == "__main__":
    main()
