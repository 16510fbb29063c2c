"""Reading and writing surface meshes in world millimetres.

Meshes are passed around as :class:`trimesh.Trimesh` (vertices `(n_vertices, 3)` in mm,
faces `(n_faces, 3)` int). VRML and VTP go through VTK/PyVista; GLB, PLY, OBJ and STL
through trimesh.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from dh.errors import fail


def read_mesh(path: str | Path, scale: float = 1.0) -> trimesh.Trimesh:
    """Read a surface mesh as one triangle mesh, multiplying coordinates by `scale`.

    Supports `.wrl` (VRML 2.0), `.vtp`, `.vtk`, `.ply`, `.obj`, `.stl`, `.glb`/`.gltf`.
    Scenes with several geometries are concatenated.

    Raises:
        DHError: unreadable file, unknown suffix, or a mesh without faces.
    """
    path = Path(path)
    if not path.is_file():
        fail(str(path), "", "missing file", "an existing mesh file", "check the path")
    suffix = path.suffix.lower()
    try:
        if suffix in (".wrl", ".vrml"):
            mesh = _read_vrml(path)
        elif suffix in (".vtp", ".vtk"):
            mesh = _read_vtk(path)
        elif suffix in (".ply", ".obj", ".stl", ".glb", ".gltf", ".off"):
            loaded = trimesh.load(path, force="mesh", process=False)
            mesh = trimesh.Trimesh(loaded.vertices, loaded.faces, process=False)
        else:
            fail(
                str(path),
                "suffix",
                suffix,
                ".wrl .vtp .vtk .ply .obj .stl .glb .gltf .off",
                "convert the mesh to one of the supported formats",
            )
    except (ValueError, OSError, IndexError) as exc:
        fail(
            str(path),
            "",
            f"{type(exc).__name__}: {exc}",
            "a readable mesh file",
            "re-export the mesh; the file may be truncated",
        )
    if len(mesh.faces) == 0:
        fail(str(path), "faces", 0, "a surface with triangles", "export faces, not only points")
    if scale != 1.0:
        mesh.vertices = np.asarray(mesh.vertices) * scale
    return mesh


def _read_vrml(path: Path) -> trimesh.Trimesh:
    import vtk

    importer = vtk.vtkVRMLImporter()
    importer.SetFileName(str(path))
    importer.Update()
    append = vtk.vtkAppendPolyData()
    actors = importer.GetRenderer().GetActors()
    actors.InitTraversal()
    for _ in range(actors.GetNumberOfItems()):
        actor = actors.GetNextActor()
        data = actor.GetMapper().GetInput()
        if data is not None and data.GetNumberOfPoints() > 0:
            append.AddInputData(data)
    append.Update()
    return _polydata_to_trimesh(append.GetOutput())


def _read_vtk(path: Path) -> trimesh.Trimesh:
    import pyvista as pv

    return _polydata_to_trimesh(pv.read(str(path)))


def _polydata_to_trimesh(poly) -> trimesh.Trimesh:  # noqa: ANN001 (vtkPolyData or pv.PolyData)
    import pyvista as pv

    surf = pv.wrap(poly).extract_surface(algorithm="dataset_surface").triangulate().clean()
    faces = np.asarray(surf.faces).reshape(-1, 4)[:, 1:] if surf.n_cells else np.empty((0, 3))
    return trimesh.Trimesh(
        np.asarray(surf.points, dtype=float), faces.astype(np.int64), process=False
    )


def to_polydata(mesh: trimesh.Trimesh, point_data: dict[str, np.ndarray] | None = None):
    """A :class:`pyvista.PolyData` of the mesh with optional per-vertex arrays."""
    import pyvista as pv

    faces = np.hstack([np.full((len(mesh.faces), 1), 3), mesh.faces]).astype(np.int64)
    poly = pv.PolyData(np.asarray(mesh.vertices, dtype=float), faces.ravel())
    for name, values in (point_data or {}).items():
        poly.point_data[name] = np.asarray(values)
    return poly


def write_vtp(
    mesh: trimesh.Trimesh, path: str | Path, point_data: dict[str, np.ndarray] | None = None
) -> Path:
    """Write a mesh (mm) as VTK XML PolyData, with optional per-vertex arrays."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_polydata(mesh, point_data).save(str(path))
    return path


def write_glb(
    meshes: dict[str, trimesh.Trimesh],
    path: str | Path,
    colors: dict[str, tuple[int, int, int]] | None = None,
) -> Path:
    """Write named meshes (mm, kept as stored) into one binary glTF scene."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scene = trimesh.Scene()
    for name, mesh in meshes.items():
        m = mesh.copy()
        if colors and name in colors:
            m.visual.face_colors = (*colors[name], 255)
        scene.add_geometry(m, geom_name=name, node_name=name)
    scene.export(str(path), file_type="glb")
    return path
