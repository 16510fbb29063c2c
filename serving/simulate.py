"""POST /simulate: a fit id or a femur mesh, plus a load case -> summary and stress field.

Runs :func:`models.simulation.api.simulate` with the surrogate registered as
`serving.models.simulate` (`surrogate.onnx` + `surrogate.json`). The surrogate needs the
femur's shape coefficients: a `fit_id` from /fit on `femur_left` carries them; a bare mesh is
fitted first with the served femur shape model. `mode="fe"` solves the finite-element model on
the given mesh instead (tens of seconds).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Literal

import bentoml
import numpy as np
from pydantic import Field

from dh.errors import fail
from serving.common import load_served_model, require, user_errors
from serving.schemas import (
    LoadCase,
    Mesh,
    ModelRef,
    SimulateResponse,
    SimulationSummary,
)

logger = logging.getLogger(__name__)

CONCERN = "simulate"
STRUCTURE = "femur_left"


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
        mode: Literal["surrogate", "fe"] = "surrogate",
    ) -> SimulateResponse:
        """Von Mises stress (MPa, per surface vertex) and peak displacement (mm) of the femur.

        Give the `fit_id` of a `femur_left` fit, or a femur `mesh` in world mm (z superior).
        """
        import trimesh

        from models.meshio import write_vtp
        from models.simulation.api import simulate
        from serving.fit import FITS, fit_structure

        served = require(CONCERN)
        tmp = Path(tempfile.mkdtemp(prefix="dh-simulate-"))
        try:
            if fit_id:
                stored = FITS.get(fit_id)
                if stored is None:
                    fail(
                        "request",
                        "fit_id",
                        fit_id,
                        "the id of a recent /fit on this server",
                        "call /fit again; fit ids are kept in memory for the latest fits",
                    )
                if stored.structure != STRUCTURE:
                    fail(
                        "request",
                        "fit_id",
                        f"a fit of {stored.structure}",
                        f"a fit of {STRUCTURE}",
                        "fit the femur with structure=femur_left",
                    )
                surface = trimesh.Trimesh(stored.vertices, stored.faces, process=False)
                coefficients = stored.coefficients
            elif mesh is not None:
                surface = trimesh.Trimesh(
                    np.asarray(mesh.vertices, dtype=float), np.asarray(mesh.faces), process=False
                )
                coefficients = None
                if mode == "surrogate":
                    fitted = fit_structure(require("fit"), STRUCTURE, surface.vertices)
                    surface = trimesh.Trimesh(fitted.vertices, fitted.faces, process=False)
                    coefficients = fitted.coeffs
            else:
                fail("request", "fit_id", "none", "a fit_id or a mesh", "send one of them")

            if mode == "fe":
                result = simulate(surface, load_case.name, load_case.body_weight_kg, mode="fe")
            else:
                folder = tmp / "fit"
                folder.mkdir()
                write_vtp(surface, folder / "femur_left.vtp")
                doc = {
                    "structure": STRUCTURE,
                    "structures": {STRUCTURE: {"coefficients": list(map(float, coefficients))}},
                }
                (folder / "fit.json").write_text(json.dumps(doc), encoding="utf-8")
                result = simulate(
                    folder,
                    load_case.name,
                    load_case.body_weight_kg,
                    mode="surrogate",
                    surrogate_dir=served.path,
                )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

        summary = result.summary()
        name, _, version = served.tag.partition(":")
        extra = {"von_mises_p99_mpa": summary["von_mises_p99_mpa"]}
        extra.update(
            {f"von_mises_peak_{k}_mpa": v for k, v in summary["region_peaks_von_mises_mpa"].items()}
        )
        return SimulateResponse(
            model=ModelRef(name=name, version=version),
            load_case=load_case,
            summary=SimulationSummary(
                von_mises_peak_mpa=summary["von_mises_peak_mpa"],
                displacement_peak_mm=summary["displacement_peak_mm"],
                strain_energy_j=summary["strain_energy_j"],
                extra=extra,
            ),
            mesh=Mesh(
                name=STRUCTURE,
                vertices=np.round(result.surface.vertices, 3).tolist(),
                faces=np.asarray(result.surface.faces).tolist(),
                frame="world mm",
            ),
            von_mises_mpa=np.round(result.von_mises, 4).tolist(),
            mode=result.mode,
            seconds=round(result.seconds, 3),
            notes=list(result.notes),
        )
