"""ONNX Runtime sessions with providers tried in the order TensorRT, CUDA, CPU.

`onnxruntime` (CPU) and `onnxruntime-gpu` provide the same module; whichever is installed is
used. TensorRT and CUDA are used only when the installed build offers them, and a provider
that fails to initialise falls back to the next one.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from dh.config import CACHE

logger = logging.getLogger(__name__)

PREFERRED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def _check_single_runtime() -> None:
    installed = []
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            metadata.version(dist)
            installed.append(dist)
        except metadata.PackageNotFoundError:
            continue
    if len(installed) > 1:
        warnings.warn(
            "both onnxruntime and onnxruntime-gpu are installed; they share one module "
            "and break each other: uninstall one",
            RuntimeWarning,
            stacklevel=3,
        )


@dataclass
class SessionInfo:
    """A session and the providers it actually uses."""

    session: object
    providers: list[str]
    path: str


def make_session(
    model_path: str | Path, intra_op_threads: int = 0, trt_cache_dir: Path | None = None
) -> SessionInfo:
    """Create an inference session, trying TensorRT, then CUDA, then CPU.

    Args:
        model_path: the `.onnx` file.
        intra_op_threads: threads per operator on CPU (0 lets ONNX Runtime choose).
        trt_cache_dir: TensorRT engine cache folder (default `.cache/trt`).
    """
    import onnxruntime as ort

    _check_single_runtime()
    available = set(ort.get_available_providers())
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    cache = Path(trt_cache_dir or CACHE / "trt")
    candidates = [p for p in PREFERRED if p in available]
    for start in range(len(candidates)):
        chosen = candidates[start:]
        providers = []
        for name in chosen:
            if name == "TensorrtExecutionProvider":
                cache.mkdir(parents=True, exist_ok=True)
                providers.append(
                    (
                        name,
                        {
                            "trt_engine_cache_enable": True,
                            "trt_engine_cache_path": str(cache),
                            "trt_fp16_enable": False,
                        },
                    )
                )
            else:
                providers.append(name)
        try:
            session = ort.InferenceSession(
                str(model_path), sess_options=options, providers=providers
            )
            used = session.get_providers()
            logger.info("ONNX session for %s uses %s", Path(model_path).name, used)
            return SessionInfo(session, used, str(model_path))
        except Exception as exc:  # a provider that cannot start raises a runtime-specific error
            logger.warning(
                "providers %s failed for %s (%s); trying the next", chosen, model_path, exc
            )
    raise RuntimeError(f"no ONNX Runtime provider could load {model_path}")
