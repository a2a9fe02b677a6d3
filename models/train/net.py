"""A small U-Net for B-mode segmentation (background, nerve, calcification).

Four down-samplings (widths 8-16-24-32-48) give a receptive field of well over 100 input
pixels (~70+ mm at the default input scale), enough to see the nerve against the ligament
and the calcification's shadow, while keeping the model at ~0.18 G multiply-accumulates
(0.35 GFLOP) and ~120 k parameters so it runs at video rate on one core.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

CLASSES = ("background", "nerve", "calcification")


def _block(cin: int, cout: int, n_conv: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n_conv):
        layers += [
            nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class UNet(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (8, 16, 32, 48), n_classes: int = 3) -> None:
        super().__init__()
        self.widths = widths
        self.enc = nn.ModuleList()
        cin = 1
        # Full-resolution stages get one conv only: they dominate the cost.
        for i, w in enumerate(widths):
            self.enc.append(_block(cin, w, 1 if i == 0 else 2))
            cin = w
        self.dec = nn.ModuleList()
        for i, w_skip in enumerate(reversed(widths[:-1])):
            last = i == len(widths) - 2
            self.dec.append(_block(cin + w_skip, w_skip, 1 if last else 2))
            cin = w_skip
        self.head = nn.Conv2d(cin, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, blk in enumerate(self.enc):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = blk(x)
            skips.append(x)
        skips.pop()
        for blk in self.dec:
            s = skips.pop()
            x = F.interpolate(x, size=s.shape[-2:], mode="bilinear", align_corners=False)
            x = blk(torch.cat([x, s], dim=1))
        return self.head(x)


def count_macs(model: UNet, h: int, w: int) -> int:
    """Multiply-accumulates of the conv layers for one (1, 1, h, w) input."""
    macs = 0
    hooks = []

    def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal macs
        assert isinstance(mod, nn.Conv2d)
        k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
        macs += int(out.numel()) * k

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(hook))
    with torch.no_grad():
        model.eval()(torch.zeros(1, 1, h, w))
    for hk in hooks:
        hk.remove()
    return macs
