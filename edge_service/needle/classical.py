"""Classical needle locator (the benchmark's peer and a fallback): a ridge filter and a line
fit, as scikit-image documents them.

1. The B-mode ROI, box-averaged by 2 (speckle suppression; the same help the learned model
   gets from its input resize).
2. `skimage.filters.sato` (bright ridges, sigmas ~ the shaft's echo half-width): a
   needle is a bright line, speckle is blobs.
3. Ridge pixels above a robust threshold (median + k * MAD of the response in the fan).
4. `skimage.transform.probabilistic_hough_line` restricted to needle angles (10-75 deg
   from the horizontal, either way) proposes segments; the best-supported one seeds
   `skimage.measure.ransac` with `LineModelND` on the ridge pixels near it.
5. The tip is the deepest inlier along the fitted line (a needle descends from the skin).

No temporal cue: a shaft that does not echo is not found (that is the learned model's job).
"""

from __future__ import annotations

import math
import time

import numpy as np
from scipy import ndimage

from edge_service.acquisition.frame import Frame
from edge_service.detector.preprocess import box_down, content_roi
from edge_service.needle.types import NeedleResult

DOWN = 2
SIGMAS = (1.0, 2.0)  # ridge widths at the downsampled scale (px)
K_MAD = 5.0
EDGE_PX = 6  # the fan's border is a strong ridge of its own: ignore a band inside it
MIN_LENGTH_MM = 8.0
MAX_GAP_PX = 5.0  # down-sampled px (~2 mm) of missing ridge still one shaft
MIN_ANGLE_DEG, MAX_ANGLE_DEG = 10.0, 75.0


class ClassicalLocator:
    """Ridge filter + Hough/RANSAC line fit (scikit-image)."""

    name = "classical"

    def __init__(self, min_length_mm: float = MIN_LENGTH_MM, k_mad: float = K_MAD) -> None:
        self.min_length_mm = min_length_mm
        self.k_mad = k_mad
        self.last_latency_ms = 0.0

    def reset(self) -> None:
        """Stateless: nothing to forget."""

    def locate(self, frame: Frame) -> NeedleResult:
        from skimage.filters import sato
        from skimage.measure import LineModelND, ransac
        from skimage.transform import probabilistic_hough_line

        t0 = time.perf_counter()
        try:
            roi = frame.roi or content_roi(frame.pixels) or frame.region
            crop = frame.pixels[roi.y0 : roi.y1, roi.x0 : roi.x1]
            img = box_down(crop, DOWN, DOWN) / np.float32(255.0)
            ridge = sato(img, sigmas=SIGMAS, black_ridges=False, mode="reflect")
            # the fan (content) eroded: its border with the black background is a ridge
            content = ndimage.binary_erosion(img > 0.02, iterations=EDGE_PX)
            if content.sum() < 100:
                return NeedleResult()
            vals = ridge[content]
            med = float(np.median(vals))
            mad = float(np.median(np.abs(vals - med))) + 1e-6
            thr = med + self.k_mad * mad
            binary = (ridge > thr) & content
            if binary.sum() < 10:
                return NeedleResult()
            px_mm = float(frame.spacing_mm[1]) * DOWN if frame.spacing_mm is not None else None
            # Without a spacing, 8 mm ~ 40 down-sampled pixels of a typical B-mode frame.
            min_len_px = self.min_length_mm / px_mm if px_mm else 40.0
            # Hough theta is the normal's angle from the x axis: a line at a from the
            # horizontal has its normal at a - 90 deg.
            lo, hi = math.radians(MIN_ANGLE_DEG), math.radians(MAX_ANGLE_DEG)
            thetas = np.concatenate(
                [np.linspace(lo, hi, 66) - np.pi / 2, np.linspace(-hi, -lo, 66) + np.pi / 2]
            )
            segs = probabilistic_hough_line(
                binary,
                threshold=10,
                line_length=max(5, int(min_len_px * 0.6)),
                line_gap=3,
                theta=thetas,
                rng=0,
            )
            if not segs:
                return NeedleResult()
            rows, cols = np.nonzero(binary)

            def support(seg: tuple[tuple[int, int], tuple[int, int]]) -> float:
                (x0, y0), (x1, y1) = seg
                n = max(2, int(math.hypot(x1 - x0, y1 - y0)))
                xs = np.linspace(x0, x1, n).round().astype(int)
                ys = np.linspace(y0, y1, n).round().astype(int)
                return float(ridge[ys, xs].sum())

            (x0, y0), (x1, y1) = max(segs, key=support)
            d = np.array([y1 - y0, x1 - x0], float)
            d /= np.linalg.norm(d) + 1e-9
            nrm = np.array([-d[1], d[0]])
            dist = np.abs((rows - y0) * nrm[0] + (cols - x0) * nrm[1])
            near = dist < 4.0
            pts = np.stack([rows[near], cols[near]], 1).astype(float)
            if len(pts) < 10:
                return NeedleResult()
            model, inliers = ransac(
                pts, LineModelND, min_samples=2, residual_threshold=1.5, max_trials=100, rng=0
            )
            if model is None or inliers is None or inliers.sum() < 10:
                return NeedleResult()
            origin = np.asarray(model.origin)
            direc = np.asarray(model.direction)
            if direc[0] < 0:
                direc = -direc  # towards depth
            # The shaft is the longest run of inliers without a gap: collinear speckle
            # ridges beyond the tip must not extend it.
            proj = np.sort((pts[inliers] - origin) @ direc)
            breaks = np.nonzero(np.diff(proj) > MAX_GAP_PX)[0]
            starts = np.concatenate([[0], breaks + 1])
            ends = np.concatenate([breaks, [len(proj) - 1]])
            k = int(np.argmax(proj[ends] - proj[starts]))
            lo_p, hi_p = float(proj[starts[k]]), float(proj[ends[k]])
            length = hi_p - lo_p
            if length < min_len_px:
                return NeedleResult()
            tip_d = origin + direc * hi_p
            start_d = origin + direc * lo_p
            ang = math.degrees(math.atan2(abs(direc[0]), abs(direc[1])))
            if not MIN_ANGLE_DEG - 2 <= ang <= MAX_ANGLE_DEG + 2:
                return NeedleResult()

            def full(p: np.ndarray) -> tuple[float, float]:
                return (
                    roi.y0 + (p[0] + 0.5) * DOWN - 0.5,
                    roi.x0 + (p[1] + 0.5) * DOWN - 0.5,
                )

            strength = float(np.median(ridge[rows[near][inliers], cols[near][inliers]]))
            return NeedleResult(
                found=True,
                tip_px=full(tip_d),
                angle_deg=math.copysign(ang, direc[1] if direc[1] != 0 else 1.0),
                shaft_start_px=full(start_d),
                shaft_visible_fraction=None,
                confidence=float(min(1.0, strength / (thr * 2.0))),
                cue="shaft",
            )
        finally:
            self.last_latency_ms = (time.perf_counter() - t0) * 1000.0
