"""Offscreen PyVista renderings of meshes and scalar fields, written as PNG."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import trimesh

from dh.config import apply_env_defaults

_PALETTE = [
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
    (120, 120, 120),
    (170, 110, 40),
    (128, 0, 0),
]


def color_for(index: int) -> tuple[int, int, int]:
    """A colour-blind-safe RGB colour for the `index`-th structure."""
    return _PALETTE[index % len(_PALETTE)]


def render_meshes(
    meshes: Mapping[str, trimesh.Trimesh],
    path: str | Path,
    scalars: Mapping[str, np.ndarray] | None = None,
    scalar_title: str = "",
    clim: tuple[float, float] | None = None,
    opacity: Mapping[str, float] | None = None,
    title: str = "",
    window_size: tuple[int, int] = (900, 900),
    view: str = "xz",
) -> Path:
    """Render named meshes (world mm) to a PNG, offscreen.

    Args:
        meshes: structure name -> mesh.
        path: output PNG.
        scalars: optional structure name -> per-vertex values `(n_vertices,)`, shown with a
            colour bar titled `scalar_title` (for example residual distance in mm).
        clim: colour range for `scalars`.
        opacity: optional per-structure opacity (e.g. 0.3 for skin over organs).
        title: text at the top of the image.
        window_size: pixels.
        view: camera plane, "xz" (coronal, for RAS/LPS world frames), "xy" or "yz".
    """
    apply_env_defaults()
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkOSOpenGLRenderWindow")
    import pyvista as pv

    from models.meshio import to_polydata

    pv.OFF_SCREEN = True
    plotter = pv.Plotter(off_screen=True, window_size=list(window_size))
    plotter.set_background("white")
    for i, (name, mesh) in enumerate(meshes.items()):
        poly = to_polydata(mesh)
        alpha = (opacity or {}).get(name, 1.0)
        if scalars and name in scalars:
            poly.point_data[scalar_title or "value"] = np.asarray(scalars[name], dtype=float)
            plotter.add_mesh(
                poly,
                scalars=scalar_title or "value",
                cmap="viridis",
                clim=clim,
                opacity=alpha,
                smooth_shading=True,
                scalar_bar_args={"title": scalar_title, "color": "black"},
            )
        else:
            plotter.add_mesh(
                poly, color=np.array(color_for(i)) / 255, opacity=alpha, smooth_shading=True
            )
    if title:
        plotter.add_text(title, font_size=10, color="black")
    {"xz": plotter.view_xz, "xy": plotter.view_xy, "yz": plotter.view_yz}[view]()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plotter.screenshot(str(path))
    plotter.close()
    return path
