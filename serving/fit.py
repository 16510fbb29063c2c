"""POST /fit: points, a mesh or landmarks of one structure (plus features) -> fitted model."""

from __future__ import annotations

import logging
from typing import Annotated

import bentoml
from pydantic import Field

from serving.common import load_served_model, require, unavailable, user_errors
from serving.schemas import MAX_POINTS, Features, FitResponse, Mesh, Point

logger = logging.getLogger(__name__)

CONCERN = "fit"


class FitAPI:
    """The shape models behind /fit."""

    CONCERN = CONCERN

    def setup(self) -> None:
        load_served_model(CONCERN)

    @bentoml.api(route="/fit")
    @user_errors
    def fit(
        self,
        structure: Annotated[str, Field(max_length=64, json_schema_extra={"example": "lungs"})],
        points: Annotated[list[Point] | None, Field(max_length=MAX_POINTS)] = None,
        mesh: Mesh | None = None,
        landmarks: Annotated[dict[str, Point] | None, Field(max_length=200)] = None,
        features: Features | None = None,
    ) -> FitResponse:
        """Fit the structure's shape model to the observation (world mm); residuals in mm."""
        require(CONCERN)
        raise unavailable(CONCERN)
