"""Pieces every service shares: settings, served models with their ONNX sessions, readiness.

Each concern (segment, generate, fit, simulate) serves one model version from the BentoML model
store, named in `params.yaml` (`serving.models.<concern>`, `name` or `name:version`; the env var
`DH_MODEL_<CONCERN>` overrides it). Its ONNX files get sessions from
:func:`models.onnx_runtime.make_session` (TensorRT -> CUDA -> CPU, TensorRT engine cache under
`.cache/trt`) and are warmed up once before the server reports ready.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dh.config import apply_env_defaults, load_params
from dh.errors import DHError

logger = logging.getLogger(__name__)

apply_env_defaults()


@dataclass(frozen=True)
class ServingSettings:
    """The `serving` section of `params.yaml`."""

    host: str
    port: int
    api_key_env: str
    max_request_bytes: int
    max_upload_bytes: int
    threads: int
    onnx_threads: int
    batch_max_size: int
    batch_max_latency_ms: float
    models: dict[str, str]

    @classmethod
    def load(cls) -> ServingSettings:
        p = load_params("serving")
        models = dict(p.get("models", {}))
        for concern in list(models):
            models[concern] = os.environ.get(f"DH_MODEL_{concern.upper()}", models[concern])
        return cls(
            host=str(p.get("host", "127.0.0.1")),
            port=int(p.get("port", 3000)),
            api_key_env=str(p.get("api_key_env", "DH_API_KEY")),
            max_request_bytes=int(float(p.get("max_request_mb", 4)) * 2**20),
            max_upload_bytes=int(float(p.get("max_upload_mb", 256)) * 2**20),
            threads=int(p.get("threads", 4)),
            onnx_threads=int(p.get("onnx_threads", 1)),
            batch_max_size=int(p.get("batch_max_size", 32)),
            batch_max_latency_ms=float(p.get("batch_max_latency_ms", 10)),
            models=models,
        )


SETTINGS = ServingSettings.load()


@dataclass
class ServedModel:
    """One model version a concern serves.

    Attributes:
        concern: segment, generate, fit or simulate.
        tag: `name:version` in the model store.
        path: its folder in the store.
        record: its lineage record, as a dict.
        sessions: ONNX file name -> :class:`models.onnx_runtime.SessionInfo` (generic loading).
        handle: the subsystem's own loaded model object (when the concern opens it itself).
        providers: ONNX file name -> ONNX Runtime providers in use.
        warmup_s: seconds loading and warm-up took.
    """

    concern: str
    tag: str
    path: Path
    record: dict[str, Any]
    sessions: dict[str, Any] = field(default_factory=dict)
    handle: Any = None
    providers: dict[str, list[str]] = field(default_factory=dict)
    warmup_s: float = 0.0


class ServerState:
    """What this server process serves, and whether warm-up has finished (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.models: dict[str, ServedModel] = {}
        self.missing: dict[str, str] = {}
        self.pending: set[str] = set()

    def expect(self, concern: str) -> None:
        with self._lock:
            self.pending.add(concern)

    def served(self, model: ServedModel) -> None:
        with self._lock:
            self.models[model.concern] = model
            self.pending.discard(model.concern)

    def unavailable(self, concern: str, reason: str) -> None:
        with self._lock:
            self.missing[concern] = reason
            self.pending.discard(concern)

    @property
    def ready(self) -> bool:
        with self._lock:
            return not self.pending and bool(self.models or self.missing)

    def readiness(self) -> dict[str, Any]:
        """The /readyz body: ready flag, providers in use per model, and missing models."""
        with self._lock:
            return {
                "ready": not self.pending and bool(self.models or self.missing),
                "warming_up": sorted(self.pending),
                "models": {
                    c: {"tag": m.tag, "providers": m.providers, "warmup_s": round(m.warmup_s, 3)}
                    for c, m in sorted(self.models.items())
                },
                "unavailable": dict(sorted(self.missing.items())),
            }

    def catalogue(self) -> dict[str, Any]:
        """The /models body: each served model's version and full lineage record."""
        with self._lock:
            return {
                "models": [
                    {
                        "concern": c,
                        "tag": m.tag,
                        "name": m.tag.split(":")[0],
                        "version": m.tag.split(":")[1],
                        "providers": m.providers,
                        "lineage": m.record,
                    }
                    for c, m in sorted(self.models.items())
                ],
                "unavailable": dict(sorted(self.missing.items())),
            }


STATE = ServerState()


def load_served_model(
    concern: str,
    open_model: Callable[[ServedModel], None] | None = None,
    warmup: Callable[[ServedModel], None] | None = None,
) -> None:
    """Load the model version of `concern` from the store, open its ONNX sessions, warm up.

    Args:
        concern: segment, generate, fit or simulate.
        open_model: opens the model through its subsystem's own loader, setting
            `model.handle` and `model.providers`; without it every `.onnx` file of the model
            gets a session of its own (`model.sessions`).
        warmup: runs the model once on real-shaped input before the server reports ready.

    A model absent from the store leaves the concern unavailable (its endpoint answers 503)
    rather than stopping the server, so the other concerns still serve.
    """
    from models.onnx_runtime import make_session
    from models.registry import load_model

    spec = SETTINGS.models.get(concern, "")
    STATE.expect(concern)
    try:
        reg = load_model(spec)
    except DHError as err:
        logger.warning("concern %s: model %r not in the store; endpoint unavailable", concern, spec)
        STATE.unavailable(concern, f"model {spec!r} is not registered: {err.problems[0].fix}")
        return
    model = ServedModel(concern, reg.tag, reg.path, reg.record.to_dict())
    try:
        start = time.perf_counter()
        if open_model is not None:
            open_model(model)
        else:
            for onnx_file in sorted(reg.path.glob("*.onnx")):
                info = make_session(onnx_file, intra_op_threads=SETTINGS.onnx_threads)
                model.sessions[onnx_file.name] = info
                model.providers[onnx_file.name] = list(info.providers)
                warm_up_session(info.session)
        if warmup is not None:
            warmup(model)
        model.warmup_s = time.perf_counter() - start
    except Exception as exc:  # a broken artefact must not take the other concerns down
        logger.exception("concern %s: loading %s failed", concern, reg.tag)
        STATE.unavailable(concern, f"model {reg.tag} failed to load: {type(exc).__name__}")
        return
    STATE.served(model)
    logger.info("concern %s serves %s (providers %s)", concern, reg.tag, model.providers)


def warm_up_session(session: Any, dynamic_size: int = 1) -> None:
    """Run a session once on zeros (dynamic dimensions set to `dynamic_size`).

    With TensorRT this builds (or loads from the engine cache) the engine before the first
    request; on CPU it allocates the arena. Models whose dynamic dimensions need a minimum
    size get their own warm-up from the concern instead; a failure here is only logged.
    """
    dtypes = {
        "tensor(float)": np.float32,
        "tensor(double)": np.float64,
        "tensor(int64)": np.int64,
        "tensor(int32)": np.int32,
        "tensor(bool)": np.bool_,
    }
    feeds = {}
    for inp in session.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else dynamic_size for d in inp.shape]
        feeds[inp.name] = np.zeros(shape, dtype=dtypes.get(inp.type, np.float32))
    try:
        session.run(None, feeds)
    except Exception as exc:  # warm-up shapes are a guess for dynamic inputs
        logger.info("generic warm-up skipped (%s): %s", type(exc).__name__, str(exc)[:200])


# -- errors ------------------------------------------------------------------------------


def user_error(err: DHError) -> Exception:
    """A BentoML 400 error carrying the problems of a :class:`DHError` (never personal data)."""
    from bentoml.exceptions import InvalidArgument

    return InvalidArgument("; ".join(str(p) for p in err.problems))


def bad_request(message: str) -> Exception:
    """A BentoML 400 error with `message`."""
    from bentoml.exceptions import InvalidArgument

    return InvalidArgument(message)


def unavailable(concern: str) -> Exception:
    """A 503 error for a concern whose model is not served by this server."""
    from bentoml.exceptions import ServiceUnavailable

    reason = STATE.missing.get(concern, "the model is still warming up")
    return ServiceUnavailable(f"/{concern} is unavailable: {reason}")


def require(concern: str) -> ServedModel:
    """The model of `concern`, or a 503 when it is not served."""
    model = STATE.models.get(concern)
    if model is None:
        raise unavailable(concern)
    return model


def user_errors(func: Callable) -> Callable:
    """Decorate an API method so that a :class:`DHError` becomes a 400, never a 500."""
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await func(*args, **kwargs)
            except DHError as err:
                raise user_error(err) from None

        return async_wrapper

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DHError as err:
            raise user_error(err) from None

    return wrapper
