"""Point-to-surface distances (mm) through VTK's implicit poly-data distance (C++ loop)."""

from __future__ import annotations

import numpy as np


def point_to_surface(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """`(n_points,)` unsigned distance from each point to the closest triangle, mm.

    Args:
        vertices: `(n_vertices, 3)` surface vertices, mm.
        faces: `(n_faces, 3)` triangles.
        points: `(n_points, 3)` query points, mm, same frame.
    """
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk, numpy_to_vtkIdTypeArray

    poly = vtk.vtkPolyData()
    pts = vtk.vtkPoints()
    pts.SetData(numpy_to_vtk(np.ascontiguousarray(vertices, dtype=np.float64), deep=True))
    poly.SetPoints(pts)
    cells = vtk.vtkCellArray()
    conn = np.hstack([np.full((len(faces), 1), 3), faces]).astype(np.int64).ravel()
    cells.SetCells(len(faces), numpy_to_vtkIdTypeArray(conn, deep=True))
    poly.SetPolys(cells)
    implicit = vtk.vtkImplicitPolyDataDistance()
    implicit.SetInput(poly)
    query = np.ascontiguousarray(points, dtype=np.float64)
    out = vtk.vtkDoubleArray()
    implicit.FunctionValue(numpy_to_vtk(query, deep=True), out)
    from vtk.util.numpy_support import vtk_to_numpy

    return np.abs(vtk_to_numpy(out).astype(float))
