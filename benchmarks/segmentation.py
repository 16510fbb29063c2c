"""Segmentation benchmark: inference time per volume (ONNX Runtime CPU vs torch CPU) and Dice /
HD95 per structure against each demo CT's reference label map.

Uses the trained model in `artifacts/segmentation` (`model.onnx` + `model.json` for ONNX Runtime,
`model.pt` for torch). Both runtimes drive the same numpy sliding window on the same
common-grid volume with the same thread count, so the timing compares the networks; the full
`predict_labels` time (resampling in and out included) is reported for ONNX Runtime as well.
Dice and HD95 (mm) are computed on each input's own grid, the reference label map resampled
onto it by world coordinates. Which subject the model was trained and validated on is copied
from its metrics: with two subjects, the validation figure describes one unseen subject, and
`example_ct` holds `example_ct_sm`'s voxels (its last 30 slices), so it is not independent.

Run: `python benchmarks/segmentation.py [--repeats N]` -> benchmarks/results/segmentation.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from dh.bench import write_result
from dh.config import DATA_RAW, load_params
from dh.registry import pull

logger = logging.getLogger("benchmarks.segmentation")

VOLUMES = {
    "ct_sm": ("ct/example_ct_sm.nii.gz", "ct/example_seg.nii.gz"),
    "ct_dicom": ("ct/example_ct_dicom", "ct/example_seg_dicom.nii.gz"),
    "ct_full": ("ct/example_ct.nii.gz", None),
}


def _timed(fn, repeats: int) -> tuple[float, object]:  # noqa: ANN001
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(repeats: int, model_dir: Path | None = None, overrides: dict | None = None) -> dict:
    import torch

    from models.segmentation.config import load_seg_params, structure_lookup
    from models.segmentation.dataset import label_table, map_labels, normalize_hu
    from models.segmentation.grid import canonical_reference, resample_to, to_xyz
    from models.segmentation.imageio import read_ct
    from models.segmentation.infer import DEFAULT_MODEL_DIR, load_model, predict_labels
    from models.segmentation.metrics import mean_dice, score_labels
    from models.segmentation.network import load_checkpoint
    from models.segmentation.sliding import onnx_predictor, sliding_window

    pull(["ct"])
    params = load_seg_params(overrides)
    model_dir = Path(model_dir or DEFAULT_MODEL_DIR)
    threads = int(params.num_threads)
    torch.set_num_threads(threads)
    model = load_model(model_dir, threads=threads)
    net, config = load_checkpoint(model_dir / "model.pt")
    metrics = json.loads((model_dir / "metrics.json").read_text())
    names = model.structures
    table = label_table(structure_lookup(params))
    n_classes = len(names) + 1
    window = {
        "roi": config["patch_size"],
        "n_classes": n_classes,
        "overlap": config["sw_overlap"],
        "batch_size": config["sw_batch_size"],
    }

    def torch_predict(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(batch)).numpy()

    results = {}
    for vid, (image_rel, labels_rel) in VOLUMES.items():
        ct = read_ct(DATA_RAW / image_rel, params.max_input_mb, params.hu_check_p01_max)
        grid = canonical_reference(ct.image, config["spacing_mm"])
        volume = normalize_hu(
            to_xyz(resample_to(ct.image, grid, labels=False, default=-1024.0)),
            config["hu_window"],
        )
        onnx_s, _ = _timed(
            lambda v=volume: sliding_window(v, onnx_predictor(model.session), **window), repeats
        )
        torch_s, _ = _timed(lambda v=volume: sliding_window(v, torch_predict, **window), repeats)
        full_s, labels = _timed(lambda c=ct: predict_labels(c, model), repeats)
        entry = {
            "input": image_rel,
            "input_size_voxels": list(ct.size),
            "input_spacing_mm": [round(s, 4) for s in ct.spacing],
            "grid_size_voxels": list(volume.shape),
            "role": "trained on"
            if vid in metrics["trained_on"]
            else "validated on"
            if vid in metrics["validated_on"]
            else "inference only (no reference label map; contains ct_sm's voxels)",
            "network_seconds": {
                "onnxruntime_cpu": round(onnx_s, 3),
                "torch_cpu": round(torch_s, 3),
            },
            "onnx_speedup_vs_torch": round(torch_s / onnx_s, 2),
            "predict_labels_seconds_onnxruntime": round(full_s, 3),
        }
        if labels_rel:
            reference = sitk.ReadImage(str(DATA_RAW / labels_rel))
            ref = map_labels(to_xyz(resample_to(reference, labels, labels=True)), table, labels_rel)
            scores = score_labels(to_xyz(labels), ref, names, ct.spacing)
            entry["mean_dice"] = mean_dice(scores)
            entry["structures"] = {
                k: {"dice": v.dice, "hd95_mm": v.hd95_mm, "voxels_ref": v.voxels_ref}
                for k, v in scores.items()
            }
        results[vid] = entry
        logger.info("%s: %s", vid, {k: v for k, v in entry.items() if k != "structures"})

    return {
        "model_version": model.version,
        "model_sha256": model.sha256,
        "trained_on": metrics["trained_on"],
        "validated_on": metrics["validated_on"],
        "claim": "no generalisation claim: one training subject, one validation subject, "
        "silver-standard (automatic) reference label maps",
        "threads": threads,
        "providers": model.providers,
        "repeats": repeats,
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "structures": names,
        "volumes": results,
        "params_iterations": load_params("segmentation").get("iterations"),
    }


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--model-dir", type=Path, default=None, help="default artifacts/segmentation"
    )
    args = parser.parse_args()
    path = write_result("segmentation", main(args.repeats, args.model_dir))
    logger.info("wrote %s", path)
