"""Training a SegResNet on subjects split by subject, with sliding-window validation.

Patches are sampled class-balanced from the common grid (world LPS+, `spacing_mm`), augmented
(small rotations/scaling, intensity scale/shift, noise; no left/right flips, since the
structures include left and right ones) and fed to a Dice + cross-entropy loss. Validation runs
MONAI's sliding-window inference over whole volumes; Dice and HD95 (mm) per structure are
reported for the validation subjects and, separately, as the fit on the training subjects.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dh.config import ARTIFACTS, DATA_RAW
from models.segmentation.config import SegParams, structure_lookup
from models.segmentation.dataset import Subject, load_subject, normalize_hu
from models.segmentation.lineage import sha256_path, write_lineage
from models.segmentation.metrics import mean_dice, score_labels
from models.segmentation.network import build_network
from models.segmentation.postprocess import remove_small_components

logger = logging.getLogger(__name__)

DEFAULT_DIR = ARTIFACTS / "segmentation"


@dataclass
class TrainResult:
    """What training wrote and measured.

    Attributes:
        checkpoint: `model.pt` (state dict + config).
        lineage: `model.pt.lineage.json` sidecar (data sha256s, params, git commit).
        metrics_path: `metrics.json` (Dice, HD95 mm per structure and subject).
        metrics: the same content as a dict.
        seconds: wall time of the training loop and evaluation.
    """

    checkpoint: Path
    lineage: Path
    metrics_path: Path
    metrics: dict[str, Any]
    seconds: float


def _transforms(params: SegParams, n_classes: int):  # noqa: ANN202 (monai Compose)
    from monai import transforms as mt

    keys = ["image", "label"]
    return mt.Compose(
        [
            mt.SpatialPadd(keys, spatial_size=params.patch_size, mode="constant"),
            mt.RandCropByLabelClassesd(
                keys,
                label_key="label",
                spatial_size=params.patch_size,
                num_classes=n_classes,
                num_samples=params.batch_size,
                warn=False,
            ),
            mt.RandAffined(
                keys,
                prob=0.3,
                rotate_range=(0.0, 0.0, 0.2),
                scale_range=(0.1, 0.1, 0.1),
                mode=("bilinear", "nearest"),
                padding_mode="border",
            ),
            mt.RandScaleIntensityd("image", factors=0.1, prob=0.5),
            mt.RandShiftIntensityd("image", offsets=0.05, prob=0.5),
            mt.RandGaussianNoised("image", std=0.01, prob=0.3),
        ]
    )


def predict_volume(model: torch.nn.Module, subject: Subject, params: SegParams) -> np.ndarray:
    """Label map `(X, Y, Z)` uint8 on the subject's common grid, by MONAI sliding window."""
    from monai.inferers import sliding_window_inference

    image = normalize_hu(subject.image_hu, params.hu_window)
    x = torch.from_numpy(image)[None, None]
    model.eval()
    with torch.no_grad():
        logits = sliding_window_inference(
            x,
            roi_size=params.patch_size,
            sw_batch_size=params.sw_batch_size,
            predictor=model,
            overlap=params.sw_overlap,
            mode="gaussian",
            padding_mode="constant",
            cval=0.0,
        )
    labels = logits[0].argmax(0).numpy().astype(np.uint8)
    return remove_small_components(labels, len(params.structures), params.min_component_fraction)


def evaluate(
    model: torch.nn.Module, subjects: list[Subject], params: SegParams
) -> dict[str, dict[str, Any]]:
    """Per subject: Dice and HD95 (mm) per structure plus mean Dice, on the common grid."""
    out = {}
    for subject in subjects:
        pred = predict_volume(model, subject, params)
        scores = score_labels(pred, subject.labels, params.structure_names, subject.spacing_mm)
        out[subject.subject_id] = {
            "mean_dice": mean_dice(scores),
            "structures": {k: v.to_dict() for k, v in scores.items()},
        }
    return out


def train(
    params: SegParams,
    out_dir: Path = DEFAULT_DIR,
    root: Path = DATA_RAW,
    on_iteration: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train, evaluate and save the checkpoint, its lineage and `metrics.json` in `out_dir`.

    Args:
        params: segmentation parameters (subjects, structures, patch size, iterations...).
        out_dir: output folder (created).
        root: data root holding the subjects' files (`data/raw`).
        on_iteration: called with (iteration, loss) after each step (progress bars).
    """
    from monai.losses import DiceCELoss
    from monai.utils import set_determinism

    start = time.perf_counter()
    torch.set_num_threads(max(1, int(params.num_threads)))
    set_determinism(seed=params.seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    # Data on the common grid, split by subject.
    train_subjects = [load_subject(s, params, root) for s in params.train_subjects]
    val_subjects = [load_subject(s, params, root) for s in params.val_subjects]
    n_classes = len(params.structures) + 1
    transforms = _transforms(params, n_classes)
    transforms.set_random_state(seed=params.seed)
    items = [
        {
            "image": normalize_hu(s.image_hu, params.hu_window)[None],
            "label": s.labels[None].astype(np.float32),
        }
        for s in train_subjects
    ]

    # Optimisation.
    model = build_network(n_classes, params.init_filters)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.learning_rate, weight_decay=1e-5)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=params.iterations)
    history = []
    for it in range(1, params.iterations + 1):
        model.train()
        samples = transforms(items[(it - 1) % len(items)])
        image = torch.stack([torch.as_tensor(s["image"]) for s in samples]).float()
        label = torch.stack([torch.as_tensor(s["label"]) for s in samples]).long()
        optimizer.zero_grad()
        loss = loss_fn(model(image), label)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if on_iteration:
            on_iteration(it, loss.item())
        if it % 25 == 0:
            logger.info(
                "iteration %d loss %.4f (%.0f s)", it, loss.item(), time.perf_counter() - start
            )
        if val_subjects and params.val_every and it % params.val_every == 0:
            val = evaluate(model, val_subjects, params)
            history.append(
                {"iteration": it, "loss": loss.item()}
                | {f"val_mean_dice_{k}": v["mean_dice"] for k, v in val.items()}
            )
            logger.info("iteration %d loss %.4f %s", it, loss.item(), history[-1])

    # Final evaluation: validation subjects, and the fit on the training subjects.
    metrics = {
        "trained_on": params.train_subjects,
        "validated_on": params.val_subjects,
        "note": "silver-standard reference label maps; with this few subjects the validation "
        "figures describe one unseen subject, not generalisation",
        "iterations": params.iterations,
        "validation": evaluate(model, val_subjects, params),
        "train_fit": evaluate(model, train_subjects, params),
        "history": history,
    }
    seconds = time.perf_counter() - start
    metrics["train_seconds"] = round(seconds, 1)
    metrics_path = out_dir / "metrics.json"
    metrics_path.write_text(json.dumps(metrics, indent=2), encoding="utf-8")

    # Checkpoint with its config and lineage sidecar.
    checkpoint = out_dir / "model.pt"
    config = {
        "structures": params.structure_names,
        "reference_labels": structure_lookup(params, root),
        "spacing_mm": list(params.spacing_mm),
        "hu_window": list(params.hu_window),
        "patch_size": list(params.patch_size),
        "init_filters": params.init_filters,
        "sw_overlap": params.sw_overlap,
        "sw_batch_size": params.sw_batch_size,
        "min_component_fraction": params.min_component_fraction,
    }
    torch.save({"state_dict": model.state_dict(), "config": config}, checkpoint)
    data = {}
    for s in train_subjects + val_subjects:
        data |= sha256_path(s.image_path) | sha256_path(s.labels_path)
    lineage = write_lineage(
        checkpoint.with_name(checkpoint.name + ".lineage.json"),
        {
            "artefact": str(checkpoint.name),
            "sha256": sha256_path(checkpoint)[next(iter(sha256_path(checkpoint)))],
            "trained_on": params.train_subjects,
            "validated_on": params.val_subjects,
            "data_sha256": data,
            "params": params.to_dict(),
            "metrics": {
                k: {s: v["mean_dice"] for s, v in metrics[k].items()}
                for k in ("validation", "train_fit")
            },
        },
    )
    logger.info("trained in %.0f s -> %s", seconds, checkpoint)
    return TrainResult(checkpoint, lineage, metrics_path, metrics, seconds)
