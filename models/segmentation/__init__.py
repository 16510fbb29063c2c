"""CT segmentation: MONAI training, ONNX export, ONNX Runtime inference and meshing.

Modules:
    config: :class:`SegParams` read from the `segmentation:` section of `params.yaml`.
    imageio: reading a CT (NIfTI file or DICOM folder) with input checks.
    grid: resampling by world coordinates onto a common spacing and orientation.
    dataset: subjects (image + reference label map) on the common grid.
    train, network, export: torch/MONAI side (training, checkpoint, ONNX export + parity).
    sliding, infer: torch-free inference through ONNX Runtime with a numpy sliding window.
    postprocess, metrics: stray-piece removal; Dice and HD95 (mm) per structure.
    mesh: label map -> per-structure surfaces in world RAS mm.
    lineage: sha256 of data files, git commit, lineage sidecars.

Entry points for other subsystems: `infer.segment(input_path, out_dir, model_dir)` ->
`SegmentationResult`; `infer.load_model` + `infer.predict_labels` (services keep one model);
`mesh.mesh_labelmap(path, {"name": [label values]})` meshes any label map without the network.

World frames: SimpleITK images live in LPS+ (+x toward the patient's left, +y posterior, +z
superior); NIfTI affines and every mesh written here are in RAS+ (+x right, +y anterior, +z
superior), the same frame as the written label map's NIfTI affine. Nothing on this package's
inference path imports torch.
"""

from __future__ import annotations
