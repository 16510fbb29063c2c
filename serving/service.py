"""The BentoML services: one per concern, and `DigitalHuman`, which serves all four at once.

Each concern (segment, generate, fit, simulate) is an API class in its own module; the service
of one concern alone is, e.g., `serving.service:Generate`, and `serving.service:DigitalHuman`
composes all four in one process (the default of `dh serve` and of the Bento). One process is
the choice here: on a small machine it shares one ONNX Runtime and one copy of each model,
and saves the hop through a second HTTP server that `bentoml.depends` would add. To scale one
concern on its own, serve its service alone behind the same load balancer.

Every service gets the same middleware (API key, request size limits, JSON /readyz with the
providers in use, GET /models with each served model's lineage); BentoML adds /livez and the
Prometheus /metrics.
"""

from __future__ import annotations

import logging
import threading

import bentoml

from serving import logs
from serving.common import SETTINGS
from serving.fit import FitAPI
from serving.generate import GenerateAPI
from serving.middleware import GatewayMiddleware
from serving.segment import SegmentAPI
from serving.simulate import SimulateAPI

logger = logging.getLogger(__name__)

logs.install()

TRAFFIC = {"timeout": 300, "max_concurrency": 64}


class _Base:
    """Loads the models of every concern the service has, in a background thread.

    The server accepts requests at once (so /livez answers), while /readyz stays 503 until
    every model has loaded and warmed up.
    """

    def __init__(self) -> None:
        from serving.common import STATE

        logs.install()  # again after BentoML configured logging in this worker
        setups = [c for c in type(self).__mro__ if "setup" in c.__dict__ and c is not _Base]
        for cls in setups:
            STATE.expect(cls.CONCERN)
        self._loader = threading.Thread(
            target=self._load_all, args=(setups,), name="model-loader", daemon=True
        )
        self._loader.start()

    def _load_all(self, setups: list[type]) -> None:
        for cls in setups:
            cls.setup(self)

    def setup(self) -> None:  # overridden by each concern
        """Load this concern's model (see :func:`serving.common.load_served_model`)."""


def _bundled_models(apis: tuple[type, ...]) -> dict[str, bentoml.models.BentoModel]:
    """The registered model version of each concern, declared so `bentoml build` bundles it."""
    from bentoml.exceptions import NotFound

    out = {}
    for api in apis:
        spec = SETTINGS.models.get(api.CONCERN, "")
        try:
            model = bentoml.models.get(spec if ":" in spec else f"{spec}:latest")
        except (NotFound, ValueError):
            continue
        out[f"bundled_model_{api.CONCERN}"] = bentoml.models.BentoModel(str(model.tag))
    return out


def _service(name: str, *apis: type) -> type:
    """A BentoML service class named `name` with the APIs of `apis` and the shared middleware."""
    doc = f"The {', '.join(a.CONCERN for a in apis)} endpoint(s) of the digital-human platform."
    attrs = {"__doc__": doc, "__module__": __name__, "__qualname__": name}
    cls = type(name, (*apis, _Base), {**attrs, **_bundled_models(apis)})
    svc = bentoml.service(
        name=name.lower(),
        traffic=TRAFFIC,
        threads=SETTINGS.threads,
        http={"host": SETTINGS.host, "port": SETTINGS.port},
    )(cls)
    svc.add_asgi_middleware(GatewayMiddleware)
    return svc


Segment = _service("Segment", SegmentAPI)
Generate = _service("Generate", GenerateAPI)
Fit = _service("Fit", FitAPI)
Simulate = _service("Simulate", SimulateAPI)
DigitalHuman = _service("DigitalHuman", SegmentAPI, GenerateAPI, FitAPI, SimulateAPI)
