"""Benchmark results: JSON under `benchmarks/results/`, always with the machine they ran on."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from dh.config import BENCH_RESULTS


def machine_info() -> dict[str, Any]:
    """CPU model, core count, memory, OS, Python and key package versions of this machine."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            mem_kib = int(next(ln for ln in f if ln.startswith("MemTotal")).split()[1])
            mem_gib = round(mem_kib / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        pass
    packages = {}
    for name in ("torch", "onnxruntime", "onnxruntime-gpu", "monai", "scikit-fem", "bentoml"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "hostname": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None,
        "memory_gib": mem_gib,
        "gpu": _gpu_name(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": packages,
    }


def _gpu_name() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def write_result(name: str, result: dict[str, Any], directory: Path = BENCH_RESULTS) -> Path:
    """Write `result` plus machine info and a UTC timestamp to `<directory>/<name>.json`."""
    directory.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": name,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        **result,
    }
    path = directory / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2, default=_jsonable), encoding="utf-8")
    return path


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(obj)
    return str(obj)
