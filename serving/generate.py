"""POST /generate: physiological features in, the expected digital human out (batched)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import bentoml

from serving.batching import AdaptiveBatcher
from serving.common import SETTINGS, load_served_model, require, unavailable, user_errors
from serving.schemas import Features, GenerateResponse

logger = logging.getLogger(__name__)

CONCERN = "generate"


class GenerateAPI:
    """The population model behind /generate, with adaptive batching of concurrent requests."""

    CONCERN = CONCERN

    def setup(self) -> None:
        self._generate_batcher = AdaptiveBatcher(
            self._generate_batch, SETTINGS.batch_max_size, SETTINGS.batch_max_latency_ms
        )
        load_served_model(CONCERN)

    def _generate_batch(self, batch: Sequence[dict[str, Any]]) -> list[GenerateResponse]:
        raise unavailable(CONCERN)

    @bentoml.api(route="/generate")
    @user_errors
    async def generate(self, features: Features) -> GenerateResponse:
        """The expected body (skin, bones, organs) for any subset of features, with uncertainty.

        Features are checked against the feature catalogue: an unknown name or an
        out-of-range value is a 400 naming the valid range.
        """
        from dh.cohort import check_feature_values

        require(CONCERN)
        check_feature_values(features)
        return await self._generate_batcher.submit(dict(features))
