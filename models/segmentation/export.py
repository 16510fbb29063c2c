"""Export the trained SegResNet to ONNX (dynamic batch and spatial dims) and check parity.

Parity runs on a real CT (the first validation subject, else the first training subject): the
same numpy sliding window is driven once by torch and once by ONNX Runtime, and the export
fails with a DHError when the largest absolute logit difference or the per-structure Dice
between the two label maps is off. A second check feeds one whole volume of a shape other than
the training patch, to exercise the dynamic spatial dimensions.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dh.config import DATA_RAW
from dh.errors import fail
from models.segmentation.config import SegParams
from models.segmentation.dataset import load_subject, normalize_hu
from models.segmentation.lineage import sha256_file
from models.segmentation.metrics import dice
from models.segmentation.network import load_checkpoint
from models.segmentation.sliding import onnx_predictor, sliding_window

logger = logging.getLogger(__name__)


@dataclass
class ParityReport:
    """Torch vs ONNX Runtime on one real CT.

    Attributes:
        subject_id: the CT used.
        max_abs_logit: largest |torch - onnx| logit over the sliding-window volume.
        min_dice: smallest per-structure Dice between the two label maps (structures present).
        whole_volume_shape: `(1, 1, x, y, z)` of the dynamic-shape check.
        whole_volume_max_abs_logit: largest |torch - onnx| on that whole-volume forward pass.
        providers: ONNX Runtime providers used.
        passed: both thresholds met.
    """

    subject_id: str
    max_abs_logit: float
    min_dice: float
    whole_volume_shape: list[int]
    whole_volume_max_abs_logit: float
    providers: list[str]
    passed: bool


@dataclass
class ExportResult:
    """The exported model folder: `model.onnx` and `model.json` (config, sha256, lineage)."""

    onnx_path: Path
    manifest_path: Path
    sha256: str
    model_version: str
    parity: ParityReport


def export_onnx(model: torch.nn.Module, path: Path, patch_size: list[int]) -> Path:
    """Write `model` as ONNX with dynamic batch and spatial dims (multiples of 8)."""
    from torch.export import Dim

    # At least 2 along batch and 16 along each spatial axis, so no dim is specialised to 1.
    example = torch.zeros((2, 1, *[max(16, int(p)) for p in patch_size]), dtype=torch.float32)
    dims = {0: Dim("batch", min=1, max=256)}
    for axis, name in zip((2, 3, 4), ("dx", "dy", "dz"), strict=True):
        dims[axis] = 8 * Dim(name, min=1, max=256)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        dynamo=True,
        external_data=False,  # one self-contained file, so its sha256 covers the weights
        input_names=["image"],
        output_names=["logits"],
        dynamic_shapes={"x": dims},
        verbose=False,
    )
    import onnx

    onnx.checker.check_model(str(path))
    return path


def check_parity(
    model: torch.nn.Module,
    onnx_path: Path,
    volume: np.ndarray,
    subject_id: str,
    config: dict[str, Any],
    params: SegParams,
) -> ParityReport:
    """Compare torch and ONNX Runtime on a normalised CT volume `(X, Y, Z)`."""
    from models.onnx_runtime import make_session

    info = make_session(onnx_path, intra_op_threads=params.num_threads)
    n_classes = len(config["structures"]) + 1

    def torch_predict(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(batch)).numpy()

    kwargs = {
        "roi": config["patch_size"],
        "n_classes": n_classes,
        "overlap": config["sw_overlap"],
        "batch_size": config["sw_batch_size"],
    }
    logits_t = sliding_window(volume, torch_predict, **kwargs)
    logits_o = sliding_window(volume, onnx_predictor(info.session), **kwargs)
    max_abs = float(np.abs(logits_t - logits_o).max())
    labels_t, labels_o = logits_t.argmax(0), logits_o.argmax(0)
    dices = [dice(labels_t == c, labels_o == c) for c in range(1, n_classes)]
    min_dice = float(min((d for d in dices if d is not None), default=1.0))

    # Dynamic shapes: one whole volume, cropped/padded to multiples of 8, unlike the patch.
    shape = [max(8, (s // 8) * 8) for s in volume.shape]
    whole = np.zeros(shape, dtype=np.float32)
    crop = [min(a, b) for a, b in zip(shape, volume.shape, strict=True)]
    whole[: crop[0], : crop[1], : crop[2]] = volume[: crop[0], : crop[1], : crop[2]]
    whole = whole[None, None]
    whole_t = torch_predict(whole)
    whole_o = onnx_predictor(info.session)(whole)
    whole_abs = float(np.abs(whole_t - whole_o).max())

    passed = (
        max(max_abs, whole_abs) <= params.parity_max_abs_logit
        and min_dice >= params.parity_min_dice
    )
    return ParityReport(
        subject_id, max_abs, min_dice, list(whole.shape), whole_abs, info.providers, passed
    )


def export_model(
    checkpoint: Path, params: SegParams, out_dir: Path | None = None, root: Path = DATA_RAW
) -> ExportResult:
    """Export `checkpoint` to `out_dir/model.onnx`, check parity and write `model.json`.

    Raises:
        DHError: parity off (the ONNX file is removed so no unchecked model is left).
    """
    checkpoint = Path(checkpoint)
    out_dir = Path(out_dir or checkpoint.parent)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, int(params.num_threads)))
    model, config = load_checkpoint(checkpoint)

    onnx_path = out_dir / "model.onnx"
    tmp_path = out_dir / "model.onnx.tmp"
    export_onnx(model, tmp_path, config["patch_size"])

    subject_id = (params.val_subjects or params.train_subjects)[0]
    subject = load_subject(subject_id, params, root)
    volume = normalize_hu(subject.image_hu, config["hu_window"])
    parity = check_parity(model, tmp_path, volume, subject_id, config, params)
    logger.info("parity: %s", parity)
    if not parity.passed:
        tmp_path.unlink(missing_ok=True)
        fail(
            str(onnx_path),
            "parity",
            f"max |logit diff| {max(parity.max_abs_logit, parity.whole_volume_max_abs_logit):.3g}"
            f", min Dice {parity.min_dice:.4f}",
            f"<= {params.parity_max_abs_logit:g} and >= {params.parity_min_dice:g}",
            "check the torch and onnxruntime versions and the exported operators",
        )
    shutil.move(tmp_path, onnx_path)

    digest = sha256_file(onnx_path)
    lineage_path = checkpoint.with_name(checkpoint.name + ".lineage.json")
    lineage = json.loads(lineage_path.read_text()) if lineage_path.exists() else {}
    manifest = {
        "model_version": f"seg-{digest[:12]}",
        "onnx": onnx_path.name,
        "onnx_sha256": digest,
        "checkpoint_sha256": sha256_file(checkpoint),
        "input": "image (batch, 1, x, y, z) float32: HU clipped to hu_window, scaled to [0, 1], "
        "on an identity-direction LPS+ grid at spacing_mm; x, y, z multiples of 8",
        "output": "logits (batch, 1 + len(structures), x, y, z); label i + 1 = structures[i]",
        **config,
        "parity": asdict(parity),
        "lineage": lineage,
    }
    manifest_path = out_dir / "model.json"
    manifest_path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return ExportResult(onnx_path, manifest_path, digest, manifest["model_version"], parity)
