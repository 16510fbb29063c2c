"""The segmentation network (MONAI SegResNet) and checkpoint loading. Imports torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from monai.networks.nets import SegResNet


def build_network(n_classes: int, init_filters: int) -> torch.nn.Module:
    """A 3D SegResNet: 1 input channel (normalised HU), `n_classes` logits (background first).

    Spatial input sizes must be multiples of 8 (three 2x downsamplings).
    """
    return SegResNet(
        spatial_dims=3,
        init_filters=int(init_filters),
        in_channels=1,
        out_channels=int(n_classes),
        norm=("GROUP", {"num_groups": min(8, int(init_filters))}),
        dropout_prob=None,
    )


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The network (eval mode) and its config dict from a checkpoint written by training."""
    checkpoint = torch.load(str(path), map_location="cpu", weights_only=False)
    config = checkpoint["config"]
    model = build_network(len(config["structures"]) + 1, config["init_filters"])
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    return model, config
