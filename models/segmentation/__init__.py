"""CT segmentation: MONAI training, ONNX export, ONNX Runtime inference and meshing.

Modules:
    config: :class:`SegParams` read from the `segmentation:` section of `params.yaml`.
    imageio: reading a CT (NIfTI file or DICOM folder) with input checks.
    grid: resampling by world coordinates onto a common spacing and orientation.
    dataset: subjects (image + reference label map) on the common grid.
    train, network, export: torch/MONAI side (training, checkpoint, ONNX export + parity).
    sliding, infer: torch-free inference through ONNX Runtime with a numpy sliding window.
    mesh: label map -> per-structure surfaces in world RAS mm.

World frames: SimpleITK images live in LPS+ (+x toward the patient's left, +y posterior, +z
superior); NIfTI affines and every mesh written here are in RAS+ (+x right, +y anterior, +z
superior), the same frame as the written label map's NIfTI affine. Nothing on this package's
inference path imports torch.
"""

from __future__ import annotations
