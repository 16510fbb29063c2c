"""POST /segment: a CT (NIfTI, or a zipped DICOM series) -> label map, volumes, meshes."""

from __future__ import annotations

import logging
from pathlib import Path

import bentoml

from serving.common import load_served_model, require, unavailable, user_errors
from serving.schemas import SegmentResponse

logger = logging.getLogger(__name__)

CONCERN = "segment"


class SegmentAPI:
    """The segmentation network (ONNX) behind /segment."""

    CONCERN = CONCERN

    def setup(self) -> None:
        load_served_model(CONCERN)

    @bentoml.api(route="/segment")
    @user_errors
    def segment(self, scan: Path) -> SegmentResponse:
        """Segment an uploaded CT: `.nii`/`.nii.gz`, or a `.zip` of one DICOM series."""
        require(CONCERN)
        raise unavailable(CONCERN)
