"""POST /simulate: a fit id or a femur mesh, plus a load case -> summary and stress field."""

from __future__ import annotations

import logging
from typing import Annotated

import bentoml
from pydantic import Field

from serving.common import load_served_model, require, unavailable, user_errors
from serving.schemas import LoadCase, Mesh, SimulateResponse

logger = logging.getLogger(__name__)

CONCERN = "simulate"


class SimulateAPI:
    """The ONNX surrogate of the femur FE model behind /simulate."""

    CONCERN = CONCERN

    def setup(self) -> None:
        load_served_model(CONCERN)

    @bentoml.api(route="/simulate")
    @user_errors
    def simulate(
        self,
        load_case: LoadCase,
        fit_id: Annotated[str | None, Field(max_length=64)] = None,
        mesh: Mesh | None = None,
    ) -> SimulateResponse:
        """Von Mises stress (MPa) and displacement (mm) of the femur under the load case."""
        require(CONCERN)
        raise unavailable(CONCERN)
