"""Tiny WaveNets of every conditioning kind, shared by the WaveNet and sampling tests."""

from __future__ import annotations

import torch

from wavegen.models.wavenet import WaveNet, WaveNetConfig

HOP = 16
CONDITIONING = {
    "none": {},
    "global-class": {"global_classes": 3, "global_dim": 4},
    "global-vector": {"global_dim": 5},
    "local": {"local_channels": 6, "hop_length": HOP, "upsample_factors": (4, 4)},
    "local-nearest+global": {"local_channels": 6, "hop_length": HOP, "upsample_factors": (2, 8),
                             "upsample_mode": "nearest", "global_classes": 2, "global_dim": 3},
}


def tiny(head="categorical", kernel_size=2, conditioning="none", **extra) -> WaveNet:
    torch.manual_seed(0)
    config = WaveNetConfig(layers=4, stacks=2, kernel_size=kernel_size, residual_channels=8,
                           gate_channels=8, skip_channels=16, head=head, num_classes=64,
                           num_mixtures=3, **CONDITIONING[conditioning], **extra)
    return WaveNet(config).eval()


def conditioning_inputs(model: WaveNet, batch: int, length: int):
    c = model.config
    local = torch.randn(batch, c.local_channels, length // c.hop_length) if c.has_local else None
    if c.global_classes:
        global_cond = torch.arange(batch) % c.global_classes
    elif c.has_global:
        global_cond = torch.randn(batch, c.global_dim)
    else:
        global_cond = None
    return local, global_cond
