"""Training augmentation (models/train/augment.py): shapes, ranges, masks stay aligned.

Needs torch (the `train` extra); the appliance and CI do not install it.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (train extra only)")

from models.train import augment as A  # noqa: E402


def _batch(n: int = 8, h: int = 64, w: int = 96) -> tuple:
    """Speckle-like images with a bright 'nerve' disc whose label is exactly that disc."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 0.5, (n, 1, h, w)).astype(np.float32)
    y = np.zeros((n, 2, h, w), np.float32)
    rr, cc = np.mgrid[0:h, 0:w]
    for i in range(n):
        cy, cx = rng.integers(20, h - 20), rng.integers(25, w - 25)
        disc = (rr - cy) ** 2 + (cc - cx) ** 2 <= 8**2
        x[i, 0][disc] = 0.95
        y[i, 0][disc] = 1.0
    return torch.from_numpy(x), torch.from_numpy(y)


def test_shapes_and_ranges() -> None:
    x, y = _batch()
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        xa, ya = A.augment(x.clone(), y.clone(), g)
        assert xa.shape == x.shape and ya.shape == y.shape
        assert xa.dtype == torch.float32
        assert float(xa.min()) >= 0.0 and float(xa.max()) <= 1.0
        assert float(ya.min()) >= 0.0 and float(ya.sum(1).max()) <= 1.0 + 1e-4
        assert torch.isfinite(xa).all() and torch.isfinite(ya).all()


def test_geometry_moves_image_and_labels_together() -> None:
    x, y = _batch()
    g = torch.Generator().manual_seed(3)
    for _ in range(6):
        xg, yg = A.randomize_geometry(x.clone(), y.clone(), g)
        for i in range(x.shape[0]):
            lab = yg[i, 0] > 0.5
            if lab.sum() < 10:
                continue  # zoomed/letterboxed out of view: nothing to align
            inside = float(xg[i, 0][lab].mean())
            outside = float(xg[i, 0][~lab & (xg[i, 0] > 0)].mean())
            assert inside > 0.85 > outside + 0.3


def test_linear_geometry_unwarps_the_sector() -> None:
    grid = A._linear_grid(32, 48, 30.0, 0.5)
    assert grid.shape == (1, 32, 48, 2)
    # Top row samples the inner arc (apex above the image): its ends lie higher in the
    # source than its centre, as on a convex probe's screen.
    top = grid[0, 0, :, 1]
    assert float(top[24]) > float(top[0]) and float(top[24]) > float(top[-1])
    assert float(grid[..., 0].abs().max()) <= 1.0 + 1e-6


def test_photometric_and_capture_keep_shape_and_range() -> None:
    x, _ = _batch()
    g = torch.Generator().manual_seed(5)
    fan = (x > 0.004).float()
    xa = A.randomize_appearance(x.clone(), fan, g)
    assert xa.shape == x.shape and float(xa.min()) >= 0 and float(xa.max()) <= 1
    assert not torch.equal(xa, x)
    xc = A.randomize_capture(xa, g)
    assert xc.shape == x.shape and float(xc.min()) >= 0 and float(xc.max()) <= 1


def test_burned_annotations_and_jpeg_change_pixels() -> None:
    img = np.full((64, 96), 80, np.uint8)
    before = img.copy()
    hit = 0
    for s in range(10):
        A.burn_annotations(img, np.random.default_rng(s))
        hit += int((img != before).any())
        before = img.copy()
    assert hit >= 8
    x = torch.full((4, 1, 64, 96), 0.3)
    changed = 0
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        changed += int(not torch.allclose(A.randomize_capture(x.clone(), g), x, atol=1 / 255))
    assert changed >= 1


def test_randomize_false_is_the_previous_augmentation() -> None:
    x, y = _batch(2)
    xa, ya = A.augment(x.clone(), y.clone(), torch.Generator().manual_seed(9), randomize=False)
    xb, yb = A.augment(x.clone(), y.clone(), torch.Generator().manual_seed(9), randomize=False)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_target_randomisation_changes_only_the_nerve_region() -> None:
    x, y = _batch()
    g = torch.Generator().manual_seed(11)
    xt = A.randomize_targets(x.clone(), y, g, p=1.0)
    assert xt.shape == x.shape and float(xt.min()) >= 0 and float(xt.max()) <= 1
    far = (A._blur(y[:, 0:1], 6.0, 6.0) < 1e-3).expand_as(x)
    near_nerve = y[:, 0:1] > 0.5
    # Far from the nerve nothing moves (labels unchanged, so they must stay aligned) ...
    assert torch.allclose(xt[far], x[far])
    # ... inside it the appearance is redrawn: contrast to the tissue is no longer the
    # constant 0.95-vs-0.35 of the input on most images.
    changed = [abs(float(xt[i][near_nerve[i]].mean()) - 0.95) > 0.05 for i in range(x.shape[0])]
    assert sum(changed) >= x.shape[0] // 2


def test_target_randomisation_off_by_default() -> None:
    x, y = _batch(2)
    xa, _ = A.augment(x.clone(), y.clone(), torch.Generator().manual_seed(4))
    xb, _ = A.augment(x.clone(), y.clone(), torch.Generator().manual_seed(4), targets=0.0)
    assert torch.equal(xa, xb)
