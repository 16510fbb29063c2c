"""Request and response models of the HTTP API (pydantic), with OpenAPI examples.

All coordinates are world millimetres; the frame of each mesh is named in its `frame` field.
Feature names and units follow `data/feature_catalogue.yaml` (e.g. `stature_mm`, `weight_kg`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

FEATURES_EXAMPLE = {"sex": "F", "age_years": 35, "stature_mm": 1620, "weight_kg": 55}
MAX_POINTS = 200_000

Point = Annotated[list[float], Field(min_length=3, max_length=3)]
Triangle = Annotated[list[int], Field(min_length=3, max_length=3)]
FeatureValue = float | str
Features = Annotated[
    dict[str, FeatureValue],
    Field(
        description="Feature name -> value in catalogue units (sex is 'F' or 'M'); any subset.",
        json_schema_extra={"example": FEATURES_EXAMPLE},
        max_length=200,
    ),
]


class Mesh(BaseModel):
    """A triangle surface in world mm."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "name": "tetrahedron",
                "vertices": [[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]],
                "faces": [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]],
                "frame": "model",
            }
        }
    )

    name: str = Field("", max_length=100)
    vertices: list[Point] = Field(..., min_length=4, max_length=MAX_POINTS)
    faces: list[Triangle] = Field(..., min_length=1, max_length=2 * MAX_POINTS)
    frame: str = Field("model", description="coordinate frame of the vertices (mm)")

    @field_validator("faces")
    @classmethod
    def _faces_index_vertices(cls, faces: list[list[int]], info: Any) -> list[list[int]]:
        n = len(info.data.get("vertices", []))
        if n and any(i < 0 or i >= n for tri in faces for i in tri):
            raise ValueError(f"face indices must lie in 0..{n - 1} (the vertex count is {n})")
        return faces


def mesh_out(name: str, vertices: Any, faces: Any, frame: str, decimals: int = 3) -> Mesh:
    """A response mesh from server-made arrays, without re-validating every vertex.

    Args:
        vertices: `(n_vertices, 3)` mm, rounded to `decimals`.
        faces: `(n_faces, 3)` vertex indices.
    """
    import numpy as np

    return Mesh.model_construct(
        name=name,
        vertices=np.round(np.asarray(vertices, dtype=float), decimals).tolist(),
        faces=np.asarray(faces, dtype=np.int64).tolist(),
        frame=frame,
    )


class FeaturePrediction(BaseModel):
    """A predicted feature value with its uncertainty, in catalogue units."""

    mean: float
    sd: float | None = None
    lower: float | None = None
    upper: float | None = None


class ModelRef(BaseModel):
    """The model version that answered."""

    name: str
    version: str


class GenerateResponse(BaseModel):
    """The expected digital human for the given features."""

    model: ModelRef
    meshes: list[Mesh]
    vertex_sd_mm: dict[str, list[float]] = Field(
        default_factory=dict, description="per mesh name: per-vertex standard deviation, mm"
    )
    predicted: dict[str, FeaturePrediction] = Field(
        default_factory=dict, description="every other feature, predicted, with uncertainty"
    )
    sex_probability: dict[str, float] = Field(default_factory=dict)
    body_measurements: dict[str, float] = Field(
        default_factory=dict, description="measured on the generated skin (mm, kg)"
    )
    batch_size: int = Field(1, description="requests served by the same model call")


class Residuals(BaseModel):
    """Distances from the observed data to the fitted surface, mm."""

    mean_mm: float
    p95_mm: float
    hausdorff_mm: float
    per_point_mm: list[float] = Field(default_factory=list)


class FitResponse(BaseModel):
    """A fitted shape model instance and how well it matches the observation."""

    fit_id: str = Field(..., description="id to pass to /simulate")
    model: ModelRef
    structure: str
    coefficients: list[float]
    coefficient_sd: list[float] = Field(default_factory=list)
    features: dict[str, FeaturePrediction] = Field(default_factory=dict)
    mesh: Mesh
    residuals: Residuals
    seconds: float


class LoadCase(BaseModel):
    """A load case: its name and the subject's body weight."""

    model_config = ConfigDict(
        json_schema_extra={"example": {"name": "stance", "body_weight_kg": 70}}
    )

    name: Literal["stance"] = "stance"
    body_weight_kg: float = Field(70.0, gt=20, lt=300, description="kg")


class SimulationSummary(BaseModel):
    """Peak values of a simulation."""

    von_mises_peak_mpa: float
    displacement_peak_mm: float
    strain_energy_j: float | None = None
    extra: dict[str, float] = Field(default_factory=dict)


class SimulateResponse(BaseModel):
    """Summary and field of a simulated load case."""

    model: ModelRef
    load_case: LoadCase
    summary: SimulationSummary
    mesh: Mesh
    von_mises_mpa: list[float] = Field(..., description="per mesh vertex, MPa")
    mode: str = "surrogate"
    seconds: float
    notes: list[str] = Field(default_factory=list)


class StructureResult(BaseModel):
    """One segmented structure: label value, volume and surface."""

    name: str
    label: int
    volume_ml: float
    mesh: Mesh | None = None


class SegmentResponse(BaseModel):
    """A label map (NIfTI, gzip, base64, in the input's world space) with volumes and meshes."""

    model: ModelRef
    label_map_nifti_gz_b64: str
    shape: list[int]
    spacing_mm: list[float]
    structures: list[StructureResult]
    seconds: float
