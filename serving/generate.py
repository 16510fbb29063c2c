"""POST /generate: physiological features in, the expected digital human out (batched).

The population model registered as `serving.models.generate` is opened with the population
subsystem's :class:`models.population.generate.Generator` (its files: `population.npz`,
`organs_F.npz`, `organs_M.npz`, ...). Concurrent requests are batched adaptively
(:class:`serving.batching.AdaptiveBatcher`) into one `Generator.generate_batch` call.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Annotated, Any

import bentoml
import numpy as np
from pydantic import Field

from serving.batching import AdaptiveBatcher
from serving.common import SETTINGS, ServedModel, load_served_model, require, user_errors
from serving.schemas import (
    FEATURES_EXAMPLE,
    FeaturePrediction,
    Features,
    GenerateResponse,
    Mesh,
    ModelRef,
    mesh_out,
)

logger = logging.getLogger(__name__)

CONCERN = "generate"


def _open(model: ServedModel) -> None:
    import torch

    from models.population.generate import Generator

    torch.set_num_threads(max(1, SETTINGS.onnx_threads))
    model.handle = Generator(model.path)
    model.providers = {}  # the generator runs numpy and torch (CPU); no ONNX session


def _warmup(model: ServedModel) -> None:
    model.handle.generate_batch([dict(FEATURES_EXAMPLE)], with_organs=True)


def _mesh(name: str, tri: Any) -> Mesh:
    return mesh_out(name, tri.vertices, tri.faces, "body RAS+ mm", decimals=2)


def _response(served: ServedModel, human: Any, batch_size: int) -> GenerateResponse:
    name, _, version = served.tag.partition(":")
    meshes = [_mesh("skin", human.skin)]
    meshes += [_mesh(k, v) for k, v in sorted(human.structures.items())]
    meshes += [_mesh(k, v) for k, v in sorted(human.organs.items())]
    return GenerateResponse(
        model=ModelRef(name=name, version=version),
        meshes=meshes,
        vertex_sd_mm={"skin": np.round(human.vertex_std_mm, 2).tolist()},
        predicted={
            k: FeaturePrediction(mean=p.mean, sd=p.sd, lower=p.lower, upper=p.upper)
            for k, p in human.predictions.items()
        },
        sex_probability=dict(human.sex_probability),
        body_measurements=dict(human.body_measurements),
        batch_size=batch_size,
    )


class GenerateAPI:
    """The population model behind /generate, with adaptive batching of concurrent requests."""

    CONCERN = CONCERN

    def setup(self) -> None:
        self._generate_batcher = AdaptiveBatcher(
            self._generate_batch, SETTINGS.batch_max_size, SETTINGS.batch_max_latency_ms
        )
        load_served_model(CONCERN, open_model=_open, warmup=_warmup)

    def _generate_batch(self, batch: Sequence[tuple[dict, bool]]) -> list[GenerateResponse]:
        """One generator call per organ setting in the batch; results in request order."""
        served = require(CONCERN)
        out: list[GenerateResponse | None] = [None] * len(batch)
        for with_organs in (True, False):
            rows = [i for i, (_, w) in enumerate(batch) if w == with_organs]
            if not rows:
                continue
            humans = served.handle.generate_batch(
                [batch[i][0] for i in rows], with_organs=with_organs
            )
            for i, human in zip(rows, humans, strict=True):
                out[i] = _response(served, human, len(batch))
        return out

    @bentoml.api(route="/generate")
    @user_errors
    async def generate(
        self,
        features: Features,
        with_organs: Annotated[
            bool, Field(description="also return the organs and structures inside")
        ] = False,
    ) -> GenerateResponse:
        """The expected body (skin, bones, organs) for any subset of features, with uncertainty.

        Features are checked against the feature catalogue: an unknown name or an
        out-of-range value is a 400 naming the valid range. Meshes are in the body frame
        (RAS+, mm); `vertex_sd_mm` is the per-vertex standard deviation of the skin.
        """
        from dh.cohort import check_feature_values

        require(CONCERN)
        check_feature_values(features)
        return await self._generate_batcher.submit((dict(features), with_organs))
